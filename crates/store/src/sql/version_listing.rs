//! ListObjectVersions in the SQL engine: the rows of `objects` (each key's current object) and of `versions` (the
//! other versions, newest first by `rank`, see `versions.rs`) merged in listing order, each table read by range
//! queries in batches of a page, so a page costs a few indexed queries whatever the bucket's size and however many
//! versions a key has; a common prefix costs one new query per table. Nothing is kept per key but the last one.

use std::collections::VecDeque;
use std::ops::Bound;

use sqlx::{AnyConnection, Row};

use super::versions::version_name;
use super::{db_error, from_nanos, key_of, SqlEngine};
use crate::error::Result;
use crate::listing::{common_prefix, prefix_successor, VersionPage, VersionQuery, VersionSummary};
use crate::names::NULL_VERSION;

/// Most rows one query fetches.
const MAX_BATCH: usize = 1001;
/// Rows one query fetches when a delimiter rolls keys up: each common prefix is skipped with new queries, so a big
/// batch would mostly fetch rows of the group it skips.
const GROUPED_BATCH: usize = 16;

/// One row of either table, in listing order: by key, then the `objects` row (`rank` `None`), then the `versions`
/// rows by rank.
struct Entry {
    rank: Option<i64>,
    summary: VersionSummary,
}

/// Where a table's rows are read next.
#[derive(Clone)]
enum Position {
    /// The first row of the first key at or after the bound.
    Key(Bound<String>),
    /// The next `versions` row of this key after this rank, then the keys after it.
    AfterRank(String, i64),
}

/// Which table a [`Rows`] reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Table {
    Objects,
    Versions,
}

/// One table's rows from a position on, up to the prefix's end, fetched a batch at a time.
struct Rows {
    table: Table,
    /// Fetched rows not yet taken, in order.
    fetched: VecDeque<Entry>,
    /// Where the rows after `fetched` begin; `None` when there are none.
    next: Option<Position>,
}

/// What a page's queries share: the connection, the bucket, the end of the prefix's range and the batch size.
struct Source<'a> {
    connection: &'a mut AnyConnection,
    bucket: &'a str,
    end: Option<&'a str>,
    batch: usize,
}

impl Rows {
    fn new(table: Table, from: Position) -> Rows {
        Rows { table, fetched: VecDeque::new(), next: Some(from) }
    }

    /// The next row, fetching a batch when none is left.
    async fn peek(&mut self, source: &mut Source<'_>) -> Result<Option<&Entry>> {
        while self.fetched.is_empty() {
            let Some(from) = self.next.take() else { break };
            let rows = fetch(source, self.table, &from).await?;
            self.next = match (rows.len() < source.batch, from) {
                // The rest of that key's versions came; the keys after it are next.
                (true, Position::AfterRank(key, _)) => Some(Position::Key(Bound::Excluded(key))),
                (true, Position::Key(_)) => None,
                (false, _) => rows.back().map(|last| match last.rank {
                    Some(rank) if self.table == Table::Versions => Position::AfterRank(last.summary.key.clone(), rank),
                    _ => Position::Key(Bound::Excluded(last.summary.key.clone())),
                }),
            };
            self.fetched = rows;
        }
        Ok(self.fetched.front())
    }

    /// Skips every row before `bound` (a key).
    fn skip_to(&mut self, bound: &str) {
        while self.fetched.front().is_some_and(|entry| entry.summary.key.as_str() < bound) {
            self.fetched.pop_front();
        }
        if self.fetched.is_empty() && self.next.is_some() {
            // Every row fetched lay before the bound, so the rows not fetched yet begin before it too.
            self.next = Some(Position::Key(Bound::Included(bound.to_owned())));
        }
    }

    /// Nothing from here on: the end of a group of keys that has no successor.
    fn finish(&mut self) {
        self.fetched.clear();
        self.next = None;
    }
}

impl SqlEngine {
    pub(crate) async fn list_object_versions(&self, bucket: &str, query: &VersionQuery) -> Result<VersionPage> {
        self.bucket_record(None, bucket).await?;
        let mut page = VersionPage::default();
        if query.max_keys == 0 {
            return Ok(page);
        }
        let prefix = query.prefix.as_str();
        let delimiter = query.delimiter.as_deref().filter(|d| !d.is_empty());
        let end = prefix_successor(prefix).filter(|_| !prefix.is_empty());
        let mut connection = self.pool.acquire().await.map_err(db_error)?;
        let mut source = Source {
            connection: &mut connection,
            bucket,
            end: end.as_deref(),
            batch: (query.max_keys + 1).min(if delimiter.is_some() { GROUPED_BATCH } else { MAX_BATCH }),
        };
        let key_marker = query.key_marker.as_deref().unwrap_or("");
        // The key of the last version returned, or of the version marker: a `versions` row after another row of
        // its key is not its key's latest.
        let mut last_key: Option<String> = None;
        let (mut objects, mut versions) = if key_marker >= prefix && query.key_marker.is_some() {
            let after_key = Position::Key(Bound::Excluded(key_marker.to_owned()));
            let versions_from = match query.version_id_marker.as_deref() {
                Some(marker) => match marker_rank(&mut source, key_marker, marker).await? {
                    Some(found) => {
                        last_key = Some(key_marker.to_owned());
                        match found {
                            None => Position::Key(Bound::Included(key_marker.to_owned())),
                            Some(rank) => Position::AfterRank(key_marker.to_owned(), rank),
                        }
                    }
                    // Removed since: the listing goes on with the next key.
                    None => after_key.clone(),
                },
                None => after_key.clone(),
            };
            (Rows::new(Table::Objects, after_key), Rows::new(Table::Versions, versions_from))
        } else {
            let from = Position::Key(Bound::Included(prefix.to_owned()));
            (Rows::new(Table::Objects, from.clone()), Rows::new(Table::Versions, from))
        };
        // What the page returned last: a version (its key and name) or a common prefix.
        let mut last_returned: Option<(String, Option<String>)> = None;
        loop {
            let object_key = objects.peek(&mut source).await?.map(|entry| entry.summary.key.clone());
            let version_key = versions.peek(&mut source).await?.map(|entry| entry.summary.key.clone());
            // A key's `objects` row comes before its `versions` rows.
            let (rows, key) = match (object_key, version_key) {
                (Some(o), Some(v)) if v < o => (&mut versions, v),
                (Some(o), _) => (&mut objects, o),
                (None, Some(v)) => (&mut versions, v),
                (None, None) => break,
            };
            if !key.starts_with(prefix) {
                break;
            }
            let full = page.versions.len() + page.common_prefixes.len() == query.max_keys;
            if let Some(common) = common_prefix(&key, prefix, delimiter) {
                if common > key_marker {
                    if full {
                        page.is_truncated = true;
                        break;
                    }
                    page.common_prefixes.push(common.to_owned());
                    last_returned = Some((common.to_owned(), None));
                }
                // Every key of the group sorts before its successor: one seek per table skips the whole group.
                match prefix_successor(common) {
                    Some(next) => {
                        objects.skip_to(&next);
                        versions.skip_to(&next);
                    }
                    None => {
                        objects.finish();
                        versions.finish();
                    }
                }
                continue;
            }
            if full {
                page.is_truncated = true;
                break;
            }
            let Entry { rank, mut summary } = rows.fetched.pop_front().expect("the row just peeked");
            summary.is_latest = rank.is_none() || last_key.as_deref() != Some(summary.key.as_str());
            last_key = Some(summary.key.clone());
            let name = version_name(summary.version_id.as_deref()).to_owned();
            last_returned = Some((summary.key.clone(), Some(name)));
            page.versions.push(summary);
        }
        if page.is_truncated {
            let (key, version) = last_returned.unzip();
            page.next_key_marker = key;
            page.next_version_id_marker = version.flatten();
        }
        Ok(page)
    }
}

/// Where the version `marker` of `key` is: `Some(None)` for its `objects` row, `Some(Some(rank))` for a row of
/// `versions`, `None` if the key has no such version.
async fn marker_rank(source: &mut Source<'_>, key: &str, marker: &str) -> Result<Option<Option<i64>>> {
    let row = sqlx::query(
        "SELECT CAST(NULL AS BIGINT) FROM objects WHERE bucket = $1 AND key = $2 AND COALESCE(version_id, $4) = $3 \
         UNION ALL SELECT rank FROM versions WHERE bucket = $1 AND key = $2 AND version_id = $3",
    )
    .bind(source.bucket)
    .bind(key.as_bytes())
    .bind(marker)
    .bind(NULL_VERSION)
    .fetch_optional(&mut *source.connection)
    .await
    .map_err(db_error)?;
    Ok(row.map(|row| row.get(0)))
}

/// Up to a batch of `table`'s rows from `from` on, below the end of the prefix's range.
async fn fetch(source: &mut Source<'_>, table: Table, from: &Position) -> Result<VecDeque<Entry>> {
    let limit = i64::try_from(source.batch).unwrap_or(i64::MAX);
    let query = match (table, from) {
        (_, Position::AfterRank(key, rank)) => sqlx::query(
            "SELECT key, rank, version_id, delete_marker, size, etag, modified FROM versions \
             WHERE bucket = $1 AND key = $2 AND rank > $3 ORDER BY rank LIMIT $4",
        )
        .bind(source.bucket)
        .bind(key.as_bytes())
        .bind(*rank)
        .bind(limit),
        (table, Position::Key(bound)) => {
            let (comparison, bound) = match bound {
                Bound::Included(key) => (">=", key.as_str()),
                Bound::Excluded(key) => (">", key.as_str()),
                Bound::Unbounded => (">=", ""),
            };
            let sql = match table {
                Table::Objects => format!(
                    "SELECT key, CAST(NULL AS BIGINT), version_id, CAST(0 AS BIGINT), size, etag, modified \
                     FROM objects WHERE bucket = $1 AND key {comparison} $2 AND ($3 IS NULL OR key < $3) \
                     ORDER BY key LIMIT $4"
                ),
                Table::Versions => format!(
                    "SELECT key, rank, version_id, delete_marker, size, etag, modified \
                     FROM versions WHERE bucket = $1 AND key {comparison} $2 AND ($3 IS NULL OR key < $3) \
                     ORDER BY key, rank LIMIT $4"
                ),
            };
            return rows(
                sqlx::query(&sql)
                    .bind(source.bucket)
                    .bind(bound.as_bytes())
                    .bind(source.end.map(str::as_bytes))
                    .bind(limit)
                    .fetch_all(&mut *source.connection)
                    .await,
            );
        }
    };
    rows(query.fetch_all(&mut *source.connection).await)
}

/// Listing entries of fetched rows (`key, rank, version_id, delete_marker, size, etag, modified`).
fn rows(fetched: std::result::Result<Vec<sqlx::any::AnyRow>, sqlx::Error>) -> Result<VecDeque<Entry>> {
    fetched
        .map_err(db_error)?
        .iter()
        .map(|row| {
            let version: Option<String> = row.get(2);
            Ok(Entry {
                rank: row.get(1),
                summary: VersionSummary {
                    key: key_of(row.get(0))?,
                    version_id: version.filter(|name| name != NULL_VERSION),
                    is_latest: false,
                    delete_marker: row.get::<i64, _>(3) != 0,
                    size: u64::try_from(row.get::<i64, _>(4)).unwrap_or_default(),
                    etag: row.get(5),
                    last_modified: from_nanos(row.get(6)),
                },
            })
        })
        .collect()
}
