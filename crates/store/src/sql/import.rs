//! What `coffer migrate` (`migrate.rs`) writes: the directory engine's checked records as rows signed for their new
//! places, and their data files under the same names in the engine's data (hard links, or uploads to the data
//! bucket). Every write is an upsert, so an import runs again after an interruption.

use std::path::Path;

use futures::FutureExt;
use sqlx::Row;

use super::{bucket_place, db_error, nanos, part_place, upload_place, SqlEngine};
use crate::data_engine::DataEngine;
use crate::error::Result;
use crate::layout::{BucketRecord, ObjectRecord, PartRecord, UploadRecord, FORMAT_VERSION};

impl SqlEngine {
    pub(crate) async fn import_bucket(&self, record: &BucketRecord) -> Result<()> {
        let mut record = BucketRecord { format_version: FORMAT_VERSION, mac: None, ..record.clone() };
        let place = bucket_place(&record.name);
        let text = self.seal(&mut record, &place)?;
        let name = record.name.clone();
        let imported = self
            .transact(move |_, tx| {
                async move {
                    sqlx::query(
                    "INSERT INTO buckets (name, record) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET record = $2",
                )
                .bind(&record.name)
                .bind(text)
                .execute(&mut **tx)
                .await
                .map_err(db_error)?;
                    Ok(())
                }
                .boxed()
            })
            .await;
        self.bucket_changed(&name);
        imported
    }

    pub(crate) async fn import_object(&self, bucket: &str, record: ObjectRecord) -> Result<()> {
        let key = record.meta.key.clone();
        let record = ObjectRecord { format_version: FORMAT_VERSION, completed_upload: None, mac: None, ..record };
        let bucket = bucket.to_owned();
        self.transact(move |engine, tx| {
            async move {
                engine.lock_object(tx, &bucket, &key).await?;
                Self::bucket_exists(tx, &bucket).await?;
                Self::reference_data_files(tx, &record.data_files).await?;
                engine.write_object_row(tx, &bucket, &key, record).await?;
                Ok(())
            }
            .boxed()
        })
        .await
    }

    pub(crate) async fn import_upload(&self, bucket: &str, upload: UploadRecord, parts: Vec<PartRecord>) -> Result<()> {
        let upload_id = upload.upload_id.clone();
        let mut upload = UploadRecord { format_version: FORMAT_VERSION, mac: None, ..upload };
        let initiated = nanos(upload.meta.initiated);
        let key = upload.key.clone();
        let text = self.seal(&mut upload, &upload_place(bucket, &upload_id))?;
        let mut sealed = Vec::with_capacity(parts.len());
        for part in parts {
            let number = part.meta.number;
            let mut part = PartRecord { format_version: FORMAT_VERSION, mac: None, ..part };
            let text = self.seal(&mut part, &part_place(bucket, &upload_id, number))?;
            sealed.push((number, part.data_file, text));
        }
        let bucket = bucket.to_owned();
        self.transact(move |engine, tx| {
            async move {
                engine.lock_bucket_contents(tx, &bucket).await?;
                sqlx::query(
                    "INSERT INTO uploads (bucket, upload_id, key, initiated, record) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (bucket, upload_id) DO UPDATE SET record = $5",
                )
                .bind(&bucket)
                .bind(&upload_id)
                .bind(key.as_bytes())
                .bind(initiated)
                .bind(text)
                .execute(&mut **tx)
                .await
                .map_err(db_error)?;
                for (number, data_file, text) in sealed {
                    Self::reference_data_files(tx, std::slice::from_ref(&data_file)).await?;
                    Self::store_part_row(tx, &bucket, &upload_id, number, text).await?;
                }
                Ok(())
            }
            .boxed()
        })
        .await
    }

    pub(crate) async fn count_objects(&self, bucket: &str) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) FROM objects WHERE bucket = $1")
            .bind(bucket)
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(u64::try_from(row.get::<i64, _>(0)).unwrap_or_default())
    }

    /// Gives the data file at `from` its name `name` in the engine's data too, durably: a hard link in the data
    /// directory, or an upload to the data bucket (skipped when an interrupted import uploaded it whole already).
    pub(crate) async fn place_data_file(&self, from: &Path, name: &str) -> Result<()> {
        match &self.data {
            DataEngine::Directory(dir) => Ok(dir.link(from, name)?),
            DataEngine::S3(s3) => Ok(s3.put_file(from, name).await?),
        }
    }

    /// Whether stored bytes are kept in a data bucket, whose files are read only with their chunk checksums.
    pub(crate) fn data_is_remote(&self) -> bool {
        matches!(self.data, DataEngine::S3(_))
    }
}
