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

/// Every entry (key or common prefix) of a listing, in order, the slow obvious way.
fn reference(keys: &[&str], prefix: &str, delimiter: Option<&str>) -> Vec<String> {
    let mut sorted = keys.to_vec();
    sorted.sort_unstable();
    let mut entries: Vec<String> = Vec::new();
    for key in sorted.into_iter().filter(|key| key.starts_with(prefix)) {
        let entry = match delimiter.and_then(|d| key[prefix.len()..].find(d).map(|at| prefix.len() + at + d.len())) {
            Some(end) => key[..end].to_owned(),
            None => key.to_owned(),
        };
        if entries.last() != Some(&entry) {
            entries.push(entry);
        }
    }
    entries
}

/// Pages through a listing `max_keys` entries at a time, checking each page's count, truncation and marker, and
/// returns every entry in order.
async fn paged(store: &Store, prefix: &str, delimiter: Option<&str>, max_keys: usize) -> Vec<String> {
    let mut entries = Vec::new();
    let mut start_after = None;
    loop {
        let page = list(store, prefix, delimiter, start_after.as_deref(), max_keys).await;
        let context = format!("prefix {prefix:?} delimiter {delimiter:?} max_keys {max_keys} after {start_after:?}");
        assert!(page.objects.len() + page.common_prefixes.len() <= max_keys, "{context}");
        let mut page_entries: Vec<String> =
            page.objects.iter().map(|o| o.key.clone()).chain(page.common_prefixes.iter().cloned()).collect();
        page_entries.sort_unstable();
        if !page.is_truncated {
            assert_eq!(page.next_start_after, None, "{context}");
            entries.extend(page_entries);
            return entries;
        }
        assert_eq!(page_entries.len(), max_keys, "{context}: a truncated page is full");
        assert_eq!(page.next_start_after.as_ref(), page_entries.last(), "{context}: the marker is the last entry");
        start_after = page.next_start_after.clone();
        entries.extend(page_entries);
    }
}

/// Keys for the edge cases of delimiter listings: multi-byte delimiters and keys, the highest code point
/// (U+10FFFF, whose UTF-8 ends in 0xBF), NUL bytes right after a key, keys equal to a common prefix, and groups next
/// to keys that sort inside their range but lack the delimiter.
const EDGE_KEYS: &[&str] = &[
    "a",
    "a\0",
    "a\0/x",
    "a/",
    "a//",
    "a/b",
    "a/b/c",
    "a0",
    "aé",
    "aéb",
    "aéé",
    "aééc",
    "a→1→2",
    "a→3",
    "a\u{10FFFF}",
    "a\u{10FFFF}x\u{10FFFF}y",
    "a\u{10FFFF}x\u{10FFFF}z",
    "a\u{10FFFF}\u{10FFFF}",
    "b",
    "é/1",
    "é/2",
    "\u{10FFFF}/1",
    "\u{10FFFF}\u{10FFFF}/2",
];

#[tokio::test]
async fn delimiter_listings_page_exactly_at_every_page_size() {
    let f = Fixture::with_bucket("lst").await;
    for key in EDGE_KEYS {
        put(&f.store, "lst", key, key.as_bytes()).await;
    }
    let cases: &[(&str, Option<&str>)] = &[
        ("", None),
        ("", Some("/")),
        ("a", Some("/")),
        ("a", Some("é")),
        ("a", Some("éé")),
        ("a", Some("→")),
        ("a", Some("\u{10FFFF}")),
        ("a\u{10FFFF}", Some("\u{10FFFF}")),
        ("a", Some("\0")),
        ("\u{10FFFF}", Some("/")),
        ("\u{10FFFF}", None),
        ("é", Some("/")),
        ("", Some("x")),
    ];
    for &(prefix, delimiter) in cases {
        let expected = reference(EDGE_KEYS, prefix, delimiter);
        for max_keys in 1..=expected.len() + 1 {
            let entries = paged(&f.store, prefix, delimiter, max_keys).await;
            assert_eq!(entries, expected, "prefix {prefix:?} delimiter {delimiter:?} max_keys {max_keys}");
        }
    }
    // Every entry's object rows carry their own size.
    let page = list(&f.store, "a", Some("é"), None, 1000).await;
    assert_eq!(page.common_prefixes, ["aé"]);
    assert!(page.objects.iter().all(|o| o.size == o.key.len() as u64));
}

#[tokio::test]
async fn a_common_prefix_at_a_page_boundary() {
    let f = Fixture::with_bucket("lst").await;
    for key in ["d/1", "d/2", "e", "f/1", "f/2/3", "g"] {
        put(&f.store, "lst", key, b"x").await;
    }
    // The page ends on a common prefix: the next page starts past every key of its group.
    let first = list(&f.store, "", Some("/"), None, 1).await;
    assert_eq!((first.common_prefixes.as_slice(), first.is_truncated), (["d/".to_owned()].as_slice(), true));
    assert_eq!(first.next_start_after.as_deref(), Some("d/"));
    let second = list(&f.store, "", Some("/"), Some("d/"), 2).await;
    assert_eq!(keys(&second), ["e"]);
    assert_eq!(second.common_prefixes, ["f/"]);
    assert_eq!(second.next_start_after.as_deref(), Some("f/"));
    // The entry after a full page is a common prefix: the page is truncated and names its own last entry.
    let page = list(&f.store, "", Some("/"), Some("d/"), 1).await;
    assert_eq!((keys(&page), page.is_truncated), (vec!["e"], true));
    assert_eq!(page.next_start_after.as_deref(), Some("e"));
    // start_after inside a group, or a key of it: the group was listed before.
    let page = list(&f.store, "", Some("/"), Some("f/1"), 1).await;
    assert_eq!((keys(&page), page.is_truncated), (vec!["g"], false));
    assert!(page.common_prefixes.is_empty());
    // The last entry is a common prefix and fills the page exactly.
    let page = list(&f.store, "f", Some("/"), None, 1).await;
    assert_eq!((page.common_prefixes.as_slice(), page.is_truncated), (["f/".to_owned()].as_slice(), false));
}

/// More common prefixes than one statement fetches, with `start_after` inside the first group: the page still holds
/// `max_keys` entries and names the right one to continue after.
#[tokio::test]
async fn a_full_page_of_common_prefixes_after_a_group_start_after_lies_in() {
    let f = Fixture::with_bucket("lst").await;
    let keys: Vec<String> = (0..1003).map(|i| format!("g{i:04}/x")).collect();
    for chunk in keys.chunks(64) {
        futures::future::join_all(chunk.iter().map(|key| put(&f.store, "lst", key, b""))).await;
    }
    let page = list(&f.store, "", Some("/"), Some("g0000/x"), 1000).await;
    assert!(page.objects.is_empty());
    assert_eq!(page.common_prefixes.len(), 1000);
    assert_eq!((page.common_prefixes[0].as_str(), page.common_prefixes[999].as_str()), ("g0001/", "g1000/"));
    assert!(page.is_truncated);
    assert_eq!(page.next_start_after.as_deref(), Some("g1000/"));
    let rest = list(&f.store, "", Some("/"), page.next_start_after.as_deref(), 1000).await;
    assert_eq!(rest.common_prefixes, ["g1001/", "g1002/"]);
    assert!(!rest.is_truncated);
}
