//! On-disk layout and metadata format, `format_version` 4.
//!
//! ```text
//! DIR/buckets/<bucket>/bucket.json                    bucket record
//! DIR/buckets/<bucket>/objects/<sha256(key)>/meta.json    object record: the commit point of the object
//! DIR/buckets/<bucket>/objects/<sha256(key)>/data-<id>    stored bytes of one part (one file per part)
//! DIR/buckets/<bucket>/uploads/<upload id>/upload.json    multipart upload record
//! DIR/buckets/<bucket>/uploads/<upload id>/part-NNNNN.json  part record (NNNNN = zero-padded part number)
//! DIR/buckets/<bucket>/uploads/<upload id>/data-<id>      stored bytes of one uploaded part
//! DIR/.coffer/tmp/                                    temp files and trash; emptied by Store::open
//! DIR/.coffer/jobs/<job id>.json                      a long-running job's record (opaque JSON of the server)
//! DIR/.coffer/record-mac.key                          the key of the record MACs (32 random bytes)
//! DIR/.coffer/unsigned-records-accepted               present if records without a MAC are read (see below)
//! DIR/.coffer/kms/                                    not the store's (coffer-kms)
//! ```
//!
//! `<bucket>` is a validated S3 bucket name. `<sha256(key)>` is the lowercase hex SHA-256 of the key's UTF-8
//! bytes, so keys never appear in paths. `<upload id>` and `<id>` are 128-bit random values in lowercase hex.
//! Directories are created 0700 and files 0600: object data may be plaintext.
//!
//! # Records
//! All records are JSON objects with a `format_version` (currently 4); readers reject later versions. Timestamps
//! are RFC 3339 strings. Unknown fields are ignored, so later versions may add fields without a version bump as
//! long as old readers stay correct without them. `encryption` fields are opaque JSON owned by the SSE layer.
//!
//! * `bucket.json`: `{format_version, name, created, encryption, owner, policy, versioning, mac}` — `encryption` is
//!   the bucket's default encryption configuration or `null`; `owner`, `policy` and `versioning` (`"Enabled"` or
//!   `"Suspended"`, SQL engine only) are absent when unset.
//! * `meta.json`: `{format_version, meta: object, data_files: [name], inline_data, data_checksums, completed_upload,
//!   mac}`, where an
//!   object is `{key,
//!   size, etag, last_modified, headers, checksum, parts: [part], encryption, version_id}` (`version_id`, SQL
//!   engine only, absent for the null version) and `headers` is `{content_type,
//!   content_encoding, content_disposition, content_language, cache_control, expires, user_metadata: {name:
//!   value}}`. `data_files[i]` holds the stored bytes of `parts[i]`, except for an object of one part of at most
//!   64 KiB stored: `data_files` is empty and `inline_data` holds the bytes (base64); the field is absent
//!   otherwise. A part is `{number, size, stored_size, etag, checksum, last_modified, encryption}` with `size` in
//!   client bytes and `stored_size` in bytes on disk; a checksum is `{algorithm, value, kind: "FULL_OBJECT" |
//!   "COMPOSITE"}`. The `key` is kept so listings can be rebuilt from the directory and so a hash mismatch is
//!   detected. `data_checksums[i]` are the checksums of `data_files[i]` or `null` (data staged by version 3); the
//!   field is absent when there are no data files. `completed_upload` is the id of the multipart upload whose
//!   completion committed this version (absent for other versions; see the commit protocol).
//! * `upload.json`: `{format_version, key, upload_id, meta: {headers, initiated, checksum_algorithm, checksum_kind,
//!   encryption}, mac}` (`checksum_kind` may be absent: composite).
//! * `part-NNNNN.json`: `{format_version, meta: part, data_file, data_checksums, mac}`.
//!
//! # Integrity
//! `mac` is the lowercase hex HMAC-SHA256, under the key in `record-mac.key`, of `"coffer record mac v1\0"`, the
//! record's path under `DIR/buckets/` (e.g. `b/objects/<sha256(key)>/meta.json`), a zero byte, and the record
//! without `mac` as canonical JSON: compact, object keys sorted (opaque `encryption` values included).
//! Reformatting a record keeps its MAC; changing a value does not. The path binds a record to its bucket, key, upload and part number: an edited record, or one copied
//! elsewhere, fails its check, and reading it is an `InvalidData` error. Records of versions 1 to 3 have no `mac`;
//! they are read only if `unsigned-records-accepted` exists, which the store creates when it makes the key in a
//! data directory that already has buckets. Every commit writes version 4, signed.
//!
//! `data_checksums` (see `chunk_checksums.rs`) is the base64 of the big-endian CRC32C of every 1 MiB chunk of a
//! data file ([`crate::READ_CHUNK`]), computed while the data is staged; reads check each chunk before yielding it.
//! Inline data needs none: the MAC covers it.
//!
//! Versions 1 and 2 wrote the same fields flat: the `meta` fields and the `headers` fields at the top level of the
//! record (version 1 had no `inline_data`). They are read by nesting them as version 3 does
//! ([`nest_flat_record`]). Version 3 had no `mac` and no `data_checksums`; every commit writes version 4. Nesting is not cosmetic: serde reads flattened fields
//! through an intermediate copy of the whole record, through which the opaque `encryption` JSON cannot stay text;
//! reading version 3 saves a GET of a small encrypted object 22 k instructions (5 %, callgrind).
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
//! plus at worst unreferenced data files that the next commit to that key removes, or the garbage collection
//! (`garbage.rs`) does. Deleting an object or bucket renames its directory into `.coffer/tmp` first, so it
//! disappears in one step.
//!
//! Completing a multipart upload hard-links its parts into the object directory, commits `meta.json` naming the
//! upload in `completed_upload`, then removes the upload directory. A crash between the commit and the removal
//! leaves an upload whose object is committed: [`crate::Store::open`] removes such uploads before anything is
//! served (and a listing skips and removes any it meets), so a completed upload is never listed as in progress.
//!
//! Nothing else is persisted: the listing index is rebuilt in memory from the `meta.json` files on a bucket's first
//! listing after start.

use std::io;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::chunk_checksums::ChunkChecksums;
use crate::fsio::read_file;
use crate::meta::{ObjectMeta, PartMeta, RawJson, UploadMeta, Versioning};
use crate::names::is_data_file_name;
use crate::record_mac::RecordMac;

/// The version written by this crate.
pub const FORMAT_VERSION: u32 = 4;
/// The first version whose records carry a MAC.
const FIRST_SIGNED_FORMAT_VERSION: u32 = 4;
/// The last version that wrote flat records.
const LAST_FLAT_FORMAT_VERSION: u64 = 2;
/// The oldest version it reads: version 1 differs from version 2 only in having no `inline_data`.
const OLDEST_FORMAT_VERSION: u32 = 1;
/// The fields of `headers`, which versions 1 and 2 wrote at the top level of object and upload records.
const FLAT_HEADER_FIELDS: [&str; 7] = [
    "content_type",
    "content_encoding",
    "content_disposition",
    "content_language",
    "cache_control",
    "expires",
    "user_metadata",
];

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
pub(crate) trait Record: Serialize + DeserializeOwned {
    /// The fields that versions 1 and 2 also wrote at the top level of this record; every other field of theirs
    /// belongs in `meta`. `None`: this record had the same shape then.
    const FLAT_TOP_LEVEL: Option<&'static [&'static str]>;

    fn format_version(&self) -> u32;
    /// The record's MAC (hex), `None` while it is being computed or checked.
    fn mac_mut(&mut self) -> &mut Option<String>;
    /// Checks invariants the type system cannot express.
    fn validate(&self) -> Result<(), &'static str> {
        Ok(())
    }
}

/// Reads the record at `place` (its path under `buckets/`), rejecting unknown versions, a missing or wrong MAC
/// (unsigned records of versions 1 to 3 only where `macs` accepts them) and invalid contents. `Ok(None)` if the
/// file does not exist.
pub(crate) fn load<T: Record>(path: &Path, macs: &RecordMac, place: &str) -> io::Result<Option<T>> {
    let Some(bytes) = read_file(path)? else {
        return Ok(None);
    };
    open_record(&bytes, macs, place, &path.display().to_string()).map(Some)
}

/// Parses and checks a record kept at `place` (see [`load`]); `origin` names where it was read from in errors.
pub(crate) fn open_record<T: Record>(bytes: &[u8], macs: &RecordMac, place: &str, origin: &str) -> io::Result<T> {
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidData, format!("{origin}: {why}"));
    let mut record = parse_record::<T>(bytes).map_err(|e| invalid(format!("corrupt record: {e}")))?;
    let version = record.format_version();
    if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(invalid(format!("unsupported format_version {version}")));
    }
    let mac = record.mac_mut().take();
    if version >= FIRST_SIGNED_FORMAT_VERSION {
        let mac = mac.ok_or_else(|| invalid("record integrity check failed: the record has no MAC".to_owned()))?;
        if !macs.verify(place, &signed_payload(&record)?, &mac) {
            return Err(invalid(
                "record integrity check failed: wrong MAC (the record was edited, damaged, or copied from another \
                 place or data directory)"
                    .to_owned(),
            ));
        }
    } else if !macs.accepts_unsigned() {
        return Err(invalid(format!(
            "record integrity check failed: an unsigned record of format_version {version} in a data directory that \
             has signed every record"
        )));
    }
    record.validate().map_err(|why| invalid(why.to_owned()))?;
    Ok(record)
}

/// Sets the MAC of `record`, to be stored at `place` (its path under `buckets/`).
pub(crate) fn sign<T: Record>(record: &mut T, macs: &RecordMac, place: &str) -> io::Result<()> {
    *record.mac_mut() = None;
    let mac = macs.sign(place, &signed_payload(record)?);
    *record.mac_mut() = Some(mac);
    Ok(())
}

/// What a MAC covers besides the place: the record without its MAC as canonical JSON — compact, object keys sorted,
/// the opaque `encryption` values parsed like the rest — so a record only reformatted (pretty-printed, keys
/// reordered, by hand or by a tool) keeps its MAC and only a change of content breaks it.
fn signed_payload<T: Record>(record: &T) -> io::Result<Vec<u8>> {
    let canonical = serde_json::to_value(record).map_err(io::Error::other)?;
    serde_json::to_vec(&canonical).map_err(io::Error::other)
}

/// Parses a version 3 record, or a flat record of versions 1 and 2 by nesting it first.
fn parse_record<T: Record>(bytes: &[u8]) -> serde_json::Result<T> {
    let error = match serde_json::from_slice::<T>(bytes) {
        Ok(record) => return Ok(record),
        Err(error) => error,
    };
    let Some(top_level) = T::FLAT_TOP_LEVEL else {
        return Err(error);
    };
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(flat))
            if flat.get("format_version").and_then(Value::as_u64).is_some_and(|v| v <= LAST_FLAT_FORMAT_VERSION) =>
        {
            serde_json::from_value(Value::Object(nest_flat_record(flat, top_level)))
        }
        _ => Err(error),
    }
}

/// A flat record of versions 1 and 2 in the version 3 shape: the fields outside `top_level` move into `meta`, and
/// the header fields among them into `meta.headers`.
fn nest_flat_record(flat: Map<String, Value>, top_level: &[&str]) -> Map<String, Value> {
    let (mut record, mut meta, mut headers) = (Map::new(), Map::new(), Map::new());
    for (name, value) in flat {
        let destination = if top_level.contains(&name.as_str()) {
            &mut record
        } else if FLAT_HEADER_FIELDS.contains(&name.as_str()) {
            &mut headers
        } else {
            &mut meta
        };
        destination.insert(name, value);
    }
    if !headers.is_empty() {
        meta.insert("headers".to_owned(), Value::Object(headers));
    }
    record.insert("meta".to_owned(), Value::Object(meta));
    record
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BucketRecord {
    pub format_version: u32,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    pub encryption: Option<RawJson>,
    /// The access key that created the bucket; absent for buckets made before buckets had owners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The bucket policy (PutBucketPolicy) as submitted; opaque to the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The versioning state (the SQL engine's; the directory engine keeps buckets unversioned). Absent while
    /// unversioned, so records written before versioning read back, and verify, the same.
    #[serde(default, skip_serializing_if = "Versioning::is_unversioned")]
    pub versioning: Versioning,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

impl Record for BucketRecord {
    const FLAT_TOP_LEVEL: Option<&'static [&'static str]> = None;

    fn format_version(&self) -> u32 {
        self.format_version
    }

    fn mac_mut(&mut self) -> &mut Option<String> {
        &mut self.mac
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ObjectRecord {
    pub format_version: u32,
    pub meta: ObjectMeta,
    pub data_files: Vec<String>,
    /// The stored bytes of a small single-part object, base64; `data_files` is empty then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_data: Option<String>,
    /// The checksums of each data file, in `data_files` order; `null` for a file staged before checksums were
    /// kept; absent (empty) without data files and in records written before (versions 1 to 3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_checksums: Vec<Option<ChunkChecksums>>,
    /// The id of the multipart upload whose completion committed this version: an upload directory left behind by
    /// a crash between the commit and its removal is recognised as completed by it. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_upload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

impl Record for ObjectRecord {
    const FLAT_TOP_LEVEL: Option<&'static [&'static str]> = Some(&["format_version", "data_files", "inline_data"]);

    fn format_version(&self) -> u32 {
        self.format_version
    }

    fn mac_mut(&mut self) -> &mut Option<String> {
        &mut self.mac
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
        if !self.data_checksums.is_empty() && self.data_checksums.len() != self.data_files.len() {
            return Err("data_checksums and data_files differ in length");
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
    pub meta: UploadMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

impl Record for UploadRecord {
    const FLAT_TOP_LEVEL: Option<&'static [&'static str]> = Some(&["format_version", "key", "upload_id"]);

    fn format_version(&self) -> u32 {
        self.format_version
    }

    fn mac_mut(&mut self) -> &mut Option<String> {
        &mut self.mac
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PartRecord {
    pub format_version: u32,
    pub meta: PartMeta,
    pub data_file: String,
    /// The data file's checksums; absent in records written before (versions 1 to 3).
    #[serde(default)]
    pub data_checksums: Option<ChunkChecksums>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

impl Record for PartRecord {
    const FLAT_TOP_LEVEL: Option<&'static [&'static str]> = Some(&["format_version", "data_file"]);

    fn format_version(&self) -> u32 {
        self.format_version
    }

    fn mac_mut(&mut self) -> &mut Option<String> {
        &mut self.mac
    }

    fn validate(&self) -> Result<(), &'static str> {
        if is_data_file_name(&self.data_file) {
            Ok(())
        } else {
            Err("invalid data file name")
        }
    }
}
