//! The store's error type. Messages name buckets, keys and upload ids at most; they never carry object data.

use std::io;

use time::OffsetDateTime;

/// Everything a store operation can fail with. The server maps each variant to an S3 error code.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The bucket does not exist (also returned for names that can never be a bucket).
    #[error("the specified bucket does not exist")]
    NoSuchBucket,
    /// The object does not exist.
    #[error("the specified key does not exist")]
    NoSuchKey,
    /// The multipart upload does not exist, was completed or aborted, or belongs to another key.
    #[error("the specified multipart upload does not exist")]
    NoSuchUpload,
    /// `create_bucket` on a bucket that already exists (Coffer has a single owner namespace).
    #[error("the bucket already exists and is owned by you")]
    BucketAlreadyOwnedByYou,
    /// `delete_bucket` on a bucket that still holds objects.
    #[error("the bucket is not empty")]
    BucketNotEmpty,
    /// The name breaks the S3 bucket naming rules or is reserved (`coffer`, `rustfs`, `minio`).
    #[error("invalid bucket name: {0}")]
    InvalidBucketName(String),
    /// The key is longer than 1024 bytes of UTF-8.
    #[error("the object key is longer than 1024 bytes")]
    KeyTooLong,
    /// The key is empty.
    #[error("the object key must not be empty")]
    InvalidKey,
    /// A part number is outside 1..=10000, or a part chosen for completion was never uploaded (or chosen twice).
    #[error("invalid part {0}")]
    InvalidPart(u32),
    /// Metadata handed to the store does not describe the stored data (a caller bug, e.g. `update_object_meta`
    /// with a different part list).
    #[error("metadata does not match the stored data: {0}")]
    InvalidMeta(&'static str),
    /// A conditional write (`update_object_meta`, `replace_object`) found the object changed or deleted since the
    /// caller read the version it expected.
    #[error("the object changed since it was read")]
    Changed,
    /// No version of the key has this id (S3 `NoSuchVersion`, 404); also for malformed ids.
    #[error("the specified version does not exist")]
    NoSuchVersion,
    /// The version asked for by id is a delete marker (S3: 405 MethodNotAllowed with `x-amz-delete-marker: true`).
    #[error("the specified version is a delete marker")]
    DeleteMarker { version_id: Option<String>, last_modified: OffsetDateTime },
    /// The engine does not implement this (the directory engine and versioning): S3 `NotImplemented`, 501.
    #[error("not implemented: {0}")]
    NotImplemented(&'static str),
    /// A filesystem error, or a corrupt / unsupported metadata file.
    #[error("storage i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
