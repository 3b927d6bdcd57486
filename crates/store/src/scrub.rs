//! Scrubbing: checking that every stored byte of an object is still what was committed, without a KMS and without
//! changing anything.
//!
//! A scrub walks a bucket's object directories (not the key index: a record that can no longer be read is left out
//! of listings, and is exactly what a scrub must report) in name order, so a walk can resume after the last
//! directory it checked. For each object it checks the record (its MAC covers every field and any inline data),
//! that every data file the record names exists with the committed size, and every chunk of every data file
//! against the CRC32C the record keeps for it (`chunk_checksums.rs`). Those checksums are of the stored bytes, so
//! encrypted objects are checked as they lie on disk, with no key. Data files staged before checksums were kept
//! (records of `format_version` 3 and earlier) can only be read through: they are reported unverifiable, not
//! damaged. Files are read in [`READ_CHUNK`] pieces into one buffer: memory stays constant whatever the size.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use base64_simd::STANDARD as BASE64;

use crate::chunk_checksums::chunk_checksum;
use crate::engine::Engine;
use crate::error::{Result, StoreError};
use crate::layout::{ObjectRecord, OBJECT_FILE};
use crate::names::{is_object_dir_name, object_dir_name};
use crate::reader::READ_CHUNK;

/// What a scrub found of one stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScrubFinding {
    /// No committed object there: deleted meanwhile, or a directory a crash left before its first commit.
    Absent,
    /// The object's key does not start with the prefix asked for.
    OutOfScope,
    /// Record and every stored byte check out.
    Intact { key: String, stored_bytes: u64 },
    /// Nothing found wrong, but some data has no checksums to check it against (stored by an earlier version).
    Unverifiable { key: String, stored_bytes: u64, reason: String },
    /// The record or the data is damaged: a read of the object fails. `key` is `None` when the record is too
    /// damaged to tell it.
    Damaged { key: Option<String>, reason: String },
}

impl Engine {
    pub(crate) fn object_ids(&self, bucket: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        self.bucket_record(bucket)?;
        // The `limit` smallest names after `after`: one pass over the directory in bounded memory.
        let mut ids = BTreeSet::new();
        for entry in fs::read_dir(self.objects_dir(bucket))? {
            let Ok(name) = entry?.file_name().into_string() else { continue };
            let wanted = is_object_dir_name(&name)
                && after.is_none_or(|after| name.as_str() > after)
                && (ids.len() < limit || ids.last().is_some_and(|last: &String| name < *last));
            if wanted {
                ids.insert(name);
                if ids.len() > limit {
                    ids.pop_last();
                }
            }
        }
        Ok(ids.into_iter().collect())
    }

    pub(crate) fn scrub_object(&self, bucket: &str, id: &str, prefix: &str) -> Result<ScrubFinding> {
        if !is_object_dir_name(id) {
            return Err(StoreError::InvalidMeta("an object id is 64 lowercase hex characters"));
        }
        let dir = self.objects_dir(bucket).join(id);
        let (record, files) = {
            let _namespace = self.namespace_read();
            self.bucket_record(bucket)?;
            // Under the object lock no commit replaces the files between reading the record and opening them.
            let _object = self.lock_object(&dir);
            let record = match self.load_record::<ObjectRecord>(&dir.join(OBJECT_FILE)) {
                Ok(Some(record)) => record,
                Ok(None) => return Ok(ScrubFinding::Absent),
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    let key = claimed_key(&dir.join(OBJECT_FILE), id);
                    return Ok(match &key {
                        Some(key) if !key.starts_with(prefix) => ScrubFinding::OutOfScope,
                        None if !prefix.is_empty() => ScrubFinding::OutOfScope,
                        _ => ScrubFinding::Damaged { key, reason: format!("object record: {e}") },
                    });
                }
                Err(e) => return Err(e.into()),
            };
            if object_dir_name(&record.meta.key) != id {
                let reason = "object record: it names a key that does not belong in its directory".to_owned();
                return Ok(ScrubFinding::Damaged { key: None, reason });
            }
            if !record.meta.key.starts_with(prefix) {
                return Ok(ScrubFinding::OutOfScope);
            }
            let mut files = Vec::with_capacity(record.data_files.len());
            for (name, part) in record.data_files.iter().zip(&record.meta.parts) {
                match File::open(dir.join(name)) {
                    Ok(file) => files.push(file),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        let reason = format!("the data file of part {} is missing", part.number);
                        return Ok(ScrubFinding::Damaged { key: Some(record.meta.key), reason });
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            (record, files)
        };
        Ok(finding(&record, &files))
    }
}

/// What checking the data of `record` (`files` are its open data files) finds.
pub(crate) fn finding(record: &ObjectRecord, files: &[File]) -> ScrubFinding {
    let key = record.meta.key.clone();
    match check_data(record, files) {
        Ok(Checked { stored_bytes, unverifiable: None }) => ScrubFinding::Intact { key, stored_bytes },
        Ok(Checked { stored_bytes, unverifiable: Some(reason) }) => {
            ScrubFinding::Unverifiable { key, stored_bytes, reason }
        }
        Err(reason) => ScrubFinding::Damaged { key: Some(key), reason },
    }
}

/// What checking an object's data found short of damage.
struct Checked {
    stored_bytes: u64,
    /// Why some data could not be checked, if so.
    unverifiable: Option<String>,
}

/// Checks the stored bytes of every part of `record` (`files` are its open data files); `Err` says what is damaged.
fn check_data(record: &ObjectRecord, files: &[File]) -> std::result::Result<Checked, String> {
    if let Some(text) = &record.inline_data {
        let bytes = BASE64.decode_to_vec(text).map_err(|_| "the inline data is not base64".to_owned())?;
        let committed = record.meta.parts.first().map_or(0, |part| part.stored_size);
        if bytes.len() as u64 != committed {
            return Err(format!("the inline data holds {} bytes, {committed} were committed", bytes.len()));
        }
        return Ok(Checked { stored_bytes: committed, unverifiable: None });
    }
    let mut checked = Checked { stored_bytes: 0, unverifiable: None };
    let mut buffer = vec![0u8; READ_CHUNK];
    for (index, (file, part)) in files.iter().zip(&record.meta.parts).enumerate() {
        let number = part.number;
        let len = file.metadata().map_err(|e| format!("cannot read the data of part {number}: {e}"))?.len();
        if len != part.stored_size {
            return Err(format!("the data of part {number} holds {len} bytes, {} were committed", part.stored_size));
        }
        let sums = match record.data_checksums.get(index) {
            Some(Some(checksums)) => {
                Some(checksums.decode(part.stored_size).map_err(|e| format!("the checksums of part {number}: {e}"))?)
            }
            _ => {
                checked.unverifiable.get_or_insert_with(|| {
                    format!("part {number} was stored before data checksums were kept (format_version 3 or earlier)")
                });
                None
            }
        };
        let mut at = 0u64;
        while at < len {
            let chunk = &mut buffer[..(len - at).min(READ_CHUNK as u64) as usize];
            file.read_exact_at(chunk, at).map_err(|e| format!("cannot read part {number} at byte {at}: {e}"))?;
            if let Some(sums) = &sums {
                if sums.get((at / READ_CHUNK as u64) as usize) != Some(&chunk_checksum(chunk)) {
                    return Err(format!("the data of part {number} fails its checksum in the chunk at byte {at}"));
                }
            }
            at += chunk.len() as u64;
        }
        checked.stored_bytes += len;
    }
    Ok(checked)
}

/// The key an unreadable record claims, if it still parses as JSON and the key belongs in its directory `id` (so
/// the name, at least, is right).
fn claimed_key(record: &Path, id: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(&fs::read(record).ok()?).ok()?;
    // Versions 1 and 2 kept the key at the top level.
    let key = value.pointer("/meta/key").or_else(|| value.get("key"))?.as_str()?;
    (object_dir_name(key) == id).then(|| key.to_owned())
}
