//! The SQL engine's own form: signed rows that fail closed when edited or moved, data files under opaque names
//! that no commit leaks and garbage collection reclaims, and a refusal to open a directory-format data directory.

use std::time::Duration;

use coffer_store::{ListQuery, ObjectMeta, ScrubFinding, Store, StoreError, UploadMeta};
use sqlx::{AnyConnection, Connection, Row};

use crate::common::{etag_of, files_under, get, pattern, put, staged, Fixture};

async fn database(f: &Fixture) -> AnyConnection {
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", f.data_dir().join("coffer.sqlite").display());
    AnyConnection::connect(&url).await.unwrap()
}

fn data_files(f: &Fixture) -> Vec<std::path::PathBuf> {
    files_under(&f.data_dir().join("data"))
}

fn invalid_data<T: std::fmt::Debug>(result: Result<T, StoreError>) -> bool {
    matches!(&result, Err(StoreError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData)
}

#[tokio::test]
async fn an_edited_or_moved_row_fails_closed() {
    let f = Fixture::sqlite_with_bucket("bkt").await;
    put(&f.store, "bkt", "a", b"small").await;
    put(&f.store, "bkt", "b", &pattern(300_000, 1)).await;
    let mut db = database(&f).await;
    let record: String = sqlx::query("SELECT record FROM objects WHERE key = $1")
        .bind("b".as_bytes())
        .fetch_one(&mut db)
        .await
        .unwrap()
        .get(0);
    let edited = record.replace("\"size\":300000", "\"size\":299999");
    assert_ne!(edited, record);
    sqlx::query("UPDATE objects SET record = $1 WHERE key = $2")
        .bind(&edited)
        .bind("b".as_bytes())
        .execute(&mut db)
        .await
        .unwrap();
    assert!(invalid_data(f.store.head_object("bkt", "b").await));
    assert!(invalid_data(f.store.open_object("bkt", "b").await));
    // b's intact row copied over a's: signed for another key.
    sqlx::query("UPDATE objects SET record = $1 WHERE key = $2")
        .bind(&record)
        .bind("a".as_bytes())
        .execute(&mut db)
        .await
        .unwrap();
    assert!(invalid_data(f.store.head_object("bkt", "a").await));
    // Put back, it reads again.
    sqlx::query("UPDATE objects SET record = $1 WHERE key = $2")
        .bind(&record)
        .bind("b".as_bytes())
        .execute(&mut db)
        .await
        .unwrap();
    assert_eq!(get(&f.store, "bkt", "b").await, pattern(300_000, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_overwrites_leave_one_version_and_no_stray_file() {
    let f = Fixture::sqlite_with_bucket("bkt").await;
    let values: Vec<Vec<u8>> = (0..12u8).map(|i| pattern(40_000 + usize::from(i) * 5000, i)).collect();
    let writers: Vec<_> = values
        .iter()
        .cloned()
        .map(|value| {
            let store = f.store.clone();
            tokio::spawn(async move { put(&store, "bkt", "k", &value).await })
        })
        .collect();
    for task in writers {
        task.await.unwrap();
    }
    let data = get(&f.store, "bkt", "k").await;
    assert!(values.contains(&data));
    // Only the current version's file (none for an inline one) is left, and collection finds nothing to take.
    assert_eq!(data_files(&f).len(), usize::from(data.len() > 64 * 1024));
    assert_eq!(f.store.collect_garbage(Duration::ZERO).await.unwrap().files, 0);
    assert_eq!(get(&f.store, "bkt", "k").await, data);
    f.store.delete_object("bkt", "k").await.unwrap();
    assert!(data_files(&f).is_empty());
}

#[tokio::test]
async fn garbage_collection_takes_only_unreferenced_data_files() {
    let f = Fixture::sqlite_with_bucket("bkt").await;
    put(&f.store, "bkt", "k", &pattern(500_000, 2)).await;
    let id = f.store.create_upload("bkt", "mpu", UploadMeta::default()).await.unwrap();
    let part = coffer_store::PartMeta {
        number: 1,
        size: 200_000,
        stored_size: 0,
        etag: "e".into(),
        checksum: None,
        last_modified: time::OffsetDateTime::UNIX_EPOCH,
        encryption: None,
    };
    f.store.put_part("bkt", "mpu", &id, part, staged(&f.store, &pattern(200_000, 3)).await).await.unwrap();
    let live = data_files(&f);
    assert_eq!(live.len(), 2);
    // A file a crash left between putting it in place and committing its row, and one in the wrong place.
    let stray = f.data_dir().join("data/ab").join(format!("data-{}", "ab".repeat(16)));
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::write(&stray, b"left by a crash").unwrap();
    let misplaced = live[0].parent().unwrap().join(format!("data-{}", "cd".repeat(16)));
    std::fs::write(&misplaced, b"misplaced").unwrap();
    assert_eq!(f.store.collect_garbage(Duration::from_secs(3600)).await.unwrap().files, 0, "too young to take");
    let reclaimed = f.store.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!((reclaimed.files, reclaimed.bytes), (2, 24));
    assert!(!stray.exists() && !misplaced.exists());
    assert_eq!(get(&f.store, "bkt", "k").await, pattern(500_000, 2));
    assert_eq!(f.store.list_parts("bkt", "mpu", &id).await.unwrap().len(), 1);
    f.store.abort_upload("bkt", "mpu", &id).await.unwrap();
    assert_eq!(data_files(&f).len(), 1);
}

#[tokio::test]
async fn scrub_finds_damaged_and_missing_data() {
    let f = Fixture::sqlite_with_bucket("bkt").await;
    put(&f.store, "bkt", "flipped", &pattern(300_000, 4)).await;
    put(&f.store, "bkt", "intact", &pattern(300_000, 5)).await;
    let ids = f.store.object_ids("bkt", None, 10).await.unwrap();
    assert_eq!(ids, ["flipped", "intact"]);
    let mut db = database(&f).await;
    let record: String = sqlx::query("SELECT record FROM objects WHERE key = $1")
        .bind("flipped".as_bytes())
        .fetch_one(&mut db)
        .await
        .unwrap()
        .get(0);
    let path = f.flip_first_data_file_bit(&record, 1000);
    assert!(matches!(f.store.scrub_object("bkt", "flipped", "").await.unwrap(), ScrubFinding::Damaged { .. }));
    assert!(matches!(f.store.scrub_object("bkt", "intact", "").await.unwrap(), ScrubFinding::Intact { .. }));
    assert_eq!(f.store.scrub_object("bkt", "intact", "x").await.unwrap(), ScrubFinding::OutOfScope);
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(f.store.scrub_object("bkt", "flipped", "").await.unwrap(), ScrubFinding::Damaged { .. }));
    assert_eq!(f.store.scrub_object("bkt", "gone", "").await.unwrap(), ScrubFinding::Absent);
}

#[tokio::test]
async fn listings_come_from_the_database_after_a_restart() {
    let f = Fixture::sqlite_with_bucket("bkt").await;
    for i in 0..50 {
        put(&f.store, "bkt", &format!("dir{}/key{i:03}", i % 3), b"x").await;
    }
    let reopened = f.reopen().await;
    let query = ListQuery { delimiter: Some("/".into()), ..ListQuery::default() };
    let page = reopened.list_objects("bkt", &query).await.unwrap();
    assert_eq!(page.common_prefixes, ["dir0/", "dir1/", "dir2/"]);
    let query = ListQuery { prefix: "dir1/".into(), max_keys: 5, ..ListQuery::default() };
    let page = reopened.list_objects("bkt", &query).await.unwrap();
    assert_eq!(
        page.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
        ["dir1/key001", "dir1/key004", "dir1/key007", "dir1/key010", "dir1/key013"]
    );
    assert!(page.is_truncated);
}

#[tokio::test]
async fn a_directory_format_data_directory_is_refused() {
    let f = Fixture::directory_with_bucket("bkt").await;
    put(&f.store, "bkt", "k", b"v").await;
    let refused = Store::open_sql(f.data_dir(), None, &coffer_store::DataLocation::Directory).await.unwrap_err();
    assert!(refused.to_string().contains("directory format"), "{refused}");
}

/// What one writer of `concurrent_changes_each_get_their_own_outcome` did and must find after a restart.
enum Outcome {
    Stored(String, Vec<u8>),
    Deleted(String),
    Refused(String),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_changes_each_get_their_own_outcome() {
    // Writers that arrive together are committed together: each failing change must fail alone, leaving the
    // others of its commit stored, and report its own error.
    let f = Fixture::sqlite_with_bucket("bkt").await;
    let old = put(&f.store, "bkt", "contended", b"first").await;
    put(&f.store, "bkt", "contended", b"second").await;
    for n in 0..8 {
        put(&f.store, "bkt", &format!("doomed-{n}"), b"to delete").await;
    }
    let mut writers = Vec::new();
    for n in 0..64u8 {
        let store = f.store.clone();
        let stale = old.clone();
        writers.push(tokio::spawn(async move {
            // Every fourth value is stored in a data file, the others inline in the row.
            let value = pattern(if n % 4 == 0 { 100_000 } else { 4096 }, n);
            let key = format!("key-{n}");
            let meta = ObjectMeta::new(&key, value.len() as u64, etag_of(&value));
            match n % 4 {
                0 | 1 => {
                    store.put_object("bkt", &key, staged(&store, &value).await, meta).await.unwrap();
                    Outcome::Stored(key, value)
                }
                2 if n % 8 == 2 => {
                    let missing = store.put_object("no-such-bucket", &key, staged(&store, &value).await, meta);
                    assert!(matches!(missing.await, Err(StoreError::NoSuchBucket)));
                    Outcome::Refused(key)
                }
                2 => {
                    let file = staged(&store, &value).await;
                    let changed = store.replace_object("bkt", "contended", file, meta, stale).await;
                    assert!(matches!(changed, Err(StoreError::Changed)));
                    Outcome::Refused(key)
                }
                _ => {
                    let doomed = format!("doomed-{}", n / 8);
                    store.delete_object("bkt", &doomed).await.unwrap();
                    Outcome::Deleted(doomed)
                }
            }
        }));
    }
    let mut outcomes = Vec::new();
    for writer in writers {
        outcomes.push(writer.await.unwrap());
    }
    let store = f.reopen().await;
    let mut stored_files = 0;
    for outcome in outcomes {
        match outcome {
            Outcome::Stored(key, value) => {
                stored_files += usize::from(value.len() > 64 * 1024);
                assert_eq!(get(&store, "bkt", &key).await, value);
            }
            Outcome::Deleted(key) | Outcome::Refused(key) => {
                assert!(matches!(store.head_object("bkt", &key).await, Err(StoreError::NoSuchKey)));
            }
        }
    }
    assert_eq!(get(&store, "bkt", "contended").await, b"second");
    assert!(store.list_buckets().await.unwrap().iter().all(|bucket| bucket.name == "bkt"));
    // The refused writes left no data file behind: only the stored objects' files remain.
    assert_eq!(data_files(&f).len(), stored_files);
    assert_eq!(store.collect_garbage(Duration::ZERO).await.unwrap().files, 0);
}
