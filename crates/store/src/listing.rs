//! Object listing: the query/page types (of objects, and of versions) and the page walk over a bucket's in-memory
//! key index.
//!
//! Each bucket's index is a `BTreeMap` from key to [`ObjectSummary`], loaded from disk on the first listing of the
//! bucket and kept current by every commit. `String` ordering is UTF-8 byte ordering, which is S3's list order.
//! A page costs O(page size × log n): common prefixes are skipped with one range seek each.

use std::collections::BTreeMap;
use std::ops::Bound;

use time::OffsetDateTime;

/// Parameters of a `list_objects` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Only keys starting with this (empty: all keys).
    pub prefix: String,
    /// Keys containing this after the prefix are rolled up into one common prefix (`None` or empty: no roll-up).
    pub delimiter: Option<String>,
    /// Start strictly after this key or common prefix (V2 `start-after` / continuation, V1 `marker`).
    pub start_after: Option<String>,
    /// Maximum number of objects plus common prefixes in the page (S3 default 1000).
    pub max_keys: usize,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery { prefix: String::new(), delimiter: None, start_after: None, max_keys: 1000 }
    }
}

/// One object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    pub key: String,
    /// Client-visible size.
    pub size: u64,
    /// Unquoted ETag.
    pub etag: String,
    pub last_modified: OffsetDateTime,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ObjectSummary>,
    /// Rolled-up prefixes, each ending with the delimiter, in order.
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    /// When truncated: the last key or common prefix returned; pass it as `start_after` to get the next page.
    pub next_start_after: Option<String>,
}

/// Parameters of a `list_object_versions` call (S3 ListObjectVersions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionQuery {
    /// Only keys starting with this (empty: all keys).
    pub prefix: String,
    /// Keys containing this after the prefix are rolled up into one common prefix (`None` or empty: no roll-up).
    pub delimiter: Option<String>,
    /// Start after this key (`key-marker`); with `version_id_marker`, after that version of this key instead.
    pub key_marker: Option<String>,
    /// `version-id-marker` ("null" names the null version).
    pub version_id_marker: Option<String>,
    /// Maximum number of versions (delete markers included) plus common prefixes in the page (S3 default 1000).
    pub max_keys: usize,
}

impl Default for VersionQuery {
    fn default() -> Self {
        VersionQuery {
            prefix: String::new(),
            delimiter: None,
            key_marker: None,
            version_id_marker: None,
            max_keys: 1000,
        }
    }
}

/// One version (or delete marker) in a version listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionSummary {
    pub key: String,
    /// `None` for the null version.
    pub version_id: Option<String>,
    /// Whether this is the key's current version (a delete marker may be).
    pub is_latest: bool,
    pub delete_marker: bool,
    /// Client-visible size; 0 for delete markers.
    pub size: u64,
    /// Unquoted ETag; empty for delete markers.
    pub etag: String,
    pub last_modified: OffsetDateTime,
}

/// One page of a version listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionPage {
    /// Versions and delete markers: keys ascending, each key's versions newest first.
    pub versions: Vec<VersionSummary>,
    /// Rolled-up prefixes, each ending with the delimiter, in order.
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    /// When truncated: the key (or common prefix) of the last entry returned; pass it back as `key_marker`.
    pub next_key_marker: Option<String>,
    /// When truncated after a version: its id ("null" for the null version), to pass back as
    /// `version_id_marker`; `None` after a common prefix.
    pub next_version_id_marker: Option<String>,
}

/// A bucket's key index: every key, held once (as the map's key), with what a listing shows of it.
pub(crate) type KeyIndex = BTreeMap<Box<str>, IndexEntry>;

/// What a listing shows of one key besides the key itself. Kept small: the index is in memory, one per key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub size: u64,
    pub etag: IndexEtag,
    pub last_modified: OffsetDateTime,
}

impl IndexEntry {
    fn summary(&self, key: &str) -> ObjectSummary {
        ObjectSummary {
            key: key.to_owned(),
            size: self.size,
            etag: self.etag.to_string(),
            last_modified: self.last_modified,
        }
    }
}

/// An ETag as the index keeps it. Coffer's ETags are 32 hex digits, with `-N` for a multipart object: those are
/// kept as their 16 bytes and part count, with no allocation; any other text is kept as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IndexEtag {
    Digest { bytes: [u8; 16], parts: Option<u16> },
    Text(Box<str>),
}

impl IndexEtag {
    pub(crate) fn new(etag: &str) -> Self {
        let (digest, parts) = match etag.split_once('-') {
            Some((digest, parts)) => (digest, parts.parse().ok()),
            None => (etag, None),
        };
        let mut bytes = [0u8; 16];
        if hex::decode_to_slice(digest, &mut bytes).is_ok() {
            let compact = IndexEtag::Digest { bytes, parts };
            // Only a form that prints back exactly (lowercase hex, a plain part count) is kept compact.
            if compact.to_string() == etag {
                return compact;
            }
        }
        IndexEtag::Text(etag.into())
    }
}

impl std::fmt::Display for IndexEtag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IndexEtag::Digest { bytes, parts: None } => f.write_str(&hex::encode(bytes)),
            IndexEtag::Digest { bytes, parts: Some(parts) } => write!(f, "{}-{parts}", hex::encode(bytes)),
            IndexEtag::Text(text) => f.write_str(text),
        }
    }
}

/// Computes one page of `query` over `index`.
pub(crate) fn list_page(index: &KeyIndex, query: &ListQuery) -> ListPage {
    let mut walk = ListWalk::new(query);
    while let Some(from) = walk.seek() {
        let found = index.range::<str, _>((from.as_ref().map(String::as_str), Bound::Unbounded)).next();
        walk.take(found.map(|(key, entry)| entry.summary(key)));
    }
    walk.finish()
}

/// The walk of one listing page over keys in order, whatever holds them: the walk says where to seek next
/// ([`ListWalk::seek`]: the first key at or after a bound), the caller finds that key and hands it back
/// ([`ListWalk::take`]), until the page is done. Common prefixes cost one seek each, however many keys they hold.
pub(crate) struct ListWalk<'q> {
    query: &'q ListQuery,
    delimiter: Option<&'q str>,
    start_after: &'q str,
    cursor: Option<Bound<String>>,
    last_returned: Option<String>,
    page: ListPage,
}

impl<'q> ListWalk<'q> {
    pub(crate) fn new(query: &'q ListQuery) -> Self {
        let prefix = query.prefix.as_str();
        let start_after = query.start_after.as_deref().unwrap_or("");
        let cursor = (query.max_keys > 0).then(|| {
            if start_after >= prefix {
                Bound::Excluded(start_after.to_owned())
            } else {
                Bound::Included(prefix.to_owned())
            }
        });
        ListWalk {
            query,
            delimiter: query.delimiter.as_deref().filter(|d| !d.is_empty()),
            start_after,
            cursor,
            last_returned: None,
            page: ListPage::default(),
        }
    }

    /// Where the next key is to be looked up, or `None` when the page is done.
    pub(crate) fn seek(&mut self) -> Option<Bound<String>> {
        self.cursor.take()
    }

    /// The first key at or after the bound [`ListWalk::seek`] gave (`None`: there is none).
    pub(crate) fn take(&mut self, found: Option<ObjectSummary>) {
        let Some(object) = found else { return };
        let prefix = self.query.prefix.as_str();
        if !object.key.starts_with(prefix) {
            return;
        }
        let common_prefix = common_prefix(&object.key, prefix, self.delimiter);
        let full = self.page.objects.len() + self.page.common_prefixes.len() == self.query.max_keys;
        match common_prefix {
            Some(common) => {
                // Every key of this group sorts before the successor, so one seek skips the whole group.
                let next = prefix_successor(common).map(Bound::Included);
                if common <= self.start_after {
                    // The group was returned on an earlier page (start_after is the prefix or lies inside it).
                    self.cursor = next;
                    return;
                }
                if full {
                    self.page.is_truncated = true;
                    return;
                }
                self.cursor = next;
                self.page.common_prefixes.push(common.to_owned());
                self.last_returned = Some(common.to_owned());
            }
            None => {
                if full {
                    self.page.is_truncated = true;
                    return;
                }
                self.cursor = Some(Bound::Excluded(object.key.clone()));
                self.last_returned = Some(object.key.clone());
                self.page.objects.push(object);
            }
        }
    }

    pub(crate) fn finish(mut self) -> ListPage {
        if self.page.is_truncated {
            self.page.next_start_after = self.last_returned;
        }
        self.page
    }
}

/// The common prefix `key` (which starts with `prefix`) rolls up into: up to the first `delimiter` after `prefix`.
pub(crate) fn common_prefix<'k>(key: &'k str, prefix: &str, delimiter: Option<&str>) -> Option<&'k str> {
    delimiter.and_then(|d| key[prefix.len()..].find(d).map(|at| &key[..prefix.len() + at + d.len()]))
}

/// The smallest string greater than every string starting with `prefix`, if one exists.
pub(crate) fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last as u32 + 1 {
            0xD800 => 0xE000,
            n => n,
        };
        if let Some(next) = char::from_u32(next) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(keys: &[&str]) -> KeyIndex {
        keys.iter()
            .map(|k| {
                let entry = IndexEntry {
                    size: k.len() as u64,
                    etag: IndexEtag::new(""),
                    last_modified: OffsetDateTime::UNIX_EPOCH,
                };
                ((*k).into(), entry)
            })
            .collect()
    }

    #[test]
    fn etags_are_kept_compact_when_they_print_back_exactly() {
        let compact = [
            "9e107d9d372bb6826bd81d3542a419d6",
            "9e107d9d372bb6826bd81d3542a419d6-3",
            "00000000000000000000000000000000-10000",
        ];
        for etag in compact {
            assert!(matches!(IndexEtag::new(etag), IndexEtag::Digest { .. }), "{etag}");
            assert_eq!(IndexEtag::new(etag).to_string(), etag);
        }
        let other = [
            "",
            "9E107D9D372BB6826BD81D3542A419D6",
            "9e107d9d372bb6826bd81d3542a419d6-03",
            "9e107d9d-2",
            "9e107d9d372bb6826bd81d3542a419d6-70000",
            "9e107d9d372bb6826bd81d3542a419d6-",
            "\"quoted\"",
        ];
        for etag in other {
            assert!(matches!(IndexEtag::new(etag), IndexEtag::Text(_)), "{etag}");
            assert_eq!(IndexEtag::new(etag).to_string(), etag);
        }
    }

    fn query(prefix: &str, delimiter: Option<&str>, start_after: Option<&str>, max_keys: usize) -> ListQuery {
        ListQuery {
            prefix: prefix.to_owned(),
            delimiter: delimiter.map(str::to_owned),
            start_after: start_after.map(str::to_owned),
            max_keys,
        }
    }

    fn keys(page: &ListPage) -> Vec<&str> {
        page.objects.iter().map(|o| o.key.as_str()).collect()
    }

    /// Every entry (key or common prefix) of a listing, in order, the slow obvious way.
    fn reference(index: &KeyIndex, prefix: &str, delimiter: Option<&str>) -> Vec<String> {
        let mut entries: Vec<String> = Vec::new();
        for key in index.keys().filter(|k| k.starts_with(prefix)) {
            let entry = match delimiter.and_then(|d| key[prefix.len()..].find(d).map(|at| (at, d))) {
                Some((at, d)) => key[..prefix.len() + at + d.len()].to_owned(),
                None => key.to_string(),
            };
            if entries.last() != Some(&entry) {
                entries.push(entry);
            }
        }
        entries
    }

    /// Pages through a whole listing with `max_keys`, returning every entry and the number of pages.
    fn paged(index: &KeyIndex, prefix: &str, delimiter: Option<&str>, max_keys: usize) -> (Vec<String>, usize) {
        let mut entries = Vec::new();
        let mut start_after = None;
        let mut pages = 0;
        loop {
            let page = list_page(index, &query(prefix, delimiter, start_after.as_deref(), max_keys));
            pages += 1;
            assert!(page.objects.len() + page.common_prefixes.len() <= max_keys);
            let mut page_entries: Vec<String> =
                page.objects.iter().map(|o| o.key.clone()).chain(page.common_prefixes.iter().cloned()).collect();
            page_entries.sort();
            entries.extend(page_entries);
            if !page.is_truncated {
                assert_eq!(page.next_start_after, None);
                return (entries, pages);
            }
            start_after = page.next_start_after.clone();
            assert!(start_after.is_some(), "a truncated page names where to continue");
        }
    }

    const TREE: &[&str] =
        &["a", "a/1", "a/2", "a/b/1", "a/b/2", "a0", "a\u{10FFFF}x", "b", "b/", "b//c", "c/x/y", "z", "é/1", "é/2"];

    #[test]
    fn lists_everything_in_byte_order() {
        let idx = index(TREE);
        let page = list_page(&idx, &ListQuery::default());
        assert_eq!(keys(&page), TREE.to_vec());
        assert!(page.common_prefixes.is_empty());
        assert!(!page.is_truncated);
    }

    #[test]
    fn prefix_filters_keys() {
        let idx = index(TREE);
        assert_eq!(keys(&list_page(&idx, &query("a/", None, None, 1000))), ["a/1", "a/2", "a/b/1", "a/b/2"]);
        assert_eq!(keys(&list_page(&idx, &query("é", None, None, 1000))), ["é/1", "é/2"]);
        assert!(list_page(&idx, &query("nothing", None, None, 1000)).objects.is_empty());
    }

    #[test]
    fn delimiter_rolls_up_common_prefixes() {
        let idx = index(TREE);
        let page = list_page(&idx, &query("", Some("/"), None, 1000));
        assert_eq!(keys(&page), ["a", "a0", "a\u{10FFFF}x", "b", "z"]);
        assert_eq!(page.common_prefixes, ["a/", "b/", "c/", "é/"]);

        let page = list_page(&idx, &query("a/", Some("/"), None, 1000));
        assert_eq!(keys(&page), ["a/1", "a/2"]);
        assert_eq!(page.common_prefixes, ["a/b/"]);

        // A key equal to prefix+delimiter is itself a common prefix; "b//c" rolls up into "b/" too.
        let page = list_page(&idx, &query("b", Some("/"), None, 1000));
        assert_eq!(keys(&page), ["b"]);
        assert_eq!(page.common_prefixes, ["b/"]);
    }

    #[test]
    fn multi_character_delimiter() {
        let idx = index(&["x--1--2", "x--3", "x-4", "y"]);
        let page = list_page(&idx, &query("x", Some("--"), None, 1000));
        assert_eq!(keys(&page), ["x-4"]);
        assert_eq!(page.common_prefixes, ["x--"]);
        let page = list_page(&idx, &query("x--", Some("--"), None, 1000));
        assert_eq!(keys(&page), ["x--3"]);
        assert_eq!(page.common_prefixes, ["x--1--"]);
    }

    #[test]
    fn empty_delimiter_means_none() {
        let idx = index(TREE);
        assert_eq!(list_page(&idx, &query("", Some(""), None, 1000)).objects.len(), TREE.len());
    }

    #[test]
    fn start_after_is_exclusive_and_may_be_absent_from_the_index() {
        let idx = index(TREE);
        assert_eq!(keys(&list_page(&idx, &query("", None, Some("b"), 3))), ["b/", "b//c", "c/x/y"]);
        assert_eq!(keys(&list_page(&idx, &query("", None, Some("b0"), 2))), ["c/x/y", "z"]);
        assert_eq!(keys(&list_page(&idx, &query("a/", None, Some("a/1"), 1000))), ["a/2", "a/b/1", "a/b/2"]);
        // start_after before the prefix: the prefix decides.
        assert_eq!(keys(&list_page(&idx, &query("é", None, Some("a"), 1000))), ["é/1", "é/2"]);
        // start_after beyond the prefix range: nothing.
        assert!(list_page(&idx, &query("a/", None, Some("b"), 1000)).objects.is_empty());
    }

    #[test]
    fn start_after_inside_a_common_prefix_skips_the_prefix() {
        let idx = index(TREE);
        let page = list_page(&idx, &query("", Some("/"), Some("a/"), 1000));
        assert_eq!(keys(&page), ["a0", "a\u{10FFFF}x", "b", "z"]);
        assert_eq!(page.common_prefixes, ["b/", "c/", "é/"]);
        let page = list_page(&idx, &query("", Some("/"), Some("a/b/1"), 1000));
        assert_eq!(page.common_prefixes, ["b/", "c/", "é/"]);
    }

    #[test]
    fn truncation_counts_common_prefixes_and_names_the_last_entry() {
        let idx = index(TREE);
        let page = list_page(&idx, &query("", Some("/"), None, 2));
        assert_eq!(keys(&page), ["a"]);
        assert_eq!(page.common_prefixes, ["a/"]);
        assert!(page.is_truncated);
        assert_eq!(page.next_start_after.as_deref(), Some("a/"));

        let page = list_page(&idx, &query("", Some("/"), Some("a/"), 2));
        assert_eq!(keys(&page), ["a0", "a\u{10FFFF}x"]);
        assert!(page.common_prefixes.is_empty());
        assert_eq!(page.next_start_after.as_deref(), Some("a\u{10FFFF}x"));
    }

    #[test]
    fn exact_fit_is_not_truncated() {
        let idx = index(&["a", "b", "c"]);
        let page = list_page(&idx, &query("", None, None, 3));
        assert_eq!(keys(&page), ["a", "b", "c"]);
        assert!(!page.is_truncated);
        assert_eq!(page.next_start_after, None);
    }

    #[test]
    fn max_keys_zero_returns_an_empty_untruncated_page() {
        let page = list_page(&index(TREE), &query("", None, None, 0));
        assert_eq!(page, ListPage::default());
    }

    #[test]
    fn paging_matches_the_full_listing_for_every_page_size() {
        let idx = index(TREE);
        for (prefix, delimiter) in [("", None), ("", Some("/")), ("a", Some("/")), ("a/", Some("/")), ("b", Some("/"))]
        {
            let expected = reference(&idx, prefix, delimiter);
            for max_keys in 1..=expected.len() + 1 {
                let (entries, pages) = paged(&idx, prefix, delimiter, max_keys);
                assert_eq!(entries, expected, "prefix {prefix:?} delimiter {delimiter:?} max_keys {max_keys}");
                assert_eq!(pages, expected.len().div_ceil(max_keys).max(1));
            }
        }
    }

    #[test]
    fn pages_through_ten_thousand_keys() {
        let names: Vec<String> = (0..10_000).map(|i| format!("dir{:02}/sub{:02}/obj{i:05}", i % 37, i % 11)).collect();
        let idx = index(&names.iter().map(String::as_str).collect::<Vec<_>>());
        let (entries, pages) = paged(&idx, "", None, 1000);
        assert_eq!(entries.len(), 10_000);
        assert_eq!(pages, 10);
        let (entries, _) = paged(&idx, "", Some("/"), 5);
        assert_eq!(entries, reference(&idx, "", Some("/")));
        assert_eq!(entries.len(), 37);
        let (entries, _) = paged(&idx, "dir03/", Some("/"), 4);
        assert_eq!(entries, reference(&idx, "dir03/", Some("/")));
        assert_eq!(entries.len(), 11);
    }

    #[test]
    fn prefix_successor_bounds_the_prefix_range() {
        assert_eq!(prefix_successor("a/").as_deref(), Some("a0"));
        assert_eq!(prefix_successor("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor("\u{10FFFF}\u{10FFFF}"), None);
        for prefix in ["a/", "x\u{10FFFF}", "é/"] {
            let next = prefix_successor(prefix).unwrap();
            assert!(next.as_str() > prefix);
            assert!(!next.starts_with(prefix));
            assert!(format!("{prefix}\u{10FFFF}\u{10FFFF}").as_str() < next.as_str());
        }
    }
}
