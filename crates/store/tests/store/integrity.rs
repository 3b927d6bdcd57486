//! Integrity of stored records and data: record MACs (edited, moved, unsigned records) and data file checksums.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use coffer_store::{ObjectMeta, PartMeta, Store, StoreError, UploadMeta, READ_CHUNK};
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};

use crate::common::{etag_of, files_under, get, pattern, put, raw, read_all, staged, Fixture};

fn object_dir(f: &Fixture, bucket: &str, key: &str) -> PathBuf {
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    f.data_dir().join("buckets").join(bucket).join("objects").join(hex::encode(hash))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

/// Both the HEAD and the GET path of `bucket/key` fail with `InvalidData`.
async fn assert_refused(store: &Store, bucket: &str, key: &str, what: &str) {
    for result in [store.head_object(bucket, key).await.map(|_| ()), store.open_object(bucket, key).await.map(|_| ())] {
        match result {
            Err(StoreError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{what}: {e}"),
            other => panic!("{what}: {other:?}"),
        }
    }
}

fn invalid_data<T: std::fmt::Debug>(result: Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData)
}

#[tokio::test]
async fn the_record_key_is_private_and_outlives_a_restart() {
    let f = Fixture::with_bucket("bkt").await;
    put(&f.store, "bkt", "k", b"kept").await;
    let key_file = f.data_dir().join(".coffer/record-mac.key");
    let metadata = std::fs::metadata(&key_file).unwrap();
    assert_eq!(metadata.len(), 32);
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    assert!(!f.data_dir().join(".coffer/unsigned-records-accepted").exists(), "a new data directory is strict");
    assert_eq!(get(&f.reopen().await, "bkt", "k").await, b"kept");
    assert!(!format!("{:?}", f.store).contains(&hex::encode(std::fs::read(&key_file).unwrap())));
}

#[tokio::test]
async fn every_edit_of_an_object_record_is_refused() {
    let f = Fixture::directory_with_bucket("bkt").await;
    let mut meta = ObjectMeta::new("", 0, "");
    meta.encryption = Some(raw(json!({"mode": "SSE-S3", "nonce": "abc"})));
    meta.headers.content_type = Some("text/plain".into());
    for (key, len) in [("inline", 100), ("file", 200_000)] {
        let data = pattern(len, 9);
        let meta = ObjectMeta { key: key.into(), size: len as u64, etag: etag_of(&data), ..meta.clone() };
        f.store.put_object("bkt", key, staged(&f.store, &data).await, meta).await.unwrap();
        let path = object_dir(&f, "bkt", key).join("meta.json");
        let original_bytes = std::fs::read(&path).unwrap();
        let original = read_json(&path);
        let edits: Vec<(&str, Value)> = vec![
            ("/meta/size", json!(len - 1)),
            ("/meta/etag", json!("0123")),
            ("/meta/key", json!("other")),
            ("/meta/encryption", Value::Null),
            ("/meta/encryption/mode", json!("none")),
            ("/meta/headers/content_type", json!("text/html")),
            ("/meta/parts/0/size", json!(len + 1)),
            ("/meta/parts/0/stored_size", json!(len - 1)),
            ("/meta/parts/0/number", json!(2)),
            ("/format_version", json!(3)),
            ("/mac", json!("00".repeat(32))),
            ("/mac", Value::Null),
        ];
        for (pointer, value) in edits {
            let mut record = original.clone();
            *record.pointer_mut(pointer).unwrap_or_else(|| panic!("{key}: no {pointer}")) = value;
            write_json(&path, &record);
            assert_refused(&f.store, "bkt", key, &format!("{key}: {pointer}")).await;
        }
        let mut record = original.clone();
        match key {
            "inline" => record["inline_data"] = json!(base64_of(&pattern(len, 8))),
            _ => record["data_checksums"] = json!([null]),
        }
        write_json(&path, &record);
        assert_refused(&f.store, "bkt", key, &format!("{key}: stored data or its checksums")).await;
        std::fs::write(&path, &original_bytes).unwrap();
        assert_eq!(get(&f.store, "bkt", key).await, data, "{key}: the original record reads again");
    }
}

fn base64_of(data: &[u8]) -> String {
    use base64_simd::STANDARD;
    STANDARD.encode_to_string(data)
}

#[tokio::test]
async fn a_record_copied_to_another_key_or_bucket_is_refused() {
    let f = Fixture::directory_with_bucket("bkt").await;
    f.store.create_bucket("other", None).await.unwrap();
    put(&f.store, "bkt", "a", b"secret of a").await;
    put(&f.store, "bkt", "b", b"b").await;
    put(&f.store, "other", "a", b"a elsewhere").await;
    let record = std::fs::read(object_dir(&f, "bkt", "a").join("meta.json")).unwrap();
    std::fs::write(object_dir(&f, "other", "a").join("meta.json"), &record).unwrap();
    assert_refused(&f.store, "other", "a", "copied to another bucket").await;
    std::fs::write(object_dir(&f, "bkt", "b").join("meta.json"), &record).unwrap();
    assert!(f.store.head_object("bkt", "b").await.is_err(), "copied to another key");
}

#[tokio::test]
async fn edited_or_swapped_upload_part_and_bucket_records_are_refused() {
    let f = Fixture::directory_with_bucket("bkt").await;
    let id = f.store.create_upload("bkt", "k", UploadMeta::default()).await.unwrap();
    for number in [1, 2] {
        let data = pattern(1000, number as u8);
        let part = PartMeta {
            number,
            size: 1000,
            stored_size: 0,
            etag: etag_of(&data),
            checksum: None,
            last_modified: time::OffsetDateTime::UNIX_EPOCH,
            encryption: None,
        };
        f.store.put_part("bkt", "k", &id, part, staged(&f.store, &data).await).await.unwrap();
    }
    let upload_dir = f.data_dir().join("buckets/bkt/uploads").join(&id);
    let part_two = std::fs::read(upload_dir.join("part-00002.json")).unwrap();
    std::fs::copy(upload_dir.join("part-00001.json"), upload_dir.join("part-00002.json")).unwrap();
    assert!(invalid_data(f.store.list_parts("bkt", "k", &id).await), "part 1's record as part 2");
    assert!(invalid_data(f.store.complete_upload("bkt", "k", &id, &[2], ObjectMeta::new("k", 0, "e")).await));
    std::fs::write(upload_dir.join("part-00002.json"), part_two).unwrap();
    assert_eq!(f.store.list_parts("bkt", "k", &id).await.unwrap().len(), 2);

    let upload = upload_dir.join("upload.json");
    let mut record = read_json(&upload);
    record["meta"]["checksum_algorithm"] = json!("CRC32");
    write_json(&upload, &record);
    assert!(invalid_data(f.store.upload_meta("bkt", "k", &id).await));

    let bucket = f.data_dir().join("buckets/bkt/bucket.json");
    let mut record = read_json(&bucket);
    record["encryption"] = json!({"rule": "none"});
    write_json(&bucket, &record);
    assert!(invalid_data(f.reopen().await.bucket_encryption("bkt").await));
}

#[tokio::test]
async fn unsigned_records_are_read_only_where_accepted_and_signed_by_their_next_commit() {
    let f = Fixture::directory_with_bucket("bkt").await;
    let data = pattern(200_000, 5);
    put(&f.store, "bkt", "k", &data).await;
    let path = object_dir(&f, "bkt", "k").join("meta.json");
    let mut unsigned = read_json(&path);
    unsigned.as_object_mut().unwrap().remove("mac");
    unsigned["format_version"] = json!(3);
    write_json(&path, &unsigned);
    assert_refused(&f.store, "bkt", "k", "an unsigned record in a strict data directory").await;

    let store = f.as_written_by_version_3().await;
    assert_eq!(get(&store, "bkt", "k").await, data, "unsigned records of an upgraded data directory");
    let meta = store.head_object("bkt", "k").await.unwrap();
    let mut changed = meta.clone();
    changed.headers.content_type = Some("text/plain".into());
    store.update_object_meta("bkt", "k", meta, changed.clone()).await.unwrap();
    let record = read_json(&path);
    assert_eq!(record["format_version"], 4);
    assert_eq!(record["mac"].as_str().unwrap().len(), 64, "the next commit signs the record");
    assert_eq!(record["data_checksums"], json!([null]), "data written before checksums has none");
    assert_eq!(f.reopen().await.head_object("bkt", "k").await.unwrap(), changed);
    assert_eq!(get(&store, "bkt", "k").await, data);
}

/// Flips one bit of the byte at `offset` of `path`.
fn flip(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

fn data_files(dir: &Path) -> Vec<PathBuf> {
    files_under(dir).into_iter().filter(|p| !p.ends_with("meta.json")).collect()
}

#[tokio::test]
async fn a_flipped_byte_fails_its_chunk_before_any_of_it_is_read() {
    let f = Fixture::directory_with_bucket("bkt").await;
    let len = READ_CHUNK * 2 + READ_CHUNK / 2;
    let data = pattern(len, 7);
    put(&f.store, "bkt", "k", &data).await;
    let file = data_files(&object_dir(&f, "bkt", "k")).pop().unwrap();
    for offset in [0, READ_CHUNK + 12_345, len - 1] {
        flip(&file, offset);
        let reader = f.store.open_object("bkt", "k").await.unwrap();
        let items: Vec<_> = reader.read_part(0, 0, len as u64).collect().await;
        let good: usize = items.iter().filter_map(|item| item.as_ref().ok()).map(|chunk| chunk.len()).sum();
        let error = items.last().unwrap().as_ref().unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData, "flip at {offset}");
        assert_eq!(good, offset / READ_CHUNK * READ_CHUNK, "flip at {offset}: only the chunks before it are read");

        // A range inside the damaged chunk fails without a byte of it; one in another chunk reads.
        let (inside, elsewhere) = match offset / READ_CHUNK {
            0 => (1..9, READ_CHUNK + 5..len),
            1 => (offset - 1..offset, 3..READ_CHUNK - 2),
            _ => (offset - 1..offset, 3..READ_CHUNK + 2),
        };
        let result: Result<Vec<_>, _> =
            reader.read_part(0, inside.start as u64, inside.len() as u64).try_collect().await;
        assert_eq!(result.unwrap_err().kind(), std::io::ErrorKind::InvalidData, "flip at {offset}: range {inside:?}");
        let read: Vec<_> =
            reader.read_part(0, elsewhere.start as u64, elsewhere.len() as u64).try_collect().await.unwrap();
        assert_eq!(read.concat(), data[elsewhere.clone()], "flip at {offset}: range {elsewhere:?}");
        flip(&file, offset);
        assert_eq!(read_all(&f.store.open_object("bkt", "k").await.unwrap()).await, data);
    }
}

#[tokio::test]
async fn completed_uploads_keep_their_parts_checksums() {
    let f = Fixture::directory_with_bucket("bkt").await;
    let id = f.store.create_upload("bkt", "k", UploadMeta::default()).await.unwrap();
    let parts = [pattern(READ_CHUNK + 10, 1), pattern(5000, 2)];
    for (number, data) in (1..).zip(&parts) {
        let part = PartMeta {
            number,
            size: data.len() as u64,
            stored_size: 0,
            etag: etag_of(data),
            checksum: None,
            last_modified: time::OffsetDateTime::UNIX_EPOCH,
            encryption: None,
        };
        f.store.put_part("bkt", "k", &id, part, staged(&f.store, data).await).await.unwrap();
    }
    f.store.complete_upload("bkt", "k", &id, &[1, 2], ObjectMeta::new("k", 0, "e-2")).await.unwrap();
    let record = read_json(&object_dir(&f, "bkt", "k").join("meta.json"));
    for (index, name) in record["data_files"].as_array().unwrap().iter().enumerate() {
        let file = object_dir(&f, "bkt", "k").join(name.as_str().unwrap());
        flip(&file, parts[index].len() - 1);
        let reader = f.store.open_object("bkt", "k").await.unwrap();
        let result: Result<Vec<_>, _> = reader.read_part(index, 0, parts[index].len() as u64).try_collect().await;
        assert_eq!(result.unwrap_err().kind(), std::io::ErrorKind::InvalidData, "part {}", index + 1);
        flip(&file, parts[index].len() - 1);
    }
    assert_eq!(get(&f.store, "bkt", "k").await, parts.concat());
}
