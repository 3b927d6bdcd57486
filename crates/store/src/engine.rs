//! The blocking core behind [`crate::Store`]: paths, locks, bucket operations, the bucket records in memory and
//! the per-bucket key index.
//! Object and multipart operations extend [`Engine`] in `objects.rs` and `multipart.rs`.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use time::OffsetDateTime;

use crate::error::{Result, StoreError};
use crate::fsio::{
    create_private_dir, create_private_dir_all, create_private_file, fsync_dir, write_json_atomic, TempPath,
};
use crate::garbage::Reclaimed;
use crate::layout::{load, sign, BucketRecord, ObjectRecord, Record, BUCKET_FILE, FORMAT_VERSION, OBJECT_FILE};
use crate::listing::{list_page, IndexEntry, IndexEtag, KeyIndex, ListPage, ListQuery};
use crate::locks::LockStripes;
use crate::meta::{BucketInfo, RawJson, Versioning};
use crate::names::{object_dir_name, validate_bucket_name};
use crate::record_mac::RecordMac;

const OBJECTS_DIR: &str = "objects";
/// `DATA/.coffer/<this>` marks a data directory of the SQL engine (written when it first opens it).
pub(crate) const SQL_ENGINE_MARKER: &str = "metadata-engine";
const UPLOADS_DIR: &str = "uploads";

/// A bucket's key index; `None` until the first listing loads it from disk.
type SharedIndex = Arc<RwLock<Option<KeyIndex>>>;

/// Lock order, outermost first: `namespace`, an object stripe, an upload stripe, an index or `buckets`.
#[derive(Debug)]
pub(crate) struct Engine {
    buckets_dir: PathBuf,
    tmp_dir: PathBuf,
    jobs_dir: PathBuf,
    /// Written by bucket create/delete/config changes; read by every operation that changes a bucket's contents,
    /// so a bucket cannot vanish between "it exists" and the commit into it.
    namespace: RwLock<()>,
    object_locks: LockStripes,
    upload_locks: LockStripes,
    indexes: Mutex<HashMap<String, SharedIndex>>,
    buckets: BucketRecords,
    macs: RecordMac,
    /// What emptying the temp directory at open reclaimed.
    swept_at_open: Reclaimed,
}

/// The bucket records read so far, by name. Every object operation checks its bucket's record (a PUT twice), and
/// reading `bucket.json` from disk each time cost up to a tenth of a small GET's server CPU; the records change
/// only through this engine. A record missing here is loaded with the write lock held, and every change replaces or
/// drops the entry after it is on disk, so a record read before a change cannot outlive it.
type BucketRecords = RwLock<HashMap<String, Arc<BucketRecord>>>;

impl Engine {
    /// Creates the layout under `root`, empties the temp directory (nothing can be in flight at open) and removes
    /// uploads whose completion was committed before a crash.
    pub(crate) fn open(root: &Path) -> Result<Engine> {
        if root.join(".coffer").join(SQL_ENGINE_MARKER).exists() {
            // Its buckets are rows now: opened as a directory it would look empty.
            return Err(StoreError::Io(io::Error::other(format!(
                "{} holds the data of the SQL metadata engine: start with --metadata sqlite or postgres",
                root.display()
            ))));
        }
        Self::open_for_import(root)
    }

    /// [`Engine::open`] without the check for the SQL engine's marker: `coffer migrate` writes the marker as it
    /// starts, and an interrupted import opens the directory form again.
    pub(crate) fn open_for_import(root: &Path) -> Result<Engine> {
        let buckets_dir = root.join("buckets");
        let coffer_dir = root.join(".coffer");
        let tmp_dir = coffer_dir.join("tmp");
        let jobs_dir = coffer_dir.join("jobs");
        create_private_dir_all(&buckets_dir)?;
        create_private_dir_all(&tmp_dir)?;
        create_private_dir_all(&jobs_dir)?;
        let mut swept_at_open = Reclaimed::default();
        for entry in fs::read_dir(&tmp_dir)? {
            swept_at_open.remove(&entry?.path());
        }
        if swept_at_open.files > 0 {
            tracing::info!(
                files = swept_at_open.files,
                bytes = swept_at_open.bytes,
                "removed leftover store temp files"
            );
        }
        let macs = RecordMac::open(&coffer_dir, &buckets_dir, &tmp_dir)?;
        let engine = Engine {
            buckets_dir,
            tmp_dir,
            jobs_dir,
            namespace: RwLock::new(()),
            object_locks: LockStripes::new(),
            upload_locks: LockStripes::new(),
            indexes: Mutex::new(HashMap::new()),
            buckets: RwLock::new(HashMap::new()),
            macs,
            swept_at_open,
        };
        let completed = engine.remove_completed_uploads()?;
        if completed > 0 {
            tracing::info!(count = completed, "removed uploads whose completion was committed before a crash");
        }
        Ok(engine)
    }

    pub(crate) fn swept_at_open(&self) -> Reclaimed {
        self.swept_at_open
    }

    pub(crate) fn buckets_dir(&self) -> &Path {
        &self.buckets_dir
    }

    pub(crate) fn tmp_dir(&self) -> &Path {
        &self.tmp_dir
    }

    pub(crate) fn jobs_dir(&self) -> &Path {
        &self.jobs_dir
    }

    /// `DATA/.coffer`: the store's own files (temp files, jobs, the record MAC key, user policies).
    pub(crate) fn coffer_dir(&self) -> &Path {
        self.tmp_dir.parent().unwrap_or(&self.tmp_dir)
    }

    pub(crate) fn macs(&self) -> &RecordMac {
        &self.macs
    }

    /// Creates, writes, fsyncs and removes a probe file in the temp directory.
    pub(crate) fn check_writable(&self) -> Result<()> {
        let probe = self.temp_path("probe")?;
        let mut file = create_private_file(probe.path())?;
        file.write_all(b"coffer")?;
        file.sync_all()?;
        drop(file);
        fs::remove_file(probe.path())?;
        Ok(())
    }

    /// A fresh path in the temp directory, deleted on drop unless persisted.
    pub(crate) fn temp_path(&self, kind: &str) -> io::Result<TempPath> {
        TempPath::new(&self.tmp_dir, kind)
    }

    // ---- records ----------------------------------------------------------------------------------------------

    /// Where a record's MAC places it: its path under `buckets/`.
    fn place(&self, path: &Path) -> String {
        path.strip_prefix(&self.buckets_dir).unwrap_or(path).to_string_lossy().into_owned()
    }

    /// Reads and checks the record at `path` ([`load`]). `Ok(None)` if there is none.
    pub(crate) fn load_record<T: Record>(&self, path: &Path) -> io::Result<Option<T>> {
        load(path, &self.macs, &self.place(path))
    }

    /// Signs `record` for its final place `path`, where it may arrive later (through a directory renamed into place).
    pub(crate) fn sign_record<T: Record>(&self, record: &mut T, path: &Path) -> io::Result<()> {
        sign(record, &self.macs, &self.place(path))
    }

    /// Signs `record` and atomically replaces the file at `path` with it ([`write_json_atomic`]).
    pub(crate) fn write_record<T: Record>(
        &self,
        path: &Path,
        record: &mut T,
        durable_first: &[&Path],
    ) -> io::Result<()> {
        self.sign_record(record, path)?;
        write_json_atomic(&self.tmp_dir, path, record, durable_first)
    }

    // ---- locks -------------------------------------------------------------------------------------------------

    /// Shared namespace lock for operations that change a bucket's contents.
    pub(crate) fn namespace_read(&self) -> RwLockReadGuard<'_, ()> {
        self.namespace.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn namespace_write(&self) -> RwLockWriteGuard<'_, ()> {
        self.namespace.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Serializes commits to one object, identified by its directory.
    pub(crate) fn lock_object(&self, object_dir: &Path) -> MutexGuard<'_, ()> {
        self.object_locks.lock(&object_dir.to_string_lossy())
    }

    /// Serializes commits to one upload.
    pub(crate) fn lock_upload(&self, bucket: &str, upload_id: &str) -> MutexGuard<'_, ()> {
        self.upload_locks.lock(&format!("{bucket}/{upload_id}"))
    }

    // ---- paths -------------------------------------------------------------------------------------------------

    fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.buckets_dir.join(bucket)
    }

    pub(crate) fn objects_dir(&self, bucket: &str) -> PathBuf {
        self.bucket_dir(bucket).join(OBJECTS_DIR)
    }

    pub(crate) fn uploads_dir(&self, bucket: &str) -> PathBuf {
        self.bucket_dir(bucket).join(UPLOADS_DIR)
    }

    /// The directory of object `key` (the key must be validated).
    pub(crate) fn object_dir(&self, bucket: &str, key: &str) -> PathBuf {
        self.objects_dir(bucket).join(object_dir_name(key))
    }

    // ---- buckets -----------------------------------------------------------------------------------------------

    /// The record of an existing bucket. Names that can never be buckets are `NoSuchBucket`, so they never reach
    /// a path.
    pub(crate) fn bucket_record(&self, bucket: &str) -> Result<Arc<BucketRecord>> {
        if let Some(record) = self.buckets.read().unwrap_or_else(PoisonError::into_inner).get(bucket) {
            return Ok(record.clone());
        }
        validate_bucket_name(bucket).map_err(|_| StoreError::NoSuchBucket)?;
        let mut known = self.buckets.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(record) = known.get(bucket) {
            return Ok(record.clone());
        }
        let record = self
            .load_record::<BucketRecord>(&self.bucket_dir(bucket).join(BUCKET_FILE))?
            .ok_or(StoreError::NoSuchBucket)?;
        let record = Arc::new(record);
        known.insert(bucket.to_owned(), record.clone());
        Ok(record)
    }

    /// Forgets what was known of bucket `name`, keeping `record` as its record when given (else the next read
    /// loads it from disk, or finds it gone). Called with the namespace lock held for writing, after the change.
    fn bucket_changed(&self, name: &str, record: Option<BucketRecord>) {
        let mut known = self.buckets.write().unwrap_or_else(PoisonError::into_inner);
        match record {
            Some(record) => known.insert(name.to_owned(), Arc::new(record)),
            None => known.remove(name),
        };
    }

    pub(crate) fn create_bucket(&self, name: &str, owner: Option<&str>) -> Result<()> {
        validate_bucket_name(name)?;
        let _namespace = self.namespace_write();
        let dest = self.bucket_dir(name);
        if dest.exists() {
            return Err(StoreError::BucketAlreadyOwnedByYou);
        }
        // Build the whole bucket in the temp dir and rename it in: it appears complete or not at all.
        let staging = self.temp_path("bucket")?;
        create_private_dir(staging.path())?;
        create_private_dir(&staging.path().join(OBJECTS_DIR))?;
        create_private_dir(&staging.path().join(UPLOADS_DIR))?;
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
        self.sign_record(&mut record, &dest.join(BUCKET_FILE))?;
        write_json_atomic(&self.tmp_dir, &staging.path().join(BUCKET_FILE), &record, &[])?;
        staging.persist(&dest)?;
        fsync_dir(&self.buckets_dir)?;
        self.bucket_changed(name, Some(record));
        self.indexes_map().insert(name.to_owned(), Arc::new(RwLock::new(Some(KeyIndex::new()))));
        Ok(())
    }

    pub(crate) fn delete_bucket(&self, name: &str) -> Result<()> {
        let _namespace = self.namespace_write();
        self.bucket_record(name)?;
        if self.has_objects(name)? {
            return Err(StoreError::BucketNotEmpty);
        }
        let trash = self.temp_path("trash")?;
        fs::rename(self.bucket_dir(name), trash.path())?;
        self.bucket_changed(name, None);
        fsync_dir(&self.buckets_dir)?;
        self.indexes_map().remove(name);
        drop(trash);
        Ok(())
    }

    /// True if any object of the bucket is committed (an object directory with a `meta.json`).
    fn has_objects(&self, bucket: &str) -> Result<bool> {
        for entry in fs::read_dir(self.objects_dir(bucket))? {
            if entry?.path().join(OBJECT_FILE).exists() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub(crate) fn head_bucket(&self, name: &str) -> Result<BucketInfo> {
        let record = self.bucket_record(name)?;
        Ok(BucketInfo {
            name: record.name.clone(),
            created: record.created,
            owner: record.owner.clone(),
            policy: record.policy.clone(),
        })
    }

    pub(crate) fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        let mut buckets = Vec::new();
        for entry in fs::read_dir(&self.buckets_dir)? {
            let Ok(name) = entry?.file_name().into_string() else {
                continue;
            };
            match self.head_bucket(&name) {
                Ok(info) => buckets.push(info),
                Err(StoreError::NoSuchBucket) => {}
                // One damaged bucket record must not hide every other bucket.
                Err(e) => tracing::warn!(error = %e, "skipping unreadable bucket record"),
            }
        }
        buckets.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(buckets)
    }

    pub(crate) fn bucket_encryption(&self, name: &str) -> Result<Option<RawJson>> {
        Ok(self.bucket_record(name)?.encryption.clone())
    }

    pub(crate) fn set_bucket_encryption(&self, name: &str, config: Option<RawJson>) -> Result<()> {
        self.change_bucket(name, |record| record.encryption = config)
    }

    pub(crate) fn set_bucket_policy(&self, name: &str, policy: Option<String>) -> Result<()> {
        self.change_bucket(name, |record| record.policy = policy)
    }

    /// Applies `change` to the bucket's record and writes it.
    fn change_bucket(&self, name: &str, change: impl FnOnce(&mut BucketRecord)) -> Result<()> {
        let _namespace = self.namespace_write();
        let mut record = BucketRecord::clone(&*self.bucket_record(name)?);
        change(&mut record);
        let written = self.write_record(&self.bucket_dir(name).join(BUCKET_FILE), &mut record, &[]);
        // A failed write may still have replaced the file: then the next read finds out from disk.
        self.bucket_changed(name, written.is_ok().then_some(record));
        Ok(written?)
    }

    // ---- key index ---------------------------------------------------------------------------------------------

    fn indexes_map(&self) -> MutexGuard<'_, HashMap<String, SharedIndex>> {
        self.indexes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn index(&self, bucket: &str) -> SharedIndex {
        self.indexes_map().entry(bucket.to_owned()).or_default().clone()
    }

    /// Applies a committed change to the bucket's index if it is loaded (an unloaded index reads the change from
    /// disk when it loads). Callers hold the object's lock, so changes to one key apply in commit order.
    pub(crate) fn index_update(&self, bucket: &str, change: impl FnOnce(&mut KeyIndex)) {
        let index = self.index(bucket);
        let mut guard = index.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(keys) = guard.as_mut() {
            change(keys);
        }
    }

    pub(crate) fn list_objects(&self, bucket: &str, query: &ListQuery) -> Result<ListPage> {
        let _namespace = self.namespace_read();
        self.bucket_record(bucket)?;
        let index = self.index(bucket);
        if let Some(keys) = index.read().unwrap_or_else(PoisonError::into_inner).as_ref() {
            return Ok(list_page(keys, query));
        }
        let mut guard = index.write().unwrap_or_else(PoisonError::into_inner);
        let keys = match &mut *guard {
            Some(keys) => keys,
            unloaded @ None => unloaded.insert(self.scan_objects(bucket)?),
        };
        Ok(list_page(keys, query))
    }

    /// Builds a bucket's index from its object records. Unreadable records are logged and left out rather than
    /// making the whole bucket unlistable.
    fn scan_objects(&self, bucket: &str) -> Result<KeyIndex> {
        let mut keys = KeyIndex::new();
        for entry in fs::read_dir(self.objects_dir(bucket))? {
            let dir = entry?.path();
            match self.load_record::<ObjectRecord>(&dir.join(OBJECT_FILE)) {
                Ok(Some(record)) if dir.file_name() == Some(object_dir_name(&record.meta.key).as_ref()) => {
                    keys.insert(record.meta.key.as_str().into(), index_entry(&record));
                }
                Ok(Some(_)) => {
                    tracing::warn!(path = %dir.display(), "object record does not match its directory")
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "skipping unreadable object record"),
            }
        }
        Ok(keys)
    }
}

/// What the key index keeps of an object record.
pub(crate) fn index_entry(record: &ObjectRecord) -> IndexEntry {
    IndexEntry {
        size: record.meta.size,
        etag: IndexEtag::new(&record.meta.etag),
        last_modified: record.meta.last_modified,
    }
}
