//! On-disk layout and metadata format, `format_version` 2.
//!
//! ```text
//! DIR/buckets/<bucket>/bucket.json                    bucket record
//! DIR/buckets/<bucket>/objects/<sha256(key)>/meta.json    object record: the commit point of the object
//! DIR/buckets/<bucket>/objects/<sha256(key)>/data-<id>    stored bytes of one part (one file per part)
//! DIR/buckets/<bucket>/uploads/<upload id>/upload.json    multipart upload record
//! DIR/buckets/<bucket>/uploads/<upload id>/part-NNNNN.json  part record (NNNNN = zero-padded part number)
//! DIR/buckets/<bucket>/uploads/<upload id>/data-<id>      stored bytes of one uploaded part
//! DIR/.coffer/tmp/                                    temp files and trash; emptied by Store::open
//! DIR/.coffer/kms/                                    not the store's (coffer-kms)
//! ```
//!
//! `<bucket>` is a validated S3 bucket name. `<sha256(key)>` is the lowercase hex SHA-256 of the key's UTF-8
//! bytes, so keys never appear in paths. `<upload id>` and `<id>` are 128-bit random values in lowercase hex.
//! Directories are created 0700 and files 0600: object data may be plaintext.
//!
//! # Records
//! All records are JSON objects with a `format_version` (currently 2; version 1 had no `inline_data` and is read
//! as it is); readers reject other versions. Timestamps
//! are RFC 3339 strings. Unknown fields are ignored, so later versions may add fields without a version bump as
//! long as old readers stay correct without them. `encryption` fields are opaque values owned by the SSE layer.
//!
//! * `bucket.json`: `{format_version, name, created, encryption}` — `encryption` is the bucket's default
//!   encryption configuration or `null`.
//! * `meta.json`: `{format_version, key, size, etag, last_modified, content_type, content_encoding,
//!   content_disposition, content_language, cache_control, expires, user_metadata: {name: value}, checksum,
//!   parts: [part], encryption, data_files: [name], inline_data}` — `data_files[i]` holds the stored bytes of
//!   `parts[i]`, except for an object of one part of at most 64 KiB stored: `data_files` is empty and
//!   `inline_data` holds the bytes (base64); the field is absent otherwise. A part is `{number, size, stored_size, etag, checksum, last_modified, encryption}` with `size` in client bytes
//!   and `stored_size` in bytes on disk; a checksum is `{algorithm, value, kind: "FULL_OBJECT" | "COMPOSITE"}`.
//!   The `key` is kept so listings can be rebuilt from the directory and so a hash mismatch is detected.
//! * `upload.json`: `{format_version, key, upload_id, content_type, content_encoding, content_disposition,
//!   content_language, cache_control, expires, user_metadata, initiated, checksum_algorithm, encryption}`.
//! * `part-NNNNN.json`: a part (as above) plus `format_version` and `data_file`.
//!
//! # Commit protocol
//! Data larger than the write buffer is staged in `.coffer/tmp`, fsynced and renamed (or, when completing an
//! upload, hard-linked) into the object directory; smaller data is written there directly and fsynced, or kept in
//! `meta.json`. `meta.json` is written to a temp file and fsynced; then, if data files were added, the object directory
//! is fsynced so they are durable, and the temp file is renamed over the old `meta.json` and the directory fsynced
//! again: that rename is the moment the new version becomes visible. A new object directory's own entry is fsynced
//! before the write is acknowledged. (Fsyncing the directory only after the temp file lets one journal commit cover
//! the temp file, the data file's new name and the new directory; a new small object costs three fsyncs.) Data files
//! the new `meta.json` does not reference are then deleted. A crash at any step leaves the old or the new version,
//! plus at worst unreferenced data files that the next commit to that key removes. Deleting an object or bucket
//! renames its directory into `.coffer/tmp` first, so it disappears in one step.
//!
//! Nothing else is persisted: the listing index is rebuilt in memory from the `meta.json` files on a bucket's first
//! listing after start.

use std::io;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::fsio::read_json;
use crate::meta::{ObjectMeta, PartMeta, UploadMeta};
use crate::names::is_data_file_name;

/// The version written by this crate.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest version it reads: version 1 differs only in having no `inline_data`.
const OLDEST_FORMAT_VERSION: u32 = 1;

/// File name of a bucket record.
pub(crate) const BUCKET_FILE: &str = "bucket.json";
/// File name of an object record.
pub(crate) const OBJECT_FILE: &str = "meta.json";
/// File name of an upload record.
pub(crate) const UPLOAD_FILE: &str = "upload.json";

/// File name of the record of part `number` in an upload directory.
pub(crate) fn part_file_name(number: u32) -> String {
    format!("part-{number:05}.json")
}

/// A metadata record carrying a format version.
pub(crate) trait Record: DeserializeOwned {
    fn format_version(&self) -> u32;
    /// Checks invariants the type system cannot express.
    fn validate(&self) -> Result<(), &'static str> {
        Ok(())
    }
}

/// Reads a record, rejecting unknown versions and invalid contents. `Ok(None)` if the file does not exist.
pub(crate) fn load<T: Record>(path: &Path) -> io::Result<Option<T>> {
    let Some(record) = read_json::<T>(path)? else {
        return Ok(None);
    };
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {why}", path.display()));
    if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&record.format_version()) {
        return Err(invalid(format!("unsupported format_version {}", record.format_version())));
    }
    record.validate().map_err(|why| invalid(why.to_owned()))?;
    Ok(Some(record))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BucketRecord {
    pub format_version: u32,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    pub encryption: Option<serde_json::Value>,
}

impl Record for BucketRecord {
    fn format_version(&self) -> u32 {
        self.format_version
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ObjectRecord {
    pub format_version: u32,
    #[serde(flatten)]
    pub meta: ObjectMeta,
    pub data_files: Vec<String>,
    /// The stored bytes of a small single-part object, base64; `data_files` is empty then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_data: Option<String>,
}

impl Record for ObjectRecord {
    fn format_version(&self) -> u32 {
        self.format_version
    }

    fn validate(&self) -> Result<(), &'static str> {
        if self.inline_data.is_some() {
            return match (self.data_files.len(), self.meta.parts.len()) {
                (0, 1) => Ok(()),
                _ => Err("inline data belongs to an object of one part and no data files"),
            };
        }
        if self.data_files.len() != self.meta.parts.len() {
            return Err("data_files and parts differ in length");
        }
        if !self.data_files.iter().all(|name| is_data_file_name(name)) {
            return Err("invalid data file name");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UploadRecord {
    pub format_version: u32,
    pub key: String,
    pub upload_id: String,
    #[serde(flatten)]
    pub meta: UploadMeta,
}

impl Record for UploadRecord {
    fn format_version(&self) -> u32 {
        self.format_version
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PartRecord {
    pub format_version: u32,
    #[serde(flatten)]
    pub meta: PartMeta,
    pub data_file: String,
}

impl Record for PartRecord {
    fn format_version(&self) -> u32 {
        self.format_version
    }

    fn validate(&self) -> Result<(), &'static str> {
        if is_data_file_name(&self.data_file) {
            Ok(())
        } else {
            Err("invalid data file name")
        }
    }
}
