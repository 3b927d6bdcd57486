//! Multipart operations of [`Engine`]: uploads live in `uploads/<id>/` until completed or aborted. Completion
//! hard-links the chosen part files into the object directory (O(parts), no data copied) and then commits the
//! object like a PUT; the upload stays intact until the object is committed, so a crash midway loses nothing.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::engine::Engine;
use crate::error::{Result, StoreError};
use crate::fsio::{create_private_dir, fsync_dir, remove_file_if_exists, unique_id, write_json_atomic};
use crate::layout::{part_file_name, ObjectRecord, PartRecord, UploadRecord, FORMAT_VERSION, UPLOAD_FILE};
use crate::meta::{ObjectMeta, PartMeta, UploadInfo, UploadMeta};
use crate::names::{is_upload_id, validate_key, validate_part_number};
use crate::objects::{new_data_file_name, DirChanges};
use crate::staging::StagedFile;

impl Engine {
    pub(crate) fn create_upload(&self, bucket: &str, key: &str, mut upload: UploadMeta) -> Result<String> {
        validate_key(key)?;
        upload.initiated = OffsetDateTime::now_utc();
        let _namespace = self.namespace_read();
        self.bucket_record(bucket)?;
        let upload_id = unique_id()?;
        let mut record =
            UploadRecord { format_version: FORMAT_VERSION, key: key.to_owned(), upload_id, meta: upload, mac: None };
        let uploads = self.uploads_dir(bucket);
        let dest = uploads.join(&record.upload_id);
        self.sign_record(&mut record, &dest.join(UPLOAD_FILE))?;
        let staging = self.temp_path("upload")?;
        create_private_dir(staging.path())?;
        write_json_atomic(self.tmp_dir(), &staging.path().join(UPLOAD_FILE), &record, &[])?;
        staging.persist(&dest)?;
        fsync_dir(&uploads)?;
        Ok(record.upload_id)
    }

    /// The directory and record of an upload of `key`. Ids that `create_upload` cannot have made are
    /// `NoSuchUpload` before they reach a path.
    fn find_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<(PathBuf, UploadRecord)> {
        self.bucket_record(bucket)?;
        if !is_upload_id(upload_id) {
            return Err(StoreError::NoSuchUpload);
        }
        let dir = self.uploads_dir(bucket).join(upload_id);
        match self.load_record::<UploadRecord>(&dir.join(UPLOAD_FILE))? {
            Some(record) if record.key == key => Ok((dir, record)),
            _ => Err(StoreError::NoSuchUpload),
        }
    }

    pub(crate) fn upload_meta(&self, bucket: &str, key: &str, upload_id: &str) -> Result<UploadMeta> {
        Ok(self.find_upload(bucket, key, upload_id)?.1.meta)
    }

    pub(crate) fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        mut part: PartMeta,
        data: StagedFile,
    ) -> Result<PartMeta> {
        validate_part_number(part.number)?;
        part.stored_size = data.len();
        part.last_modified = OffsetDateTime::now_utc();
        let _namespace = self.namespace_read();
        let _upload = self.lock_upload(bucket, upload_id);
        let (dir, _) = self.find_upload(bucket, key, upload_id)?;
        let data_file = new_data_file_name()?;
        let data_checksums = Some(data.checksums());
        data.persist(&dir.join(&data_file))?;
        let record_path = dir.join(part_file_name(part.number));
        let replaced = self.load_record::<PartRecord>(&record_path)?;
        let mut record =
            PartRecord { format_version: FORMAT_VERSION, meta: part, data_file, data_checksums, mac: None };
        self.write_record(&record_path, &mut record, &[&dir])?;
        if let Some(old) = replaced {
            remove_file_if_exists(&dir.join(old.data_file))?;
        }
        Ok(record.meta)
    }

    pub(crate) fn list_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<Vec<PartMeta>> {
        let (dir, _) = self.find_upload(bucket, key, upload_id)?;
        let mut parts = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let name = entry?.file_name();
            let is_part = name.to_str().is_some_and(|n| n.starts_with("part-") && n.ends_with(".json"));
            if let Some(record) =
                is_part.then(|| self.load_record::<PartRecord>(&dir.join(&name))).transpose()?.flatten()
            {
                parts.push(record.meta);
            }
        }
        parts.sort_by_key(|part| part.number);
        Ok(parts)
    }

    pub(crate) fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        chosen: &[u32],
        mut meta: ObjectMeta,
    ) -> Result<ObjectMeta> {
        validate_key(key)?;
        if chosen.is_empty() {
            return Err(StoreError::InvalidMeta("a multipart upload completes with at least one part"));
        }
        let _namespace = self.namespace_read();
        self.bucket_record(bucket)?;
        let object_dir = self.object_dir(bucket, key);
        let _object = self.lock_object(&object_dir);
        let _upload = self.lock_upload(bucket, upload_id);
        let (upload_dir, _) = self.find_upload(bucket, key, upload_id)?;

        let mut seen = HashSet::new();
        let mut parts = Vec::with_capacity(chosen.len());
        for &number in chosen {
            validate_part_number(number)?;
            if !seen.insert(number) {
                return Err(StoreError::InvalidPart(number));
            }
            let record = self.load_record::<PartRecord>(&upload_dir.join(part_file_name(number)))?;
            parts.push(record.ok_or(StoreError::InvalidPart(number))?);
        }
        check_expected_parts(&parts, &meta.parts)?;

        let created = create_private_dir(&object_dir)?;
        for part in &parts {
            link_or_move(&upload_dir.join(&part.data_file), &object_dir.join(&part.data_file))?;
        }
        meta.key = key.to_owned();
        meta.last_modified = OffsetDateTime::now_utc();
        let mut data_files = Vec::with_capacity(parts.len());
        let mut data_checksums = Vec::with_capacity(parts.len());
        meta.parts = parts
            .into_iter()
            .map(|part| {
                data_files.push(part.data_file);
                data_checksums.push(part.data_checksums);
                part.meta
            })
            .collect();
        let record = ObjectRecord {
            format_version: FORMAT_VERSION,
            meta,
            data_files,
            inline_data: None,
            data_checksums,
            completed_upload: Some(upload_id.to_owned()),
            mac: None,
        };
        let changes = DirChanges { created, data_files_added: true };
        let committed = self.commit_object(bucket, &object_dir, changes, record)?;
        // The object is committed, and its record says this upload is done: an upload directory that stays is
        // removed at the next start or listing, so the completion stands even if this fails.
        if let Err(e) = self.remove_upload(bucket, &upload_dir) {
            tracing::warn!(bucket, upload_id, error = %e, "cannot remove a completed upload; it is removed later");
        }
        Ok(committed)
    }

    pub(crate) fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        let _namespace = self.namespace_read();
        let _upload = self.lock_upload(bucket, upload_id);
        let (dir, _) = self.find_upload(bucket, key, upload_id)?;
        self.remove_upload(bucket, &dir)
    }

    /// Renames the upload directory away (one atomic step), then deletes it.
    pub(crate) fn remove_upload(&self, bucket: &str, dir: &Path) -> Result<()> {
        let trash = self.temp_path("trash")?;
        fs::rename(dir, trash.path())?;
        fsync_dir(&self.uploads_dir(bucket))?;
        drop(trash);
        Ok(())
    }

    pub(crate) fn list_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<UploadInfo>> {
        self.bucket_record(bucket)?;
        let mut uploads = Vec::new();
        for entry in fs::read_dir(self.uploads_dir(bucket))? {
            let path = entry?.path().join(UPLOAD_FILE);
            match self.load_record::<UploadRecord>(&path) {
                Ok(Some(record)) if self.upload_completed(bucket, &record) => {
                    if let Err(e) = self.remove_if_completed(bucket, &record.upload_id) {
                        tracing::warn!(bucket, error = %e, "cannot remove a completed upload");
                    }
                }
                Ok(Some(record)) if record.key.starts_with(prefix) => uploads.push(UploadInfo {
                    key: record.key,
                    upload_id: record.upload_id,
                    initiated: record.meta.initiated,
                }),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "skipping unreadable upload record"),
            }
        }
        uploads.sort_by(|a, b| (&a.key, a.initiated, &a.upload_id).cmp(&(&b.key, b.initiated, &b.upload_id)));
        Ok(uploads)
    }
}

impl Engine {
    /// Whether the current version of `record.key` was committed by completing this upload: then the upload is
    /// over, even if a crash kept its directory. An unreadable object record says no.
    pub(crate) fn upload_completed(&self, bucket: &str, record: &UploadRecord) -> bool {
        match self.read_object(&self.object_dir(bucket, &record.key), &record.key) {
            Ok(object) => object.completed_upload.as_deref() == Some(record.upload_id.as_str()),
            Err(_) => false,
        }
    }

    /// Removes upload `upload_id` of `bucket` if its completion was committed; true if it did.
    pub(crate) fn remove_if_completed(&self, bucket: &str, upload_id: &str) -> Result<bool> {
        let _namespace = self.namespace_read();
        let _upload = self.lock_upload(bucket, upload_id);
        let dir = self.uploads_dir(bucket).join(upload_id);
        match self.load_record::<UploadRecord>(&dir.join(UPLOAD_FILE))? {
            Some(record) if self.upload_completed(bucket, &record) => {
                self.remove_upload(bucket, &dir)?;
                tracing::info!(bucket, upload_id, "removed an upload whose completion was committed before a crash");
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Removes every upload whose completion was committed (a crash came between the commit and the upload's
    /// removal), so none is listed as in progress. Run at open, before anything is served; returns how many.
    pub(crate) fn remove_completed_uploads(&self) -> Result<usize> {
        let mut removed = 0;
        for bucket in fs::read_dir(self.buckets_dir())? {
            let Ok(bucket) = bucket?.file_name().into_string() else { continue };
            let Ok(uploads) = fs::read_dir(self.uploads_dir(&bucket)) else { continue };
            for upload in uploads {
                let Ok(upload_id) = upload?.file_name().into_string() else { continue };
                if !is_upload_id(&upload_id) {
                    continue;
                }
                match self.remove_if_completed(&bucket, &upload_id) {
                    Ok(true) => removed += 1,
                    Ok(false) => {}
                    Err(e) => tracing::warn!(bucket, upload_id, error = %e, "cannot check an upload for completion"),
                }
            }
        }
        Ok(removed)
    }
}

/// With `expected` (the chosen parts as the caller listed them, see `Store::complete_upload`), refuses a part
/// uploaded again since: `InvalidPart(n)`.
pub(crate) fn check_expected_parts(chosen: &[PartRecord], expected: &[PartMeta]) -> Result<()> {
    if expected.is_empty() {
        return Ok(());
    }
    if expected.len() != chosen.len() {
        return Err(StoreError::InvalidMeta("the expected parts are not the chosen parts"));
    }
    match chosen.iter().zip(expected).find(|(stored, expected)| stored.meta != **expected) {
        Some((changed, _)) => Err(StoreError::InvalidPart(changed.meta.number)),
        None => Ok(()),
    }
}

/// Gives the part file a second name in the object directory. A hard link leaves the upload intact until the
/// object is committed; `AlreadyExists` means a retried completion already linked it (names are unique). On
/// filesystems without hard links the file is moved instead.
fn link_or_move(from: &Path, to: &Path) -> io::Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(e),
        Err(_) => fs::rename(from, to),
    }
}
