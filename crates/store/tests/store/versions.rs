//! Object versioning: bucket states, versions kept and read by id, delete markers, removal of one version, the
//! null version of suspended buckets, version listings, and the directory engine's null versions. Versioning tests
//! run on the SQL engine `COFFER_TEST_ENGINE` names (SQLite when it names the directory engine).

use std::time::Duration;

use coffer_store::{
    is_version_id, Deletion, ListQuery, ObjectMeta, PartMeta, ScrubFinding, Store, StoreError, UploadMeta, VersionPage,
    VersionQuery, Versioning,
};
use sqlx::{AnyConnection, Connection, Row};

use crate::common::{etag_of, get, pattern, put, read_all, staged, Fixture};

/// Larger than what is kept inline: stored in a data file.
const FILE_SIZED: usize = 100_000;

async fn versioned(state: Versioning) -> Fixture {
    let f = Fixture::versioning_with_bucket("bkt").await;
    f.store.set_bucket_versioning("bkt", state).await.unwrap();
    f
}

async fn get_version(store: &Store, key: &str, version_id: &str) -> Vec<u8> {
    read_all(&store.open_version("bkt", key, version_id).await.unwrap()).await
}

fn id_of(meta: &ObjectMeta) -> &str {
    meta.version_id.as_deref().expect("a version id")
}

async fn versions(store: &Store, query: VersionQuery) -> VersionPage {
    store.list_object_versions("bkt", &query).await.unwrap()
}

/// Every version of the bucket as (key, version name, is_latest, delete_marker), in listing order.
async fn all_versions(store: &Store) -> Vec<(String, String, bool, bool)> {
    let page = versions(store, VersionQuery::default()).await;
    assert!(!page.is_truncated);
    page.versions
        .into_iter()
        .map(|v| (v.key, v.version_id.unwrap_or_else(|| "null".into()), v.is_latest, v.delete_marker))
        .collect()
}

fn entry(key: &str, version: &str, latest: bool, marker: bool) -> (String, String, bool, bool) {
    (key.to_owned(), version.to_owned(), latest, marker)
}

/// Checks how many data files the store holds, when they are local (the S3 data engine deletes released files
/// later, at a garbage collection).
fn assert_data_files(f: &Fixture, expected: usize) {
    if let Some(files) = f.local_data_files() {
        assert_eq!(files.len(), expected, "{files:?}");
    }
}

#[tokio::test]
async fn versioning_starts_unversioned_and_moves_between_enabled_and_suspended() {
    let f = Fixture::versioning_with_bucket("bkt").await;
    assert_eq!(f.store.bucket_versioning("bkt").await.unwrap(), Versioning::Unversioned);
    assert!(matches!(
        f.store.set_bucket_versioning("bkt", Versioning::Unversioned).await,
        Err(StoreError::InvalidMeta(_))
    ));
    f.store.set_bucket_versioning("bkt", Versioning::Enabled).await.unwrap();
    assert_eq!(f.store.bucket_versioning("bkt").await.unwrap(), Versioning::Enabled);
    f.store.set_bucket_versioning("bkt", Versioning::Suspended).await.unwrap();
    assert_eq!(f.store.bucket_versioning("bkt").await.unwrap(), Versioning::Suspended);
    // Kept in the bucket record: survives a restart, and the other settings are untouched.
    f.store.set_bucket_policy("bkt", Some("{}".into())).await.unwrap();
    let reopened = f.reopen().await;
    assert_eq!(reopened.bucket_versioning("bkt").await.unwrap(), Versioning::Suspended);
    assert_eq!(reopened.head_bucket("bkt").await.unwrap().policy.as_deref(), Some("{}"));
    assert!(matches!(f.store.bucket_versioning("nope").await, Err(StoreError::NoSuchBucket)));
    assert!(matches!(f.store.set_bucket_versioning("nope", Versioning::Enabled).await, Err(StoreError::NoSuchBucket)));
}

#[tokio::test]
async fn enabled_writes_keep_every_version_readable_by_id() {
    let f = versioned(Versioning::Enabled).await;
    let first = put(&f.store, "bkt", "k", &pattern(FILE_SIZED, 1)).await;
    let second = put(&f.store, "bkt", "k", b"small second").await;
    assert!(is_version_id(id_of(&first)) && is_version_id(id_of(&second)));
    assert_ne!(first.version_id, second.version_id);
    assert_eq!(f.store.head_object("bkt", "k").await.unwrap(), second);
    assert_eq!(get(&f.store, "bkt", "k").await, b"small second");
    assert_eq!(f.store.head_version("bkt", "k", id_of(&first)).await.unwrap(), first);
    assert_eq!(get_version(&f.store, "k", id_of(&first)).await, pattern(FILE_SIZED, 1));
    assert_eq!(get_version(&f.store, "k", id_of(&second)).await, b"small second");
    // Listings of objects show the current version only.
    let page = f.store.list_objects("bkt", &ListQuery::default()).await.unwrap();
    assert_eq!(page.objects.len(), 1);
    assert_eq!(page.objects[0].etag, second.etag);
    // Unknown and malformed ids, and a key without versions.
    for missing in ["null", "0123456789abcdef0123456789abcdef", "NOT-AN-ID", ""] {
        assert!(matches!(f.store.head_version("bkt", "k", missing).await, Err(StoreError::NoSuchVersion)), "{missing}");
        assert!(matches!(f.store.open_version("bkt", "k", missing).await, Err(StoreError::NoSuchVersion)));
    }
    assert!(matches!(f.store.head_version("bkt", "other", id_of(&first)).await, Err(StoreError::NoSuchVersion)));
    assert!(matches!(f.store.head_version("nope", "k", "null").await, Err(StoreError::NoSuchBucket)));
    // Noncurrent data is referenced: garbage collection leaves it.
    assert_eq!(f.store.collect_garbage(Duration::ZERO).await.unwrap().files, 0);
    let reopened = f.reopen().await;
    assert_eq!(get_version(&reopened, "k", id_of(&first)).await, pattern(FILE_SIZED, 1));
}

#[tokio::test]
async fn a_delete_marker_hides_the_key_but_its_versions_stay_readable() {
    let f = versioned(Versioning::Enabled).await;
    let first = put(&f.store, "bkt", "k", b"one").await;
    let deletion = f.store.delete_object("bkt", "k").await.unwrap();
    assert!(deletion.delete_marker);
    let marker = deletion.version_id.clone().unwrap();
    assert!(is_version_id(&marker));
    assert!(matches!(f.store.head_object("bkt", "k").await, Err(StoreError::NoSuchKey)));
    assert!(matches!(f.store.open_object("bkt", "k").await, Err(StoreError::NoSuchKey)));
    assert!(f.store.list_objects("bkt", &ListQuery::default()).await.unwrap().objects.is_empty());
    match f.store.head_version("bkt", "k", &marker).await {
        Err(StoreError::DeleteMarker { version_id, .. }) => assert_eq!(version_id.as_deref(), Some(marker.as_str())),
        other => panic!("{other:?}"),
    }
    assert!(matches!(f.store.open_version("bkt", "k", &marker).await, Err(StoreError::DeleteMarker { .. })));
    assert_eq!(get_version(&f.store, "k", id_of(&first)).await, b"one");
    // A delete of a key without any version makes a marker too, and so does deleting a deleted key again.
    let never = f.store.delete_object("bkt", "never").await.unwrap();
    assert!(never.delete_marker && never.version_id.is_some());
    let again = f.store.delete_object("bkt", "k").await.unwrap();
    assert!(again.delete_marker);
    assert_eq!(
        all_versions(&f.store).await,
        [
            entry("k", again.version_id.as_deref().unwrap(), true, true),
            entry("k", &marker, false, true),
            entry("k", id_of(&first), false, false),
            entry("never", never.version_id.as_deref().unwrap(), true, true),
        ]
    );
}

#[tokio::test]
async fn removing_the_current_version_makes_the_previous_one_current() {
    let f = versioned(Versioning::Enabled).await;
    let first = put(&f.store, "bkt", "k", &pattern(FILE_SIZED, 2)).await;
    let second = put(&f.store, "bkt", "k", &pattern(FILE_SIZED, 3)).await;
    assert_data_files(&f, 2);
    let removed = f.store.delete_version("bkt", "k", id_of(&second)).await.unwrap();
    assert_eq!(removed, Deletion { version_id: second.version_id.clone(), delete_marker: false });
    assert_eq!(f.store.head_object("bkt", "k").await.unwrap(), first);
    assert_eq!(get(&f.store, "bkt", "k").await, pattern(FILE_SIZED, 2));
    assert!(matches!(f.store.head_version("bkt", "k", id_of(&second)).await, Err(StoreError::NoSuchVersion)));
    // Its data went with it.
    assert_data_files(&f, 1);
    // Removing a delete marker brings the object back.
    let marker = f.store.delete_object("bkt", "k").await.unwrap().version_id.unwrap();
    let removed = f.store.delete_version("bkt", "k", &marker).await.unwrap();
    assert_eq!(removed, Deletion { version_id: Some(marker.clone()), delete_marker: true });
    assert_eq!(f.store.head_object("bkt", "k").await.unwrap(), first);
    // A noncurrent version goes without changing the current one; a missing version is no error.
    let third = put(&f.store, "bkt", "k", b"three").await;
    f.store.delete_version("bkt", "k", id_of(&first)).await.unwrap();
    assert_eq!(f.store.head_object("bkt", "k").await.unwrap(), third);
    let missing = f.store.delete_version("bkt", "k", id_of(&first)).await.unwrap();
    assert_eq!(missing, Deletion { version_id: first.version_id.clone(), delete_marker: false });
    assert!(matches!(f.store.delete_version("bkt", "k", "bad id").await, Err(StoreError::NoSuchVersion)));
    assert!(matches!(f.store.delete_version("nope", "k", "null").await, Err(StoreError::NoSuchBucket)));
    // Removing the last version leaves nothing; the key's data is all released.
    f.store.delete_version("bkt", "k", id_of(&third)).await.unwrap();
    assert!(matches!(f.store.head_object("bkt", "k").await, Err(StoreError::NoSuchKey)));
    assert!(all_versions(&f.store).await.is_empty());
    assert_data_files(&f, 0);
}

#[tokio::test]
async fn a_marker_under_the_current_marker_is_removed_without_bringing_anything_back() {
    let f = versioned(Versioning::Enabled).await;
    let first = put(&f.store, "bkt", "k", b"one").await;
    let older = f.store.delete_object("bkt", "k").await.unwrap().version_id.unwrap();
    let newer = f.store.delete_object("bkt", "k").await.unwrap().version_id.unwrap();
    f.store.delete_version("bkt", "k", &newer).await.unwrap();
    // The older marker is current again.
    assert!(matches!(f.store.head_object("bkt", "k").await, Err(StoreError::NoSuchKey)));
    assert_eq!(all_versions(&f.store).await, [entry("k", &older, true, true), entry("k", id_of(&first), false, false)]);
}

#[tokio::test]
async fn suspended_writes_replace_the_null_version_and_release_its_data() {
    let f = Fixture::versioning_with_bucket("bkt").await;
    // Written unversioned: the null version.
    let null = put(&f.store, "bkt", "k", &pattern(FILE_SIZED, 4)).await;
    assert_eq!(null.version_id, None);
    f.store.set_bucket_versioning("bkt", Versioning::Enabled).await.unwrap();
    let with_id = put(&f.store, "bkt", "k", &pattern(FILE_SIZED, 5)).await;
    assert_eq!(get_version(&f.store, "k", "null").await, pattern(FILE_SIZED, 4));
    assert_data_files(&f, 2);
    f.store.set_bucket_versioning("bkt", Versioning::Suspended).await.unwrap();
    // A suspended write is the null version: it replaces the noncurrent null version, whose data goes, and makes
    // the version with an id noncurrent.
    let replacing = put(&f.store, "bkt", "k", &pattern(FILE_SIZED, 6)).await;
    assert_eq!(replacing.version_id, None);
    assert_eq!(get(&f.store, "bkt", "k").await, pattern(FILE_SIZED, 6));
    assert_eq!(get_version(&f.store, "k", "null").await, pattern(FILE_SIZED, 6));
    assert_eq!(get_version(&f.store, "k", id_of(&with_id)).await, pattern(FILE_SIZED, 5));
    assert_data_files(&f, 2);
    assert_eq!(
        all_versions(&f.store).await,
        [entry("k", "null", true, false), entry("k", id_of(&with_id), false, false)]
    );
    // Written again, the current null version is replaced in place.
    put(&f.store, "bkt", "k", b"inline").await;
    assert_data_files(&f, 1);
    // A suspended delete: a null delete marker replaces the null version.
    let deletion = f.store.delete_object("bkt", "k").await.unwrap();
    assert_eq!(deletion, Deletion { version_id: None, delete_marker: true });
    assert!(matches!(f.store.head_object("bkt", "k").await, Err(StoreError::NoSuchKey)));
    assert!(matches!(
        f.store.head_version("bkt", "k", "null").await,
        Err(StoreError::DeleteMarker { version_id: None, .. })
    ));
    assert_eq!(
        all_versions(&f.store).await,
        [entry("k", "null", true, true), entry("k", id_of(&with_id), false, false)]
    );
    // Removing the null marker brings back the version with an id.
    let removed = f.store.delete_version("bkt", "k", "null").await.unwrap();
    assert_eq!(removed, Deletion { version_id: None, delete_marker: true });
    assert_eq!(get(&f.store, "bkt", "k").await, pattern(FILE_SIZED, 5));
    // Over a current version with an id, a suspended write keeps that version, noncurrent.
    put(&f.store, "bkt", "k", b"null again").await;
    assert_eq!(get_version(&f.store, "k", id_of(&with_id)).await, pattern(FILE_SIZED, 5));
    assert_eq!(
        all_versions(&f.store).await,
        [entry("k", "null", true, false), entry("k", id_of(&with_id), false, false)]
    );
    // Collection finds nothing unreferenced (in a data bucket it deletes the files the replaced versions released),
    // and takes nothing referenced.
    let collected = f.store.collect_garbage(Duration::ZERO).await.unwrap();
    if f.local_data_files().is_some() {
        assert_eq!(collected.files, 0);
    }
    assert_eq!(get_version(&f.store, "k", id_of(&with_id)).await, pattern(FILE_SIZED, 5));
}

#[tokio::test]
async fn multipart_completions_and_rewrites_follow_the_versioning_state() {
    let f = versioned(Versioning::Enabled).await;
    let first = put(&f.store, "bkt", "k", b"single").await;
    let upload = f.store.create_upload("bkt", "k", UploadMeta::default()).await.unwrap();
    let part = PartMeta {
        number: 1,
        size: FILE_SIZED as u64,
        stored_size: 0,
        etag: "p1".into(),
        checksum: None,
        last_modified: time::OffsetDateTime::UNIX_EPOCH,
        encryption: None,
    };
    let data = pattern(FILE_SIZED, 7);
    f.store.put_part("bkt", "k", &upload, part, staged(&f.store, &data).await).await.unwrap();
    let completed = f
        .store
        .complete_upload("bkt", "k", &upload, &[1], ObjectMeta::new("k", FILE_SIZED as u64, "mpu-1"))
        .await
        .unwrap();
    assert!(is_version_id(id_of(&completed)) && completed.version_id != first.version_id);
    assert_eq!(get(&f.store, "bkt", "k").await, data);
    assert_eq!(get_version(&f.store, "k", id_of(&first)).await, b"single");
    // A rewrite of the current version (as a key rotation does) keeps its id and adds no version.
    let rewritten = pattern(FILE_SIZED, 8);
    let meta = ObjectMeta::new("k", rewritten.len() as u64, etag_of(&rewritten));
    let replaced =
        f.store.replace_object("bkt", "k", staged(&f.store, &rewritten).await, meta, completed.clone()).await.unwrap();
    assert_eq!(replaced.version_id, completed.version_id);
    let mut updated_meta = replaced.clone();
    updated_meta.version_id = None;
    updated_meta.headers.content_type = Some("text/plain".into());
    let updated = f.store.update_object_meta("bkt", "k", replaced.clone(), updated_meta).await.unwrap();
    assert_eq!(updated.version_id, completed.version_id);
    assert_eq!(get_version(&f.store, "k", id_of(&completed)).await, rewritten);
    assert_eq!(
        all_versions(&f.store).await,
        [entry("k", id_of(&completed), true, false), entry("k", id_of(&first), false, false)]
    );
    // The rewrite's expected version must be current: a noncurrent one is `Changed`.
    let meta = ObjectMeta::new("k", 1, etag_of(b"x"));
    let stale = f.store.replace_object("bkt", "k", staged(&f.store, b"x").await, meta, first.clone()).await;
    assert!(matches!(stale, Err(StoreError::Changed)));
}

#[tokio::test]
async fn unversioned_buckets_show_their_objects_as_null_versions() {
    let f = Fixture::versioning_with_bucket("bkt").await;
    put(&f.store, "bkt", "k", b"one").await;
    let stored = put(&f.store, "bkt", "k", &pattern(FILE_SIZED, 9)).await;
    assert_eq!(stored.version_id, None);
    // Replaced as ever: only the current data is kept.
    assert_data_files(&f, 1);
    assert_eq!(f.store.head_version("bkt", "k", "null").await.unwrap(), stored);
    assert!(matches!(
        f.store.head_version("bkt", "k", "0123456789abcdef0123456789abcdef").await,
        Err(StoreError::NoSuchVersion)
    ));
    assert_eq!(all_versions(&f.store).await, [entry("k", "null", true, false)]);
    assert_eq!(f.store.delete_object("bkt", "k").await.unwrap(), Deletion::default());
    assert!(all_versions(&f.store).await.is_empty());
    put(&f.store, "bkt", "k", b"two").await;
    assert_eq!(f.store.delete_version("bkt", "k", "null").await.unwrap(), Deletion::default());
    assert!(matches!(f.store.head_object("bkt", "k").await, Err(StoreError::NoSuchKey)));
    f.store.delete_bucket("bkt").await.unwrap();
}

#[tokio::test]
async fn a_bucket_with_only_noncurrent_versions_or_markers_is_not_empty() {
    let f = versioned(Versioning::Enabled).await;
    let only = put(&f.store, "bkt", "k", b"v").await;
    let marker = f.store.delete_object("bkt", "k").await.unwrap().version_id.unwrap();
    assert!(f.store.list_objects("bkt", &ListQuery::default()).await.unwrap().objects.is_empty());
    assert!(matches!(f.store.delete_bucket("bkt").await, Err(StoreError::BucketNotEmpty)));
    f.store.delete_version("bkt", "k", id_of(&only)).await.unwrap();
    // A delete marker alone keeps it too.
    assert!(matches!(f.store.delete_bucket("bkt").await, Err(StoreError::BucketNotEmpty)));
    f.store.delete_version("bkt", "k", &marker).await.unwrap();
    f.store.delete_bucket("bkt").await.unwrap();
}

/// Versions of several keys, markers among them, as (key, name, latest, marker) in listing order.
async fn filled_with_versions(f: &Fixture) -> Vec<(String, String, bool, bool)> {
    let mut expected = Vec::new();
    for key in ["a", "b/1", "b/2", "b/3/x", "c", "d/é"] {
        let mut key_versions = Vec::new();
        // 1 to 4 versions per key, newest first once reversed; "c" ends with a marker and "b/2" has one inside.
        let count = key.len() % 4 + 1;
        for n in 0..count {
            let name = if (key == "b/2" && n == 1) || (key == "c" && n + 1 == count) {
                f.store.delete_object("bkt", key).await.unwrap().version_id.unwrap()
            } else {
                id_of(&put(&f.store, "bkt", key, format!("{key}{n}").as_bytes()).await).to_owned()
            };
            let marker = (key == "b/2" && n == 1) || (key == "c" && n + 1 == count);
            key_versions.push(entry(key, &name, false, marker));
        }
        key_versions.reverse();
        key_versions[0].2 = true;
        expected.extend(key_versions);
    }
    expected
}

fn names(page: &VersionPage) -> Vec<(String, String, bool, bool)> {
    page.versions
        .iter()
        .map(|v| {
            let name = v.version_id.clone().unwrap_or_else(|| "null".into());
            (v.key.clone(), name, v.is_latest, v.delete_marker)
        })
        .collect()
}

#[tokio::test]
async fn version_listings_are_ordered_and_page_across_versions_and_common_prefixes() {
    let f = versioned(Versioning::Enabled).await;
    let expected = filled_with_versions(&f).await;
    assert_eq!(all_versions(&f.store).await, expected);
    let markers = expected.iter().filter(|e| e.3).count();
    assert_eq!(markers, 2);
    let page = versions(&f.store, VersionQuery::default()).await;
    for version in page.versions.iter().filter(|v| v.delete_marker) {
        assert_eq!((version.size, version.etag.as_str()), (0, ""));
    }

    // Every page size walks the same versions, resuming inside a key's versions and between keys.
    for max_keys in 1..=expected.len() + 1 {
        let mut walked = Vec::new();
        let mut query = VersionQuery { max_keys, ..VersionQuery::default() };
        loop {
            let page = versions(&f.store, query.clone()).await;
            assert!(page.versions.len() <= max_keys && page.common_prefixes.is_empty());
            walked.extend(names(&page));
            if !page.is_truncated {
                assert_eq!((page.next_key_marker, page.next_version_id_marker), (None, None));
                break;
            }
            let last = page.versions.last().unwrap();
            assert_eq!(page.next_key_marker.as_deref(), Some(last.key.as_str()));
            assert_eq!(page.next_version_id_marker, last.version_id);
            query.key_marker = page.next_key_marker;
            query.version_id_marker = page.next_version_id_marker;
        }
        assert_eq!(walked, expected, "max_keys {max_keys}");
    }

    // With a delimiter: "b/" and "d/" roll up, each counted once, and pages resume after them.
    let delimited = VersionQuery { delimiter: Some("/".into()), ..VersionQuery::default() };
    let page = versions(&f.store, delimited.clone()).await;
    assert_eq!(page.common_prefixes, ["b/", "d/"]);
    let top: Vec<_> = expected.iter().filter(|e| !e.0.contains('/')).cloned().collect();
    assert_eq!(names(&page), top);
    let mut walked = (Vec::new(), Vec::new());
    let mut query = VersionQuery { max_keys: 2, ..delimited.clone() };
    loop {
        let page = versions(&f.store, query.clone()).await;
        assert!(page.versions.len() + page.common_prefixes.len() <= 2);
        walked.0.extend(names(&page));
        walked.1.extend(page.common_prefixes.clone());
        if !page.is_truncated {
            break;
        }
        if page.common_prefixes.last() == page.next_key_marker.as_ref() {
            assert_eq!(page.next_version_id_marker, None);
        }
        query.key_marker = page.next_key_marker;
        query.version_id_marker = page.next_version_id_marker;
    }
    assert_eq!(walked, (top, vec!["b/".to_owned(), "d/".to_owned()]));

    // A prefix, and a prefix with a delimiter inside it.
    let query = VersionQuery { prefix: "b/".into(), ..VersionQuery::default() };
    let under_b: Vec<_> = expected.iter().filter(|e| e.0.starts_with("b/")).cloned().collect();
    assert_eq!(names(&versions(&f.store, query).await), under_b);
    let query = VersionQuery { prefix: "b/".into(), delimiter: Some("/".into()), ..VersionQuery::default() };
    let page = versions(&f.store, query).await;
    assert_eq!(page.common_prefixes, ["b/3/"]);
    assert_eq!(names(&page), under_b.iter().filter(|e| e.0 != "b/3/x").cloned().collect::<Vec<_>>());
    // A key marker alone starts after all of that key's versions; max_keys 0 is an empty page.
    let query = VersionQuery { key_marker: Some("b/2".into()), ..VersionQuery::default() };
    assert_eq!(
        names(&versions(&f.store, query).await),
        expected.iter().filter(|e| e.0.as_str() > "b/2").cloned().collect::<Vec<_>>()
    );
    let empty = versions(&f.store, VersionQuery { max_keys: 0, ..VersionQuery::default() }).await;
    assert_eq!(empty, VersionPage::default());
    assert!(matches!(
        f.store.list_object_versions("nope", &VersionQuery::default()).await,
        Err(StoreError::NoSuchBucket)
    ));
}

#[tokio::test]
async fn a_listing_resumes_after_the_null_version_wherever_it_is() {
    let f = Fixture::versioning_with_bucket("bkt").await;
    put(&f.store, "bkt", "k", b"null").await;
    f.store.set_bucket_versioning("bkt", Versioning::Enabled).await.unwrap();
    let newer = put(&f.store, "bkt", "k", b"newer").await;
    put(&f.store, "bkt", "l", b"other").await;
    // The null version is noncurrent now: after it comes key "l".
    let query = VersionQuery {
        key_marker: Some("k".into()),
        version_id_marker: Some("null".into()),
        ..VersionQuery::default()
    };
    let page = versions(&f.store, query).await;
    assert_eq!(page.versions.iter().map(|v| v.key.as_str()).collect::<Vec<_>>(), ["l"]);
    // After the current version comes the null version, not the latest.
    let query = VersionQuery {
        key_marker: Some("k".into()),
        version_id_marker: newer.version_id.clone(),
        max_keys: 1,
        ..VersionQuery::default()
    };
    let page = versions(&f.store, query).await;
    assert_eq!(names(&page), [entry("k", "null", false, false)]);
    assert!(page.is_truncated);
    assert_eq!((page.next_key_marker.as_deref(), page.next_version_id_marker.as_deref()), (Some("k"), Some("null")));
}

async fn database(f: &Fixture) -> AnyConnection {
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", f.data_dir().join("coffer.sqlite").display());
    AnyConnection::connect(&url).await.unwrap()
}

fn invalid_data<T: std::fmt::Debug>(result: Result<T, StoreError>) -> bool {
    matches!(&result, Err(StoreError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData)
}

#[tokio::test]
async fn an_edited_or_moved_version_row_fails_closed() {
    let f = Fixture::sqlite_with_bucket("bkt").await;
    f.store.set_bucket_versioning("bkt", Versioning::Enabled).await.unwrap();
    let k1 = put(&f.store, "bkt", "k", b"k one").await;
    put(&f.store, "bkt", "k", b"k two").await;
    let j1 = put(&f.store, "bkt", "j", b"j one").await;
    put(&f.store, "bkt", "j", b"j two").await;
    let mut db = database(&f).await;
    let k_row = sqlx::query("SELECT version_id, record FROM versions WHERE key = $1")
        .bind("k".as_bytes())
        .fetch_one(&mut db)
        .await
        .unwrap();
    let (k_id, k_record): (String, String) = (k_row.get(0), k_row.get(1));
    assert_eq!(k_id, id_of(&k1));
    // k's noncurrent record copied over j's: signed for another key and version.
    sqlx::query("UPDATE versions SET record = $1 WHERE key = $2")
        .bind(&k_record)
        .bind("j".as_bytes())
        .execute(&mut db)
        .await
        .unwrap();
    assert!(invalid_data(f.store.head_version("bkt", "j", id_of(&j1)).await));
    assert!(invalid_data(f.store.open_version("bkt", "j", id_of(&j1)).await));
    // The row given another version's id: its record was signed for its own.
    sqlx::query("UPDATE versions SET version_id = $1 WHERE key = $2")
        .bind("0123456789abcdef0123456789abcdef")
        .bind("k".as_bytes())
        .execute(&mut db)
        .await
        .unwrap();
    assert!(invalid_data(f.store.head_version("bkt", "k", "0123456789abcdef0123456789abcdef").await));
    sqlx::query("UPDATE versions SET version_id = $1 WHERE key = $2")
        .bind(&k_id)
        .bind("k".as_bytes())
        .execute(&mut db)
        .await
        .unwrap();
    assert_eq!(get_version(&f.store, "k", &k_id).await, b"k one");
    // An edited record.
    let edited = k_record.replace("\"size\":5", "\"size\":4");
    assert_ne!(edited, k_record);
    sqlx::query("UPDATE versions SET record = $1 WHERE key = $2")
        .bind(&edited)
        .bind("k".as_bytes())
        .execute(&mut db)
        .await
        .unwrap();
    assert!(invalid_data(f.store.head_version("bkt", "k", &k_id).await));
    // A current record is never made current from a damaged noncurrent one: removing the current version fails
    // and changes nothing.
    let current = f.store.head_object("bkt", "k").await.unwrap();
    assert!(invalid_data(f.store.delete_version("bkt", "k", id_of(&current)).await));
    assert_eq!(f.store.head_object("bkt", "k").await.unwrap(), current);
}

#[tokio::test]
async fn a_database_from_before_versioning_gets_its_version_column() {
    let f = Fixture::sqlite_with_bucket("bkt").await;
    put(&f.store, "bkt", "k", b"old").await;
    let mut db = database(&f).await;
    sqlx::query("ALTER TABLE objects DROP COLUMN version_id").execute(&mut db).await.unwrap();
    drop(db);
    let reopened = f.reopen().await;
    assert_eq!(get(&reopened, "bkt", "k").await, b"old");
    reopened.set_bucket_versioning("bkt", Versioning::Enabled).await.unwrap();
    put(&reopened, "bkt", "k", b"new").await;
    assert_eq!(get_version(&reopened, "k", "null").await, b"old");
}

#[tokio::test]
async fn the_directory_engine_keeps_one_null_version_per_key() {
    let f = Fixture::directory_with_bucket("bkt").await;
    assert_eq!(f.store.bucket_versioning("bkt").await.unwrap(), Versioning::Unversioned);
    assert!(matches!(
        f.store.set_bucket_versioning("bkt", Versioning::Enabled).await,
        Err(StoreError::NotImplemented(_))
    ));
    assert!(matches!(f.store.set_bucket_versioning("nope", Versioning::Enabled).await, Err(StoreError::NoSuchBucket)));
    for key in ["a", "b/1", "b/2", "c"] {
        put(&f.store, "bkt", key, key.as_bytes()).await;
    }
    let stored = f.store.head_object("bkt", "a").await.unwrap();
    assert_eq!(stored.version_id, None);
    assert_eq!(f.store.head_version("bkt", "a", "null").await.unwrap(), stored);
    assert_eq!(get_version(&f.store, "a", "null").await, b"a");
    let other = "0123456789abcdef0123456789abcdef";
    assert!(matches!(f.store.head_version("bkt", "a", other).await, Err(StoreError::NoSuchVersion)));
    assert!(matches!(f.store.open_version("bkt", "zz", "null").await, Err(StoreError::NoSuchVersion)));
    // Listed as null versions, paged by key, with "null" as the version marker after a version.
    let page =
        versions(&f.store, VersionQuery { delimiter: Some("/".into()), max_keys: 2, ..VersionQuery::default() }).await;
    assert_eq!(names(&page), [entry("a", "null", true, false)]);
    assert_eq!(page.common_prefixes, ["b/"]);
    assert!(page.is_truncated);
    assert_eq!((page.next_key_marker.as_deref(), page.next_version_id_marker), (Some("b/"), None));
    let page = versions(&f.store, VersionQuery { max_keys: 1, ..VersionQuery::default() }).await;
    assert_eq!((page.next_key_marker.as_deref(), page.next_version_id_marker.as_deref()), (Some("a"), Some("null")));
    let query = VersionQuery {
        key_marker: Some("a".into()),
        version_id_marker: Some("null".into()),
        ..VersionQuery::default()
    };
    let keys: Vec<_> = versions(&f.store, query).await.versions.into_iter().map(|v| v.key).collect();
    assert_eq!(keys, ["b/1", "b/2", "c"]);
    // Removing a version by id: the null version is the object; another id is a version that is not there.
    assert_eq!(
        f.store.delete_version("bkt", "a", other).await.unwrap(),
        Deletion { version_id: Some(other.into()), delete_marker: false }
    );
    assert_eq!(f.store.delete_version("bkt", "a", "null").await.unwrap(), Deletion::default());
    assert!(matches!(f.store.head_object("bkt", "a").await, Err(StoreError::NoSuchKey)));
    assert_eq!(f.store.delete_object("bkt", "c").await.unwrap(), Deletion::default());
}

#[tokio::test]
async fn a_past_version_s_metadata_is_rewritten_where_it_is() {
    let f = versioned(Versioning::Enabled).await;
    let old = put(&f.store, "bkt", "k", &pattern(FILE_SIZED, 7)).await;
    let current = put(&f.store, "bkt", "k", b"newer").await;
    let mut changed = old.clone();
    changed.headers.content_type = Some("text/rewritten".into());
    let stored = f.store.update_object_meta("bkt", "k", old.clone(), changed).await.unwrap();
    assert_eq!(
        (stored.version_id.as_deref(), stored.headers.content_type.as_deref()),
        (Some(id_of(&old)), Some("text/rewritten"))
    );
    // The past version changed in place, with its data; the current one did not move.
    let reread = f.store.head_version("bkt", "k", id_of(&old)).await.unwrap();
    assert_eq!(reread, stored);
    assert_eq!(get_version(&f.store, "k", id_of(&old)).await, pattern(FILE_SIZED, 7));
    assert_eq!(f.store.head_object("bkt", "k").await.unwrap(), current);
    assert_eq!(
        all_versions(&f.store).await,
        [entry("k", id_of(&current), true, false), entry("k", id_of(&old), false, false)]
    );
    // Only over the version as it was read.
    let again = f.store.update_object_meta("bkt", "k", old.clone(), old.clone()).await;
    assert!(matches!(again, Err(StoreError::Changed)), "{again:?}");
    f.store.delete_version("bkt", "k", id_of(&old)).await.unwrap();
    let gone = f.store.update_object_meta("bkt", "k", stored.clone(), stored).await;
    assert!(matches!(gone, Err(StoreError::Changed)), "{gone:?}");
}

fn scrubbed(key: &str, stored_bytes: u64) -> ScrubFinding {
    ScrubFinding::Intact { key: key.to_owned(), stored_bytes }
}

#[tokio::test]
async fn a_scrub_walks_every_key_with_versions_and_checks_each_stored_version() {
    let f = versioned(Versioning::Enabled).await;
    put(&f.store, "bkt", "k", &pattern(300_000, 1)).await;
    put(&f.store, "bkt", "k", &pattern(200_000, 2)).await;
    put(&f.store, "bkt", "marked", &pattern(FILE_SIZED, 3)).await;
    f.store.delete_object("bkt", "marked").await.unwrap();
    f.store.delete_object("bkt", "only-a-marker").await.unwrap();
    // Keys whose current version is a delete marker are walked too, in order, page by page.
    assert_eq!(f.store.object_ids("bkt", None, 10).await.unwrap(), ["k", "marked", "only-a-marker"]);
    assert_eq!(f.store.object_ids("bkt", None, 2).await.unwrap(), ["k", "marked"]);
    assert_eq!(f.store.object_ids("bkt", Some("k"), 1).await.unwrap(), ["marked"]);
    assert_eq!(f.store.object_ids("bkt", Some("only-a-marker"), 10).await.unwrap(), Vec::<String>::new());
    // Every stored version is read; delete markers store nothing.
    assert_eq!(f.store.scrub_object("bkt", "k", "").await.unwrap(), scrubbed("k", 500_000));
    assert_eq!(f.store.scrub_object("bkt", "marked", "").await.unwrap(), scrubbed("marked", FILE_SIZED as u64));
    assert_eq!(f.store.scrub_object("bkt", "only-a-marker", "").await.unwrap(), ScrubFinding::Absent);
}

#[tokio::test]
async fn a_scrub_names_the_damaged_past_version() {
    let f = Fixture::sqlite_with_bucket("bkt").await;
    f.store.set_bucket_versioning("bkt", Versioning::Enabled).await.unwrap();
    let old = put(&f.store, "bkt", "k", &pattern(300_000, 1)).await;
    put(&f.store, "bkt", "k", &pattern(200_000, 2)).await;
    let mut db = database(&f).await;
    let record: String = sqlx::query("SELECT record FROM versions WHERE key = $1")
        .bind("k".as_bytes())
        .fetch_one(&mut db)
        .await
        .unwrap()
        .get(0);
    f.flip_first_data_file_bit(&record, 1000);
    let ScrubFinding::Damaged { key, reason } = f.store.scrub_object("bkt", "k", "").await.unwrap() else {
        panic!("the flipped bit of the past version is found")
    };
    assert_eq!(key.as_deref(), Some("k"));
    assert!(reason.starts_with(&format!("version {}: ", id_of(&old))), "{reason}");
    // The current version still reads: the damage is the past version's alone.
    assert_eq!(get(&f.store, "bkt", "k").await, pattern(200_000, 2));
}
