//! Object versions in the SQL engine: the bucket's versioning state, what a write or a delete does to the versions
//! of its key, and reads and removals of one version by id.
//!
//! A key's current version, when it is an object, is its row of `objects`, so reads, listings and every walk of the
//! objects see the current objects as they did before versioning. Every other version of the key, noncurrent
//! versions and delete markers, is a row of `versions`, where `rank` orders the key's versions: the newest has the
//! smallest, so both databases read them newest first straight off the primary key. A version that stops being
//! current moves there with a rank below the key's smallest (it is newer than every row there), its record sealed
//! again for its new place (`db/versions/<bucket>/<key>/<version>`); one that becomes current again (the versions
//! after it removed) moves back, sealed for `db/objects/<bucket>/<key>`. A key's current version is thus its
//! `objects` row, or else its newest `versions` row, which then is a delete marker.
//!
//! The null version (written while the bucket was unversioned or suspended) has no id: its `version_id` is NULL in
//! `objects` and "null" in `versions` (ids are hex), so a key has at most one version of each name. The data files
//! of every version stay in `data_files` until that version is removed: garbage collection never takes them.

use futures::FutureExt;
use sqlx::Row;
use time::OffsetDateTime;

use super::{bucket_place, db_error, from_nanos, nanos, object_place, to_i64, version_place, SqlEngine, Tx};
use crate::error::{Result, StoreError};
use crate::fsio::unique_id;
use crate::layout::{BucketRecord, ObjectRecord};
use crate::meta::{Deletion, ObjectMeta, Versioning};
use crate::names::{is_version_id, validate_key, NULL_VERSION};
use crate::objects::with_meta;
use crate::reader::ObjectReader;

/// A version's name in `versions.version_id` and in requests: its id, or "null".
pub(super) fn version_name(version_id: Option<&str>) -> &str {
    version_id.unwrap_or(NULL_VERSION)
}

/// The version id a name stands for: `None` for the null version.
fn version_id_of(name: &str) -> Option<String> {
    (name != NULL_VERSION).then(|| name.to_owned())
}

/// What removing a row of `versions` removed.
struct Removed {
    delete_marker: bool,
    /// The data files to release.
    data_files: Vec<String>,
}

impl SqlEngine {
    pub(crate) async fn bucket_versioning(&self, bucket: &str) -> Result<Versioning> {
        Ok(self.bucket_record(None, bucket).await?.versioning)
    }

    pub(crate) async fn set_bucket_versioning(&self, bucket: &str, state: Versioning) -> Result<()> {
        if state == Versioning::Unversioned {
            return Err(StoreError::InvalidMeta("a bucket's versioning can only be set to Enabled or Suspended"));
        }
        self.change_bucket(bucket, move |record| record.versioning = state).await
    }

    /// The bucket's versioning state and the unchecked record text of `key`'s current object, in `tx`'s view and
    /// in one query. `NoSuchBucket` if the bucket does not exist.
    pub(super) async fn key_state(&self, tx: &mut Tx, bucket: &str, key: &str) -> Result<(Versioning, Option<String>)> {
        let row = sqlx::query(
            "SELECT b.record, o.record FROM buckets b LEFT JOIN objects o ON o.bucket = b.name AND o.key = $2 \
             WHERE b.name = $1",
        )
        .bind(bucket)
        .bind(key.as_bytes())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?
        .ok_or(StoreError::NoSuchBucket)?;
        let record: BucketRecord = self.read_record(row.get::<&str, _>(0), &bucket_place(bucket))?;
        Ok((record.versioning, row.get(1)))
    }

    /// Makes way for a new current version of `key` (an object or a delete marker) as `versioning` says, given the
    /// key's `current` object: unversioned, the current object is replaced; enabled, it becomes noncurrent and the
    /// new version gets an id; suspended, the new version is the null version, so the previous null version (current
    /// or not, object or delete marker) is replaced, and a current version with an id becomes noncurrent. Returns
    /// the new version's id and the data files of the versions replaced. A current object that is replaced keeps
    /// its row, for the caller to overwrite or delete.
    pub(super) async fn make_way(
        &self,
        tx: &mut Tx,
        bucket: &str,
        key: &str,
        versioning: Versioning,
        current: Option<ObjectRecord>,
    ) -> Result<(Option<String>, Vec<String>)> {
        match versioning {
            Versioning::Unversioned => Ok((None, current.map(|current| current.data_files).unwrap_or_default())),
            Versioning::Enabled => {
                if let Some(current) = current {
                    self.demote(tx, bucket, key, current).await?;
                }
                Ok((Some(unique_id()?), Vec::new()))
            }
            Versioning::Suspended => match current {
                Some(current) if current.meta.version_id.is_none() => Ok((None, current.data_files)),
                current => {
                    if let Some(current) = current {
                        self.demote(tx, bucket, key, current).await?;
                    }
                    let removed = self.remove_version_row(tx, bucket, key, NULL_VERSION).await?;
                    Ok((None, removed.map(|removed| removed.data_files).unwrap_or_default()))
                }
            },
        }
    }

    /// Moves `key`'s current object `record` to `versions`, as its newest noncurrent version.
    async fn demote(&self, tx: &mut Tx, bucket: &str, key: &str, record: ObjectRecord) -> Result<()> {
        sqlx::query("DELETE FROM objects WHERE bucket = $1 AND key = $2")
            .bind(bucket)
            .bind(key.as_bytes())
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
        let version_id = record.meta.version_id.clone();
        self.push_version_row(tx, bucket, key, version_id.as_deref(), Some(record)).await
    }

    /// Makes a delete marker, made now, `key`'s newest version.
    pub(super) async fn add_delete_marker(
        &self,
        tx: &mut Tx,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<()> {
        self.push_version_row(tx, bucket, key, version_id, None).await
    }

    /// Adds a row to `versions` as `key`'s newest: the object `record`, sealed for its place there, or a delete
    /// marker made now.
    async fn push_version_row(
        &self,
        tx: &mut Tx,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        record: Option<ObjectRecord>,
    ) -> Result<()> {
        let newest: Option<i64> = sqlx::query("SELECT MIN(rank) FROM versions WHERE bucket = $1 AND key = $2")
            .bind(bucket)
            .bind(key.as_bytes())
            .fetch_one(&mut **tx)
            .await
            .map_err(db_error)?
            .get(0);
        let name = version_name(version_id);
        let (size, etag, modified, text) = match record {
            Some(mut record) => {
                let text = self.seal(&mut record, &version_place(bucket, key, name))?;
                (to_i64(record.meta.size), record.meta.etag, nanos(record.meta.last_modified), Some(text))
            }
            None => (0, String::new(), nanos(OffsetDateTime::now_utc()), None),
        };
        sqlx::query(
            "INSERT INTO versions (bucket, key, rank, version_id, delete_marker, size, etag, modified, record) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(bucket)
        .bind(key.as_bytes())
        .bind(newest.map_or(0, |rank| rank - 1))
        .bind(name)
        .bind(i64::from(text.is_none()))
        .bind(size)
        .bind(etag)
        .bind(modified)
        .bind(text)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    /// Rewrites the metadata of `key`'s noncurrent version that `expected` names, its data unchanged (see
    /// [`with_meta`]); `Changed` unless that version is still as `expected` says.
    pub(super) async fn update_noncurrent_meta(
        &self,
        tx: &mut Tx,
        bucket: &str,
        key: &str,
        expected: &ObjectMeta,
        meta: ObjectMeta,
    ) -> Result<ObjectMeta> {
        let name = version_name(expected.version_id.as_deref());
        let row = sqlx::query(
            "SELECT record FROM versions WHERE bucket = $1 AND key = $2 AND version_id = $3 AND delete_marker = 0",
        )
        .bind(bucket)
        .bind(key.as_bytes())
        .bind(name)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?
        .ok_or(StoreError::Changed)?;
        let stored = self.version_record(row.get(0), bucket, key, name)?;
        if stored.meta != *expected {
            return Err(StoreError::Changed);
        }
        let mut record = with_meta(stored, meta)?;
        let text = self.seal(&mut record, &version_place(bucket, key, name))?;
        sqlx::query(
            "UPDATE versions SET size = $4, etag = $5, modified = $6, record = $7 \
             WHERE bucket = $1 AND key = $2 AND version_id = $3",
        )
        .bind(bucket)
        .bind(key.as_bytes())
        .bind(name)
        .bind(to_i64(record.meta.size))
        .bind(&record.meta.etag)
        .bind(nanos(record.meta.last_modified))
        .bind(text)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
        Ok(record.meta)
    }

    /// Reads the record of `key`'s noncurrent version `name` from its `versions` row.
    pub(super) fn version_record(
        &self,
        text: Option<&str>,
        bucket: &str,
        key: &str,
        name: &str,
    ) -> Result<ObjectRecord> {
        let text = text.ok_or(StoreError::InvalidMeta("a version row without a record that is no delete marker"))?;
        let record: ObjectRecord = self.read_record(text, &version_place(bucket, key, name))?;
        if record.meta.key != key || version_name(record.meta.version_id.as_deref()) != name {
            return Err(StoreError::InvalidMeta("a version record of another version"));
        }
        Ok(record)
    }

    /// Reads the record of `key`'s current object, which must be the version `name`.
    fn current_record(&self, text: &str, bucket: &str, key: &str, name: &str) -> Result<ObjectRecord> {
        let record: ObjectRecord = self.read_record(text, &object_place(bucket, key))?;
        if version_name(record.meta.version_id.as_deref()) != name {
            return Err(StoreError::InvalidMeta("an object row whose version differs from its record's"));
        }
        Ok(record)
    }

    /// Removes `key`'s row of `versions` named `name`, if it has one. A record that cannot be read is removed all
    /// the same, but its data files stay referenced: an unverified record cannot tell which they are.
    async fn remove_version_row(&self, tx: &mut Tx, bucket: &str, key: &str, name: &str) -> Result<Option<Removed>> {
        let row = sqlx::query(
            "DELETE FROM versions WHERE bucket = $1 AND key = $2 AND version_id = $3 RETURNING delete_marker, record",
        )
        .bind(bucket)
        .bind(key.as_bytes())
        .bind(name)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
        let Some(row) = row else { return Ok(None) };
        if row.get::<i64, _>(0) != 0 {
            return Ok(Some(Removed { delete_marker: true, data_files: Vec::new() }));
        }
        let data_files = match self.version_record(row.get(1), bucket, key, name) {
            Ok(record) => record.data_files,
            Err(e) => {
                tracing::warn!(bucket, error = %e, "removing an unreadable version record; its data files stay");
                Vec::new()
            }
        };
        Ok(Some(Removed { delete_marker: false, data_files }))
    }

    /// Once `key` has no `objects` row (its current version was removed): makes its newest row of `versions` its
    /// current object if that one is an object, re-sealed for `objects`. A delete marker stays where it is, the
    /// key's current version.
    async fn promote_newest(&self, tx: &mut Tx, bucket: &str, key: &str) -> Result<()> {
        let row = sqlx::query(
            "SELECT rank, version_id, delete_marker, record FROM versions WHERE bucket = $1 AND key = $2 \
             ORDER BY rank LIMIT 1",
        )
        .bind(bucket)
        .bind(key.as_bytes())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
        let Some(row) = row else { return Ok(()) };
        if row.get::<i64, _>(2) != 0 {
            return Ok(());
        }
        let rank: i64 = row.get(0);
        let record = self.version_record(row.get(3), bucket, key, row.get(1))?;
        sqlx::query("DELETE FROM versions WHERE bucket = $1 AND key = $2 AND rank = $3")
            .bind(bucket)
            .bind(key.as_bytes())
            .bind(rank)
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
        self.write_object_row(tx, bucket, key, record).await?;
        Ok(())
    }

    /// `NoSuchVersion` for a name that cannot be a version (after `NoSuchBucket`).
    async fn check_version_name(&self, bucket: &str, name: &str) -> Result<()> {
        if name == NULL_VERSION || is_version_id(name) {
            return Ok(());
        }
        self.bucket_record(None, bucket).await?;
        Err(StoreError::NoSuchVersion)
    }

    /// The record of `key`'s version `name`, current or not, read (outside any transaction) in one query, so a
    /// version that moves between the tables meanwhile is found all the same.
    pub(super) async fn version(&self, bucket: &str, key: &str, name: &str) -> Result<ObjectRecord> {
        let row = sqlx::query(
            "SELECT CAST(1 AS BIGINT), CAST(0 AS BIGINT), modified, record FROM objects \
             WHERE bucket = $1 AND key = $2 AND COALESCE(version_id, $4) = $3 \
             UNION ALL SELECT CAST(0 AS BIGINT), delete_marker, modified, record FROM versions \
             WHERE bucket = $1 AND key = $2 AND version_id = $3",
        )
        .bind(bucket)
        .bind(key.as_bytes())
        .bind(name)
        .bind(NULL_VERSION)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        let Some(row) = row else {
            self.bucket_record(None, bucket).await?;
            return Err(StoreError::NoSuchVersion);
        };
        let text: Option<&str> = row.get(3);
        if row.get::<i64, _>(0) != 0 {
            let text = text.ok_or(StoreError::InvalidMeta("an object row without a record"))?;
            return self.current_record(text, bucket, key, name);
        }
        if row.get::<i64, _>(1) != 0 {
            return Err(StoreError::DeleteMarker {
                version_id: version_id_of(name),
                last_modified: from_nanos(row.get(2)),
            });
        }
        self.version_record(text, bucket, key, name)
    }

    pub(crate) async fn head_version(&self, bucket: &str, key: &str, version_id: &str) -> Result<ObjectMeta> {
        validate_key(key)?;
        self.check_version_name(bucket, version_id).await?;
        Ok(self.version(bucket, key, version_id).await?.meta)
    }

    pub(crate) async fn open_version(&self, bucket: &str, key: &str, version_id: &str) -> Result<ObjectReader> {
        validate_key(key)?;
        self.check_version_name(bucket, version_id).await?;
        self.open_found(|| self.version(bucket, key, version_id)).await
    }

    /// Removes `key`'s version `name` and releases its data; if it was the current version, the newest one left
    /// becomes current ([`SqlEngine::promote_newest`]).
    pub(crate) async fn delete_version(&self, bucket: &str, key: &str, version_id: &str) -> Result<Deletion> {
        validate_key(key)?;
        self.check_version_name(bucket, version_id).await?;
        let (bucket, key, name) = (bucket.to_owned(), key.to_owned(), version_id.to_owned());
        let (deletion, released) = self
            .transact(move |engine, tx| {
                async move {
                    engine.lock_object(tx, &bucket, &key).await?;
                    let row = sqlx::query(
                        "SELECT o.version_id, o.record FROM buckets b \
                         LEFT JOIN objects o ON o.bucket = b.name AND o.key = $2 WHERE b.name = $1",
                    )
                    .bind(&bucket)
                    .bind(key.as_bytes())
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db_error)?
                    .ok_or(StoreError::NoSuchBucket)?;
                    let (current_id, current): (Option<String>, Option<String>) = (row.get(0), row.get(1));
                    let version_id = version_id_of(&name);
                    let (delete_marker, released) = match current {
                        Some(text) if version_name(current_id.as_deref()) == name => {
                            let released = match engine.current_record(&text, &bucket, &key, &name) {
                                Ok(record) => record.data_files,
                                Err(e) => {
                                    tracing::warn!(bucket, error = %e, "removing an unreadable object record; its data files stay");
                                    Vec::new()
                                }
                            };
                            sqlx::query("DELETE FROM objects WHERE bucket = $1 AND key = $2")
                                .bind(&bucket)
                                .bind(key.as_bytes())
                                .execute(&mut **tx)
                                .await
                                .map_err(db_error)?;
                            engine.promote_newest(tx, &bucket, &key).await?;
                            (false, released)
                        }
                        current => match engine.remove_version_row(tx, &bucket, &key, &name).await? {
                            Some(removed) => {
                                if current.is_none() {
                                    // It may have been the current version, a delete marker.
                                    engine.promote_newest(tx, &bucket, &key).await?;
                                }
                                (removed.delete_marker, removed.data_files)
                            }
                            None => (false, Vec::new()),
                        },
                    };
                    engine.forget_data_files(tx, &released).await?;
                    Ok((Deletion { version_id, delete_marker }, released))
                }
                .boxed()
            })
            .await?;
        self.data.unreferenced(&released);
        Ok(deletion)
    }
}
