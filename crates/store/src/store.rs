//! The async [`Store`] API over either metadata engine. The directory engine runs each call's blocking filesystem
//! work on tokio's blocking pool, so a caller that drops the future (client disconnect) never interrupts a commit
//! halfway; the SQL engine's commits are transactions, which a dropped call rolls back whole (data it had already
//! put in place is then unreferenced, and garbage collection takes it).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::cluster::ClusterKey;
use crate::engine::Engine;
use crate::error::{Result, StoreError};
use crate::garbage::Reclaimed;
use crate::listing::{ListPage, ListQuery, VersionPage, VersionQuery};
use crate::meta::{BucketInfo, Deletion, ObjectMeta, PartMeta, RawJson, UploadInfo, UploadMeta, Versioning};
use crate::reader::ObjectReader;
use crate::s3_data::DataLocation;
use crate::scrub::ScrubFinding;
use crate::sql::SqlEngine;
use crate::staging::{StagedFile, StagedWrite};

/// Handle to a data directory. Cheap to clone; all clones share locks and indexes.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

/// Which metadata engine holds the store: the directory format (`layout.rs`), or SQL (`sql/`).
#[derive(Debug, Clone)]
enum Backend {
    Directory(Arc<Engine>),
    Sql(Arc<SqlEngine>),
}

/// Runs `op` on the blocking pool. It runs to completion even if the awaiting future is dropped.
async fn blocking<T: Send + 'static>(op: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(op)
        .await
        .map_err(|e| StoreError::Io(io::Error::other(format!("store task failed: {e}"))))?
}

impl Store {
    /// Runs `op` on the directory engine (the callers match the backend first).
    async fn run<T: Send + 'static>(&self, op: impl FnOnce(&Engine) -> Result<T> + Send + 'static) -> Result<T> {
        let Backend::Directory(engine) = &self.backend else {
            return Err(StoreError::Io(io::Error::other("the directory engine was asked of an SQL store")));
        };
        let engine = engine.clone();
        blocking(move || op(&engine)).await
    }

    /// Opens (creating if needed) the store under `root`, sweeps temp files left by a previous run and removes
    /// uploads whose completion a crash interrupted after the commit. Only one `Store` (and its clones) may use a
    /// directory at a time.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        let engine = blocking(move || Engine::open(&root)).await?;
        Ok(Store { backend: Backend::Directory(Arc::new(engine)) })
    }

    /// Opens (creating if needed) the store under `root` with the SQL metadata engine: in SQLite in `root`, or in
    /// the PostgreSQL database at `postgres_url`; the data in `root/data` or in the bucket of `data`. Listings are
    /// range queries, with nothing rebuilt in memory at start. A directory in the directory format is refused, and
    /// so is a data location other than the one the database was created with.
    pub async fn open_sql(root: impl Into<PathBuf>, postgres_url: Option<&str>, data: &DataLocation) -> Result<Store> {
        let engine = SqlEngine::open(&root.into(), postgres_url, data, None).await?;
        Ok(Store { backend: Backend::Sql(engine) })
    }

    /// [`Store::open_sql`] for a node of a cluster sharing the PostgreSQL database at `postgres_url`: records are
    /// signed with the cluster key every node has, so each reads the others'.
    pub async fn open_cluster(
        root: impl Into<PathBuf>,
        postgres_url: &str,
        key: &ClusterKey,
        data: &DataLocation,
    ) -> Result<Store> {
        let engine = SqlEngine::open(&root.into(), Some(postgres_url), data, Some(key)).await?;
        Ok(Store { backend: Backend::Sql(engine) })
    }

    /// Creates a bucket. `InvalidBucketName` for names breaking S3 rules or reserved (`coffer`, `rustfs`, `minio`);
    /// `BucketAlreadyOwnedByYou` if it exists. `owner` is the creating access key (`None` only for tools and tests).
    pub async fn create_bucket(&self, name: &str, owner: Option<&str>) -> Result<()> {
        match &self.backend {
            Backend::Directory(_) => {
                let (name, owner) = (name.to_owned(), owner.map(str::to_owned));
                self.run(move |e| e.create_bucket(&name, owner.as_deref())).await
            }
            Backend::Sql(sql) => sql.create_bucket(name, owner).await,
        }
    }

    /// Deletes an empty bucket together with its in-progress uploads. `BucketNotEmpty` if it holds objects, or
    /// any version or delete marker.
    pub async fn delete_bucket(&self, name: &str) -> Result<()> {
        match &self.backend {
            Backend::Directory(_) => {
                let name = name.to_owned();
                self.run(move |e| e.delete_bucket(&name)).await
            }
            Backend::Sql(sql) => sql.delete_bucket(name).await,
        }
    }

    /// The bucket's info, or `NoSuchBucket`.
    pub async fn head_bucket(&self, name: &str) -> Result<BucketInfo> {
        match &self.backend {
            Backend::Directory(_) => {
                let name = name.to_owned();
                self.run(move |e| e.head_bucket(&name)).await
            }
            Backend::Sql(sql) => sql.head_bucket(name).await,
        }
    }

    /// All buckets, sorted by name.
    pub async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        match &self.backend {
            Backend::Directory(_) => self.run(|e| e.list_buckets()).await,
            Backend::Sql(sql) => sql.list_buckets().await,
        }
    }

    /// The bucket's default-encryption configuration (opaque, owned by the server/SSE layer).
    pub async fn bucket_encryption(&self, name: &str) -> Result<Option<RawJson>> {
        match &self.backend {
            Backend::Directory(_) => {
                let name = name.to_owned();
                self.run(move |e| e.bucket_encryption(&name)).await
            }
            Backend::Sql(sql) => sql.bucket_encryption(name).await,
        }
    }

    /// Sets (`Some`) or deletes (`None`) the bucket's default-encryption configuration.
    pub async fn set_bucket_encryption(&self, name: &str, config: Option<RawJson>) -> Result<()> {
        match &self.backend {
            Backend::Directory(_) => {
                let name = name.to_owned();
                self.run(move |e| e.set_bucket_encryption(&name, config)).await
            }
            Backend::Sql(sql) => sql.set_bucket_encryption(name, config).await,
        }
    }

    /// Sets (`Some`) or deletes (`None`) the bucket's policy (opaque, owned by the server).
    pub async fn set_bucket_policy(&self, name: &str, policy: Option<String>) -> Result<()> {
        match &self.backend {
            Backend::Directory(_) => {
                let name = name.to_owned();
                self.run(move |e| e.set_bucket_policy(&name, policy)).await
            }
            Backend::Sql(sql) => sql.set_bucket_policy(name, policy).await,
        }
    }

    /// The bucket's versioning state; `NoSuchBucket`. The directory engine's buckets are always `Unversioned`.
    pub async fn bucket_versioning(&self, bucket: &str) -> Result<Versioning> {
        match &self.backend {
            Backend::Directory(_) => {
                let bucket = bucket.to_owned();
                self.run(move |e| e.bucket_versioning(&bucket)).await
            }
            Backend::Sql(sql) => sql.bucket_versioning(bucket).await,
        }
    }

    /// Sets the bucket's versioning state to `Enabled` or `Suspended` (a bucket never returns to `Unversioned`:
    /// `InvalidMeta`). The directory engine keeps one version per key: `NotImplemented`.
    pub async fn set_bucket_versioning(&self, bucket: &str, state: Versioning) -> Result<()> {
        match &self.backend {
            Backend::Directory(_) => {
                let bucket = bucket.to_owned();
                self.run(move |e| e.set_bucket_versioning(&bucket)).await
            }
            Backend::Sql(sql) => sql.set_bucket_versioning(bucket, state).await,
        }
    }

    /// Starts receiving data for `put_object` / `put_part` (in memory, then a temp file). No I/O happens here: the
    /// bucket is checked when the data is committed, so callers check it first if the body should not be read
    /// into a missing bucket.
    pub fn stage(&self) -> StagedWrite {
        let tmp_dir = match &self.backend {
            Backend::Directory(engine) => engine.tmp_dir(),
            Backend::Sql(sql) => sql.tmp_dir(),
        };
        StagedWrite::new(tmp_dir.to_owned())
    }

    /// Commits `data` as the object `key` and returns the stored metadata. What becomes of the key's current
    /// version depends on the bucket's versioning state at the commit: unversioned, it is replaced (its data
    /// released); enabled, it becomes noncurrent and the new version gets an id (`version_id`); suspended, the new
    /// version is the null version, which replaces the previous null version wherever it is, while a current
    /// version with an id becomes noncurrent.
    ///
    /// The data becomes part 1: `meta.parts` may be empty (the store builds the part from `meta`: size, etag,
    /// checksum) or hold exactly one part (kept, e.g. for per-part encryption metadata). The store sets
    /// `last_modified` and the part's `number`, `stored_size` and `last_modified`.
    pub async fn put_object(&self, bucket: &str, key: &str, data: StagedFile, meta: ObjectMeta) -> Result<ObjectMeta> {
        match &self.backend {
            Backend::Directory(_) => {
                let (bucket, key) = (bucket.to_owned(), key.to_owned());
                self.run(move |e| e.put_object(&bucket, &key, data, meta, None)).await
            }
            Backend::Sql(sql) => sql.put_object(bucket, key, data, meta, None).await,
        }
    }

    /// `put_object`, committed only if the stored version is still `expected` (as `head_object` or a reader
    /// returned it); else `Changed`, and nothing is stored. A rewrite of an object's data never overwrites a
    /// version written (or a delete made) after the caller read it. It rewrites that version in place, keeping its
    /// version id, whatever the bucket's versioning state.
    pub async fn replace_object(
        &self,
        bucket: &str,
        key: &str,
        data: StagedFile,
        meta: ObjectMeta,
        expected: ObjectMeta,
    ) -> Result<ObjectMeta> {
        match &self.backend {
            Backend::Directory(_) => {
                let (bucket, key) = (bucket.to_owned(), key.to_owned());
                self.run(move |e| e.put_object(&bucket, &key, data, meta, Some(&expected))).await
            }
            Backend::Sql(sql) => sql.put_object(bucket, key, data, meta, Some(&expected)).await,
        }
    }

    /// Rewrites the metadata of the stored version `expected` without touching its data, whether it is the current
    /// version or (named by `expected.version_id`) a past one; `Changed` (nothing written) if that version was
    /// overwritten or deleted since the caller read `expected`. `meta.parts` must list
    /// the same parts (numbers and stored sizes, in order), else `InvalidMeta`; everything else, including
    /// `last_modified` and each part's `encryption`, is stored as given.
    pub async fn update_object_meta(
        &self,
        bucket: &str,
        key: &str,
        expected: ObjectMeta,
        meta: ObjectMeta,
    ) -> Result<ObjectMeta> {
        match &self.backend {
            Backend::Directory(_) => {
                let (bucket, key) = (bucket.to_owned(), key.to_owned());
                self.run(move |e| e.update_object_meta(&bucket, &key, &expected, meta)).await
            }
            Backend::Sql(sql) => sql.update_object_meta(bucket, key, &expected, meta).await,
        }
    }

    /// The current version's metadata. `NoSuchKey` (also when the current version is a delete marker) /
    /// `NoSuchBucket`.
    pub async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectMeta> {
        match &self.backend {
            Backend::Directory(_) => {
                let (bucket, key) = (bucket.to_owned(), key.to_owned());
                self.run(move |e| e.head_object(&bucket, &key)).await
            }
            Backend::Sql(sql) => sql.head_object(bucket, key).await,
        }
    }

    /// Opens the current version for reading; later overwrites or deletes do not affect the returned reader.
    pub async fn open_object(&self, bucket: &str, key: &str) -> Result<ObjectReader> {
        match &self.backend {
            Backend::Directory(_) => {
                let (bucket, key) = (bucket.to_owned(), key.to_owned());
                self.run(move |e| e.open_object(&bucket, &key)).await
            }
            Backend::Sql(sql) => sql.open_object(bucket, key).await,
        }
    }

    /// The metadata of one version of the key, current or not (`"null"` names the null version). `NoSuchVersion`
    /// if the key has no such version (or the id is malformed); `DeleteMarker` if that version is a delete marker.
    pub async fn head_version(&self, bucket: &str, key: &str, version_id: &str) -> Result<ObjectMeta> {
        match &self.backend {
            Backend::Directory(_) => {
                let (bucket, key, version_id) = (bucket.to_owned(), key.to_owned(), version_id.to_owned());
                self.run(move |e| e.head_version(&bucket, &key, &version_id)).await
            }
            Backend::Sql(sql) => sql.head_version(bucket, key, version_id).await,
        }
    }

    /// Opens one version of the key for reading, as [`Store::head_version`] finds it; later changes of the key do
    /// not affect the returned reader.
    pub async fn open_version(&self, bucket: &str, key: &str, version_id: &str) -> Result<ObjectReader> {
        match &self.backend {
            Backend::Directory(_) => {
                let (bucket, key, version_id) = (bucket.to_owned(), key.to_owned(), version_id.to_owned());
                self.run(move |e| e.open_version(&bucket, &key, &version_id)).await
            }
            Backend::Sql(sql) => sql.open_version(bucket, key, version_id).await,
        }
    }

    /// Deletes the object as the bucket's versioning state says: unversioned, it is removed; enabled, a delete
    /// marker with a new version id becomes the current version (even of a key without versions) and the current
    /// version becomes noncurrent; suspended, a null delete marker becomes current, replacing the null version,
    /// while a current version with an id becomes noncurrent. A missing key is not an error (S3 semantics); a
    /// missing bucket is.
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<Deletion> {
        match &self.backend {
            Backend::Directory(_) => {
                let (bucket, key) = (bucket.to_owned(), key.to_owned());
                self.run(move |e| e.delete_object(&bucket, &key)).await
            }
            Backend::Sql(sql) => sql.delete_object(bucket, key).await,
        }
    }

    /// Removes exactly one version of the key (an object or a delete marker; `"null"` names the null version) and
    /// releases its data. A missing version is not an error (S3 semantics): it reports the given id and no
    /// marker; a malformed id is `NoSuchVersion`. When it was the current version, the newest remaining one
    /// becomes current (a delete marker then leaves the key without a current object).
    pub async fn delete_version(&self, bucket: &str, key: &str, version_id: &str) -> Result<Deletion> {
        match &self.backend {
            Backend::Directory(_) => {
                let (bucket, key, version_id) = (bucket.to_owned(), key.to_owned(), version_id.to_owned());
                self.run(move |e| e.delete_version(&bucket, &key, &version_id)).await
            }
            Backend::Sql(sql) => sql.delete_version(bucket, key, version_id).await,
        }
    }

    /// One page of the bucket's versions and delete markers: keys in UTF-8 byte order, each key's versions newest
    /// first. The directory engine lists its objects as null versions.
    pub async fn list_object_versions(&self, bucket: &str, query: &VersionQuery) -> Result<VersionPage> {
        match &self.backend {
            Backend::Directory(_) => {
                let (bucket, query) = (bucket.to_owned(), query.clone());
                self.run(move |e| e.list_object_versions(&bucket, &query)).await
            }
            Backend::Sql(sql) => sql.list_object_versions(bucket, query).await,
        }
    }

    /// One page of the bucket's current objects (never delete markers) in UTF-8 byte order.
    pub async fn list_objects(&self, bucket: &str, query: &ListQuery) -> Result<ListPage> {
        match &self.backend {
            Backend::Directory(_) => {
                let (bucket, query) = (bucket.to_owned(), query.clone());
                self.run(move |e| e.list_objects(&bucket, &query)).await
            }
            Backend::Sql(sql) => sql.list_objects(bucket, query).await,
        }
    }

    /// Starts a multipart upload for `key` and returns its id (32 hex characters). The store sets
    /// `upload.initiated`.
    pub async fn create_upload(&self, bucket: &str, key: &str, upload: UploadMeta) -> Result<String> {
        match &self.backend {
            Backend::Directory(_) => {
                let (bucket, key) = (bucket.to_owned(), key.to_owned());
                self.run(move |e| e.create_upload(&bucket, &key, upload)).await
            }
            Backend::Sql(sql) => sql.create_upload(bucket, key, upload).await,
        }
    }

    /// The metadata recorded by `create_upload`. `NoSuchUpload` if unknown or for another key.
    pub async fn upload_meta(&self, bucket: &str, key: &str, upload_id: &str) -> Result<UploadMeta> {
        match &self.backend {
            Backend::Directory(_) => {
                let (bucket, key, upload_id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
                self.run(move |e| e.upload_meta(&bucket, &key, &upload_id)).await
            }
            Backend::Sql(sql) => sql.upload_meta(bucket, key, upload_id).await,
        }
    }

    /// Commits `data` as part `part.number` (1..=10000, else `InvalidPart`) of the upload, replacing a previous
    /// part with that number. The store sets `stored_size` and `last_modified`.
    pub async fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part: PartMeta,
        data: StagedFile,
    ) -> Result<PartMeta> {
        match &self.backend {
            Backend::Directory(_) => {
                let (bucket, key, upload_id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
                self.run(move |e| e.put_part(&bucket, &key, &upload_id, part, data)).await
            }
            Backend::Sql(sql) => sql.put_part(bucket, key, upload_id, part, data).await,
        }
    }

    /// The upload's parts, sorted by number.
    pub async fn list_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<Vec<PartMeta>> {
        match &self.backend {
            Backend::Directory(_) => {
                let (bucket, key, upload_id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
                self.run(move |e| e.list_parts(&bucket, &key, &upload_id)).await
            }
            Backend::Sql(sql) => sql.list_parts(bucket, key, upload_id).await,
        }
    }

    /// Completes the upload: the chosen parts (in the given order) become the object's data without copying,
    /// `meta.parts` is filled from the stored parts, the store sets `last_modified`, and the upload with its unused
    /// parts is deleted. `InvalidPart(n)` if `n` was never uploaded or is listed twice. ETag, size and part-size
    /// validation is the caller's job (via `list_parts`). A caller that computed values from the parts (the ETag,
    /// checksums, an encryption commitment) passes them, as `list_parts` returned them, in `meta.parts`: a part
    /// uploaded again since is `InvalidPart(n)`, and nothing changes.
    pub async fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[u32],
        meta: ObjectMeta,
    ) -> Result<ObjectMeta> {
        match &self.backend {
            Backend::Directory(_) => {
                let (bucket, key, upload_id, parts) =
                    (bucket.to_owned(), key.to_owned(), upload_id.to_owned(), parts.to_vec());
                self.run(move |e| e.complete_upload(&bucket, &key, &upload_id, &parts, meta)).await
            }
            Backend::Sql(sql) => sql.complete_upload(bucket, key, upload_id, parts, meta).await,
        }
    }

    /// Deletes the upload and its parts. `NoSuchUpload` if unknown.
    pub async fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        match &self.backend {
            Backend::Directory(_) => {
                let (bucket, key, upload_id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
                self.run(move |e| e.abort_upload(&bucket, &key, &upload_id)).await
            }
            Backend::Sql(sql) => sql.abort_upload(bucket, key, upload_id).await,
        }
    }

    /// Checks that the data directory takes durable writes right now: creates a small file in the temp directory,
    /// writes and fsyncs it, and removes it. Readiness checks call it; it runs to completion even when the caller
    /// gives up waiting.
    pub async fn check_writable(&self) -> Result<()> {
        match &self.backend {
            Backend::Directory(_) => self.run(|e| e.check_writable()).await,
            Backend::Sql(sql) => sql.check_writable().await,
        }
    }

    /// Saves (creates or replaces, atomically and durably) the record of a long-running job. The record is the
    /// caller's JSON; `id` is 1 to 64 lowercase letters, digits and `-`.
    pub async fn save_job(&self, id: &str, record: RawJson) -> Result<()> {
        match &self.backend {
            Backend::Directory(_) => {
                let id = id.to_owned();
                self.run(move |e| e.save_job(&id, &record)).await
            }
            Backend::Sql(sql) => sql.save_job(id, &record).await,
        }
    }

    /// Every saved job record, in no particular order.
    pub async fn job_records(&self) -> Result<Vec<RawJson>> {
        match &self.backend {
            Backend::Directory(_) => self.run(|e| e.job_records()).await,
            Backend::Sql(sql) => sql.job_records().await,
        }
    }

    /// The identity policies attached to users through the admin API, by access key (opaque documents).
    pub async fn user_policies(&self) -> Result<std::collections::BTreeMap<String, String>> {
        match &self.backend {
            Backend::Directory(_) => self.run(|e| e.user_policies()).await,
            Backend::Sql(sql) => sql.user_policies().await,
        }
    }

    /// Attaches (`Some`, replacing any) or detaches (`None`) the identity policy of `access_key`, durably.
    pub async fn set_user_policy(&self, access_key: &str, policy: Option<String>) -> Result<()> {
        match &self.backend {
            Backend::Directory(_) => {
                let access_key = access_key.to_owned();
                self.run(move |e| e.set_user_policy(&access_key, policy)).await
            }
            Backend::Sql(sql) => sql.set_user_policy(access_key, policy).await,
        }
    }

    /// Removes from the metadata's own files what earlier versions of rows held (replaced or deleted records, their
    /// inline data, old sealed keys), so that a copy of the data directory no longer carries them: with SQLite, a
    /// truncating WAL checkpoint (deleted content is zeroed as it is freed). The directory engine replaces whole
    /// files, so it has nothing to do; PostgreSQL keeps old row versions until its VACUUM.
    pub async fn erase_replaced(&self) -> Result<()> {
        match &self.backend {
            Backend::Directory(_) => Ok(()),
            Backend::Sql(sql) => sql.erase_replaced().await,
        }
    }

    /// What emptying the temp directory reclaimed when this store was opened (leftovers of the previous run).
    pub fn swept_at_open(&self) -> Reclaimed {
        match &self.backend {
            Backend::Directory(engine) => engine.swept_at_open(),
            Backend::Sql(sql) => sql.swept_at_open(),
        }
    }

    /// Removes what crashes left behind that no record references (see `garbage.rs`): temp files untouched for
    /// `temp_min_age`, data files no record names, object directories never committed, completed uploads. Never
    /// touches a file a record references, nor the directory of a record that cannot be read.
    pub async fn collect_garbage(&self, temp_min_age: std::time::Duration) -> Result<Reclaimed> {
        match &self.backend {
            Backend::Directory(_) => self.run(move |e| e.collect_garbage(temp_min_age)).await,
            Backend::Sql(sql) => sql.collect_garbage(temp_min_age).await,
        }
    }

    /// How long data files no record names any more stay readable before garbage collection deletes them, for a
    /// store whose data is remote (see [`Store::delete_released_data`]); `None` when they are removed at once.
    pub fn release_grace(&self) -> Option<std::time::Duration> {
        match &self.backend {
            Backend::Directory(_) => None,
            Backend::Sql(sql) => sql.release_grace(),
        }
    }

    /// Deletes the remote data files released longer ago than [`Store::release_grace`] (also part of
    /// [`Store::collect_garbage`], which lists the whole bucket besides).
    pub async fn delete_released_data(&self) -> Result<Reclaimed> {
        match &self.backend {
            Backend::Directory(_) => Ok(Reclaimed::default()),
            Backend::Sql(sql) => sql.delete_released_data().await,
        }
    }

    /// Ids of the bucket's stored objects after `after`, in order, at most `limit`: what a scrub walks. The directory
    /// engine lists every object directory (see [`crate::layout`]), whether or not its record reads; the SQL engine
    /// lists every key with a current object or a past version.
    pub async fn object_ids(&self, bucket: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        match &self.backend {
            Backend::Directory(_) => {
                let (bucket, after) = (bucket.to_owned(), after.map(str::to_owned));
                self.run(move |e| e.object_ids(&bucket, after.as_deref(), limit)).await
            }
            Backend::Sql(sql) => sql.object_ids(bucket, after, limit).await,
        }
    }

    /// Checks the stored object `id` of `bucket` (from [`Store::object_ids`]) if its key starts with `prefix`:
    /// its record, and every stored byte against the checksums kept for it; on the SQL engine, every stored version
    /// of the key. Reads everything, changes nothing.
    /// `Err` only when it could not be checked (an I/O error other than damage).
    pub async fn scrub_object(&self, bucket: &str, id: &str, prefix: &str) -> Result<ScrubFinding> {
        match &self.backend {
            Backend::Directory(_) => {
                let (bucket, id, prefix) = (bucket.to_owned(), id.to_owned(), prefix.to_owned());
                self.run(move |e| e.scrub_object(&bucket, &id, &prefix)).await
            }
            Backend::Sql(sql) => sql.scrub_object(bucket, id, prefix).await,
        }
    }

    /// In-progress uploads whose key starts with `prefix`, sorted by key, then initiation time.
    pub async fn list_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<UploadInfo>> {
        match &self.backend {
            Backend::Directory(_) => {
                let (bucket, prefix) = (bucket.to_owned(), prefix.to_owned());
                self.run(move |e| e.list_uploads(&bucket, &prefix)).await
            }
            Backend::Sql(sql) => sql.list_uploads(bucket, prefix).await,
        }
    }
}
