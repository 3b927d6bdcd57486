//! The SQL metadata engine: buckets, object records, multipart uploads and parts, job records and user policies as
//! rows of SQLite (embedded) or PostgreSQL, with the stored bytes in a [`DataDir`] under opaque names.
//!
//! ```text
//! DATA/coffer.sqlite (+ -wal, -shm)   the metadata, SQLite in WAL mode with full fsync on commit
//! DATA/data/<xx>/data-<id>            stored bytes of one part (see data_dir.rs)
//! DATA/.coffer/tmp/                   staged writes; emptied at open
//! DATA/.coffer/record-mac.key         the key of the record MACs
//! DATA/.coffer/metadata-engine        marks the directory as the SQL engine's: the directory engine refuses it
//! ```
//!
//! Rows keep the same signed records as the directory engine (`layout.rs`): each record's MAC is bound to its
//! place (`db/objects/<bucket>/<key>`, …), so an edited or moved row fails closed. Every change of an object is one
//! transaction, which also keeps the `data_files` table of referenced data files; a listing is a range query on
//! `(bucket, key)`: no index in memory, no per-key RAM, the first page right after a start.
//!
//! Concurrent writers of one object (or of a bucket and its objects) are serialized: with SQLite by one in-process
//! writer lock (SQLite has one writer; the lock keeps deferred transactions from meeting `SQLITE_BUSY`), with
//! PostgreSQL, which several nodes share, by transaction-scoped advisory locks on the object's and the bucket's
//! names. Reads run concurrently. The SQL is common to both (`$n` parameters, `ON CONFLICT` upserts); only the
//! schema's types and the locks differ ([`Dialect`]).

mod buckets;
mod import;
mod listing;
mod maintenance;
mod multipart;
mod objects;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::digest::{digest, SHA256};
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use time::OffsetDateTime;
use tokio::sync::{Mutex, MutexGuard};

use crate::cluster::ClusterKey;
use crate::data_dir::DataDir;
use crate::engine::SQL_ENGINE_MARKER;
use crate::error::{Result, StoreError};
use crate::fsio::{create_private_dir_all, TempPath};
use crate::garbage::Reclaimed;
use crate::layout::{open_record, sign, BucketRecord, Record};
use crate::record_mac::RecordMac;

const SQLITE_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS buckets (name TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL, key BLOB NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL, modified INTEGER NOT NULL,
    record TEXT NOT NULL, PRIMARY KEY (bucket, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uploads (
    bucket TEXT NOT NULL, upload_id TEXT NOT NULL, key BLOB NOT NULL, initiated INTEGER NOT NULL,
    record TEXT NOT NULL, PRIMARY KEY (bucket, upload_id));
CREATE INDEX IF NOT EXISTS uploads_by_key ON uploads (bucket, key, initiated, upload_id);
CREATE TABLE IF NOT EXISTS parts (
    bucket TEXT NOT NULL, upload_id TEXT NOT NULL, number INTEGER NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (bucket, upload_id, number));
CREATE TABLE IF NOT EXISTS data_files (name TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS user_policies (access_key TEXT PRIMARY KEY, record TEXT NOT NULL);
"#;

/// As [`SQLITE_SCHEMA`]; bucket names collate by byte (`"C"`) whatever the database's locale. Object keys are
/// bytes in both: they sort as S3 lists them (UTF-8 byte order), and may hold NUL, which PostgreSQL's text cannot.
const POSTGRES_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS buckets (name TEXT COLLATE "C" PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT COLLATE "C" NOT NULL, key BYTEA NOT NULL, size BIGINT NOT NULL, etag TEXT NOT NULL,
    modified BIGINT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (bucket, key));
CREATE TABLE IF NOT EXISTS uploads (
    bucket TEXT COLLATE "C" NOT NULL, upload_id TEXT NOT NULL, key BYTEA NOT NULL,
    initiated BIGINT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (bucket, upload_id));
CREATE INDEX IF NOT EXISTS uploads_by_key ON uploads (bucket, key, initiated, upload_id);
CREATE TABLE IF NOT EXISTS parts (
    bucket TEXT COLLATE "C" NOT NULL, upload_id TEXT NOT NULL, number BIGINT NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (bucket, upload_id, number));
CREATE TABLE IF NOT EXISTS data_files (name TEXT PRIMARY KEY);
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
    data: Arc<DataDir>,
    tmp_dir: PathBuf,
    macs: RecordMac,
    writer: Mutex<()>,
    swept_at_open: Reclaimed,
}

type Tx = Transaction<'static, Any>;

/// A store error from the database.
fn db_error(e: sqlx::Error) -> StoreError {
    StoreError::Io(io::Error::other(format!("metadata database: {e}")))
}

impl SqlEngine {
    /// Opens (creating if needed) the engine under `root` with the metadata in SQLite (`root/coffer.sqlite`), or in
    /// the PostgreSQL database at `postgres_url`. A directory in the directory engine's format is refused: it must
    /// be imported first.
    pub(crate) async fn open(
        root: &Path,
        postgres_url: Option<&str>,
        cluster: Option<&ClusterKey>,
    ) -> Result<SqlEngine> {
        if root.join("buckets").exists() {
            return Err(StoreError::Io(io::Error::other(format!(
                "{} holds data in the directory format: import it first with `coffer migrate --data {}` (with the \
                 same --metadata settings), or start with --metadata directory",
                root.display(),
                root.display()
            ))));
        }
        Self::open_for_import(root, postgres_url, cluster).await
    }

    /// [`SqlEngine::open`] without the check for directory-format data (`coffer migrate` imports it). Records are
    /// signed with the `cluster` key when one is given, else with the data directory's own key.
    pub(crate) async fn open_for_import(
        root: &Path,
        postgres_url: Option<&str>,
        cluster: Option<&ClusterKey>,
    ) -> Result<SqlEngine> {
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
        let data = Arc::new(DataDir::open(root.join("data"))?);
        let macs = match cluster {
            Some(key) => RecordMac::from_cluster(key, &coffer_dir),
            None => RecordMac::open(&coffer_dir, data.root(), &tmp_dir)?,
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
        Ok(SqlEngine { pool, dialect, data, tmp_dir, macs, writer: Mutex::new(()), swept_at_open })
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

    /// A write transaction; with SQLite, under the writer lock.
    async fn write(&self) -> Result<(Option<MutexGuard<'_, ()>>, Tx)> {
        let guard = match self.dialect {
            Dialect::Sqlite => Some(self.writer.lock().await),
            Dialect::Postgres => None,
        };
        let tx = self.pool.begin().await.map_err(db_error)?;
        Ok((guard, tx))
    }

    /// Serializes, until `tx` ends, the writers of one name: an object (`object/<bucket>/<key>`), or a bucket
    /// (`bucket/<name>`: shared by writers of its contents, exclusive for its deletion). With SQLite the writer lock
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

    /// Locks object `key` of `bucket` for a change, and its bucket's contents.
    async fn lock_object(&self, tx: &mut Tx, bucket: &str, key: &str) -> Result<()> {
        self.lock_bucket_contents(tx, bucket).await?;
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

    /// The record of an existing bucket.
    async fn bucket_record(&self, name: &str) -> Result<BucketRecord> {
        let row = sqlx::query("SELECT record FROM buckets WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        let row = row.ok_or(StoreError::NoSuchBucket)?;
        self.read_record(row.get::<&str, _>(0), &bucket_place(name))
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

fn bucket_place(name: &str) -> String {
    format!("db/buckets/{name}")
}

fn object_place(bucket: &str, key: &str) -> String {
    format!("db/objects/{bucket}/{key}")
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
