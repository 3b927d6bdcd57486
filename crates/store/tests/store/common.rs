//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

use coffer_store::{DataLocation, ObjectMeta, ObjectReader, RawJson, S3Location, S3SecretKey, StagedFile, Store};
use futures::TryStreamExt;
use tempfile::TempDir;

/// A store in a fresh temp dir (the data dir is `root/data`, so tests can check nothing escapes it).
pub struct Fixture {
    pub root: TempDir,
    pub store: Store,
    engine: Engine,
}

/// The metadata engine of a fixture.
#[derive(Clone)]
enum Engine {
    Directory,
    Sqlite(DataLocation),
    /// The URL of the fixture's own PostgreSQL database.
    Postgres(String, DataLocation),
}

impl Engine {
    /// `COFFER_TEST_ENGINE`: `sql` (SQLite), `postgres` (a new database per fixture on the server at
    /// `COFFER_TEST_POSTGRES_URL`, e.g. `postgres://coffer@127.0.0.1:5432`), or the directory engine. The SQL
    /// engines keep their data as `COFFER_TEST_DATA_S3` says (see [`data_location_from_env`]).
    async fn from_env() -> Engine {
        match std::env::var("COFFER_TEST_ENGINE").as_deref() {
            Ok("sql") => Engine::Sqlite(data_location_from_env()),
            Ok("postgres") => Engine::Postgres(new_postgres_database().await, data_location_from_env()),
            _ => Engine::Directory,
        }
    }

    async fn open(&self, dir: PathBuf) -> Store {
        match self {
            Engine::Directory => Store::open(dir).await,
            Engine::Sqlite(data) => Store::open_sql(dir, None, data).await,
            Engine::Postgres(url, data) => Store::open_sql(dir, Some(url), data).await,
        }
        .unwrap()
    }
}

/// With `COFFER_TEST_DATA_S3` (an S3 endpoint, e.g. SeaweedFS's `http://127.0.0.1:8333`), a prefix of its own in
/// the bucket `COFFER_TEST_DATA_S3_BUCKET` (credentials in `COFFER_TEST_DATA_S3_ACCESS_KEY_ID` and
/// `COFFER_TEST_DATA_S3_SECRET_ACCESS_KEY`), with no grace period: released files go at the next collection.
/// Without it, the data directory.
fn data_location_from_env() -> DataLocation {
    let Ok(endpoint) = std::env::var("COFFER_TEST_DATA_S3") else { return DataLocation::Directory };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} goes with COFFER_TEST_DATA_S3"));
    DataLocation::S3(S3Location {
        endpoint,
        bucket: var("COFFER_TEST_DATA_S3_BUCKET"),
        prefix: format!("store-{}/", hex::encode(rand_bytes())),
        region: "us-east-1".to_owned(),
        access_key_id: var("COFFER_TEST_DATA_S3_ACCESS_KEY_ID"),
        secret_access_key: S3SecretKey::new(var("COFFER_TEST_DATA_S3_SECRET_ACCESS_KEY")),
        release_grace: std::time::Duration::ZERO,
    })
}

impl Fixture {
    async fn on(engine: Engine) -> Fixture {
        let root = tempfile::tempdir().unwrap();
        let store = engine.open(root.path().join("data")).await;
        Fixture { root, store, engine }
    }

    /// A store on the engine `COFFER_TEST_ENGINE` names.
    pub async fn new() -> Fixture {
        Fixture::on(Engine::from_env().await).await
    }

    /// A store on the directory engine whatever `COFFER_TEST_ENGINE` says: for tests of its on-disk form.
    pub async fn directory() -> Fixture {
        Fixture::on(Engine::Directory).await
    }

    pub async fn directory_with_bucket(name: &str) -> Fixture {
        let fixture = Fixture::directory().await;
        fixture.store.create_bucket(name, None).await.unwrap();
        fixture
    }

    /// A store on the SQL engine with SQLite whatever `COFFER_TEST_ENGINE` says: for tests of its rows and files.
    pub async fn sqlite_with_bucket(name: &str) -> Fixture {
        let fixture = Fixture::on(Engine::Sqlite(DataLocation::Directory)).await;
        fixture.store.create_bucket(name, None).await.unwrap();
        fixture
    }

    /// A store with bucket `name` on the SQL engine `COFFER_TEST_ENGINE` names, or on SQLite when it names the
    /// directory engine, which keeps no versions: for tests of versioning.
    pub async fn versioning_with_bucket(name: &str) -> Fixture {
        let engine = match Engine::from_env().await {
            Engine::Directory => Engine::Sqlite(DataLocation::Directory),
            sql => sql,
        };
        let fixture = Fixture::on(engine).await;
        fixture.store.create_bucket(name, None).await.unwrap();
        fixture
    }

    /// The data files of the SQL engine's data directory, or `None` when its data is in an S3 bucket.
    pub fn local_data_files(&self) -> Option<Vec<PathBuf>> {
        match &self.engine {
            Engine::Sqlite(DataLocation::Directory) | Engine::Postgres(_, DataLocation::Directory) => {
                Some(files_under(&self.data_dir().join("data")))
            }
            _ => None,
        }
    }

    /// Whether the fixture keeps its data in an S3 bucket (`COFFER_TEST_DATA_S3`).
    pub fn data_in_bucket(&self) -> bool {
        matches!(&self.engine, Engine::Sqlite(DataLocation::S3(_)) | Engine::Postgres(_, DataLocation::S3(_)))
    }

    /// Flips one bit of the first data file `record` (a record's JSON text) names, in the data directory of the SQL
    /// engine: damage only a check of its checksums finds. Returns the file's path.
    pub fn flip_first_data_file_bit(&self, record: &str, offset: usize) -> PathBuf {
        let record: serde_json::Value = serde_json::from_str(record).unwrap();
        let name = record["data_files"][0].as_str().unwrap();
        let path = self.data_dir().join("data").join(&name["data-".len().."data-".len() + 2]).join(name);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[offset] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        path
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.data_dir().join(".coffer").join("tmp")
    }

    /// A second store handle on the same directory, as after a restart.
    pub async fn reopen(&self) -> Store {
        self.engine.open(self.data_dir()).await
    }

    /// Rewrites every record as version 3 wrote it (no MAC, no data checksums) and drops the record MAC key, then
    /// opens the store again: a data directory of an earlier version meeting this one, which accepts its unsigned
    /// records.
    pub async fn as_written_by_version_3(&self) -> Store {
        for path in files_under(&self.data_dir().join("buckets")) {
            if path.extension().is_some_and(|ext| ext == "json") {
                let mut record: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                let fields = record.as_object_mut().unwrap();
                fields.remove("mac");
                fields.remove("data_checksums");
                fields.insert("format_version".into(), serde_json::json!(3));
                std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
            }
        }
        std::fs::remove_file(self.data_dir().join(".coffer/record-mac.key")).unwrap();
        let store = self.reopen().await;
        assert!(self.data_dir().join(".coffer/unsigned-records-accepted").exists());
        store
    }

    pub async fn with_bucket(name: &str) -> Fixture {
        let fixture = Fixture::new().await;
        fixture.store.create_bucket(name, None).await.unwrap();
        fixture
    }
}

/// Creates a database of its own for one fixture and returns its URL.
async fn new_postgres_database() -> String {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let server = std::env::var("COFFER_TEST_POSTGRES_URL").expect("COFFER_TEST_POSTGRES_URL");
    let name = format!("store_{}", hex::encode(rand_bytes()));
    let mut connection = sqlx::AnyConnection::connect(&format!("{server}/postgres")).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut connection).await.unwrap();
    format!("{server}/{name}")
}

fn rand_bytes() -> [u8; 8] {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap();
    bytes
}

pub async fn staged(store: &Store, data: &[u8]) -> StagedFile {
    let mut write = store.stage();
    // Several writes, to exercise buffering across calls.
    for chunk in data.chunks(100_000) {
        write.write(chunk).await.unwrap();
    }
    write.finish().await.unwrap()
}

pub async fn put(store: &Store, bucket: &str, key: &str, data: &[u8]) -> ObjectMeta {
    let file = staged(store, data).await;
    store.put_object(bucket, key, file, ObjectMeta::new(key, data.len() as u64, etag_of(data))).await.unwrap()
}

/// A stand-in ETag that differs for different contents (the store does not compute ETags).
/// Caller JSON as the store keeps it.
pub fn raw(value: serde_json::Value) -> RawJson {
    serde_json::value::to_raw_value(&value).expect("JSON values serialize").into()
}

/// A version 3 record written flat, as versions 1 and 2 did: the `meta` fields, and the `headers` fields if there
/// are any, at the top level.
pub fn flat_record(nested: &serde_json::Value, version: u32) -> serde_json::Value {
    let mut flat = nested.as_object().unwrap().clone();
    let mut meta = flat.remove("meta").unwrap().as_object().unwrap().clone();
    if let Some(headers) = meta.remove("headers") {
        flat.extend(headers.as_object().unwrap().clone());
    }
    flat.extend(meta);
    flat.insert("format_version".into(), serde_json::json!(version));
    flat.into()
}

pub fn etag_of(data: &[u8]) -> String {
    let sum = data.iter().fold(0u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{sum:016x}{:08x}", data.len())
}

/// Reads every part of the pinned version.
pub async fn read_all(reader: &ObjectReader) -> Vec<u8> {
    let mut out = Vec::new();
    for (index, part) in reader.meta().parts.iter().enumerate() {
        let chunks: Vec<_> = reader.read_part(index, 0, part.stored_size).try_collect().await.unwrap();
        for chunk in chunks {
            out.extend_from_slice(&chunk);
        }
    }
    out
}

pub async fn get(store: &Store, bucket: &str, key: &str) -> Vec<u8> {
    read_all(&store.open_object(bucket, key).await.unwrap()).await
}

/// Deterministic non-repeating-ish test data.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed).collect()
}

/// Every file (not directory) under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Number of entries in a directory (0 if it does not exist).
pub fn entries_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|entries| entries.count()).unwrap_or(0)
}
