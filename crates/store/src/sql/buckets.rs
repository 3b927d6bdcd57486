//! Buckets, job records and user policies of the SQL engine.

use std::collections::BTreeMap;

use futures::FutureExt;
use sqlx::Row;
use time::OffsetDateTime;

use super::{bucket_place, db_error, SqlEngine};
use crate::error::{Result, StoreError};
use crate::jobs::validate_job_id;
use crate::layout::{BucketRecord, FORMAT_VERSION};
use crate::meta::{BucketInfo, RawJson, Versioning};
use crate::names::validate_bucket_name;
use crate::user_policies::UserPolicyRecord;

fn info(record: BucketRecord) -> BucketInfo {
    BucketInfo { name: record.name, created: record.created, owner: record.owner, policy: record.policy }
}

impl SqlEngine {
    pub(crate) async fn create_bucket(&self, name: &str, owner: Option<&str>) -> Result<()> {
        validate_bucket_name(name)?;
        let mut record = BucketRecord {
            format_version: FORMAT_VERSION,
            name: name.to_owned(),
            created: OffsetDateTime::now_utc(),
            encryption: None,
            owner: owner.map(str::to_owned),
            policy: None,
            versioning: Versioning::Unversioned,
            mac: None,
        };
        let text = self.seal(&mut record, &bucket_place(name))?;
        let name = name.to_owned();
        self.transact(move |_, tx| {
            async move {
                let inserted =
                    sqlx::query("INSERT INTO buckets (name, record) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                        .bind(name)
                        .bind(text)
                        .execute(&mut **tx)
                        .await
                        .map_err(db_error)?;
                if inserted.rows_affected() == 0 {
                    return Err(StoreError::BucketAlreadyOwnedByYou);
                }
                Ok(())
            }
            .boxed()
        })
        .await
    }

    /// Deletes an empty bucket with its uploads; the uploads' data files go once the change committed.
    pub(crate) async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        let name = bucket.to_owned();
        let deleted = self
            .transact(move |engine, tx| {
                async move {
                    engine.lock(tx, &format!("bucket/{name}"), true).await?;
                    Self::bucket_exists(tx, &name).await?;
                    // Noncurrent versions and delete markers keep a bucket from being empty too.
                    let object = sqlx::query(
                        "SELECT 1 FROM objects WHERE bucket = $1 \
                         UNION ALL SELECT 1 FROM versions WHERE bucket = $1 LIMIT 1",
                    )
                    .bind(&name)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db_error)?;
                    if object.is_some() {
                        return Err(StoreError::BucketNotEmpty);
                    }
                    let mut unreferenced = Vec::new();
                    let parts = sqlx::query("SELECT upload_id, number, record FROM parts WHERE bucket = $1")
                        .bind(&name)
                        .fetch_all(&mut **tx)
                        .await
                        .map_err(db_error)?;
                    for row in &parts {
                        // An unreadable part record still has its data file removed with the bucket: nothing else
                        // names it.
                        if let Ok(record) = engine.part_record(&name, row.get(0), row.get::<i64, _>(1), row.get(2)) {
                            unreferenced.push(record.data_file);
                        }
                    }
                    for statement in [
                        "DELETE FROM parts WHERE bucket = $1",
                        "DELETE FROM uploads WHERE bucket = $1",
                        "DELETE FROM buckets WHERE name = $1",
                    ] {
                        sqlx::query(statement).bind(&name).execute(&mut **tx).await.map_err(db_error)?;
                    }
                    engine.forget_data_files(tx, &unreferenced).await?;
                    Ok(unreferenced)
                }
                .boxed()
            })
            .await;
        self.bucket_changed(bucket);
        let unreferenced = deleted?;
        self.data.unreferenced(&unreferenced);
        Ok(())
    }

    pub(crate) async fn head_bucket(&self, name: &str) -> Result<BucketInfo> {
        Ok(info(self.bucket_record(None, name).await?))
    }

    pub(crate) async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        let rows = sqlx::query("SELECT name, record FROM buckets ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        let mut buckets = Vec::with_capacity(rows.len());
        for row in rows {
            let name: &str = row.get(0);
            match self.read_record::<BucketRecord>(row.get(1), &bucket_place(name)) {
                Ok(record) => buckets.push(info(record)),
                // One damaged bucket record must not hide every other bucket.
                Err(e) => tracing::warn!(error = %e, "skipping unreadable bucket record"),
            }
        }
        Ok(buckets)
    }

    pub(crate) async fn bucket_encryption(&self, name: &str) -> Result<Option<RawJson>> {
        Ok(self.bucket_record(None, name).await?.encryption)
    }

    pub(crate) async fn set_bucket_encryption(&self, name: &str, config: Option<RawJson>) -> Result<()> {
        self.change_bucket(name, |record| record.encryption = config).await
    }

    pub(crate) async fn set_bucket_policy(&self, name: &str, policy: Option<String>) -> Result<()> {
        self.change_bucket(name, |record| record.policy = policy).await
    }

    pub(super) async fn change_bucket(
        &self,
        bucket: &str,
        change: impl FnOnce(&mut BucketRecord) + Send + 'static,
    ) -> Result<()> {
        let name = bucket.to_owned();
        let changed = self
            .transact(move |engine, tx| {
                async move {
                    engine.lock(tx, &format!("bucket/{name}"), true).await?;
                    let mut record = engine.bucket_record(Some(&mut *tx), &name).await?;
                    change(&mut record);
                    record.format_version = FORMAT_VERSION;
                    let text = engine.seal(&mut record, &bucket_place(&name))?;
                    sqlx::query("UPDATE buckets SET record = $2 WHERE name = $1")
                        .bind(&name)
                        .bind(text)
                        .execute(&mut **tx)
                        .await
                        .map_err(db_error)?;
                    Ok(())
                }
                .boxed()
            })
            .await;
        self.bucket_changed(bucket);
        changed
    }

    pub(crate) async fn save_job(&self, id: &str, record: &RawJson) -> Result<()> {
        validate_job_id(id)?;
        let (id, text) = (id.to_owned(), record.get().to_owned());
        self.transact(move |_, tx| {
            async move {
                sqlx::query("INSERT INTO jobs (id, record) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET record = $2")
                    .bind(id)
                    .bind(text)
                    .execute(&mut **tx)
                    .await
                    .map_err(db_error)?;
                Ok(())
            }
            .boxed()
        })
        .await
    }

    pub(crate) async fn job_records(&self) -> Result<Vec<RawJson>> {
        let rows = sqlx::query("SELECT id, record FROM jobs").fetch_all(&self.pool).await.map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let text: String = row.get(1);
                let raw = serde_json::value::RawValue::from_string(text).map_err(|e| {
                    StoreError::Io(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("job {}: corrupt job record: {e}", row.get::<&str, _>(0)),
                    ))
                })?;
                Ok(RawJson::from(raw))
            })
            .collect()
    }

    pub(crate) async fn user_policies(&self) -> Result<BTreeMap<String, String>> {
        let rows = sqlx::query("SELECT access_key, record FROM user_policies")
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        let mut policies = BTreeMap::new();
        for row in rows {
            let access_key: String = row.get(0);
            let record: UserPolicyRecord = self.read_record(row.get(1), &user_policy_place(&access_key))?;
            policies.insert(access_key, record.policy);
        }
        Ok(policies)
    }

    pub(crate) async fn set_user_policy(&self, access_key: &str, policy: Option<String>) -> Result<()> {
        let text = match policy {
            Some(policy) => {
                let mut record = UserPolicyRecord { format_version: FORMAT_VERSION, policy, mac: None };
                Some(self.seal(&mut record, &user_policy_place(access_key))?)
            }
            None => None,
        };
        let access_key = access_key.to_owned();
        self.transact(move |_, tx| {
            async move {
                match text {
                    Some(text) => {
                        sqlx::query(
                            "INSERT INTO user_policies (access_key, record) VALUES ($1, $2) \
                             ON CONFLICT (access_key) DO UPDATE SET record = $2",
                        )
                        .bind(access_key)
                        .bind(text)
                        .execute(&mut **tx)
                        .await
                    }
                    None => {
                        sqlx::query("DELETE FROM user_policies WHERE access_key = $1")
                            .bind(access_key)
                            .execute(&mut **tx)
                            .await
                    }
                }
                .map_err(db_error)?;
                Ok(())
            }
            .boxed()
        })
        .await
    }
}

fn user_policy_place(access_key: &str) -> String {
    format!("db/user-policies/{access_key}")
}
