//! Object operations of [`Engine`]: put, metadata update, head, open (version-pinned), delete, and the shared
//! commit step that swaps `meta.json` and removes the data files it no longer references.

use std::fs::{self, File};
use std::path::Path;
use std::sync::Arc;

use base64_simd::STANDARD as BASE64;
use time::OffsetDateTime;

use crate::engine::{index_entry, Engine};
use crate::error::{Result, StoreError};
use crate::fsio::{create_private_dir, fsync_dir, parent, remove_any, unique_id};
use crate::layout::{ObjectRecord, FORMAT_VERSION, OBJECT_FILE};
use crate::meta::{Deletion, ObjectMeta, PartMeta};
use crate::names::validate_key;
use crate::reader::{ObjectReader, StoredPart};
use crate::staging::StagedFile;

/// A new unique data file name.
pub(crate) fn new_data_file_name() -> std::io::Result<String> {
    Ok(format!("data-{}", unique_id()?))
}

/// `stored` with the metadata `meta` (`update_object_meta`), which must describe the same stored parts (numbers and
/// stored sizes, in order); it keeps the stored version's key, version id and data.
pub(crate) fn with_meta(stored: ObjectRecord, mut meta: ObjectMeta) -> Result<ObjectRecord> {
    let same_data = meta.parts.len() == stored.meta.parts.len()
        && meta
            .parts
            .iter()
            .zip(&stored.meta.parts)
            .all(|(new, old)| new.number == old.number && new.stored_size == old.stored_size);
    if !same_data {
        return Err(StoreError::InvalidMeta("the parts differ from the stored object's parts"));
    }
    meta.key = stored.meta.key;
    meta.version_id = stored.meta.version_id;
    // Records of versions 1 to 3 kept no checksums: their files have none.
    let mut data_checksums = stored.data_checksums;
    data_checksums.resize(stored.data_files.len(), None);
    Ok(ObjectRecord { format_version: FORMAT_VERSION, meta, data_checksums, mac: None, ..stored })
}

/// The metadata of a single PUT of `key` whose data takes `stored_size` bytes: the store makes `meta` an object of
/// one part (built from `meta` when it has none) and stamps the commit time.
pub(crate) fn single_part_meta(key: &str, mut meta: ObjectMeta, stored_size: u64) -> Result<ObjectMeta> {
    let mut part = match meta.parts.len() {
        0 => PartMeta {
            number: 1,
            size: meta.size,
            stored_size: 0,
            etag: meta.etag.clone(),
            checksum: meta.checksum.clone(),
            last_modified: OffsetDateTime::UNIX_EPOCH,
            encryption: None,
        },
        1 => meta.parts.remove(0),
        _ => return Err(StoreError::InvalidMeta("a single PUT stores exactly one part")),
    };
    let now = OffsetDateTime::now_utc();
    part.number = 1;
    part.stored_size = stored_size;
    part.last_modified = now;
    meta.key = key.to_owned();
    meta.last_modified = now;
    meta.parts = vec![part];
    Ok(meta)
}

impl Engine {
    /// Commits `data` as the object; with `expected`, only while the stored version is still that one.
    pub(crate) fn put_object(
        &self,
        bucket: &str,
        key: &str,
        data: StagedFile,
        meta: ObjectMeta,
        expected: Option<&ObjectMeta>,
    ) -> Result<ObjectMeta> {
        validate_key(key)?;
        let meta = single_part_meta(key, meta, data.len())?;

        let _namespace = self.namespace_read();
        self.bucket_record(bucket)?;
        let dir = self.object_dir(bucket, key);
        let _object = self.lock_object(&dir);
        if let Some(expected) = expected {
            self.check_current(&dir, key, expected)?;
        }
        let created = create_private_dir(&dir)?;
        let (data_files, data_checksums, inline_data) = match data.inline() {
            Some(bytes) => (Vec::new(), Vec::new(), Some(BASE64.encode_to_string(bytes))),
            None => {
                let data_file = new_data_file_name()?;
                let checksums = data.checksums();
                data.persist(&dir.join(&data_file))?;
                (vec![data_file], vec![Some(checksums)], None)
            }
        };
        let changes = DirChanges { created, data_files_added: !data_files.is_empty() };
        let record = ObjectRecord {
            format_version: FORMAT_VERSION,
            meta,
            data_files,
            inline_data,
            data_checksums,
            completed_upload: None,
            mac: None,
        };
        self.commit_object(bucket, &dir, changes, record)
    }

    pub(crate) fn update_object_meta(
        &self,
        bucket: &str,
        key: &str,
        expected: &ObjectMeta,
        meta: ObjectMeta,
    ) -> Result<ObjectMeta> {
        validate_key(key)?;
        let _namespace = self.namespace_read();
        self.bucket_record(bucket)?;
        let dir = self.object_dir(bucket, key);
        let _object = self.lock_object(&dir);
        let current = self.check_current(&dir, key, expected)?;
        let record = with_meta(current, meta)?;
        self.commit_object(bucket, &dir, DirChanges { created: false, data_files_added: false }, record)
    }

    pub(crate) fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectMeta> {
        validate_key(key)?;
        self.bucket_record(bucket)?;
        Ok(self.read_object(&self.object_dir(bucket, key), key)?.meta)
    }

    pub(crate) fn open_object(&self, bucket: &str, key: &str) -> Result<ObjectReader> {
        validate_key(key)?;
        self.bucket_record(bucket)?;
        let dir = self.object_dir(bucket, key);
        // Under the object lock no commit can delete the files between reading meta.json and opening them; once
        // open, the handles outlive any later unlink.
        let _object = self.lock_object(&dir);
        let record = self.read_object(&dir, key)?;
        let parts = match &record.inline_data {
            Some(text) => {
                let bytes =
                    BASE64.decode_to_vec(text).map_err(|e| corrupt(format!("inline data of {OBJECT_FILE}: {e}")))?;
                vec![StoredPart::Inline(bytes.into())]
            }
            None => record
                .data_files
                .iter()
                .zip(&record.meta.parts)
                .enumerate()
                .map(|(index, (name, part))| {
                    let checksums =
                        match record.data_checksums.get(index) {
                            Some(Some(checksums)) => Some(checksums.decode(part.stored_size).map_err(|e| {
                                corrupt(format!("data of part {} in {}: {e}", part.number, dir.display()))
                            })?),
                            _ => None,
                        };
                    let file = File::open(dir.join(name))?;
                    Ok(StoredPart::File { file: Arc::new(file), checksums })
                })
                .collect::<Result<Vec<_>>>()?,
        };
        // Stored bytes whose length differs from what was committed were truncated or extended behind our back:
        // refuse them whole rather than serve a body that only looks complete.
        for (stored, part) in parts.iter().zip(&record.meta.parts) {
            let len = stored.len()?;
            if len != part.stored_size {
                return Err(corrupt(format!(
                    "stored data of part {} holds {len} bytes, {} were committed",
                    part.number, part.stored_size
                )));
            }
        }
        Ok(ObjectReader::new(record.meta, parts))
    }

    /// Deletes the object; nothing is versioned here, so the deletion names no version.
    pub(crate) fn delete_object(&self, bucket: &str, key: &str) -> Result<Deletion> {
        validate_key(key)?;
        let _namespace = self.namespace_read();
        self.bucket_record(bucket)?;
        let dir = self.object_dir(bucket, key);
        let _object = self.lock_object(&dir);
        match self.read_object(&dir, key) {
            Ok(_) => {}
            Err(StoreError::NoSuchKey) if dir.exists() && !dir.join(OBJECT_FILE).exists() => {
                // An uncommitted directory left by a crash: nothing visible to delete, but clear it out.
            }
            Err(StoreError::NoSuchKey) => return Ok(Deletion::default()),
            Err(e) => return Err(e),
        }
        // Renaming the directory away makes the delete a single atomic step; open readers keep their handles.
        let trash = self.temp_path("trash")?;
        fs::rename(&dir, trash.path())?;
        fsync_dir(parent(&dir))?;
        self.index_update(bucket, |keys| {
            keys.remove(key);
        });
        drop(trash);
        Ok(Deletion::default())
    }

    /// Makes `record` the object's current version, removes every other data file in `dir`, and updates the
    /// index. The data files `record` names must already be in `dir`; `changes` says what this write added there,
    /// which is made durable: new data files before `meta.json` changes, a new `dir` before returning. The caller
    /// holds the object lock.
    pub(crate) fn commit_object(
        &self,
        bucket: &str,
        dir: &Path,
        changes: DirChanges,
        mut record: ObjectRecord,
    ) -> Result<ObjectMeta> {
        // Every version here is the null version, whatever the caller passed.
        record.meta.version_id = None;
        let durable_first: &[&Path] = if changes.data_files_added { &[dir] } else { &[] };
        self.write_record(&dir.join(OBJECT_FILE), &mut record, durable_first)?;
        if changes.created {
            // A directory this commit created holds nothing but what it wrote: no earlier version to sweep.
            fsync_dir(parent(dir))?;
        } else {
            for entry in fs::read_dir(dir)? {
                let entry = entry?;
                let name = entry.file_name();
                let referenced = record.data_files.iter().any(|file| name == file.as_str());
                if name != OBJECT_FILE && !referenced {
                    remove_any(&entry.path());
                }
            }
        }
        let entry = index_entry(&record);
        self.index_update(bucket, |keys| {
            keys.insert(record.meta.key.as_str().into(), entry);
        });
        Ok(record.meta)
    }
}

/// What a write added to an object's directory besides its new `meta.json`. Each fsync costs a disk cache flush,
/// so a commit syncs only what changed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DirChanges {
    /// The directory itself is new.
    pub created: bool,
    /// Data files were written, renamed or linked into it.
    pub data_files_added: bool,
}

impl Engine {
    /// The committed record of `key` in `dir`, or `NoSuchKey`. A record for a different key (a SHA-256 collision,
    /// in theory) is also `NoSuchKey`.
    pub(crate) fn read_object(&self, dir: &Path, key: &str) -> Result<ObjectRecord> {
        match self.load_record::<ObjectRecord>(&dir.join(OBJECT_FILE))? {
            Some(record) if record.meta.key == key => Ok(record),
            _ => Err(StoreError::NoSuchKey),
        }
    }

    /// The committed record of `key`, if it is still the version `expected` describes; else `Changed` (also when
    /// the object was deleted meanwhile). A new version always differs: the store stamps each commit's
    /// `last_modified`.
    fn check_current(&self, dir: &Path, key: &str, expected: &ObjectMeta) -> Result<ObjectRecord> {
        match self.read_object(dir, key) {
            Ok(record) if record.meta == *expected => Ok(record),
            Ok(_) | Err(StoreError::NoSuchKey) => Err(StoreError::Changed),
            Err(e) => Err(e),
        }
    }
}

fn corrupt(why: String) -> StoreError {
    StoreError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, why))
}
