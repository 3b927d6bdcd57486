//! Listing in the SQL engine: the listing walk (`listing.rs`) over range queries on `(bucket, key)`, fetched in
//! batches of a page, so a page costs one or two indexed statements whatever the bucket's size. Without a delimiter
//! a batch is the keys from a bound on; with one it is a skip scan, which steps over each common prefix's keys with
//! one index seek inside the statement (see [`skip_scan_sql`]). A page's statements run on one connection taken from
//! the pool once.
//!
//! Keys are bytes in both databases (BLOB, BYTEA), compared bytewise, so bounds are byte strings: right after a key
//! comes that key and a NUL byte, right after a common prefix comes the prefix with its last byte raised by one.

use std::collections::VecDeque;
use std::ops::Bound;

use sqlx::{AnyConnection, Row};

use super::{db_error, from_nanos, key_of, Dialect, SqlEngine};
use crate::error::Result;
use crate::listing::{prefix_successor, ListPage, ListQuery, ListWalk, ObjectSummary};

/// Most rows one statement fetches: a page of 1,000 and the entry that tells whether it is truncated.
const MAX_BATCH: usize = 1001;

impl SqlEngine {
    pub(crate) async fn list_objects(&self, bucket: &str, query: &ListQuery) -> Result<ListPage> {
        self.bucket_record(None, bucket).await?;
        let fetch = Fetch::new(self.dialect, bucket, query);
        let mut walk = ListWalk::new(query);
        let mut connection = self.pool.acquire().await.map_err(db_error)?;
        // Each row is the first key at or after the bound the walk seeks next, once the rows before it are dropped
        // (a batch of keys is contiguous from its bound; a skip scan's rows are the keys the walk's seeks find).
        let mut batch: VecDeque<ObjectSummary> = VecDeque::new();
        let mut all_fetched = false;
        while let Some(from) = walk.seek() {
            while batch.front().is_some_and(|object| before(&object.key, &from)) {
                batch.pop_front();
            }
            if batch.is_empty() && !all_fetched {
                batch = fetch.run(&mut connection, &from).await?;
                all_fetched = batch.len() < fetch.batch_size;
            }
            walk.take(batch.pop_front());
        }
        Ok(walk.finish())
    }
}

/// The statement that fetches one batch of a listing, and its fixed parameters.
struct Fetch<'q> {
    sql: String,
    bucket: &'q str,
    /// Every key of the listing sorts before this (so the statement's range seek ends where the prefix does).
    end: Vec<u8>,
    /// With a delimiter: the skip scan's parameters.
    skip: Option<SkipScan<'q>>,
    batch_size: usize,
}

struct SkipScan<'q> {
    prefix_len: i32,
    delimiter: &'q [u8],
    delimiter_successor: Vec<u8>,
}

impl<'q> Fetch<'q> {
    fn new(dialect: Dialect, bucket: &'q str, query: &'q ListQuery) -> Self {
        // A lone 0xFF byte sorts after every UTF-8 text, and is in none: the end of a listing without a prefix.
        let end = prefix_successor(&query.prefix).map_or_else(|| vec![0xFF], String::into_bytes);
        let delimiter = query.delimiter.as_deref().filter(|d| !d.is_empty()).map(str::as_bytes);
        let skip = delimiter.map(|delimiter| SkipScan {
            // A longer prefix is longer than any key: the listing is empty whatever the offsets say.
            prefix_len: i32::try_from(query.prefix.len()).unwrap_or(i32::MAX),
            delimiter,
            delimiter_successor: byte_successor(delimiter),
        });
        let sql = match skip {
            Some(_) => skip_scan_sql(dialect),
            None => "SELECT key, size, etag, modified FROM objects WHERE bucket = $1 AND key >= $2 AND key < $3 \
                     ORDER BY key LIMIT $4"
                .to_owned(),
        };
        // A skip scan may also meet the group `start_after` lies in, which the walk passes over.
        let extra = if skip.is_some() { 2 } else { 1 };
        Fetch { sql, bucket, end, skip, batch_size: query.max_keys.saturating_add(extra).min(MAX_BATCH) }
    }

    /// The batch from `from` on: up to `batch_size` rows.
    async fn run(&self, connection: &mut AnyConnection, from: &Bound<String>) -> Result<VecDeque<ObjectSummary>> {
        let statement = sqlx::query(&self.sql).bind(self.bucket).bind(lower_bound(from)).bind(self.end.as_slice());
        let statement = match &self.skip {
            Some(skip) => statement
                .bind(skip.prefix_len)
                .bind(skip.delimiter)
                .bind(skip.delimiter_successor.as_slice())
                .bind([0u8].as_slice()),
            None => statement,
        };
        let rows = statement
            .bind(i64::try_from(self.batch_size).unwrap_or(i64::MAX))
            .fetch_all(connection)
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                Ok(ObjectSummary {
                    key: key_of(row.get(0))?,
                    size: u64::try_from(row.get::<i64, _>(1)).unwrap_or_default(),
                    etag: row.get(2),
                    last_modified: from_nanos(row.get(3)),
                })
            })
            .collect()
    }
}

/// The skip scan of a delimiter listing, one statement: a recursive walk whose every step is one index seek, to the
/// first key at or after the step's bound. The first bound is the batch's; after a key that holds the delimiter
/// after the prefix, the next bound is past its whole group (the key up to the delimiter, then the delimiter with its
/// last byte raised: `$6`), after any other key it is right past the key (the key and a NUL byte: `$7`). `$8` steps
/// at most; the rows are the keys found, in order, which the caller's walk rolls up into common prefixes.
/// Parameters: `$1` bucket, `$2` first bound, `$3` end of the listing, `$4` the prefix's length in bytes, `$5` the
/// delimiter. The found keys' rows are then read by key: `CROSS JOIN` keeps the walk the outer loop in SQLite, whose
/// planner (3.46) would otherwise read the whole bucket and look each key up in the walk; PostgreSQL plans it as a
/// nested loop over the primary key either way.
fn skip_scan_sql(dialect: Dialect) -> String {
    // Where the delimiter starts in the key past the prefix (from 1; 0: nowhere). SQLite's `||` makes text, which
    // sorts before every blob, so its bounds are cast back to bytes (the cast keeps the bytes).
    let (found, bytes) = match dialect {
        Dialect::Sqlite => ("instr(substr(walk.key, $4 + 1), $5)", "BLOB"),
        Dialect::Postgres => ("position($5 IN substr(walk.key, $4 + 1))", "BYTEA"),
    };
    format!(
        "WITH RECURSIVE walk (step, key) AS (\
             SELECT 0, (SELECT key FROM objects WHERE bucket = $1 AND key >= $2 AND key < $3 ORDER BY key LIMIT 1) \
             UNION ALL \
             SELECT walk.step + 1, (SELECT key FROM objects WHERE bucket = $1 AND key < $3 AND key >= CASE \
                 WHEN {found} > 0 THEN CAST(substr(walk.key, 1, $4 + {found} - 1) || $6 AS {bytes}) \
                 ELSE CAST(walk.key || $7 AS {bytes}) END \
                 ORDER BY key LIMIT 1) \
             FROM walk WHERE walk.key IS NOT NULL AND walk.step + 1 < $8) \
         SELECT objects.key, size, etag, modified FROM walk CROSS JOIN objects \
         WHERE objects.bucket = $1 AND objects.key = walk.key ORDER BY walk.step"
    )
}

/// The least byte string at or after which every key at or after `from` sorts: right after a key comes that key
/// and a NUL byte.
fn lower_bound(from: &Bound<String>) -> Vec<u8> {
    match from {
        Bound::Included(key) => key.as_bytes().to_vec(),
        Bound::Excluded(key) => [key.as_bytes(), &[0]].concat(),
        Bound::Unbounded => Vec::new(),
    }
}

/// The least byte string after every string that starts with `text`: `text` with its last byte raised by one. The
/// last byte of a UTF-8 text is ASCII or a continuation byte, below 0xC0, so the raise never overflows.
fn byte_successor(text: &[u8]) -> Vec<u8> {
    let mut successor = text.to_vec();
    if let Some(last) = successor.last_mut() {
        *last += 1;
    }
    successor
}

/// Whether `key` sorts before the bound.
fn before(key: &str, bound: &Bound<String>) -> bool {
    match bound {
        Bound::Included(from) => key < from.as_str(),
        Bound::Excluded(from) => key <= from.as_str(),
        Bound::Unbounded => false,
    }
}
