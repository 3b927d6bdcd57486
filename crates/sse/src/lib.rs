//! coffer-sse: server-side encryption rules and the encryption format of object data.
//!
//! This crate owns the SSE request headers and every decision made from them (SSE-S3, SSE-KMS, SSE-C, bucket
//! default encryption, copy sources, the errors S3 answers with), the key hierarchy (a random key per object,
//! sealed under a key derived from a KMS bucket key or the customer's key), the package format the data is stored
//! in, and the `encryption` metadata JSON the store keeps opaquely. It gets keys from `coffer_kms::KmsManager`.
//! It must not touch the store, HTTP or s3s types: the server passes header values in as strings and moves bytes
//! between the store and this crate's encryptors and decryptors.
//!
//! docs/encryption-format.md specifies the format with test vectors.

mod error;
mod headers;
mod keys;
mod metadata;
mod package;
mod part_list;
mod service;

pub use error::{Result, SseError};
pub use headers::{
    authorize_read, authorize_upload_part, BucketEncryption, CustomerKey, CustomerKeyHeaders, KmsContext, KmsRequest,
    SseHeaders, Transport, WriteEncryption,
};
pub use metadata::{ObjectEncryption, PartEncryption, SseMode, SseResponse};
pub use package::{
    plaintext_size, stored_size, ObjectCipher, PartDecryptor, PartEncryptor, SealedPart, ENCRYPTED_DATA_MARKER,
    PACKAGE_SIZE,
};
pub use part_list::ListedPart;
pub use service::{NewObject, RewrapTarget, Rewrapped, SseService};
