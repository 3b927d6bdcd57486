//! Object operations of the SQL engine: put (optionally only over an expected version), metadata update, head,
//! open (pinned to the version read), delete. Each is one change (`commit.rs`); data files are put in place before
//! it and the ones it stopped naming are removed after it.

use std::future::Future;

use base64_simd::STANDARD as BASE64;
use futures::FutureExt;
use sqlx::Row;

use super::{db_error, nanos, object_place, to_i64, SqlEngine, Tx};
use crate::error::{Result, StoreError};
use crate::layout::{ObjectRecord, FORMAT_VERSION};
use crate::meta::{Deletion, ObjectMeta, Versioning};
use crate::names::validate_key;
use crate::objects::{single_part_meta, with_meta};
use crate::reader::{ObjectReader, StoredPart};
use crate::staging::StagedFile;

/// How often a read retries when an overwrite removed the data files between reading the record and opening them.
const OPEN_ATTEMPTS: usize = 5;

impl SqlEngine {
    /// Commits `data` as the object; with `expected`, only while the stored version is still that one.
    pub(crate) async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        data: StagedFile,
        meta: ObjectMeta,
        expected: Option<&ObjectMeta>,
    ) -> Result<ObjectMeta> {
        validate_key(key)?;
        let meta = single_part_meta(key, meta, data.len())?;
        let (data_files, data_checksums, inline_data) = match data.inline() {
            Some(bytes) => (Vec::new(), Vec::new(), Some(BASE64.encode_to_string(bytes))),
            None => {
                let checksums = data.checksums();
                let data = self.data.persist(data).await?;
                (vec![data], vec![Some(checksums)], None)
            }
        };
        let record = ObjectRecord {
            format_version: FORMAT_VERSION,
            meta,
            data_files,
            inline_data,
            data_checksums,
            completed_upload: None,
            mac: None,
        };
        let new_files = record.data_files.clone();
        let committed = self.commit_object(bucket, key, record, expected).await;
        if committed.is_err() {
            // Not committed: nothing names the new file.
            self.data.discard(&new_files).await;
        }
        committed
    }

    pub(crate) async fn update_object_meta(
        &self,
        bucket: &str,
        key: &str,
        expected: &ObjectMeta,
        meta: ObjectMeta,
    ) -> Result<ObjectMeta> {
        validate_key(key)?;
        let (bucket, key, expected) = (bucket.to_owned(), key.to_owned(), expected.clone());
        self.transact(move |engine, tx| {
            async move {
                engine.lock_object(tx, &bucket, &key).await?;
                match engine.current(tx, &bucket, &key, Some(&expected)).await? {
                    Some(current) => {
                        let record = with_meta(current, meta)?;
                        engine.write_object_row(tx, &bucket, &key, record).await
                    }
                    // A past version (a rewrap reseals every version) is rewritten where it is.
                    None => engine.update_noncurrent_meta(tx, &bucket, &key, &expected, meta).await,
                }
            }
            .boxed()
        })
        .await
    }

    /// Commits `record` as the object in one transaction (only over `expected` when given), recording its data
    /// files as referenced and forgetting those of the version it replaces, which are removed afterwards.
    async fn commit_object(
        &self,
        bucket: &str,
        key: &str,
        record: ObjectRecord,
        expected: Option<&ObjectMeta>,
    ) -> Result<ObjectMeta> {
        let (bucket, key, expected) = (bucket.to_owned(), key.to_owned(), expected.cloned());
        let (meta, unreferenced) = self
            .transact(move |engine, tx| {
                async move {
                    engine.lock_object(tx, &bucket, &key).await?;
                    engine.commit_object_in(tx, &bucket, &key, record, expected.as_ref(), &[]).await
                }
                .boxed()
            })
            .await?;
        self.data.unreferenced(&unreferenced);
        Ok(meta)
    }

    /// The commit of [`SqlEngine::commit_object`] inside `tx`, which also forgets `also_unreferenced` (an upload's
    /// unused parts). Without `expected`, the new version takes the key's current place as the bucket's versioning
    /// state says ([`SqlEngine::make_way`]); with it, it rewrites that version in place, keeping its version id.
    /// Returns the committed metadata and the data files to remove once `tx` commits.
    pub(super) async fn commit_object_in(
        &self,
        tx: &mut Tx,
        bucket: &str,
        key: &str,
        mut record: ObjectRecord,
        expected: Option<&ObjectMeta>,
        also_unreferenced: &[String],
    ) -> Result<(ObjectMeta, Vec<String>)> {
        let new_files = record.data_files.clone();
        let mut unreferenced = match expected {
            Some(expected) => {
                let replaced = self.current(tx, bucket, key, Some(expected)).await?.ok_or(StoreError::Changed)?;
                record.meta.version_id = replaced.meta.version_id;
                replaced.data_files
            }
            None => {
                let (versioning, current) = self.key_state(tx, bucket, key).await?;
                let current = current.and_then(|text| match self.read_record(&text, &object_place(bucket, key)) {
                    Ok(record) => Some(record),
                    Err(e) => {
                        // An unreadable old version is replaced all the same; its files are left to garbage
                        // collection.
                        tracing::warn!(bucket, error = %e, "replacing an unreadable object record");
                        None
                    }
                });
                let (version_id, released) = self.make_way(tx, bucket, key, versioning, current).await?;
                record.meta.version_id = version_id;
                released
            }
        };
        unreferenced.extend_from_slice(also_unreferenced);
        unreferenced.retain(|file| !new_files.contains(file));
        self.forget_data_files(tx, &unreferenced).await?;
        Self::reference_data_files(tx, &new_files).await?;
        let meta = self.write_object_row(tx, bucket, key, record).await?;
        Ok((meta, unreferenced))
    }

    pub(super) async fn write_object_row(
        &self,
        tx: &mut Tx,
        bucket: &str,
        key: &str,
        mut record: ObjectRecord,
    ) -> Result<ObjectMeta> {
        let text = self.seal(&mut record, &object_place(bucket, key))?;
        let meta = &record.meta;
        sqlx::query(
            "INSERT INTO objects (bucket, key, size, etag, modified, record, version_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (bucket, key) DO UPDATE SET size = $3, etag = $4, modified = $5, record = $6, version_id = $7",
        )
        .bind(bucket)
        .bind(key.as_bytes())
        .bind(to_i64(meta.size))
        .bind(&meta.etag)
        .bind(nanos(meta.last_modified))
        .bind(text)
        .bind(meta.version_id.as_deref())
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
        Ok(record.meta)
    }

    /// The committed record of `key` in the transaction's view; with `expected`, `None` unless it is that version.
    /// `NoSuchBucket` if the bucket does not exist.
    pub(super) async fn current(
        &self,
        tx: &mut Tx,
        bucket: &str,
        key: &str,
        expected: Option<&ObjectMeta>,
    ) -> Result<Option<ObjectRecord>> {
        let Some(text) = Self::current_text(tx, bucket, key).await? else { return Ok(None) };
        let record: ObjectRecord = self.read_record(&text, &object_place(bucket, key))?;
        Ok(match expected {
            Some(expected) if record.meta != *expected => None,
            _ => Some(record),
        })
    }

    /// The unchecked record text of `key` in the transaction's view, read with the bucket's existence in one query.
    async fn current_text(tx: &mut Tx, bucket: &str, key: &str) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT o.record FROM buckets b LEFT JOIN objects o ON o.bucket = b.name AND o.key = $2 WHERE b.name = $1",
        )
        .bind(bucket)
        .bind(key.as_bytes())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
        Ok(row.ok_or(StoreError::NoSuchBucket)?.get(0))
    }

    pub(super) async fn reference_data_files(tx: &mut Tx, names: &[String]) -> Result<()> {
        for name in names {
            sqlx::query("INSERT INTO data_files (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .execute(&mut **tx)
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }

    /// Stops referencing `names` in `tx`; when the data engine defers deletion, records them as released now.
    pub(super) async fn forget_data_files(&self, tx: &mut Tx, names: &[String]) -> Result<()> {
        let deferred = self.data.release_grace().is_some();
        let now = nanos(time::OffsetDateTime::now_utc());
        for name in names {
            sqlx::query("DELETE FROM data_files WHERE name = $1")
                .bind(name)
                .execute(&mut **tx)
                .await
                .map_err(db_error)?;
            if deferred {
                sqlx::query(
                    "INSERT INTO released_data_files (name, released) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(now)
                .execute(&mut **tx)
                .await
                .map_err(db_error)?;
            }
        }
        Ok(())
    }

    /// The object's committed record (outside any transaction).
    pub(super) async fn object_record(&self, bucket: &str, key: &str) -> Result<ObjectRecord> {
        validate_key(key)?;
        let row = sqlx::query(
            "SELECT o.record FROM buckets b LEFT JOIN objects o ON o.bucket = b.name AND o.key = $2 WHERE b.name = $1",
        )
        .bind(bucket)
        .bind(key.as_bytes())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        let row = row.ok_or(StoreError::NoSuchBucket)?;
        let text: Option<&str> = row.get(0);
        self.read_record(text.ok_or(StoreError::NoSuchKey)?, &object_place(bucket, key))
    }

    pub(crate) async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectMeta> {
        Ok(self.object_record(bucket, key).await?.meta)
    }

    pub(crate) async fn open_object(&self, bucket: &str, key: &str) -> Result<ObjectReader> {
        self.open_found(|| self.object_record(bucket, key)).await
    }

    /// Reads a record with `find` and opens its data files. An overwrite or a delete that commits in between
    /// removes the files the record names: then the read starts again with what `find` reads now.
    pub(super) async fn open_found<F: Future<Output = Result<ObjectRecord>>>(
        &self,
        find: impl Fn() -> F,
    ) -> Result<ObjectReader> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let record = find().await?;
            match self.pin(record).await {
                Err(StoreError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound && attempt < OPEN_ATTEMPTS => {
                    continue
                }
                other => return other,
            }
        }
    }

    pub(super) async fn pin(&self, record: ObjectRecord) -> Result<ObjectReader> {
        let parts = match &record.inline_data {
            Some(text) => {
                let bytes = BASE64
                    .decode_to_vec(text)
                    .map_err(|e| corrupt(format!("inline data of {}: {e}", record.meta.key)))?;
                vec![StoredPart::Inline(bytes.into())]
            }
            None => {
                let mut checksums = Vec::with_capacity(record.meta.parts.len());
                for (index, part) in record.meta.parts.iter().enumerate() {
                    checksums.push(match record.data_checksums.get(index) {
                        Some(Some(checksums)) => Some(checksums.decode(part.stored_size).map_err(|e| {
                            corrupt(format!("data of part {} of {}: {e}", part.number, record.meta.key))
                        })?),
                        _ => None,
                    });
                }
                self.data.open_parts(record.data_files.clone(), &record.meta.parts, checksums).await?
            }
        };
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

    /// Deletes the current version as the bucket's versioning state says: unversioned, the object goes; else a
    /// delete marker takes its place ([`SqlEngine::make_way`]).
    pub(crate) async fn delete_object(&self, bucket: &str, key: &str) -> Result<Deletion> {
        validate_key(key)?;
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        let (deletion, removed) = self
            .transact(move |engine, tx| {
                async move {
                    engine.lock_object(tx, &bucket, &key).await?;
                    let (versioning, current) = engine.key_state(tx, &bucket, &key).await?;
                    let current =
                        current.map(|text| engine.read_record(&text, &object_place(&bucket, &key))).transpose()?;
                    let (version_id, released) = engine.make_way(tx, &bucket, &key, versioning, current).await?;
                    sqlx::query("DELETE FROM objects WHERE bucket = $1 AND key = $2")
                        .bind(&bucket)
                        .bind(key.as_bytes())
                        .execute(&mut **tx)
                        .await
                        .map_err(db_error)?;
                    let delete_marker = versioning != Versioning::Unversioned;
                    if delete_marker {
                        engine.add_delete_marker(tx, &bucket, &key, version_id.as_deref()).await?;
                    }
                    engine.forget_data_files(tx, &released).await?;
                    Ok((Deletion { version_id, delete_marker }, released))
                }
                .boxed()
            })
            .await?;
        self.data.unreferenced(&removed);
        Ok(deletion)
    }
}

fn corrupt(why: String) -> StoreError {
    StoreError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, why))
}
