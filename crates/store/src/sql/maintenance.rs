//! Maintenance in the SQL engine: the scrub's walk and check (object ids are the keys themselves, walked in key
//! order) and garbage collection of data files no row names.
//!
//! Remote data files (the S3 data engine) are scrubbed by reading them through, chunk checksums checked, as a GET
//! reads them. Garbage collection deletes the remote files released longer ago than the grace period, and remote
//! files older than the minimum age that no row names nor released (uploads whose commit never happened).

use std::time::Duration;

use futures::FutureExt;
use futures::StreamExt;
use sqlx::Row;

use super::versions::version_name;
use super::{db_error, key_of, nanos, object_place, SqlEngine};
use crate::data_engine::{blocking, DataEngine};
use crate::error::{Result, StoreError};
use crate::garbage::{sweep_temp_dir, Reclaimed};
use crate::layout::ObjectRecord;
use crate::meta::ObjectMeta;
use crate::reader::StoredPart;
use crate::s3_data::S3Data;
use crate::scrub::{finding, ScrubFinding};

impl SqlEngine {
    /// The keys after `after` that have a current object or a past version (a key whose current version is a delete
    /// marker has only past ones).
    pub(crate) async fn object_ids(&self, bucket: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        self.bucket_record(None, bucket).await?;
        // Each side is one index range from `after` that stops after `limit` keys, so a page costs the same anywhere
        // in the bucket. Keys are never empty: "after nothing" is after the empty key.
        let rows = sqlx::query(
            "SELECT key FROM (SELECT key FROM objects WHERE bucket = $1 AND key > $2 ORDER BY key LIMIT $3) \
             AS current_keys \
             UNION SELECT key FROM (SELECT DISTINCT key FROM versions WHERE bucket = $1 AND key > $2 \
             ORDER BY key LIMIT $3) AS past_keys \
             ORDER BY key LIMIT $3",
        )
        .bind(bucket)
        .bind(after.unwrap_or_default().as_bytes())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(|row| key_of(row.get(0))).collect()
    }

    /// Checks every stored version of `key`, current and past (delete markers store nothing): the first damage
    /// found is the finding, else the stored bytes of all of them.
    pub(crate) async fn scrub_object(&self, bucket: &str, key: &str, prefix: &str) -> Result<ScrubFinding> {
        if !key.starts_with(prefix) {
            return Ok(ScrubFinding::OutOfScope);
        }
        let rows = sqlx::query(
            "SELECT CAST(-1 AS BIGINT), CAST(NULL AS TEXT), record FROM objects WHERE bucket = $1 AND key = $2 \
             UNION ALL SELECT rank, version_id, record FROM versions \
             WHERE bucket = $1 AND key = $2 AND delete_marker = 0 ORDER BY 1",
        )
        .bind(bucket)
        .bind(key.as_bytes())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        if rows.is_empty() {
            self.bucket_record(None, bucket).await?;
        }
        let (mut found, mut stored_bytes, mut unverifiable) = (false, 0, None);
        for row in rows {
            let past: Option<&str> = row.get(1);
            let text: &str = row.get(2);
            let read = match past {
                None => self.read_record(text, &object_place(bucket, key)),
                Some(name) => self.version_record(Some(text), bucket, key, name),
            };
            let finding = match read {
                Ok(record) => self.scrub_record(bucket, record).await?,
                Err(StoreError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                    ScrubFinding::Damaged { key: Some(key.to_owned()), reason: format!("object record: {e}") }
                }
                Err(StoreError::InvalidMeta(what)) if past.is_some() => {
                    ScrubFinding::Damaged { key: Some(key.to_owned()), reason: format!("object record: {what}") }
                }
                Err(e) => return Err(e),
            };
            match finding {
                ScrubFinding::Intact { stored_bytes: bytes, .. } => {
                    (found, stored_bytes) = (true, stored_bytes + bytes)
                }
                ScrubFinding::Unverifiable { stored_bytes: bytes, reason, .. } => {
                    (found, stored_bytes) = (true, stored_bytes + bytes);
                    unverifiable.get_or_insert(reason);
                }
                ScrubFinding::Damaged { key, reason } => {
                    let reason = match past {
                        Some(name) => format!("version {name}: {reason}"),
                        None => reason,
                    };
                    return Ok(ScrubFinding::Damaged { key, reason });
                }
                // Removed since the rows were read.
                ScrubFinding::Absent | ScrubFinding::OutOfScope => {}
            }
        }
        let key = key.to_owned();
        Ok(match (found, unverifiable) {
            (false, _) => ScrubFinding::Absent,
            (true, None) => ScrubFinding::Intact { key, stored_bytes },
            (true, Some(reason)) => ScrubFinding::Unverifiable { key, stored_bytes, reason },
        })
    }

    /// Checks one version's record and data.
    async fn scrub_record(&self, bucket: &str, record: ObjectRecord) -> Result<ScrubFinding> {
        let key = record.meta.key.clone();
        let dir = match &self.data {
            DataEngine::Directory(dir) => dir.clone(),
            DataEngine::S3(_) => return self.scrub_remote(bucket, record).await,
        };
        let names = record.data_files.clone();
        let opened = blocking(move || Ok(names.iter().map(|name| dir.open_file(name)).collect::<Vec<_>>())).await?;
        let mut files = Vec::with_capacity(opened.len());
        for (file, part) in opened.into_iter().zip(&record.meta.parts) {
            match file {
                Ok(file) => files.push(file),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if self.still_stored(bucket, &record.meta).await {
                        let reason = format!("the data file of part {} is missing", part.number);
                        return Ok(ScrubFinding::Damaged { key: Some(key), reason });
                    }
                    return Ok(ScrubFinding::Absent);
                }
                Err(e) => return Err(e.into()),
            }
        }
        tokio::task::spawn_blocking(move || finding(&record, &files))
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(format!("store task failed: {e}"))))
    }

    /// Checks an object whose data is remote by reading every part through, as a GET does.
    async fn scrub_remote(&self, bucket: &str, record: ObjectRecord) -> Result<ScrubFinding> {
        let key = record.meta.key.clone();
        let stored_bytes = record.meta.parts.iter().map(|part| part.stored_size).sum();
        let reader = match self.pin(record).await {
            Ok(reader) => reader,
            Err(StoreError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Ok(ScrubFinding::Damaged { key: Some(key), reason: e.to_string() })
            }
            Err(e) => return Err(e),
        };
        for (index, part) in reader.meta().parts.iter().enumerate() {
            let Some(StoredPart::Remote { file, .. }) = reader.stored_part(index) else { continue };
            let number = part.number;
            match file.len().await {
                Ok(len) if len == part.stored_size => {}
                Ok(len) => {
                    let reason =
                        format!("the data of part {number} holds {len} bytes, {} were committed", part.stored_size);
                    return Ok(ScrubFinding::Damaged { key: Some(key), reason });
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if !self.still_stored(bucket, reader.meta()).await {
                        return Ok(ScrubFinding::Absent);
                    }
                    let reason = format!("the data file of part {number} is missing");
                    return Ok(ScrubFinding::Damaged { key: Some(key), reason });
                }
                Err(e) => return Err(e.into()),
            }
            let mut chunks = reader.read_part(index, 0, part.stored_size);
            while let Some(chunk) = chunks.next().await {
                if let Err(e) = chunk {
                    // Released longer ago than the grace period by an overwrite or delete since.
                    if e.kind() == std::io::ErrorKind::NotFound && !self.still_stored(bucket, reader.meta()).await {
                        return Ok(ScrubFinding::Absent);
                    }
                    let reason = format!("the data of part {}: {e}", part.number);
                    return Ok(ScrubFinding::Damaged { key: Some(key), reason });
                }
            }
        }
        Ok(ScrubFinding::Intact { key, stored_bytes })
    }

    /// Whether the version `meta` describes is still stored as a scrub read it: a data file missing under a version
    /// overwritten, deleted or rewritten since is no damage.
    async fn still_stored(&self, bucket: &str, meta: &ObjectMeta) -> bool {
        let name = version_name(meta.version_id.as_deref());
        self.version(bucket, &meta.key, name).await.is_ok_and(|record| record.meta == *meta)
    }

    /// Removes temp files older than `min_age` and data files of that age that no row names; with a remote data
    /// engine, also the data files released longer ago than its grace period.
    pub(crate) async fn collect_garbage(&self, min_age: Duration) -> Result<Reclaimed> {
        let tmp_dir = self.tmp_dir().to_path_buf();
        let mut reclaimed = blocking(move || Ok(sweep_temp_dir(&tmp_dir, min_age))).await??;
        let dir = match &self.data {
            DataEngine::Directory(dir) => dir.clone(),
            DataEngine::S3(s3) => {
                reclaimed.add(self.delete_released(s3).await?);
                reclaimed.add(self.collect_remote_garbage(s3, min_age).await?);
                return Ok(reclaimed);
            }
        };
        let candidates = {
            let dir = dir.clone();
            blocking(move || dir.files_older_than(min_age)).await?
        };
        let mut unreferenced = Vec::new();
        for (name, path) in candidates {
            let referenced = sqlx::query("SELECT 1 FROM data_files WHERE name = $1")
                .bind(&name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?;
            if referenced.is_none() {
                unreferenced.push(path);
            }
        }
        let collected = blocking(move || {
            let mut collected = Reclaimed::default();
            for path in &unreferenced {
                collected.remove(path);
            }
            Ok(collected)
        })
        .await?;
        reclaimed.add(collected);
        Ok(reclaimed)
    }

    pub(crate) fn release_grace(&self) -> Option<Duration> {
        self.data.release_grace()
    }

    pub(crate) async fn delete_released_data(&self) -> Result<Reclaimed> {
        match &self.data {
            DataEngine::Directory(_) => Ok(Reclaimed::default()),
            DataEngine::S3(s3) => self.delete_released(s3).await,
        }
    }

    /// Deletes the remote data files released longer ago than the grace period.
    async fn delete_released(&self, s3: &S3Data) -> Result<Reclaimed> {
        let cutoff = time::OffsetDateTime::now_utc() - s3.release_grace();
        let rows = sqlx::query("SELECT name FROM released_data_files WHERE released <= $1")
            .bind(nanos(cutoff))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        let mut deleted = Vec::with_capacity(rows.len());
        let mut bytes = 0;
        for row in rows {
            let name: String = row.get(0);
            bytes += s3.delete_released(&name).await?;
            deleted.push(name);
        }
        if !deleted.is_empty() {
            // A write like any other: with SQLite, through the committer.
            let names = deleted.clone();
            self.transact(move |_, tx| {
                async move {
                    for name in &names {
                        sqlx::query("DELETE FROM released_data_files WHERE name = $1")
                            .bind(name)
                            .execute(&mut **tx)
                            .await
                            .map_err(db_error)?;
                    }
                    Ok(())
                }
                .boxed()
            })
            .await?;
        }
        Ok(Reclaimed { files: deleted.len() as u64, bytes })
    }

    /// Deletes remote data files older than `min_age` that no row names or releases.
    async fn collect_remote_garbage(&self, s3: &S3Data, min_age: Duration) -> Result<Reclaimed> {
        let mut reclaimed = Reclaimed::default();
        for (name, size) in s3.files_older_than(min_age).await? {
            let known = sqlx::query(
                "SELECT 1 FROM data_files WHERE name = $1 UNION ALL SELECT 1 FROM released_data_files WHERE name = $1",
            )
            .bind(&name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
            if known.is_none() {
                s3.delete(&name).await?;
                reclaimed.files += 1;
                reclaimed.bytes += size;
            }
        }
        Ok(reclaimed)
    }
}
