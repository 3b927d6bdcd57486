//! Object writes, reads, metadata, key safety, atomicity and concurrency.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use coffer_store::{Checksum, ChecksumKind, ListQuery, ObjectMeta, PartMeta, Store, StoreError, READ_CHUNK};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;

use crate::common::{entries_in, etag_of, files_under, flat_record, get, pattern, put, raw, read_all, staged, Fixture};

/// The single object directory of a bucket that holds one object.
fn only_object_dir(f: &Fixture, bucket: &str) -> std::path::PathBuf {
    let objects = f.data_dir().join("buckets").join(bucket).join("objects");
    let dirs: Vec<_> = std::fs::read_dir(objects).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

/// Puts object `k` of bucket `bkt`, large enough for a data file (100,000 bytes), and returns that file's path.
async fn put_with_data_file(f: &Fixture) -> std::path::PathBuf {
    put(&f.store, "bkt", "k", &pattern(100_000, 1)).await;
    let dir = only_object_dir(f, "bkt");
    files_under(&dir).into_iter().find(|p| !p.ends_with("meta.json")).unwrap()
}

/// Opening object `k` of bucket `bkt` must fail with `InvalidData`: its stored bytes do not match its record.
async fn assert_refused_as_invalid(store: &Store, what: &str) {
    match store.open_object("bkt", "k").await {
        Err(StoreError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{what}"),
        other => panic!("{what}: opened, {:?}", other.map(|r| r.meta().size)),
    }
}

#[tokio::test]
async fn put_head_get_round_trip_with_all_metadata() {
    let f = Fixture::with_bucket("bkt").await;
    let data = pattern(700_000, 7);
    let mut meta = ObjectMeta::new("ignored", data.len() as u64, "etag-1");
    meta.headers.content_type = Some("text/plain".into());
    meta.headers.content_encoding = Some("gzip".into());
    meta.headers.content_disposition = Some("attachment; filename=\"a.txt\"".into());
    meta.headers.content_language = Some("de".into());
    meta.headers.cache_control = Some("no-cache".into());
    meta.headers.expires = Some("Wed, 21 Oct 2015 07:28:00 GMT".into());
    meta.headers.user_metadata = BTreeMap::from([("color".into(), "blue".into()), ("x".into(), "ü ✓".into())]);
    meta.checksum =
        Some(Checksum { algorithm: "CRC32".into(), value: "AAAAAA==".into(), kind: ChecksumKind::FullObject });
    meta.encryption = Some(raw(json!({"mode": "opaque", "nonce": [1, 2, 3]})));
    let before = time::OffsetDateTime::now_utc();
    let file = staged(&f.store, &data).await;
    assert_eq!(file.len(), data.len() as u64);
    let stored = f.store.put_object("bkt", "dir/obj.txt", file, meta.clone()).await.unwrap();

    assert_eq!(stored.key, "dir/obj.txt");
    assert!(stored.last_modified >= before);
    assert_eq!(stored.parts.len(), 1);
    let part = &stored.parts[0];
    assert_eq!((part.number, part.size, part.stored_size), (1, 700_000, 700_000));
    assert_eq!(part.etag, "etag-1");
    assert_eq!(part.checksum, meta.checksum);
    let expected = ObjectMeta {
        key: "dir/obj.txt".into(),
        last_modified: stored.last_modified,
        parts: stored.parts.clone(),
        ..meta
    };
    assert_eq!(stored, expected);

    assert_eq!(f.store.head_object("bkt", "dir/obj.txt").await.unwrap(), expected);
    assert_eq!(f.reopen().await.head_object("bkt", "dir/obj.txt").await.unwrap(), expected);
    let reader = f.store.open_object("bkt", "dir/obj.txt").await.unwrap();
    assert_eq!(reader.meta(), &expected);
    assert_eq!(read_all(&reader).await, data);
    assert_eq!(entries_in(&f.tmp_dir()), 0);
}

#[tokio::test]
async fn empty_objects() {
    let f = Fixture::with_bucket("bkt").await;
    let meta = put(&f.store, "bkt", "empty", b"").await;
    assert_eq!(meta.parts[0].stored_size, 0);
    let reader = f.store.open_object("bkt", "empty").await.unwrap();
    assert_eq!(reader.read_part(0, 0, 0).count().await, 0);
    assert!(read_all(&reader).await.is_empty());
}

#[tokio::test]
async fn a_single_part_from_the_caller_is_kept() {
    let f = Fixture::with_bucket("bkt").await;
    let file = staged(&f.store, &[9u8; 48]).await;
    let mut meta = ObjectMeta::new("k", 32, "e");
    meta.parts = vec![PartMeta {
        number: 7,
        size: 32,
        stored_size: 0,
        etag: "e".into(),
        checksum: None,
        last_modified: time::OffsetDateTime::UNIX_EPOCH,
        encryption: Some(raw(json!({"iv": "abc"}))),
    }];
    let stored = f.store.put_object("bkt", "k", file, meta).await.unwrap();
    let part = &stored.parts[0];
    assert_eq!((part.number, part.size, part.stored_size), (1, 32, 48));
    assert_eq!(part.encryption, Some(raw(json!({"iv": "abc"}))));
    assert_ne!(part.last_modified, time::OffsetDateTime::UNIX_EPOCH);

    let two_parts = {
        let mut m = ObjectMeta::new("k", 1, "e");
        m.parts = vec![stored.parts[0].clone(), stored.parts[0].clone()];
        m
    };
    let file = staged(&f.store, b"x").await;
    assert!(matches!(f.store.put_object("bkt", "k", file, two_parts).await, Err(StoreError::InvalidMeta(_))));
    assert_eq!(get(&f.store, "bkt", "k").await, vec![9u8; 48]);
    assert_eq!(entries_in(&f.tmp_dir()), 0);
}

#[tokio::test]
async fn overwrite_replaces_data_and_removes_old_files() {
    let f = Fixture::directory_with_bucket("bkt").await;
    put(&f.store, "bkt", "k", &pattern(300_000, 1)).await;
    let dir = only_object_dir(&f, "bkt");
    let first_files = files_under(&dir);
    assert_eq!(first_files.len(), 2, "meta.json and one data file");

    let second = put(&f.store, "bkt", "k", b"short").await;
    assert_eq!(second.size, 5);
    assert_eq!(get(&f.store, "bkt", "k").await, b"short");
    let second_files = files_under(&dir);
    assert_eq!(second_files.len(), 1, "a small object is kept in meta.json");
    let old_data: Vec<_> = first_files.iter().filter(|p| !p.ends_with("meta.json")).collect();
    assert!(!old_data[0].exists(), "old data file must be deleted");
    assert_eq!(f.store.head_object("bkt", "k").await.unwrap().etag, etag_of(b"short"));
}

#[tokio::test]
async fn dropping_a_staged_write_or_file_leaves_no_temp_files() {
    let f = Fixture::with_bucket("bkt").await;
    let mut write = f.store.stage();
    write.write(&pattern(600_000, 3)).await.unwrap();
    assert_eq!(write.len(), 600_000);
    assert_eq!(entries_in(&f.tmp_dir()), 1, "the staged data is in the temp dir");
    drop(write);
    assert_eq!(entries_in(&f.tmp_dir()), 0);

    let file = staged(&f.store, &pattern(600_000, 4)).await;
    assert_eq!(entries_in(&f.tmp_dir()), 1);
    drop(file);
    assert_eq!(entries_in(&f.tmp_dir()), 0);

    let file = staged(&f.store, b"abc").await;
    assert_eq!(entries_in(&f.tmp_dir()), 0, "a small body stays in memory");
    drop(file);
    assert!(matches!(f.store.head_object("bkt", "k").await, Err(StoreError::NoSuchKey)));
    assert_eq!(entries_in(&f.data_dir().join("buckets/bkt/objects")), 0);
}

#[tokio::test]
async fn an_abandoned_upload_task_leaves_no_temp_files() {
    let f = Fixture::with_bucket("bkt").await;
    let store = f.store.clone();
    // A request handler that is cancelled mid-body, like a client disconnect. It is cancelled once it holds the
    // staged write: cancelled inside `stage`, the blocking task creating the file finishes (and cleans up) later.
    let (staged_tx, staged_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut write = store.stage();
        write.write(&pattern(600_000, 5)).await.unwrap();
        staged_tx.send(()).unwrap();
        std::future::pending::<()>().await;
        drop(write);
    });
    staged_rx.await.expect("the upload task ended early");
    assert_eq!(entries_in(&f.tmp_dir()), 1);
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert_eq!(entries_in(&f.tmp_dir()), 0);
}

#[tokio::test]
async fn a_failed_put_leaves_no_temp_files() {
    let f = Fixture::with_bucket("bkt").await;
    let data = pattern(600_000, 6); // long enough to be staged in a temp file
    let file = staged(&f.store, &data).await;
    assert_eq!(entries_in(&f.tmp_dir()), 1);
    let long_key = "k".repeat(1025);
    let meta = ObjectMeta::new(&long_key, 600_000, "e");
    assert!(matches!(f.store.put_object("bkt", &long_key, file, meta).await, Err(StoreError::KeyTooLong)));
    let file = staged(&f.store, &data).await;
    assert!(matches!(
        f.store.put_object("other", "k", file, ObjectMeta::new("k", 600_000, "e")).await,
        Err(StoreError::NoSuchBucket)
    ));
    assert_eq!(entries_in(&f.tmp_dir()), 0);
}

#[tokio::test]
async fn open_sweeps_leftover_temp_files() {
    let f = Fixture::with_bucket("bkt").await;
    std::fs::write(f.tmp_dir().join("stage-leftover"), b"torn").unwrap();
    std::fs::create_dir_all(f.tmp_dir().join("trash-leftover/inner")).unwrap();
    std::fs::write(f.tmp_dir().join("trash-leftover/inner/data"), b"x").unwrap();
    let store = f.reopen().await;
    assert_eq!(entries_in(&f.tmp_dir()), 0);
    assert!(store.head_bucket("bkt").await.is_ok());
}

#[tokio::test]
async fn deleting_objects() {
    let f = Fixture::with_bucket("bkt").await;
    put(&f.store, "bkt", "k", b"v").await;
    f.store.delete_object("bkt", "k").await.unwrap();
    assert!(matches!(f.store.head_object("bkt", "k").await, Err(StoreError::NoSuchKey)));
    assert!(matches!(f.store.open_object("bkt", "k").await, Err(StoreError::NoSuchKey)));
    // Missing keys delete fine (S3 semantics).
    f.store.delete_object("bkt", "k").await.unwrap();
    f.store.delete_object("bkt", "never").await.unwrap();
    assert_eq!(entries_in(&f.data_dir().join("buckets/bkt/objects")), 0);
    assert_eq!(entries_in(&f.tmp_dir()), 0);
}

#[tokio::test]
async fn key_length_limits() {
    let f = Fixture::with_bucket("bkt").await;
    let longest = "é".repeat(511) + "ab";
    assert_eq!(longest.len(), 1024);
    put(&f.store, "bkt", &longest, b"ok").await;
    assert_eq!(get(&f.store, "bkt", &longest).await, b"ok");
    let listed = f.store.list_objects("bkt", &ListQuery::default()).await.unwrap();
    assert_eq!(listed.objects[0].key, longest);

    let too_long = longest.clone() + "x";
    assert!(matches!(f.store.head_object("bkt", &too_long).await, Err(StoreError::KeyTooLong)));
    assert!(matches!(f.store.delete_object("bkt", &too_long).await, Err(StoreError::KeyTooLong)));
    assert!(matches!(f.store.head_object("bkt", "").await, Err(StoreError::InvalidKey)));
}

/// Keys that would escape or corrupt the data dir if they were used as paths.
const HOSTILE_KEYS: &[&str] = &[
    "../x",
    "a/../../b",
    "../../../../../../../../tmp/escaped",
    "%2e%2e/x",
    "%2e%2e%2f%2e%2e%2fx",
    "..",
    ".",
    "/abs",
    "/etc/passwd",
    "a\0b",
    "\0",
    "..\\..\\windows",
    "meta.json",
    "bucket.json",
    "upload.json",
    "part-00001.json",
    "data-00",
    "objects",
    "uploads",
    ".coffer",
    "../.coffer/kms/config.json",
    "a//b",
    "trailing/",
    " ",
    "\u{202e}rtl",
];

#[tokio::test]
async fn hostile_keys_stay_inside_their_bucket_and_round_trip() {
    let f = Fixture::directory_with_bucket("safe").await;
    let outside = f.root.path().join("outside-marker");
    std::fs::write(&outside, b"untouched").unwrap();
    for (i, key) in HOSTILE_KEYS.iter().enumerate() {
        put(&f.store, "safe", key, format!("value {i}").as_bytes()).await;
    }
    for (i, key) in HOSTILE_KEYS.iter().enumerate() {
        assert_eq!(get(&f.store, "safe", key).await, format!("value {i}").as_bytes(), "{key:?}");
        assert_eq!(f.store.head_object("safe", key).await.unwrap().key, *key);
    }
    let mut listed: Vec<String> =
        f.store.list_objects("safe", &ListQuery::default()).await.unwrap().objects.into_iter().map(|o| o.key).collect();
    let mut expected: Vec<String> = HOSTILE_KEYS.iter().map(|k| k.to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected);

    // Nothing was written outside the bucket's objects dir, and every object is one hashed directory.
    let bucket_dir = f.data_dir().join("buckets/safe");
    for file in files_under(f.root.path()) {
        if file == outside || file == bucket_dir.join("bucket.json") || file.starts_with(f.data_dir().join(".coffer")) {
            continue;
        }
        let rel = file.strip_prefix(bucket_dir.join("objects")).unwrap_or_else(|_| panic!("stray {file:?}"));
        let parts: Vec<_> = rel.iter().map(|c| c.to_str().unwrap()).collect();
        assert_eq!(parts.len(), 2, "{rel:?}");
        assert_eq!(parts[0].len(), 64);
        assert!(parts[0].bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(parts[1] == "meta.json" || parts[1].starts_with("data-"), "{rel:?}");
    }
    assert_eq!(entries_in(&bucket_dir.join("objects")), HOSTILE_KEYS.len());
    assert_eq!(std::fs::read(&outside).unwrap(), b"untouched");

    // Deleting them removes exactly them.
    for key in HOSTILE_KEYS {
        f.store.delete_object("safe", key).await.unwrap();
    }
    listed =
        f.store.list_objects("safe", &ListQuery::default()).await.unwrap().objects.into_iter().map(|o| o.key).collect();
    assert!(listed.is_empty());
    assert_eq!(entries_in(&bucket_dir.join("objects")), 0);
    f.store.delete_bucket("safe").await.unwrap();
}

#[tokio::test]
async fn read_part_ranges_and_chunking() {
    let f = Fixture::with_bucket("bkt").await;
    let data = pattern(READ_CHUNK * 3 + 123, 5);
    put(&f.store, "bkt", "k", &data).await;
    let reader = f.store.open_object("bkt", "k").await.unwrap();

    let chunks: Vec<_> = reader.read_part(0, 0, data.len() as u64).try_collect().await.unwrap();
    assert_eq!(chunks.len(), 4);
    assert!(chunks.iter().all(|c| c.len() <= READ_CHUNK));
    assert_eq!(chunks.concat(), data);

    for (offset, len) in [(0usize, 1usize), (1, 10), (READ_CHUNK - 1, 2), (1000, READ_CHUNK * 2), (data.len() - 5, 5)] {
        let got: Vec<_> = reader.read_part(0, offset as u64, len as u64).try_collect().await.unwrap();
        assert_eq!(got.concat(), &data[offset..offset + len], "offset {offset} len {len}");
    }
    assert_eq!(reader.read_part(0, data.len() as u64, 0).count().await, 0);

    for (index, offset, len) in
        [(0usize, 0u64, data.len() as u64 + 1), (0, data.len() as u64, 1), (1, 0, 1), (0, u64::MAX, 2)]
    {
        let items: Vec<_> = reader.read_part(index, offset, len).collect().await;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].as_ref().unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
    }
}

#[tokio::test]
async fn mapped_reads_see_every_chunk_once_in_order_with_its_offset() {
    let f = Fixture::with_bucket("bkt").await;
    let data = pattern(10_000, 3);
    put(&f.store, "bkt", "k", &data).await;
    let reader = f.store.open_object("bkt", "k").await.unwrap();

    let chunks: Vec<(u64, Vec<u8>)> = reader
        .read_part_mapped(0, 100, 9_000, 4_000, |offset, chunk| Ok((offset, chunk.to_vec())))
        .try_collect()
        .await
        .unwrap();
    let offsets: Vec<u64> = chunks.iter().map(|(offset, _)| *offset).collect();
    assert_eq!(offsets, [0, 4_000, 8_000], "offsets are relative to the start of the range");
    assert_eq!(chunks.iter().map(|(_, c)| c.len()).collect::<Vec<_>>(), [4_000, 4_000, 1_000]);
    assert_eq!(chunks.into_iter().flat_map(|(_, c)| c).collect::<Vec<_>>(), &data[100..9_100]);

    // An error from the map ends the stream: nothing after it is yielded.
    let items: Vec<_> = reader
        .read_part_mapped(0, 0, 10_000, 1_000, |offset, chunk| {
            if offset == 3_000 {
                Err(std::io::Error::other("refused"))
            } else {
                Ok(chunk.len())
            }
        })
        .collect()
        .await;
    assert_eq!(items.len(), 4);
    assert!(items[..3].iter().all(|item| matches!(item, Ok(1_000))));
    assert_eq!(items[3].as_ref().unwrap_err().to_string(), "refused");
}

#[tokio::test]
async fn a_truncated_data_file_is_an_error_not_short_data() {
    let f = Fixture::directory_with_bucket("bkt").await;
    let data_file = put_with_data_file(&f).await;
    let reader = f.store.open_object("bkt", "k").await.unwrap();
    std::fs::OpenOptions::new().write(true).open(&data_file).unwrap().set_len(10).unwrap();
    let result: Result<Vec<_>, _> = reader.read_part(0, 0, 100_000).try_collect().await;
    assert_eq!(result.unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof, "truncated while being read");
    assert_refused_as_invalid(&f.store, "a data file truncated before open").await;
}

#[tokio::test]
async fn an_extended_data_file_is_refused() {
    let f = Fixture::directory_with_bucket("bkt").await;
    let data_file = put_with_data_file(&f).await;
    std::fs::OpenOptions::new().append(true).open(&data_file).unwrap().write_all(b"appended").unwrap();
    assert_refused_as_invalid(&f.store, "an extended data file").await;
}

#[tokio::test]
async fn a_corrupt_or_future_record_is_an_io_error() {
    let f = Fixture::directory_with_bucket("bkt").await;
    let data = pattern(100_000, 1);
    put(&f.store, "bkt", "k", &data).await;
    let meta_path = only_object_dir(&f, "bkt").join("meta.json");
    let mut record: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    assert_eq!(record["format_version"], 4);
    assert_eq!(record["meta"]["key"], "k");
    assert!(record["data_files"][0].as_str().unwrap().starts_with("data-"));

    record["format_version"] = json!(5);
    std::fs::write(&meta_path, serde_json::to_vec(&record).unwrap()).unwrap();
    assert!(matches!(f.store.head_object("bkt", "k").await, Err(StoreError::Io(_))));

    let store = f.as_written_by_version_3().await;
    let mut record: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    assert_eq!(get(&store, "bkt", "k").await, data);
    record["data_files"] = json!(["../../../../outside"]);
    std::fs::write(&meta_path, serde_json::to_vec(&record).unwrap()).unwrap();
    assert!(matches!(store.open_object("bkt", "k").await, Err(StoreError::Io(_))));

    std::fs::write(&meta_path, b"{ torn").unwrap();
    assert!(matches!(store.head_object("bkt", "k").await, Err(StoreError::Io(_))));
}

#[tokio::test]
async fn flat_records_of_versions_1_and_2_are_read() {
    let f = Fixture::directory_with_bucket("bkt").await;
    let data = pattern(100_000, 2);
    let mut meta = ObjectMeta::new("", data.len() as u64, etag_of(&data));
    meta.headers.content_type = Some("text/plain".into());
    meta.headers.user_metadata.insert("colour".into(), "blue".into());
    meta.encryption = Some(raw(json!({"mode": "opaque", "nonce": [1, 2, 3]})));
    let stored = f.store.put_object("bkt", "k", staged(&f.store, &data).await, meta).await.unwrap();
    let store = f.as_written_by_version_3().await;
    let meta_path = only_object_dir(&f, "bkt").join("meta.json");
    let nested: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    assert_eq!(nested["meta"]["headers"]["content_type"], "text/plain");

    for version in [1, 2] {
        std::fs::write(&meta_path, serde_json::to_vec(&flat_record(&nested, version)).unwrap()).unwrap();
        assert_eq!(store.head_object("bkt", "k").await.unwrap(), stored, "version {version}");
        assert_eq!(get(&store, "bkt", "k").await, data, "version {version}");
    }
    // Only versions 1 and 2 were flat.
    std::fs::write(&meta_path, serde_json::to_vec(&flat_record(&nested, 3)).unwrap()).unwrap();
    assert!(matches!(store.head_object("bkt", "k").await, Err(StoreError::Io(_))));
}

#[tokio::test]
async fn small_objects_live_in_their_record() {
    let f = Fixture::directory_with_bucket("bkt").await;
    for (key, len) in [("empty", 0), ("tiny", 13), ("limit", 64 * 1024)] {
        let data = pattern(len, 3);
        put(&f.store, "bkt", key, &data).await;
        let reader = f.store.open_object("bkt", key).await.unwrap();
        assert_eq!(read_all(&reader).await, data);
        if len > 20 {
            let middle: Vec<_> = reader.read_part(0, 7, 13).try_collect().await.unwrap();
            assert_eq!(middle.concat(), data[7..20]);
        }
        assert_eq!(get(&f.reopen().await, "bkt", key).await, data);
    }
    put(&f.store, "bkt", "over", &pattern(64 * 1024 + 1, 3)).await;
    let objects = f.data_dir().join("buckets/bkt/objects");
    let files: usize = std::fs::read_dir(objects).unwrap().map(|dir| files_under(&dir.unwrap().path()).len()).sum();
    assert_eq!(files, 4 + 1, "one meta.json per object, one data file for the object over the limit");
    assert_eq!(entries_in(&f.tmp_dir()), 0);
}

#[tokio::test]
async fn tampered_inline_data_is_an_error() {
    let f = Fixture::directory_with_bucket("bkt").await;
    put(&f.store, "bkt", "k", b"inline bytes").await;
    let meta_path = only_object_dir(&f, "bkt").join("meta.json");
    let original: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    assert_eq!(original["inline_data"], "aW5saW5lIGJ5dGVz");
    assert_eq!(original["data_files"], json!([]));
    for (field, value) in [
        ("inline_data", json!("aW5saW5lIGJ5dGVzIQ==")), // one byte more than committed
        ("inline_data", json!("not base64!")),
        ("data_files", json!(["data-00000000000000000000000000000000"])),
    ] {
        let mut record = original.clone();
        record[field] = value;
        std::fs::write(&meta_path, serde_json::to_vec(&record).unwrap()).unwrap();
        assert_refused_as_invalid(&f.store, &format!("tampered {field}")).await;
    }
}

#[tokio::test]
async fn update_object_meta_keeps_the_data() {
    let f = Fixture::with_bucket("bkt").await;
    let data = pattern(5000, 2);
    let original = put(&f.store, "bkt", "k", &data).await;
    let mut changed = original.clone();
    changed.headers.content_type = Some("image/png".into());
    changed.headers.user_metadata.insert("new".into(), "yes".into());
    changed.encryption = Some(raw(json!({"rewrapped": true})));
    changed.parts[0].encryption = Some(raw(json!({"part": 1})));
    changed.etag = "new-etag".into();
    changed.key = "ignored".into();
    let stored = f.store.update_object_meta("bkt", "k", original.clone(), changed.clone()).await.unwrap();
    assert_eq!(stored, ObjectMeta { key: "k".into(), ..changed });
    assert_eq!(f.store.head_object("bkt", "k").await.unwrap(), stored);
    assert_eq!(get(&f.store, "bkt", "k").await, data);
    let listed = f.store.list_objects("bkt", &ListQuery::default()).await.unwrap();
    assert_eq!(listed.objects[0].etag, "new-etag");

    let mut wrong = stored.clone();
    wrong.parts[0].stored_size += 1;
    let update = |meta| f.store.update_object_meta("bkt", "k", stored.clone(), meta);
    assert!(matches!(update(wrong).await, Err(StoreError::InvalidMeta(_))));
    let mut wrong = stored.clone();
    wrong.parts.clear();
    assert!(matches!(update(wrong).await, Err(StoreError::InvalidMeta(_))));
    assert!(matches!(
        f.store.update_object_meta("bkt", "missing", original.clone(), original).await,
        Err(StoreError::Changed)
    ));
    assert_eq!(f.store.head_object("bkt", "k").await.unwrap(), stored);
}

#[tokio::test]
async fn conditional_writes_apply_only_to_the_version_read() {
    let f = Fixture::with_bucket("bkt").await;
    let read = put(&f.store, "bkt", "k", &pattern(5000, 1)).await;
    let mut resealed = read.clone();
    resealed.encryption = Some(raw(json!({"rewrapped": true})));

    // A client overwrites the object after the version was read: neither kind of conditional write touches it.
    let newer = put(&f.store, "bkt", "k", &pattern(5000, 2)).await;
    let stale_update = f.store.update_object_meta("bkt", "k", read.clone(), resealed.clone()).await;
    assert!(matches!(stale_update, Err(StoreError::Changed)), "{stale_update:?}");
    let data = staged(&f.store, &pattern(300_000, 3)).await;
    let stale_replace = f.store.replace_object("bkt", "k", data, ObjectMeta::new("k", 300_000, "e3"), read).await;
    assert!(matches!(stale_replace, Err(StoreError::Changed)), "{stale_replace:?}");
    assert_eq!(f.store.head_object("bkt", "k").await.unwrap(), newer);
    assert_eq!(get(&f.store, "bkt", "k").await, pattern(5000, 2));
    assert!(files_under(&f.tmp_dir()).is_empty(), "the refused data was discarded");

    // Deleted after it was read: nothing comes back.
    f.store.delete_object("bkt", "k").await.unwrap();
    let data = staged(&f.store, &pattern(10, 4)).await;
    let gone = f.store.replace_object("bkt", "k", data, ObjectMeta::new("k", 10, "e4"), newer.clone()).await;
    assert!(matches!(gone, Err(StoreError::Changed)), "{gone:?}");
    assert!(matches!(f.store.head_object("bkt", "k").await, Err(StoreError::NoSuchKey)));

    // Still the version read: both apply.
    let current = put(&f.store, "bkt", "k", &pattern(5000, 5)).await;
    let data = staged(&f.store, &pattern(300_000, 6)).await;
    let replaced =
        f.store.replace_object("bkt", "k", data, ObjectMeta::new("k", 300_000, "e6"), current).await.unwrap();
    assert_eq!(get(&f.store, "bkt", "k").await, pattern(300_000, 6));
    let mut resealed = replaced.clone();
    resealed.encryption = Some(raw(json!({"rewrapped": true})));
    let updated = f.store.update_object_meta("bkt", "k", replaced, resealed.clone()).await.unwrap();
    assert_eq!(updated, resealed);
    assert_eq!(get(&f.store, "bkt", "k").await, pattern(300_000, 6));
}

#[tokio::test]
async fn a_reader_keeps_its_version_through_overwrite_and_delete() {
    let f = Fixture::directory_with_bucket("bkt").await;
    let v1 = pattern(READ_CHUNK * 2 + 17, 1);
    let v1_meta = put(&f.store, "bkt", "k", &v1).await;
    let reader = f.store.open_object("bkt", "k").await.unwrap();
    let mut stream = reader.read_part(0, 0, v1.len() as u64);
    let first = stream.next().await.unwrap().unwrap();

    let v2 = pattern(1000, 2);
    put(&f.store, "bkt", "k", &v2).await;
    assert_eq!(get(&f.store, "bkt", "k").await, v2);
    let dir = only_object_dir(&f, "bkt");
    assert_eq!(files_under(&dir).len(), 1, "v1's data file is already unlinked (v2 is inline)");

    let mut rest = first.to_vec();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(rest, v1);

    f.store.delete_object("bkt", "k").await.unwrap();
    assert_eq!(reader.meta(), &v1_meta);
    assert_eq!(read_all(&reader).await, v1, "a new read of the pinned version still works after delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_to_one_key_are_last_writer_wins() {
    let f = Fixture::directory_with_bucket("bkt").await;
    // Sizes on both sides of the inline limit: versions in meta.json and in data files replace each other.
    let values: Vec<Vec<u8>> = (0..12u8).map(|i| pattern(40_000 + usize::from(i) * 5000, i)).collect();
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let store = f.store.clone();
            tokio::spawn(async move {
                // Every read sees one complete version: its bytes match its own metadata.
                for _ in 0..20 {
                    if let Ok(reader) = store.open_object("bkt", "k").await {
                        let data = read_all(&reader).await;
                        assert_eq!(etag_of(&data), reader.meta().etag);
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let writers: Vec<_> = values
        .iter()
        .cloned()
        .map(|value| {
            let store = f.store.clone();
            tokio::spawn(async move {
                put(&store, "bkt", "k", &value).await;
            })
        })
        .collect();
    for task in writers.into_iter().chain(readers) {
        task.await.unwrap();
    }
    let reader = f.store.open_object("bkt", "k").await.unwrap();
    let data = read_all(&reader).await;
    assert!(values.contains(&data));
    assert_eq!(etag_of(&data), reader.meta().etag);
    let dir = only_object_dir(&f, "bkt");
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    let data_files = record["data_files"].as_array().unwrap().len();
    assert_eq!(data_files, usize::from(data.len() > 64 * 1024));
    assert_eq!(files_under(&dir).len(), 1 + data_files, "exactly one version's files remain");
    assert_eq!(entries_in(&f.tmp_dir()), 0);
    let listed = f.store.list_objects("bkt", &ListQuery::default()).await.unwrap();
    assert_eq!(listed.objects.len(), 1);
    assert_eq!(listed.objects[0].etag, reader.meta().etag);
}

#[tokio::test]
async fn files_and_directories_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::directory_with_bucket("bkt").await;
    put(&f.store, "bkt", "k", b"secret-ish").await;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = only_object_dir(&f, "bkt");
    assert_eq!(mode(&dir), 0o700);
    for file in files_under(&dir) {
        assert_eq!(mode(&file), 0o600, "{file:?}");
    }
}

#[test]
fn store_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    fn check(store: &Store) {
        assert_send(&store.open_object("b", "k"));
        assert_send(&store.list_objects("b", &ListQuery::default()));
    }
    let _ = check;
    fn assert_static_stream<T: futures::Stream + Send + Unpin + 'static>() {}
    assert_static_stream::<coffer_store::PartStream<Vec<u8>>>();
}

#[tokio::test]
async fn debug_prints_show_no_object_bytes() {
    let f = Fixture::with_bucket("bkt").await;
    let secret = b"object bytes that must not be printed";
    let mut write = f.store.stage();
    write.write(secret).await.unwrap();
    let printed = format!("{write:?}");
    let file = write.finish().await.unwrap();
    let printed = printed + &format!("{file:?}");
    f.store.put_object("bkt", "k", file, ObjectMeta::new("k", secret.len() as u64, "e")).await.unwrap();
    let printed = printed + &format!("{:?}", f.store.open_object("bkt", "k").await.unwrap());
    assert!(printed.contains("StagedWrite") && printed.contains("Inline(37 bytes)"), "{printed}");
    let as_numbers = format!("{:?}", &secret[..8]);
    assert!(!printed.contains("object bytes") && !printed.contains(&as_numbers[1..as_numbers.len() - 1]), "{printed}");
}
