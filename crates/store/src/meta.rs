//! Metadata types exchanged with the store's callers: buckets, objects, parts and multipart uploads.
//!
//! The store persists these values as given (see [`crate::layout`] for the on-disk JSON) and interprets only what
//! it needs to find data: keys, part numbers and stored sizes. ETags, checksums, headers and the `encryption` values
//! are the caller's business; `encryption` in particular is [`RawJson`] owned by the SSE layer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;

/// A JSON value the store keeps for its caller without looking inside: read and written as its text, so it is
/// parsed once, by its owner, into the owner's own types.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// The JSON text (compact, as it was given).
    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl From<Box<RawValue>> for RawJson {
    fn from(raw: Box<RawValue>) -> Self {
        RawJson(raw)
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for RawJson {}

// Encryption metadata holds no secrets, but wrapped and sealed keys are nothing a log needs either.
impl std::fmt::Debug for RawJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawJson({} bytes)", self.get().len())
    }
}

/// A bucket as reported by `head_bucket` / `list_buckets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketInfo {
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// The access key that created the bucket (`None` for buckets made before buckets had owners).
    pub owner: Option<String>,
    /// The bucket policy as submitted (PutBucketPolicy), if any.
    pub policy: Option<String>,
}

/// How a stored checksum covers the object (S3 `x-amz-checksum-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChecksumKind {
    /// The checksum of the whole body (single PUTs, and full-object multipart checksums).
    FullObject,
    /// A checksum of the part checksums, suffixed `-N` by S3 (multipart uploads).
    Composite,
}

/// A checksum value the server verified while receiving the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    /// `CRC32`, `CRC32C`, `CRC64NVME`, `SHA1` or `SHA256`.
    pub algorithm: String,
    /// The value as S3 prints it (base64, with the `-N` suffix for composite checksums).
    pub value: String,
    pub kind: ChecksumKind,
}

/// One stored part of an object or of a multipart upload. A single PUT is stored as part 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartMeta {
    /// Part number, 1..=10000.
    pub number: u32,
    /// Client-visible (plaintext) bytes of the part.
    pub size: u64,
    /// Bytes on disk; the store sets it from the data it received (differs from `size` when encrypted).
    pub stored_size: u64,
    /// The part's ETag, unquoted.
    pub etag: String,
    pub checksum: Option<Checksum>,
    #[serde(with = "time::serde::rfc3339")]
    pub last_modified: OffsetDateTime,
    /// Per-part encryption metadata, opaque to the store.
    pub encryption: Option<RawJson>,
}

/// The client-supplied headers an object keeps (an upload keeps them for its object).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectHeaders {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    /// The `Expires` header exactly as the client sent it.
    pub expires: Option<String>,
    /// `x-amz-meta-*` pairs, names without the prefix.
    pub user_metadata: BTreeMap<String, String>,
}

/// An object's metadata: what HEAD returns plus the parts the data is stored in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub key: String,
    /// Client-visible (plaintext) size of the whole object.
    pub size: u64,
    /// Unquoted ETag: hex MD5, or `hex-N` for multipart objects.
    pub etag: String,
    /// Set by the store when the object is committed (`put_object`, `complete_upload`).
    #[serde(with = "time::serde::rfc3339")]
    pub last_modified: OffsetDateTime,
    pub headers: ObjectHeaders,
    pub checksum: Option<Checksum>,
    /// The stored parts in object order. Filled by the store on commit.
    pub parts: Vec<PartMeta>,
    /// Object-level encryption metadata, opaque to the store.
    pub encryption: Option<RawJson>,
    /// The version id the store gave this version when it was committed; `None` for the null version (written
    /// while the bucket was unversioned or suspended). Callers leave it `None`; the store sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

impl ObjectMeta {
    /// Metadata for `key` with every optional field empty; callers fill in what they have.
    pub fn new(key: impl Into<String>, size: u64, etag: impl Into<String>) -> Self {
        ObjectMeta {
            key: key.into(),
            size,
            etag: etag.into(),
            last_modified: OffsetDateTime::UNIX_EPOCH,
            headers: ObjectHeaders::default(),
            checksum: None,
            parts: Vec::new(),
            encryption: None,
            version_id: None,
        }
    }
}

/// A bucket's versioning state (S3 PutBucketVersioning). `Unversioned` until first set; it never returns to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Versioning {
    /// Never versioned: a write replaces the key's only version, the null version.
    #[default]
    Unversioned,
    /// Every write and delete adds a version with an id of its own; none is replaced.
    Enabled,
    /// Writes and deletes replace the null version; the versions with ids stay.
    Suspended,
}

impl Versioning {
    /// Whether this is the state of a bucket never versioned (records leave it out: they read back the same).
    pub(crate) fn is_unversioned(&self) -> bool {
        *self == Versioning::Unversioned
    }
}

/// What a delete did (S3 DeleteObject's `x-amz-version-id` and `x-amz-delete-marker`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deletion {
    /// The version the delete created (a delete marker) or removed; `None` when nothing was versioned (an
    /// unversioned bucket, or a null version, which S3 reports as "null": the server prints `None` as "null"
    /// only when the bucket is versioned or suspended).
    pub version_id: Option<String>,
    /// Whether a delete marker was created, or the removed version was a delete marker.
    pub delete_marker: bool,
}

/// What `create_upload` records about a multipart upload; the server copies it into the final [`ObjectMeta`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadMeta {
    pub headers: ObjectHeaders,
    /// Set by the store in `create_upload`.
    #[serde(with = "time::serde::rfc3339")]
    pub initiated: OffsetDateTime,
    /// `x-amz-checksum-algorithm` given at creation, if any.
    pub checksum_algorithm: Option<String>,
    /// How the completed object's checksum is to cover it (`x-amz-checksum-type`), set with `checksum_algorithm`;
    /// absent means composite.
    #[serde(default)]
    pub checksum_kind: Option<ChecksumKind>,
    /// Upload-level encryption metadata, opaque to the store.
    pub encryption: Option<RawJson>,
}

impl Default for UploadMeta {
    fn default() -> Self {
        UploadMeta {
            headers: ObjectHeaders::default(),
            initiated: OffsetDateTime::UNIX_EPOCH,
            checksum_algorithm: None,
            checksum_kind: None,
            encryption: None,
        }
    }
}

/// An in-progress multipart upload as listed by `list_uploads`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    pub key: String,
    pub upload_id: String,
    pub initiated: OffsetDateTime,
}
