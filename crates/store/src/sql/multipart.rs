//! Multipart uploads in the SQL engine: an upload row and one row per part; the parts' data files are put in
//! place as they arrive. Completion is one transaction that writes the object's row naming the chosen parts' files
//! and deletes the upload's rows: no file moves, and no crash window in which a completed upload is still listed.

use std::collections::{HashMap, HashSet};

use futures::FutureExt;
use sqlx::Row;
use time::OffsetDateTime;

use super::{db_error, nanos, part_place, upload_place, SqlEngine, Tx};
use crate::error::{Result, StoreError};
use crate::fsio::unique_id;
use crate::layout::{ObjectRecord, PartRecord, UploadRecord, FORMAT_VERSION};
use crate::meta::{ObjectMeta, PartMeta, UploadInfo, UploadMeta};
use crate::multipart::check_expected_parts;
use crate::names::{is_upload_id, validate_key, validate_part_number};
use crate::staging::StagedFile;

impl SqlEngine {
    pub(crate) async fn create_upload(&self, bucket: &str, key: &str, mut upload: UploadMeta) -> Result<String> {
        validate_key(key)?;
        upload.initiated = OffsetDateTime::now_utc();
        let upload_id = unique_id()?;
        let initiated = nanos(upload.initiated);
        let mut record = UploadRecord {
            format_version: FORMAT_VERSION,
            key: key.to_owned(),
            upload_id: upload_id.clone(),
            meta: upload,
            mac: None,
        };
        let text = self.seal(&mut record, &upload_place(bucket, &upload_id))?;
        let (bucket, id) = (bucket.to_owned(), upload_id.clone());
        self.transact(move |engine, tx| {
            async move {
                engine.lock_bucket_contents(tx, &bucket).await?;
                sqlx::query(
                    "INSERT INTO uploads (bucket, upload_id, key, initiated, record) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&bucket)
                .bind(id)
                .bind(record.key.as_bytes())
                .bind(initiated)
                .bind(text)
                .execute(&mut **tx)
                .await
                .map_err(db_error)?;
                Ok(())
            }
            .boxed()
        })
        .await?;
        Ok(upload_id)
    }

    /// The record of an upload of `key` (in `tx`'s view when given).
    async fn find_upload(
        &self,
        mut tx: Option<&mut Tx>,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<UploadRecord> {
        if !is_upload_id(upload_id) {
            self.bucket_record(tx, bucket).await?;
            return Err(StoreError::NoSuchUpload);
        }
        let query =
            sqlx::query("SELECT record FROM uploads WHERE bucket = $1 AND upload_id = $2").bind(bucket).bind(upload_id);
        let row = match tx.as_deref_mut() {
            Some(tx) => query.fetch_optional(&mut **tx).await,
            None => query.fetch_optional(&self.pool).await,
        }
        .map_err(db_error)?;
        let Some(row) = row else {
            self.bucket_record(tx, bucket).await?;
            return Err(StoreError::NoSuchUpload);
        };
        let record: UploadRecord = self.read_record(row.get(0), &upload_place(bucket, upload_id))?;
        if record.key != key {
            return Err(StoreError::NoSuchUpload);
        }
        Ok(record)
    }

    /// Locks an upload for a change, and its bucket's contents.
    async fn lock_upload(&self, tx: &mut Tx, bucket: &str, upload_id: &str) -> Result<()> {
        self.lock_bucket_contents(tx, bucket).await?;
        self.lock(tx, &format!("upload/{bucket}/{upload_id}"), true).await
    }

    pub(crate) async fn upload_meta(&self, bucket: &str, key: &str, upload_id: &str) -> Result<UploadMeta> {
        Ok(self.find_upload(None, bucket, key, upload_id).await?.meta)
    }

    pub(super) fn part_record(&self, bucket: &str, upload_id: &str, number: i64, text: &str) -> Result<PartRecord> {
        let number = u32::try_from(number).map_err(|_| StoreError::InvalidMeta("a part number out of range"))?;
        let record: PartRecord = self.read_record(text, &part_place(bucket, upload_id, number))?;
        if record.meta.number != number {
            return Err(StoreError::InvalidMeta("a part record under another part number"));
        }
        Ok(record)
    }

    pub(crate) async fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        mut part: PartMeta,
        data: StagedFile,
    ) -> Result<PartMeta> {
        validate_part_number(part.number)?;
        self.find_upload(None, bucket, key, upload_id).await?;
        part.stored_size = data.len();
        part.last_modified = OffsetDateTime::now_utc();
        let data_checksums = Some(data.checksums());
        let data_file = self.data.persist(data).await?;
        let committed = self.commit_part(bucket, key, upload_id, part, data_file.clone(), data_checksums).await;
        if committed.is_err() {
            self.data.discard(&[data_file]).await;
        }
        committed
    }

    async fn commit_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part: PartMeta,
        data_file: String,
        data_checksums: Option<crate::chunk_checksums::ChunkChecksums>,
    ) -> Result<PartMeta> {
        let number = part.number;
        let (bucket, key, upload_id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        let (meta, replaced) = self
            .transact(move |engine, tx| {
                async move {
                    engine.lock_upload(tx, &bucket, &upload_id).await?;
                    engine.find_upload(Some(&mut *tx), &bucket, &key, &upload_id).await?;
                    let old =
                        sqlx::query("SELECT record FROM parts WHERE bucket = $1 AND upload_id = $2 AND number = $3")
                            .bind(&bucket)
                            .bind(&upload_id)
                            .bind(i64::from(number))
                            .fetch_optional(&mut **tx)
                            .await
                            .map_err(db_error)?;
                    let replaced = match old {
                        Some(row) => {
                            vec![engine.part_record(&bucket, &upload_id, i64::from(number), row.get(0))?.data_file]
                        }
                        None => Vec::new(),
                    };
                    let mut record =
                        PartRecord { format_version: FORMAT_VERSION, meta: part, data_file, data_checksums, mac: None };
                    let text = engine.seal(&mut record, &part_place(&bucket, &upload_id, number))?;
                    Self::store_part_row(tx, &bucket, &upload_id, number, text).await?;
                    engine.forget_data_files(tx, &replaced).await?;
                    Self::reference_data_files(tx, std::slice::from_ref(&record.data_file)).await?;
                    Ok((record.meta, replaced))
                }
                .boxed()
            })
            .await?;
        self.data.unreferenced(&replaced);
        Ok(meta)
    }

    /// Writes (or replaces) the sealed row of part `number`.
    pub(super) async fn store_part_row(
        tx: &mut Tx,
        bucket: &str,
        upload_id: &str,
        number: u32,
        text: String,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO parts (bucket, upload_id, number, record) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (bucket, upload_id, number) DO UPDATE SET record = $4",
        )
        .bind(bucket)
        .bind(upload_id)
        .bind(i64::from(number))
        .bind(text)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    /// Deletes the rows of an upload and of its parts (completed or aborted).
    async fn delete_upload_rows(tx: &mut Tx, bucket: &str, upload_id: &str) -> Result<()> {
        for statement in [
            "DELETE FROM parts WHERE bucket = $1 AND upload_id = $2",
            "DELETE FROM uploads WHERE bucket = $1 AND upload_id = $2",
        ] {
            sqlx::query(statement).bind(bucket).bind(upload_id).execute(&mut **tx).await.map_err(db_error)?;
        }
        Ok(())
    }

    /// Every part record of an upload, by number (in `tx`'s view when given).
    async fn part_records(&self, tx: Option<&mut Tx>, bucket: &str, upload_id: &str) -> Result<Vec<PartRecord>> {
        let query =
            sqlx::query("SELECT number, record FROM parts WHERE bucket = $1 AND upload_id = $2 ORDER BY number")
                .bind(bucket)
                .bind(upload_id);
        let rows = match tx {
            Some(tx) => query.fetch_all(&mut **tx).await,
            None => query.fetch_all(&self.pool).await,
        }
        .map_err(db_error)?;
        rows.iter().map(|row| self.part_record(bucket, upload_id, row.get(0), row.get(1))).collect()
    }

    pub(crate) async fn list_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<Vec<PartMeta>> {
        self.find_upload(None, bucket, key, upload_id).await?;
        Ok(self.part_records(None, bucket, upload_id).await?.into_iter().map(|record| record.meta).collect())
    }

    pub(crate) async fn complete_upload(
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
        let (bucket, key, upload_id, chosen) =
            (bucket.to_owned(), key.to_owned(), upload_id.to_owned(), chosen.to_vec());
        let (meta, unreferenced) = self
            .transact(move |engine, tx| {
                async move {
                    engine.lock_upload(tx, &bucket, &upload_id).await?;
                    engine.find_upload(Some(&mut *tx), &bucket, &key, &upload_id).await?;
                    let mut stored: HashMap<u32, PartRecord> = engine
                        .part_records(Some(&mut *tx), &bucket, &upload_id)
                        .await?
                        .into_iter()
                        .map(|record| (record.meta.number, record))
                        .collect();
                    let mut seen = HashSet::new();
                    let mut parts = Vec::with_capacity(chosen.len());
                    for &number in &chosen {
                        validate_part_number(number)?;
                        if !seen.insert(number) {
                            return Err(StoreError::InvalidPart(number));
                        }
                        parts.push(stored.remove(&number).ok_or(StoreError::InvalidPart(number))?);
                    }
                    check_expected_parts(&parts, &meta.parts)?;
                    let unused: Vec<String> = stored.into_values().map(|record| record.data_file).collect();
                    engine.lock(tx, &format!("object/{bucket}/{key}"), true).await?;
                    meta.key = key.clone();
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
                    Self::delete_upload_rows(tx, &bucket, &upload_id).await?;
                    let record = ObjectRecord {
                        format_version: FORMAT_VERSION,
                        meta,
                        data_files,
                        inline_data: None,
                        data_checksums,
                        completed_upload: None,
                        mac: None,
                    };
                    engine.commit_object_in(tx, &bucket, &key, record, None, &unused).await
                }
                .boxed()
            })
            .await?;
        self.data.unreferenced(&unreferenced);
        Ok(meta)
    }

    pub(crate) async fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        let (bucket, key, upload_id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        let files = self
            .transact(move |engine, tx| {
                async move {
                    engine.lock_upload(tx, &bucket, &upload_id).await?;
                    engine.find_upload(Some(&mut *tx), &bucket, &key, &upload_id).await?;
                    let files: Vec<String> = engine
                        .part_records(Some(&mut *tx), &bucket, &upload_id)
                        .await?
                        .into_iter()
                        .map(|record| record.data_file)
                        .collect();
                    Self::delete_upload_rows(tx, &bucket, &upload_id).await?;
                    engine.forget_data_files(tx, &files).await?;
                    Ok(files)
                }
                .boxed()
            })
            .await?;
        self.data.unreferenced(&files);
        Ok(())
    }

    pub(crate) async fn list_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<UploadInfo>> {
        self.bucket_record(None, bucket).await?;
        let rows = sqlx::query(
            "SELECT upload_id, record FROM uploads WHERE bucket = $1 AND key >= $2 ORDER BY key, initiated, upload_id",
        )
        .bind(bucket)
        .bind(prefix.as_bytes())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let mut uploads = Vec::new();
        for row in rows {
            let upload_id: &str = row.get(0);
            match self.read_record::<UploadRecord>(row.get(1), &upload_place(bucket, upload_id)) {
                Ok(record) if record.key.starts_with(prefix) => uploads.push(UploadInfo {
                    key: record.key,
                    upload_id: record.upload_id,
                    initiated: record.meta.initiated,
                }),
                Ok(_) => break,
                Err(e) => tracing::warn!(error = %e, "skipping unreadable upload record"),
            }
        }
        Ok(uploads)
    }
}
