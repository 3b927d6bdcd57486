//! Maintenance in the SQL engine: the scrub's walk and check (object ids are the keys themselves, walked in key
//! order) and garbage collection of data files no row names.

use std::time::Duration;

use sqlx::Row;

use super::{db_error, key_of, object_place, SqlEngine};
use crate::error::{Result, StoreError};
use crate::garbage::{sweep_temp_dir, Reclaimed};
use crate::layout::ObjectRecord;
use crate::scrub::{finding, ScrubFinding};

impl SqlEngine {
    pub(crate) async fn object_ids(&self, bucket: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        self.bucket_record(None, bucket).await?;
        let rows =
            sqlx::query("SELECT key FROM objects WHERE bucket = $1 AND ($2 IS NULL OR key > $2) ORDER BY key LIMIT $3")
                .bind(bucket)
                .bind(after.map(str::as_bytes))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?;
        rows.iter().map(|row| key_of(row.get(0))).collect()
    }

    pub(crate) async fn scrub_object(&self, bucket: &str, key: &str, prefix: &str) -> Result<ScrubFinding> {
        if !key.starts_with(prefix) {
            return Ok(ScrubFinding::OutOfScope);
        }
        let row = sqlx::query("SELECT record FROM objects WHERE bucket = $1 AND key = $2")
            .bind(bucket)
            .bind(key.as_bytes())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        let Some(row) = row else {
            self.bucket_record(None, bucket).await?;
            return Ok(ScrubFinding::Absent);
        };
        let record: ObjectRecord = match self.read_record(row.get(0), &object_place(bucket, key)) {
            Ok(record) => record,
            Err(StoreError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Ok(ScrubFinding::Damaged { key: Some(key.to_owned()), reason: format!("object record: {e}") })
            }
            Err(e) => return Err(e),
        };
        let names = record.data_files.clone();
        let opened =
            self.data_dir_task(move |dir| Ok(names.iter().map(|name| dir.open_file(name)).collect::<Vec<_>>())).await?;
        let mut files = Vec::with_capacity(opened.len());
        for (file, part) in opened.into_iter().zip(&record.meta.parts) {
            match file {
                Ok(file) => files.push(file),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // An overwrite may have removed it since the record was read: only a current record counts.
                    let current = self.object_record(bucket, key).await.ok();
                    if current.is_some_and(|current| current.meta == record.meta) {
                        let reason = format!("the data file of part {} is missing", part.number);
                        return Ok(ScrubFinding::Damaged { key: Some(key.to_owned()), reason });
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

    /// Removes temp files older than `min_age` and data files of that age that no row names.
    pub(crate) async fn collect_garbage(&self, min_age: Duration) -> Result<Reclaimed> {
        let tmp_dir = self.tmp_dir().to_path_buf();
        let mut reclaimed = self.data_dir_task(move |_| Ok(sweep_temp_dir(&tmp_dir, min_age))).await??;
        let candidates = self.data_dir_task(move |dir| dir.files_older_than(min_age)).await?;
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
        let collected = self
            .data_dir_task(move |_| {
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
}
