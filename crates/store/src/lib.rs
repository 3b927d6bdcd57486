//! Coffer's local object store.
//!
//! Owns buckets, objects, multipart uploads and their metadata on a local directory: atomic writes (temp file,
//! fsync, rename, directory fsync), a safe key → path mapping (keys are hashed, never used as path components),
//! version-pinned reads, S3-ordered listing, and integrity: every record carries a MAC under a key of the data
//! directory and every data file's chunks have checksums checked as they are read. The on-disk layout, JSON format
//! and integrity rules are documented in [`layout`].
//!
//! It must not speak HTTP or S3 XML, make encryption decisions or talk to a KMS: `encryption` fields are opaque
//! JSON ([`RawJson`]) it stores and returns, and ETags, checksums and sizes are computed by its callers.
//!
//! Writing an object: [`Store::stage`] a [`StagedWrite`], stream the body into it, [`StagedWrite::finish`] it into
//! a [`StagedFile`], verify what must be verified, then [`Store::put_object`] (or [`Store::put_part`]). Dropping
//! the staged value instead discards the data. Reading: [`Store::open_object`] pins a version;
//! [`ObjectReader::read_part`] streams stored bytes of one part.
//!
//! Where the SQL metadata engine keeps stored bytes is a [`DataLocation`]: the data directory, or a bucket of an
//! S3-compatible cluster ([`S3Location`]), which it reaches as a client (OpenDAL's S3 service) and never serves.
//! Clusters: with PostgreSQL, several servers share one database; [`ClusterKey`] is the secret they share (it signs
//! the records) and [`SharedState`] the sealed, versioned values and change events they share beside the metadata.
//!
//! Versioning ([`Versioning`], S3 semantics: version ids, the null version, delete markers) is kept by the SQL engine;
//! the directory engine keeps one version per key and shows its objects as null versions.
//!
//! Maintenance: [`Store::scrub_object`] checks an object's record and stored bytes without a KMS, walking
//! [`Store::object_ids`]; [`Store::collect_garbage`] removes what crashes left that no record references.

mod chunk_checksums;
mod cluster;
mod data_dir;
mod data_engine;
mod engine;
mod error;
mod fsio;
mod garbage;
mod jobs;
pub mod layout;
mod listing;
mod locks;
mod meta;
mod migrate;
mod multipart;
mod names;
mod null_versions;
mod objects;
mod reader;
mod record_mac;
mod s3_data;
mod scrub;
mod sql;
mod staging;
mod store;
mod user_policies;

pub use cluster::{ClusterKey, SharedEvent, SharedState, SharedValue, EVENT_RETENTION};
pub use error::{Result, StoreError};
pub use garbage::Reclaimed;
pub use listing::{ListPage, ListQuery, ObjectSummary, VersionPage, VersionQuery, VersionSummary};
pub use meta::{
    BucketInfo, Checksum, ChecksumKind, Deletion, ObjectHeaders, ObjectMeta, PartMeta, RawJson, UploadInfo, UploadMeta,
    Versioning,
};
pub use migrate::{import_directory, ImportTarget, Imported};
pub use names::{is_version_id, MAX_KEY_LEN, MAX_PART_NUMBER, NULL_VERSION};
pub use reader::{ObjectReader, PartStream, READ_CHUNK};
pub use s3_data::{DataLocation, S3Location, S3SecretKey, DEFAULT_RELEASE_GRACE};
pub use scrub::ScrubFinding;
pub use staging::{StagedFile, StagedWrite};
pub use store::Store;
