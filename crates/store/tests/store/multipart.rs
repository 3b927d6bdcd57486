//! Multipart uploads: parts, completion (subset, order, no copy), abort, listing, concurrency.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use coffer_store::{ChecksumKind, ObjectHeaders, ObjectMeta, PartMeta, Store, StoreError, UploadMeta};
use serde_json::json;

use crate::common::{entries_in, files_under, flat_record, get, pattern, put, raw, read_all, staged, Fixture};

fn part(number: u32, data: &[u8]) -> PartMeta {
    PartMeta {
        number,
        size: data.len() as u64,
        stored_size: 0,
        etag: format!("etag-{number}"),
        checksum: None,
        last_modified: time::OffsetDateTime::UNIX_EPOCH,
        encryption: Some(raw(json!({"part": number}))),
    }
}

async fn upload_part(store: &Store, key: &str, id: &str, number: u32, data: &[u8]) -> PartMeta {
    let file = staged(store, data).await;
    store.put_part("mpu", key, id, part(number, data), file).await.unwrap()
}

fn uploads_dir(f: &Fixture) -> std::path::PathBuf {
    f.data_dir().join("buckets/mpu/uploads")
}

#[tokio::test]
async fn upload_meta_round_trips() {
    let f = Fixture::with_bucket("mpu").await;
    let upload = UploadMeta {
        headers: ObjectHeaders {
            content_type: Some("video/mp4".into()),
            cache_control: Some("max-age=60".into()),
            user_metadata: BTreeMap::from([("owner".into(), "me".into())]),
            ..ObjectHeaders::default()
        },
        checksum_algorithm: Some("CRC32".into()),
        checksum_kind: Some(ChecksumKind::FullObject),
        encryption: Some(raw(json!({"sse": "kms", "key": "k1"}))),
        ..UploadMeta::default()
    };
    let before = time::OffsetDateTime::now_utc();
    let id = f.store.create_upload("mpu", "big/file", upload.clone()).await.unwrap();
    assert_eq!(id.len(), 32);
    let stored = f.store.upload_meta("mpu", "big/file", &id).await.unwrap();
    assert!(stored.initiated >= before);
    assert_eq!(stored, UploadMeta { initiated: stored.initiated, ..upload });
    assert_eq!(f.reopen().await.upload_meta("mpu", "big/file", &id).await.unwrap(), stored);
    assert!(f.store.list_parts("mpu", "big/file", &id).await.unwrap().is_empty());
}

#[tokio::test]
async fn uploads_recorded_flat_by_version_2_complete() {
    let f = Fixture::directory_with_bucket("mpu").await;
    let upload = UploadMeta {
        headers: ObjectHeaders { content_type: Some("video/mp4".into()), ..ObjectHeaders::default() },
        encryption: Some(raw(json!({"sse": "kms"}))),
        ..UploadMeta::default()
    };
    let id = f.store.create_upload("mpu", "k", upload).await.unwrap();
    let data = pattern(1000, 4);
    upload_part(&f.store, "k", &id, 1, &data).await;
    let (upload, parts) =
        (f.store.upload_meta("mpu", "k", &id).await.unwrap(), f.store.list_parts("mpu", "k", &id).await);
    let store = f.as_written_by_version_3().await;
    for name in ["upload.json", "part-00001.json"] {
        let path = uploads_dir(&f).join(&id).join(name);
        let nested: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_vec(&flat_record(&nested, 2)).unwrap()).unwrap();
    }
    assert_eq!(store.upload_meta("mpu", "k", &id).await.unwrap(), upload);
    assert_eq!(store.list_parts("mpu", "k", &id).await.unwrap(), parts.unwrap());
    store.complete_upload("mpu", "k", &id, &[1], ObjectMeta::new("k", 1000, "x-1")).await.unwrap();
    assert_eq!(get(&store, "mpu", "k").await, data);
}

#[tokio::test]
async fn unknown_or_hostile_upload_ids_are_no_such_upload() {
    let f = Fixture::with_bucket("mpu").await;
    let id = f.store.create_upload("mpu", "k", UploadMeta::default()).await.unwrap();
    for bad in ["", "nope", "../../objects", "../uploads", &"0".repeat(32), &id.to_uppercase()] {
        assert!(matches!(f.store.upload_meta("mpu", "k", bad).await, Err(StoreError::NoSuchUpload)), "{bad:?}");
        assert!(matches!(f.store.abort_upload("mpu", "k", bad).await, Err(StoreError::NoSuchUpload)), "{bad:?}");
        let file = staged(&f.store, b"x").await;
        assert!(matches!(f.store.put_part("mpu", "k", bad, part(1, b"x"), file).await, Err(StoreError::NoSuchUpload)));
    }
    // The id belongs to another key.
    assert!(matches!(f.store.list_parts("mpu", "other", &id).await, Err(StoreError::NoSuchUpload)));
    assert!(matches!(
        f.store.complete_upload("mpu", "other", &id, &[1], ObjectMeta::new("other", 0, "e")).await,
        Err(StoreError::NoSuchUpload)
    ));
    assert_eq!(entries_in(&f.tmp_dir()), 0);
}

#[tokio::test]
async fn part_numbers_outside_the_s3_range_are_refused() {
    let f = Fixture::with_bucket("mpu").await;
    let id = f.store.create_upload("mpu", "k", UploadMeta::default()).await.unwrap();
    for number in [0, 10_001] {
        let file = staged(&f.store, b"x").await;
        assert!(matches!(
            f.store.put_part("mpu", "k", &id, part(number, b"x"), file).await,
            Err(StoreError::InvalidPart(n)) if n == number
        ));
    }
    let top = upload_part(&f.store, "k", &id, 10_000, b"last").await;
    assert_eq!(top.number, 10_000);
    assert_eq!(entries_in(&f.tmp_dir()), 0);
}

#[tokio::test]
async fn complete_a_subset_of_parts_uploaded_out_of_order() {
    let f = Fixture::directory_with_bucket("mpu").await;
    put(&f.store, "mpu", "obj", b"previous version").await;
    let id = f.store.create_upload("mpu", "obj", UploadMeta::default()).await.unwrap();
    let data: Vec<Vec<u8>> = (1..=4u8).map(|i| pattern(100_000 + usize::from(i), i)).collect();
    for number in [3u32, 1, 4, 2] {
        let stored = upload_part(&f.store, "obj", &id, number, &data[number as usize - 1]).await;
        assert_eq!(stored.stored_size, data[number as usize - 1].len() as u64);
        assert_ne!(stored.last_modified, time::OffsetDateTime::UNIX_EPOCH);
    }
    let listed = f.store.list_parts("mpu", "obj", &id).await.unwrap();
    assert_eq!(listed.iter().map(|p| p.number).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(listed[2].encryption, Some(raw(json!({"part": 3}))));

    // Inodes of the chosen part files, to prove completion links instead of copying.
    let upload_files = files_under(&uploads_dir(&f).join(&id));
    let inodes: Vec<u64> = upload_files
        .iter()
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("data-"))
        .map(|p| std::fs::metadata(p).unwrap().ino())
        .collect();
    assert_eq!(inodes.len(), 4);

    let mut meta = ObjectMeta::new("obj", 0, "abc-2");
    meta.size = (data[0].len() + data[2].len()) as u64;
    meta.headers.content_type = Some("application/x-test".into());
    let committed = f.store.complete_upload("mpu", "obj", &id, &[1, 3], meta).await.unwrap();
    assert_eq!(committed.parts.iter().map(|p| p.number).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(committed.parts[1], listed[2]);
    assert_eq!(committed.etag, "abc-2");
    assert_eq!(committed.headers.content_type.as_deref(), Some("application/x-test"));
    assert_eq!(f.store.head_object("mpu", "obj").await.unwrap(), committed);

    let reader = f.store.open_object("mpu", "obj").await.unwrap();
    assert_eq!(read_all(&reader).await, [data[0].clone(), data[2].clone()].concat());

    // The upload, its unused parts and the previous version are gone; the object's files are the part files.
    assert!(matches!(f.store.list_parts("mpu", "obj", &id).await, Err(StoreError::NoSuchUpload)));
    assert_eq!(entries_in(&uploads_dir(&f)), 0);
    let object_dir =
        std::fs::read_dir(f.data_dir().join("buckets/mpu/objects")).unwrap().next().unwrap().unwrap().path();
    let object_files = files_under(&object_dir);
    assert_eq!(object_files.len(), 3, "meta.json + 2 parts: {object_files:?}");
    for file in object_files.iter().filter(|p| !p.ends_with("meta.json")) {
        let meta = std::fs::metadata(file).unwrap();
        assert!(inodes.contains(&meta.ino()), "{file:?} was copied");
        assert_eq!(meta.nlink(), 1);
    }
    assert_eq!(entries_in(&f.tmp_dir()), 0);
    assert_eq!(f.store.list_objects("mpu", &Default::default()).await.unwrap().objects[0].etag, "abc-2");
}

#[tokio::test]
async fn parts_are_stored_in_the_order_given() {
    let f = Fixture::with_bucket("mpu").await;
    let id = f.store.create_upload("mpu", "k", UploadMeta::default()).await.unwrap();
    upload_part(&f.store, "k", &id, 1, b"one ").await;
    upload_part(&f.store, "k", &id, 2, b"two ").await;
    let committed = f.store.complete_upload("mpu", "k", &id, &[2, 1], ObjectMeta::new("k", 8, "x-2")).await.unwrap();
    assert_eq!(committed.parts.iter().map(|p| p.number).collect::<Vec<_>>(), [2, 1]);
    assert_eq!(get(&f.store, "mpu", "k").await, b"two one ");
}

#[tokio::test]
async fn replacing_a_part_keeps_only_the_new_data() {
    let f = Fixture::directory_with_bucket("mpu").await;
    let id = f.store.create_upload("mpu", "k", UploadMeta::default()).await.unwrap();
    upload_part(&f.store, "k", &id, 1, b"first attempt").await;
    upload_part(&f.store, "k", &id, 1, b"second").await;
    let parts = f.store.list_parts("mpu", "k", &id).await.unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].size, 6);
    assert_eq!(entries_in(&uploads_dir(&f).join(&id)), 3, "upload.json, part-00001.json, one data file");
    f.store.complete_upload("mpu", "k", &id, &[1], ObjectMeta::new("k", 6, "e-1")).await.unwrap();
    assert_eq!(get(&f.store, "mpu", "k").await, b"second");
}

#[tokio::test]
async fn completing_with_a_missing_or_repeated_part_changes_nothing() {
    let f = Fixture::with_bucket("mpu").await;
    put(&f.store, "mpu", "k", b"old").await;
    let id = f.store.create_upload("mpu", "k", UploadMeta::default()).await.unwrap();
    upload_part(&f.store, "k", &id, 1, b"a").await;
    upload_part(&f.store, "k", &id, 2, b"b").await;
    for (chosen, bad) in [(vec![1, 5], 5), (vec![1, 2, 1], 1), (vec![0], 0)] {
        let result = f.store.complete_upload("mpu", "k", &id, &chosen, ObjectMeta::new("k", 2, "e")).await;
        assert!(matches!(result, Err(StoreError::InvalidPart(n)) if n == bad), "{chosen:?}: {result:?}");
    }
    assert!(matches!(
        f.store.complete_upload("mpu", "k", &id, &[], ObjectMeta::new("k", 0, "e")).await,
        Err(StoreError::InvalidMeta(_))
    ));
    assert_eq!(get(&f.store, "mpu", "k").await, b"old");
    assert_eq!(f.store.list_parts("mpu", "k", &id).await.unwrap().len(), 2);
    // The upload is still usable.
    f.store.complete_upload("mpu", "k", &id, &[1, 2], ObjectMeta::new("k", 2, "e-2")).await.unwrap();
    assert_eq!(get(&f.store, "mpu", "k").await, b"ab");
}

/// The caller computes the ETag, checksums and encryption commitment from the parts it listed: a part uploaded
/// again before the completion commits is refused, not silently taken.
#[tokio::test]
async fn completing_with_a_part_replaced_since_it_was_listed_changes_nothing() {
    let f = Fixture::with_bucket("mpu").await;
    let id = f.store.create_upload("mpu", "k", UploadMeta::default()).await.unwrap();
    upload_part(&f.store, "k", &id, 1, b"a").await;
    upload_part(&f.store, "k", &id, 2, b"b").await;
    let listed = f.store.list_parts("mpu", "k", &id).await.unwrap();
    upload_part(&f.store, "k", &id, 2, b"bb").await;
    let mut meta = ObjectMeta::new("k", 2, "e-2");
    meta.parts = listed.clone();
    let result = f.store.complete_upload("mpu", "k", &id, &[1, 2], meta).await;
    assert!(matches!(result, Err(StoreError::InvalidPart(2))), "{result:?}");
    let mut fewer = ObjectMeta::new("k", 1, "e-1");
    fewer.parts = listed[..1].to_vec();
    let result = f.store.complete_upload("mpu", "k", &id, &[1, 2], fewer).await;
    assert!(matches!(result, Err(StoreError::InvalidMeta(_))), "{result:?}");
    assert!(matches!(f.store.head_object("mpu", "k").await, Err(StoreError::NoSuchKey)));
    let mut current = ObjectMeta::new("k", 3, "e-2");
    current.parts = f.store.list_parts("mpu", "k", &id).await.unwrap();
    f.store.complete_upload("mpu", "k", &id, &[1, 2], current).await.unwrap();
    assert_eq!(get(&f.store, "mpu", "k").await, b"abb");
}

#[tokio::test]
async fn abort_removes_the_upload() {
    let f = Fixture::with_bucket("mpu").await;
    let id = f.store.create_upload("mpu", "k", UploadMeta::default()).await.unwrap();
    upload_part(&f.store, "k", &id, 1, &pattern(10_000, 1)).await;
    f.store.abort_upload("mpu", "k", &id).await.unwrap();
    assert!(matches!(f.store.upload_meta("mpu", "k", &id).await, Err(StoreError::NoSuchUpload)));
    assert!(matches!(f.store.abort_upload("mpu", "k", &id).await, Err(StoreError::NoSuchUpload)));
    let file = staged(&f.store, b"late").await;
    assert!(matches!(f.store.put_part("mpu", "k", &id, part(2, b"late"), file).await, Err(StoreError::NoSuchUpload)));
    assert!(matches!(
        f.store.complete_upload("mpu", "k", &id, &[1], ObjectMeta::new("k", 1, "e")).await,
        Err(StoreError::NoSuchUpload)
    ));
    assert!(matches!(f.store.head_object("mpu", "k").await, Err(StoreError::NoSuchKey)));
    assert_eq!(entries_in(&uploads_dir(&f)), 0);
    assert_eq!(entries_in(&f.tmp_dir()), 0);
}

#[tokio::test]
async fn list_uploads_filters_by_prefix_and_sorts_by_key() {
    let f = Fixture::with_bucket("mpu").await;
    let mut ids = BTreeMap::new();
    for key in ["b/2", "a/1", "b/1", "b/1"] {
        let id = f.store.create_upload("mpu", key, UploadMeta::default()).await.unwrap();
        ids.entry(key).or_insert_with(Vec::new).push(id);
    }
    let all = f.store.list_uploads("mpu", "").await.unwrap();
    assert_eq!(all.iter().map(|u| u.key.as_str()).collect::<Vec<_>>(), ["a/1", "b/1", "b/1", "b/2"]);
    assert!(all[1].initiated <= all[2].initiated);
    let b1: Vec<_> = all.iter().filter(|u| u.key == "b/1").map(|u| u.upload_id.clone()).collect();
    let mut expected = ids["b/1"].clone();
    expected.sort();
    let mut got = b1.clone();
    got.sort();
    assert_eq!(got, expected);

    let b = f.store.list_uploads("mpu", "b/").await.unwrap();
    assert_eq!(b.len(), 3);
    f.store.abort_upload("mpu", "a/1", &ids["a/1"][0]).await.unwrap();
    assert!(f.store.list_uploads("mpu", "a").await.unwrap().is_empty());
    // Uploads are not objects.
    assert!(f.store.list_objects("mpu", &Default::default()).await.unwrap().objects.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_part_uploads_of_one_upload() {
    let f = Fixture::directory_with_bucket("mpu").await;
    let id = f.store.create_upload("mpu", "k", UploadMeta::default()).await.unwrap();
    let data: Vec<Vec<u8>> = (1..=16u8).map(|i| pattern(40_000, i)).collect();
    let tasks: Vec<_> = (1..=16u32)
        .flat_map(|number| {
            // Each number uploaded twice at once, with identical bytes, plus a replacement race.
            let body = data[number as usize - 1].clone();
            let (store, id) = (f.store.clone(), id.clone());
            let (store2, id2, body2) = (f.store.clone(), id.clone(), body.clone());
            [
                tokio::spawn(async move { upload_part(&store, "k", &id, number, &body).await }),
                tokio::spawn(async move { upload_part(&store2, "k", &id2, number, &body2).await }),
            ]
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let parts = f.store.list_parts("mpu", "k", &id).await.unwrap();
    assert_eq!(parts.iter().map(|p| p.number).collect::<Vec<_>>(), (1..=16).collect::<Vec<_>>());
    assert_eq!(entries_in(&uploads_dir(&f).join(&id)), 1 + 16 + 16, "no leaked data files");
    let numbers: Vec<u32> = (1..=16).collect();
    f.store.complete_upload("mpu", "k", &id, &numbers, ObjectMeta::new("k", 640_000, "e-16")).await.unwrap();
    assert_eq!(get(&f.store, "mpu", "k").await, data.concat());
    assert_eq!(entries_in(&f.tmp_dir()), 0);
}

#[tokio::test]
async fn a_completed_upload_survives_restart_and_reads_by_part() {
    let f = Fixture::with_bucket("mpu").await;
    let id = f.store.create_upload("mpu", "k", UploadMeta::default()).await.unwrap();
    upload_part(&f.store, "k", &id, 1, b"hello ").await;
    upload_part(&f.store, "k", &id, 2, b"world").await;
    f.store.complete_upload("mpu", "k", &id, &[1, 2], ObjectMeta::new("k", 11, "e-2")).await.unwrap();
    let reopened = f.reopen().await;
    let reader = reopened.open_object("mpu", "k").await.unwrap();
    use futures::TryStreamExt;
    let second: Vec<_> = reader.read_part(1, 1, 3).try_collect().await.unwrap();
    assert_eq!(second.concat(), b"orl");
    assert_eq!(read_all(&reader).await, b"hello world");
}
