//! Listing through the store: the index is loaded from disk, kept current by commits, and pages correctly.

use coffer_store::{ListPage, ListQuery, Store};

use crate::common::{put, Fixture};

const KEYS: &[&str] =
    &["photos/2024/a.jpg", "photos/2024/b.jpg", "photos/2025/c.jpg", "photos/top.jpg", "readme", "zz/é"];

async fn filled() -> Fixture {
    fill(Fixture::with_bucket("lst").await).await
}

async fn fill(f: Fixture) -> Fixture {
    for key in KEYS {
        put(&f.store, "lst", key, key.as_bytes()).await;
    }
    f
}

async fn list(
    store: &Store,
    prefix: &str,
    delimiter: Option<&str>,
    start_after: Option<&str>,
    max_keys: usize,
) -> ListPage {
    let query = ListQuery {
        prefix: prefix.into(),
        delimiter: delimiter.map(Into::into),
        start_after: start_after.map(Into::into),
        max_keys,
    };
    store.list_objects("lst", &query).await.unwrap()
}

fn keys(page: &ListPage) -> Vec<&str> {
    page.objects.iter().map(|o| o.key.as_str()).collect()
}

#[tokio::test]
async fn lists_with_prefix_and_delimiter() {
    let f = filled().await;
    let page = list(&f.store, "", None, None, 1000).await;
    assert_eq!(keys(&page), KEYS);
    let summary = &page.objects[4];
    assert_eq!((summary.size, summary.etag.as_str()), (6, crate::common::etag_of(b"readme").as_str()));
    assert_eq!(summary.last_modified, f.store.head_object("lst", "readme").await.unwrap().last_modified);

    let page = list(&f.store, "", Some("/"), None, 1000).await;
    assert_eq!(keys(&page), ["readme"]);
    assert_eq!(page.common_prefixes, ["photos/", "zz/"]);

    let page = list(&f.store, "photos/", Some("/"), None, 1000).await;
    assert_eq!(keys(&page), ["photos/top.jpg"]);
    assert_eq!(page.common_prefixes, ["photos/2024/", "photos/2025/"]);

    let page = list(&f.store, "photos/20", None, Some("photos/2024/a.jpg"), 1000).await;
    assert_eq!(keys(&page), ["photos/2024/b.jpg", "photos/2025/c.jpg"]);
}

#[tokio::test]
async fn pages_with_continuation() {
    let f = filled().await;
    // "photos/" and "readme" fill the page.
    let first = list(&f.store, "", Some("/"), None, 2).await;
    assert_eq!(keys(&first), ["readme"]);
    assert_eq!(first.common_prefixes, ["photos/"]);
    assert!(first.is_truncated);
    assert_eq!(first.next_start_after.as_deref(), Some("readme"));
    let second = list(&f.store, "", Some("/"), first.next_start_after.as_deref(), 2).await;
    assert_eq!(second.common_prefixes, ["zz/"]);
    assert!(!second.is_truncated);
    assert_eq!(second.next_start_after, None);
}

#[tokio::test]
async fn the_index_follows_commits_and_survives_restart() {
    let f = filled().await;
    assert_eq!(list(&f.store, "", None, None, 1000).await.objects.len(), KEYS.len());
    put(&f.store, "lst", "new", b"1").await;
    f.store.delete_object("lst", "readme").await.unwrap();
    put(&f.store, "lst", "zz/é", b"changed").await;
    let page = list(&f.store, "", None, None, 1000).await;
    assert_eq!(
        keys(&page),
        ["new", "photos/2024/a.jpg", "photos/2024/b.jpg", "photos/2025/c.jpg", "photos/top.jpg", "zz/é"]
    );
    assert_eq!(page.objects[5].size, 7);

    // A fresh process builds the same index from disk.
    let reopened = f.reopen().await;
    assert_eq!(list(&reopened, "", None, None, 1000).await, page);
}

#[tokio::test]
async fn an_uncommitted_object_directory_is_not_listed() {
    let f = fill(Fixture::directory_with_bucket("lst").await).await;
    // What a crash between creating an object dir and its first meta.json leaves behind.
    let orphan = f.data_dir().join("buckets/lst/objects").join("0".repeat(64));
    std::fs::create_dir(&orphan).unwrap();
    std::fs::write(orphan.join("data-00"), b"orphan").unwrap();
    let reopened = f.reopen().await;
    assert_eq!(list(&reopened, "", None, None, 1000).await.objects.len(), KEYS.len());
    for key in KEYS {
        reopened.delete_object("lst", key).await.unwrap();
    }
    // Not an object, so the bucket counts as empty.
    reopened.delete_bucket("lst").await.unwrap();
}
