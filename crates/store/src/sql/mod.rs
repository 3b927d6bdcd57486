//! The SQL metadata engine: buckets, object records, multipart uploads and parts, job records and user policies as
//! rows of SQLite (embedded) or PostgreSQL, with the stored bytes under opaque names in the data directory or a
//! bucket of an S3-compatible cluster ([`DataEngine`]).
//!
//! ```text
//! DATA/coffer.sqlite (+ -wal, -shm)   the metadata, SQLite in WAL mode with full fsync on commit
//! DATA/data/<xx>/data-<id>            stored bytes of one part (see data_dir.rs), or <bucket>/<prefix>data-<id>
//!                                     with the S3 data engine (see s3_data.rs)
//! DATA/.coffer/tmp/                   staged writes; emptied at open
//! DATA/.coffer/record-mac.key         the key of the record MACs
//! DATA/.coffer/metadata-engine        marks the directory as the SQL engine's: the directory engine refuses it
//! ```
//!
//! Rows keep the same signed records as the directory engine (`layout.rs`): each record's MAC is bound to its
//! place (`db/objects/<bucket>/<key>`, `db/versions/<bucket>/<key>/<version>`, …), so an edited or moved row fails
//! closed. `objects` holds each key's current version when it is an object; the noncurrent versions and the delete
//! markers of versioned buckets are rows of `versions` (`versions.rs`). Every change of an object is one
//! atomic change (`commit.rs`: its own transaction, or with SQLite a savepoint in a group commit), which also keeps
//! the `data_files` table of referenced data files; a listing is a range query on `(bucket, key)`: no index in
//! memory, no per-key RAM, the first page right after a start. With the S3 data engine that change also records the
//! remote files it stopped naming in `released_data_files`, for their deletion after the grace period;
//! `data_location` records where the data is, so that a node configured with another place is refused instead of
//! finding every object missing.
//!
//! Concurrent writers of one object (or of a bucket and its objects) are serialized: with SQLite by its one
//! committer task, which runs the changes one after the other (SQLite has one writer; the committer and the
//! checkpoints of [`SqlEngine::erase_replaced`] share a writer lock, so no transaction meets `SQLITE_BUSY`), with
//! PostgreSQL, which several nodes share, by transaction-scoped advisory locks on the object's and the bucket's
//! names. Reads run concurrently, on the pool's other connections. The SQL is common to both (`$n` parameters,
//! `ON CONFLICT` upserts); only the schema's types and the locks differ ([`Dialect`]).

mod buckets;
mod commit;
mod import;
mod listing;
mod maintenance;
mod multipart;
mod objects;
mod version_listing;
mod versions;

use std::collections::HashMap;
use std::fmt::Display;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::digest::{digest, SHA256};
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use time::OffsetDateTime;
use tokio::sync::{mpsc, Mutex};

use crate::cluster::ClusterKey;
use crate::data_engine::DataEngine;
use crate::engine::SQL_ENGINE_MARKER;
use crate::error::{Result, StoreError};
use crate::fsio::{create_private_dir_all, TempPath};
use crate::garbage::Reclaimed;
use crate::layout::{open_record, sign, BucketRecord, Record};
use crate::record_mac::RecordMac;
use crate::s3_data::DataLocation;

const SQLITE_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS buckets (name TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL, key BLOB NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL, modified INTEGER NOT NULL,
    record TEXT NOT NULL, version_id TEXT, PRIMARY KEY (bucket, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS versions (
    bucket TEXT NOT NULL, key BLOB NOT NULL, rank INTEGER NOT NULL, version_id TEXT NOT NULL,
    delete_marker INTEGER NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL, modified INTEGER NOT NULL, record TEXT,
    PRIMARY KEY (bucket, key, rank)) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS versions_by_id ON versions (bucket, key, version_id);
CREATE TABLE IF NOT EXISTS uploads (
    bucket TEXT NOT NULL, upload_id TEXT NOT NULL, key BLOB NOT NULL, initiated INTEGER NOT NULL,
    record TEXT NOT NULL, PRIMARY KEY (bucket, upload_id));
CREATE INDEX IF NOT EXISTS uploads_by_key ON uploads (bucket, key, initiated, upload_id);
CREATE TABLE IF NOT EXISTS parts (
    bucket TEXT NOT NULL, upload_id TEXT NOT NULL, number INTEGER NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (bucket, upload_id, number));
CREATE TABLE IF NOT EXISTS data_files (name TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS released_data_files (name TEXT PRIMARY KEY, released INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS data_location (id INTEGER PRIMARY KEY, location TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS user_policies (access_key TEXT PRIMARY KEY, record TEXT NOT NULL);
"#;

/// As [`SQLITE_SCHEMA`]; bucket names collate by byte (`"C"`) whatever the database's locale. Object keys are
/// bytes in both: they sort as S3 lists them (UTF-8 byte order), and may hold NUL, which PostgreSQL's text cannot.
const POSTGRES_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS buckets (name TEXT COLLATE "C" PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT COLLATE "C" NOT NULL, key BYTEA NOT NULL, size BIGINT NOT NULL, etag TEXT NOT NULL,
    modified BIGINT NOT NULL, record TEXT NOT NULL, version_id TEXT, PRIMARY KEY (bucket, key));
CREATE TABLE IF NOT EXISTS versions (
    bucket TEXT COLLATE "C" NOT NULL, key BYTEA NOT NULL, rank BIGINT NOT NULL, version_id TEXT NOT NULL,
    delete_marker BIGINT NOT NULL, size BIGINT NOT NULL, etag TEXT NOT NULL, modified BIGINT NOT NULL, record TEXT,
    PRIMARY KEY (bucket, key, rank));
CREATE UNIQUE INDEX IF NOT EXISTS versions_by_id ON versions (bucket, key, version_id);
CREATE TABLE IF NOT EXISTS uploads (
    bucket TEXT COLLATE "C" NOT NULL, upload_id TEXT NOT NULL, key BYTEA NOT NULL,
    initiated BIGINT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (bucket, upload_id));
CREATE INDEX IF NOT EXISTS uploads_by_key ON uploads (bucket, key, initiated, upload_id);
CREATE TABLE IF NOT EXISTS parts (
    bucket TEXT COLLATE "C" NOT NULL, upload_id TEXT NOT NULL, number BIGINT NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (bucket, upload_id, number));
CREATE TABLE IF NOT EXISTS data_files (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS released_data_files (name TEXT PRIMARY KEY, released BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS data_location (id BIGINT PRIMARY KEY, location TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS user_policies (access_key TEXT PRIMARY KEY, record TEXT NOT NULL);
"#;

/// What differs between the databases: the schema and how writers are serialized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}
const DATABASE_FILE: &str = "coffer.sqlite";

#[derive(Debug)]
pub(crate) struct SqlEngine {
    pool: AnyPool,
    dialect: Dialect,
    data: DataEngine,
    tmp_dir: PathBuf,
    macs: RecordMac,
    /// Held by a group commit or a WAL checkpoint (SQLite).
    writer: Mutex<()>,
    /// The queue of the committer task (SQLite; `commit.rs`).
    changes: Option<commit::Changes>,
    /// Bucket records read outside a change (SQLite: no other process writes its database; a PostgreSQL database
    /// is shared by other servers, whose changes a copy here would miss).
    buckets: Option<BucketCache>,
    swept_at_open: Reclaimed,
}

type Tx = Transaction<'static, Any>;

/// A store error from the database.
fn db_error(e: impl Display) -> StoreError {
    StoreError::Io(io::Error::other(format!("metadata database: {e}")))
}

impl SqlEngine {
    /// Opens (creating if needed) the engine under `root` with the metadata in SQLite (`root/coffer.sqlite`), or in
    /// the PostgreSQL database at `postgres_url`, and the data at `data`. A directory in the directory engine's
    /// format is refused: it must be imported first.
    pub(crate) async fn open(
        root: &Path,
        postgres_url: Option<&str>,
        data: &DataLocation,
        cluster: Option<&ClusterKey>,
    ) -> Result<Arc<SqlEngine>> {
        if root.join("buckets").exists() {
            return Err(StoreError::Io(io::Error::other(format!(
                "{} holds data in the directory format, which the SQL metadata engine (SQLite, the default, or \
                 PostgreSQL) does not read: import it with `coffer migrate --data {}` (with the same --metadata \
                 settings), or keep it with --metadata directory",
                root.display(),
                root.display()
            ))));
        }
        Self::open_for_import(root, postgres_url, data, cluster).await
    }

    /// [`SqlEngine::open`] without the check for directory-format data (`coffer migrate` imports it). Records are
    /// signed with the `cluster` key when one is given, else with the data directory's own key.
    pub(crate) async fn open_for_import(
        root: &Path,
        postgres_url: Option<&str>,
        location: &DataLocation,
        cluster: Option<&ClusterKey>,
    ) -> Result<Arc<SqlEngine>> {
        let coffer_dir = root.join(".coffer");
        let tmp_dir = coffer_dir.join("tmp");
        create_private_dir_all(&tmp_dir)?;
        let mut swept_at_open = Reclaimed::default();
        for entry in std::fs::read_dir(&tmp_dir)? {
            swept_at_open.remove(&entry?.path());
        }
        let marker = coffer_dir.join(SQL_ENGINE_MARKER);
        if !marker.exists() {
            let mut file = crate::fsio::create_private_file(&marker)?;
            std::io::Write::write_all(&mut file, b"sql\n")?;
            file.sync_all()?;
            crate::fsio::fsync_dir(&coffer_dir)?;
        }
        let data = DataEngine::open(&root.join("data"), location).await?;
        // Records older than record MACs can only be next to local data files (the temp directory is empty now).
        let data_root = match &data {
            DataEngine::Directory(dir) => dir.root().to_path_buf(),
            DataEngine::S3(_) => tmp_dir.clone(),
        };
        let macs = match cluster {
            Some(key) => RecordMac::from_cluster(key, &coffer_dir),
            None => RecordMac::open(&coffer_dir, &data_root, &tmp_dir)?,
        };
        sqlx::any::install_default_drivers();
        let (dialect, url) = match postgres_url {
            Some(url) => (Dialect::Postgres, url.to_owned()),
            None => {
                let path = root.join(DATABASE_FILE);
                let path = path
                    .to_str()
                    .ok_or_else(|| StoreError::Io(io::Error::other("the data directory's path is not UTF-8")))?;
                (Dialect::Sqlite, format!("sqlite://{path}?mode=rwc"))
            }
        };
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            // An embedded database's connection cannot break as a network one can: no round trip to test it.
            .test_before_acquire(dialect == Dialect::Postgres)
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        // WAL: readers never wait for the writer; FULL: a commit is on disk when it returns;
                        // secure_delete: content freed by an update or delete is zeroed, not left in free space.
                        connection
                            .execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; \
                                 PRAGMA secure_delete = ON;",
                            )
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(db_error)?;
        let schema = match dialect {
            Dialect::Sqlite => SQLITE_SCHEMA,
            Dialect::Postgres => POSTGRES_SCHEMA,
        };
        sqlx::raw_sql(schema).execute(&pool).await.map_err(db_error)?;
        add_objects_version_column(&pool, dialect).await?;
        check_data_location(&pool, location).await?;
        Ok(Arc::new_cyclic(|engine| {
            let changes = (dialect == Dialect::Sqlite).then(|| {
                let (changes, queue) = mpsc::unbounded_channel();
                tokio::spawn(commit::run_committer(engine.clone(), queue));
                changes
            });
            let buckets = (dialect == Dialect::Sqlite).then(BucketCache::default);
            SqlEngine { pool, dialect, data, tmp_dir, macs, writer: Mutex::new(()), changes, buckets, swept_at_open }
        }))
    }

    /// See [`crate::Store::erase_replaced`]: the WAL's older frames still hold what later frames replaced.
    pub(crate) async fn erase_replaced(&self) -> Result<()> {
        if self.dialect == Dialect::Sqlite {
            let _writer = self.writer.lock().await;
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await.map_err(db_error)?;
        }
        Ok(())
    }

    pub(crate) fn swept_at_open(&self) -> Reclaimed {
        self.swept_at_open
    }

    pub(crate) fn tmp_dir(&self) -> &Path {
        &self.tmp_dir
    }

    /// Serializes, until `tx` ends, the writers of one name: an object (`object/<bucket>/<key>`), or a bucket
    /// (`bucket/<name>`: shared by writers of its contents, exclusive for its deletion). With SQLite the committer
    /// already does.
    async fn lock(&self, tx: &mut Tx, name: &str, exclusive: bool) -> Result<()> {
        if self.dialect == Dialect::Sqlite {
            return Ok(());
        }
        let hash = digest(&SHA256, name.as_bytes());
        let id = i64::from_be_bytes(hash.as_ref()[..8].try_into().expect("SHA-256 is 32 bytes"));
        let sql =
            if exclusive { "SELECT pg_advisory_xact_lock($1)" } else { "SELECT pg_advisory_xact_lock_shared($1)" };
        sqlx::query(sql).bind(id).execute(&mut **tx).await.map_err(db_error)?;
        Ok(())
    }

    /// Locks bucket `name` for a change of its contents (shared) and checks that it exists.
    async fn lock_bucket_contents(&self, tx: &mut Tx, name: &str) -> Result<()> {
        self.lock(tx, &format!("bucket/{name}"), false).await?;
        Self::bucket_exists(tx, name).await
    }

    /// Locks object `key` of `bucket` for a change, and its bucket's contents. The caller's read of the object
    /// ([`SqlEngine::current`]) checks that the bucket exists.
    async fn lock_object(&self, tx: &mut Tx, bucket: &str, key: &str) -> Result<()> {
        self.lock(tx, &format!("bucket/{bucket}"), false).await?;
        self.lock(tx, &format!("object/{bucket}/{key}"), true).await
    }

    /// Parses and checks a record read from the row at `place`.
    fn read_record<T: Record>(&self, text: &str, place: &str) -> Result<T> {
        Ok(open_record(text.as_bytes(), &self.macs, place, place)?)
    }

    /// Signs `record` for `place` and returns its text.
    fn seal<T: Record>(&self, record: &mut T, place: &str) -> Result<String> {
        sign(record, &self.macs, place)?;
        serde_json::to_string(record).map_err(|e| StoreError::Io(io::Error::other(e)))
    }

    /// The record of an existing bucket (in `tx`'s view when given; else from the cache when it holds it).
    async fn bucket_record(&self, tx: Option<&mut Tx>, name: &str) -> Result<BucketRecord> {
        let query = sqlx::query("SELECT record FROM buckets WHERE name = $1").bind(name);
        let (row, cache) = match tx {
            Some(tx) => (query.fetch_optional(&mut **tx).await, None),
            None => {
                let cache = self.buckets.as_ref();
                if let Some(record) = cache.and_then(|cache| cache.get(name)) {
                    return Ok(record);
                }
                let generation = cache.map(BucketCache::generation);
                (query.fetch_optional(&self.pool).await, cache.zip(generation))
            }
        };
        let row = row.map_err(db_error)?.ok_or(StoreError::NoSuchBucket)?;
        let record: BucketRecord = self.read_record(row.get::<&str, _>(0), &bucket_place(name))?;
        if let Some((cache, generation)) = cache {
            cache.keep(generation, name, &record);
        }
        Ok(record)
    }

    /// Drops what the cache holds of bucket `name`: called once a change of it ended, committed or not.
    fn bucket_changed(&self, name: &str) {
        if let Some(cache) = &self.buckets {
            cache.forget(name);
        }
    }

    async fn bucket_exists(tx: &mut Tx, name: &str) -> Result<()> {
        let found = sqlx::query("SELECT 1 FROM buckets WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_error)?;
        found.map(|_| ()).ok_or(StoreError::NoSuchBucket)
    }

    pub(crate) async fn check_writable(&self) -> Result<()> {
        let probe = TempPath::new(&self.tmp_dir, "probe")?;
        let path = probe.path().to_path_buf();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            use std::io::Write;
            let mut file = crate::fsio::create_private_file(&path)?;
            file.write_all(b"coffer")?;
            file.sync_all()
        })
        .await
        .map_err(|e| StoreError::Io(io::Error::other(e)))??;
        drop(probe);
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db_error)?;
        Ok(())
    }
}

/// Bucket records as last read, with a generation that every change of a bucket moves on: a record read before a
/// change ended is not kept after it, so no reader puts back a version a change replaced.
#[derive(Debug, Default)]
struct BucketCache {
    state: std::sync::Mutex<(u64, HashMap<String, BucketRecord>)>,
}

impl BucketCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, HashMap<String, BucketRecord>)> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, name: &str) -> Option<BucketRecord> {
        self.lock().1.get(name).cloned()
    }

    fn generation(&self) -> u64 {
        self.lock().0
    }

    /// Keeps `record`, read when the generation was `generation`, unless a change ended since.
    fn keep(&self, generation: u64, name: &str, record: &BucketRecord) {
        let mut state = self.lock();
        if state.0 == generation {
            state.1.insert(name.to_owned(), record.clone());
        }
    }

    fn forget(&self, name: &str) {
        let mut state = self.lock();
        state.0 += 1;
        state.1.remove(name);
    }
}

/// Gives the `objects` table of a database created before versioning its `version_id` column (null there: every
/// object then was its key's null version). New tables have it from the schema.
async fn add_objects_version_column(pool: &AnyPool, dialect: Dialect) -> Result<()> {
    let (find, add) = match dialect {
        Dialect::Sqlite => (
            "SELECT COUNT(*) FROM pragma_table_info('objects') WHERE name = 'version_id'",
            "ALTER TABLE objects ADD COLUMN version_id TEXT",
        ),
        // Nodes of a cluster may start together: the second one's addition is then a no-op.
        Dialect::Postgres => (
            "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema() \
             AND table_name = 'objects' AND column_name = 'version_id'",
            "ALTER TABLE objects ADD COLUMN IF NOT EXISTS version_id TEXT",
        ),
    };
    let found: i64 = sqlx::query(find).fetch_one(pool).await.map_err(db_error)?.get(0);
    if found == 0 {
        sqlx::query(add).execute(pool).await.map_err(db_error)?;
    }
    Ok(())
}

/// Records where the data is in a new database, and refuses another place than the recorded one. A database from
/// before the record has its data in the directory if it references any data file.
async fn check_data_location(pool: &AnyPool, location: &DataLocation) -> Result<()> {
    let current = location.identity();
    let has_data = sqlx::query("SELECT 1 FROM data_files LIMIT 1").fetch_optional(pool).await.map_err(db_error)?;
    let first = if has_data.is_some() { DataLocation::Directory.identity() } else { current.clone() };
    sqlx::query("INSERT INTO data_location (id, location) VALUES (1, $1) ON CONFLICT (id) DO NOTHING")
        .bind(&first)
        .execute(pool)
        .await
        .map_err(db_error)?;
    let row = sqlx::query("SELECT location FROM data_location WHERE id = 1").fetch_one(pool).await.map_err(db_error)?;
    let recorded: String = row.get(0);
    if recorded != current {
        return Err(StoreError::Io(io::Error::other(format!(
            "the metadata database keeps its data in {recorded}, but this server was started with its data in \
             {current}: start it with the data engine settings the database was created with"
        ))));
    }
    Ok(())
}

fn bucket_place(name: &str) -> String {
    format!("db/buckets/{name}")
}

fn object_place(bucket: &str, key: &str) -> String {
    format!("db/objects/{bucket}/{key}")
}

/// The place of a noncurrent version's record (`version`: its id, or "null"): a row moved to another key or
/// version fails its check.
fn version_place(bucket: &str, key: &str, version: &str) -> String {
    format!("db/versions/{bucket}/{key}/{version}")
}

fn upload_place(bucket: &str, upload_id: &str) -> String {
    format!("db/uploads/{bucket}/{upload_id}")
}

fn part_place(bucket: &str, upload_id: &str, number: u32) -> String {
    format!("db/parts/{bucket}/{upload_id}/{number}")
}

/// Nanoseconds since the epoch, as the listing columns keep times.
fn nanos(time: OffsetDateTime) -> i64 {
    i64::try_from(time.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

fn from_nanos(nanos: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// An object key read back from its bytes.
fn key_of(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| StoreError::InvalidMeta("a stored object key is not UTF-8"))
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
