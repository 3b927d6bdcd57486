//! Maintenance: scrubbing (damage found without a KMS, nothing changed), garbage collection of what crashes leave,
//! and uploads whose completion a crash interrupted.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use coffer_store::{ObjectMeta, PartMeta, ScrubFinding, Store, UploadMeta, READ_CHUNK};

use crate::common::{files_under, get, pattern, put, staged, Fixture};

fn object_dir(f: &Fixture, bucket: &str, key: &str) -> PathBuf {
    f.data_dir().join("buckets").join(bucket).join("objects").join(object_id(key))
}

fn object_id(key: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes()))
}

fn data_files(dir: &Path) -> Vec<PathBuf> {
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    record["data_files"].as_array().unwrap().iter().map(|name| dir.join(name.as_str().unwrap())).collect()
}

/// Every object of `bucket` as a scrub walks them, in pages of two, with what it found.
async fn scrub_all(store: &Store, bucket: &str, prefix: &str) -> Vec<ScrubFinding> {
    let mut findings = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let ids = store.object_ids(bucket, after.as_deref(), 2).await.unwrap();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "ids come in order: {ids:?}");
        for id in &ids {
            findings.push(store.scrub_object(bucket, id, prefix).await.unwrap());
        }
        match ids.last() {
            Some(last) if ids.len() == 2 => after = Some(last.clone()),
            _ => return findings,
        }
    }
}

fn damaged(findings: &[ScrubFinding]) -> Vec<(Option<&str>, &str)> {
    let mut found: Vec<_> = findings
        .iter()
        .filter_map(|finding| match finding {
            ScrubFinding::Damaged { key, reason } => Some((key.as_deref(), reason.as_str())),
            _ => None,
        })
        .collect();
    found.sort();
    found
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    files_under(dir).into_iter().map(|path| (path.clone(), std::fs::read(&path).unwrap())).collect()
}

#[tokio::test]
async fn scrub_finds_every_kind_of_damage_and_changes_nothing() {
    let f = Fixture::directory_with_bucket("bkt").await;
    let big = pattern(2 * READ_CHUNK + 77, 1);
    for key in ["a/intact", "a/flipped", "a/truncated", "a/missing", "b/record", "b/inline", "b/unparsable"] {
        let data = if key.ends_with("inline") { pattern(500, 2) } else { big.clone() };
        put(&f.store, "bkt", key, &data).await;
    }
    let clean = scrub_all(&f.store, "bkt", "").await;
    assert_eq!(clean.len(), 7);
    assert!(clean.iter().all(|finding| matches!(finding, ScrubFinding::Intact { .. })), "{clean:?}");
    assert!(clean.contains(&ScrubFinding::Intact { key: "a/intact".into(), stored_bytes: big.len() as u64 }));

    // A flipped byte in the last (short) chunk, a truncated file, a missing file, an edited record, an edited record
    // with inline data, and a record that no longer parses.
    let flipped = &data_files(&object_dir(&f, "bkt", "a/flipped"))[0];
    let file = std::fs::OpenOptions::new().write(true).open(flipped).unwrap();
    file.write_all_at(b"\xff", 2 * READ_CHUNK as u64 + 5).unwrap();
    let truncated = &data_files(&object_dir(&f, "bkt", "a/truncated"))[0];
    std::fs::OpenOptions::new().write(true).open(truncated).unwrap().set_len(100).unwrap();
    std::fs::remove_file(&data_files(&object_dir(&f, "bkt", "a/missing"))[0]).unwrap();
    for key in ["b/record", "b/inline"] {
        let path = object_dir(&f, "bkt", key).join("meta.json");
        let text = std::fs::read_to_string(&path).unwrap().replacen("\"etag\": \"", "\"etag\": \"0", 1);
        std::fs::write(&path, text).unwrap();
    }
    std::fs::write(object_dir(&f, "bkt", "b/unparsable").join("meta.json"), b"{not json").unwrap();
    // A directory a crash left before its first commit is not an object.
    std::fs::create_dir(f.data_dir().join("buckets/bkt/objects").join(object_id("never committed"))).unwrap();

    let before = snapshot(&f.data_dir());
    let findings = scrub_all(&f.store, "bkt", "").await;
    assert_eq!(snapshot(&f.data_dir()), before, "a scrub changes nothing");
    assert_eq!(findings.iter().filter(|finding| **finding == ScrubFinding::Absent).count(), 1);
    let found = damaged(&findings);
    let keys: Vec<_> = found.iter().map(|(key, _)| *key).collect();
    assert_eq!(
        keys,
        [None, Some("a/flipped"), Some("a/missing"), Some("a/truncated"), Some("b/inline"), Some("b/record")],
        "{found:?}"
    );
    let reason = |key| found.iter().find(|(k, _)| *k == Some(key)).unwrap().1;
    assert!(reason("a/flipped").contains(&format!("fails its checksum in the chunk at byte {}", 2 * READ_CHUNK)));
    assert!(reason("a/truncated").contains("holds 100 bytes"), "{}", reason("a/truncated"));
    assert!(reason("a/missing").contains("missing"));
    assert!(reason("b/record").contains("record integrity check failed"));
    assert!(found[0].1.contains("corrupt record"), "{found:?}");
    assert!(findings.contains(&ScrubFinding::Intact { key: "a/intact".into(), stored_bytes: big.len() as u64 }));

    // A prefix scopes the scrub; a record that cannot tell its key is only reported without one.
    let scoped = scrub_all(&f.store, "bkt", "a/").await;
    assert_eq!(damaged(&scoped).iter().map(|(key, _)| *key).collect::<Vec<_>>().len(), 3);
    assert_eq!(scoped.iter().filter(|finding| **finding == ScrubFinding::OutOfScope).count(), 3);
}

#[tokio::test]
async fn data_stored_before_checksums_is_unverifiable_not_damaged() {
    let f = Fixture::directory_with_bucket("bkt").await;
    let data = pattern(READ_CHUNK + 10, 3);
    put(&f.store, "bkt", "old", &data).await;
    put(&f.store, "bkt", "small", b"inline bytes").await;
    let store = f.as_written_by_version_3().await;
    let findings = scrub_all(&store, "bkt", "").await;
    assert!(findings.contains(&ScrubFinding::Intact { key: "small".into(), stored_bytes: 12 }), "{findings:?}");
    let old = findings.iter().find(|finding| matches!(finding, ScrubFinding::Unverifiable { .. })).unwrap();
    let ScrubFinding::Unverifiable { key, stored_bytes, reason } = old else { unreachable!() };
    assert_eq!((key.as_str(), *stored_bytes), ("old", data.len() as u64));
    assert!(reason.contains("before data checksums were kept"), "{reason}");
    // Without checksums a truncation is still found.
    let file = std::fs::OpenOptions::new().write(true).open(&data_files(&object_dir(&f, "bkt", "old"))[0]).unwrap();
    file.set_len(5).unwrap();
    assert!(matches!(
        &scrub_all(&store, "bkt", "").await[..],
        [ScrubFinding::Damaged { .. }, _] | [_, ScrubFinding::Damaged { .. }]
    ));
}

fn part(number: u32, data: &[u8]) -> PartMeta {
    PartMeta {
        number,
        size: data.len() as u64,
        stored_size: 0,
        etag: format!("etag-{number}"),
        checksum: None,
        last_modified: time::OffsetDateTime::UNIX_EPOCH,
        encryption: None,
    }
}

/// Leaves `contents` as a file at `path`, as a crash would have: with a data file's name, but named by no record.
fn leave(path: &Path, len: usize) -> u64 {
    std::fs::write(path, pattern(len, 7)).unwrap();
    len as u64
}

#[tokio::test]
async fn garbage_collection_removes_only_what_no_record_references() {
    let f = Fixture::directory_with_bucket("bkt").await;
    let big = pattern(300_000, 4);
    put(&f.store, "bkt", "kept", &big).await;
    put(&f.store, "bkt", "small", b"inline").await;
    let upload = f.store.create_upload("bkt", "mpu", UploadMeta::default()).await.unwrap();
    f.store.put_part("bkt", "mpu", &upload, part(1, &big), staged(&f.store, &big).await).await.unwrap();
    let objects = f.data_dir().join("buckets/bkt/objects");
    let upload_dir = f.data_dir().join("buckets/bkt/uploads").join(&upload);

    // What kill -9 leaves: a data file beside a committed record, a directory without a record, a part's data
    // without its record, and temp files; plus a directory whose record cannot be read, which must stay whole.
    let mut left = leave(&object_dir(&f, "bkt", "kept").join("data-00aa"), 1000);
    let uncommitted = objects.join(object_id("crashed before its first commit"));
    std::fs::create_dir(&uncommitted).unwrap();
    left += leave(&uncommitted.join("data-00bb"), 2000);
    left += leave(&upload_dir.join("data-00cc"), 3000);
    let damaged = object_dir(&f, "bkt", "small");
    leave(&damaged.join("data-00dd"), 4000);
    std::fs::write(damaged.join("meta.json"), b"{damaged").unwrap();
    let young_temp = f.tmp_dir().join("stage-young");
    leave(&young_temp, 500);
    let kept_before: Vec<_> = files_under(&f.data_dir().join("buckets"))
        .into_iter()
        .filter(|path| !path.ends_with("data-00aa") && !path.ends_with("data-00bb") && !path.ends_with("data-00cc"))
        .collect();

    let reclaimed = f.store.collect_garbage(Duration::from_secs(3600)).await.unwrap();
    assert_eq!((reclaimed.files, reclaimed.bytes), (3, left));
    assert!(!uncommitted.exists());
    assert_eq!(files_under(&f.data_dir().join("buckets")), kept_before, "everything else stays");
    assert!(young_temp.exists(), "a temp file of a write that may be in flight stays");
    assert_eq!(get(&f.store, "bkt", "kept").await, big);
    f.store
        .complete_upload("bkt", "mpu", &upload, &[1], ObjectMeta::new("mpu", big.len() as u64, "e-1"))
        .await
        .unwrap();
    assert_eq!(get(&f.store, "bkt", "mpu").await, big);

    // Old enough temp files go too; a second collection finds nothing more.
    let reclaimed = f.store.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!((reclaimed.files, reclaimed.bytes), (1, 500));
    assert_eq!(f.store.collect_garbage(Duration::ZERO).await.unwrap().files, 0);
    assert!(damaged.join("data-00dd").exists());
}

#[tokio::test]
async fn temp_files_of_the_last_run_are_counted_when_swept_at_open() {
    let f = Fixture::with_bucket("bkt").await;
    std::fs::write(f.tmp_dir().join("stage-left"), pattern(1234, 1)).unwrap();
    let reopened = f.reopen().await;
    assert_eq!((reopened.swept_at_open().files, reopened.swept_at_open().bytes), (1, 1234));
}

/// Completes `upload` through `store` as a crash right after the commit would leave it: the object committed, the
/// upload directory still there (a copy taken before is put back).
async fn complete_then_crash(f: &Fixture, store: &Store, key: &str, upload: &str, len: usize) {
    let upload_dir = f.data_dir().join("buckets/bkt/uploads").join(upload);
    let copy = f.root.path().join(format!("copy-{upload}"));
    std::fs::create_dir(&copy).unwrap();
    for file in files_under(&upload_dir) {
        std::fs::copy(&file, copy.join(file.file_name().unwrap())).unwrap();
    }
    store.complete_upload("bkt", key, upload, &[1], ObjectMeta::new(key, len as u64, "e-1")).await.unwrap();
    assert!(!upload_dir.exists());
    std::fs::rename(&copy, &upload_dir).unwrap();
}

async fn upload_ids(store: &Store) -> Vec<String> {
    store.list_uploads("bkt", "").await.unwrap().into_iter().map(|upload| upload.upload_id).collect()
}

#[tokio::test]
async fn an_upload_completed_just_before_a_crash_is_not_listed_after_it() {
    let f = Fixture::directory_with_bucket("bkt").await;
    let data = pattern(70_000, 5);
    let done = f.store.create_upload("bkt", "done", UploadMeta::default()).await.unwrap();
    f.store.put_part("bkt", "done", &done, part(1, &data), staged(&f.store, &data).await).await.unwrap();
    let open = f.store.create_upload("bkt", "done", UploadMeta::default()).await.unwrap();
    complete_then_crash(&f, &f.store, "done", &done, data.len()).await;
    let uploads = f.data_dir().join("buckets/bkt/uploads");
    assert_eq!(upload_ids(&f.store).await, std::slice::from_ref(&open), "a listing skips it");
    assert!(!uploads.join(&done).exists(), "and removes it");

    let later = f.store.create_upload("bkt", "later", UploadMeta::default()).await.unwrap();
    f.store.put_part("bkt", "later", &later, part(1, &data), staged(&f.store, &data).await).await.unwrap();
    complete_then_crash(&f, &f.store, "later", &later, data.len()).await;
    let store = f.reopen().await;
    assert!(!uploads.join(&later).exists(), "removed at open");
    assert_eq!(upload_ids(&store).await, [open], "the other upload of the first key is still in progress");
    assert_eq!(get(&store, "bkt", "done").await, data);
    assert_eq!(get(&store, "bkt", "later").await, data);
}

/// On a data bucket an overwrite releases the old data file, and deleting it after the grace period (none in these
/// tests) counts the bytes that frees. Local data files go with the overwrite itself: nothing waits for release.
#[tokio::test]
async fn deleting_released_data_counts_the_bytes_it_frees() {
    let f = Fixture::with_bucket("bkt").await;
    put(&f.store, "bkt", "k", &pattern(300_000, 4)).await;
    put(&f.store, "bkt", "k", &pattern(200_000, 5)).await;
    let reclaimed = f.store.delete_released_data().await.unwrap();
    if f.data_in_bucket() {
        assert_eq!(reclaimed.files, 1, "{reclaimed:?}");
        assert!((300_000..310_000).contains(&reclaimed.bytes), "{reclaimed:?}");
    } else {
        assert_eq!(reclaimed, Default::default());
    }
    assert_eq!(f.store.delete_released_data().await.unwrap(), Default::default());
    assert_eq!(get(&f.store, "bkt", "k").await, pattern(200_000, 5));
}
