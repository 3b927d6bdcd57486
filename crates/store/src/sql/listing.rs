//! Listing in the SQL engine: the listing walk (`listing.rs`) over range queries on `(bucket, key)`, fetched in
//! batches of a page, so a page costs a few indexed queries whatever the bucket's size. A page's queries run on one
//! connection taken from the pool once: a delimiter listing runs one query per common prefix.

use std::collections::VecDeque;
use std::ops::Bound;

use sqlx::{AnyConnection, Row};

use super::{db_error, from_nanos, key_of, SqlEngine};
use crate::error::Result;
use crate::listing::{prefix_successor, ListPage, ListQuery, ListWalk, ObjectSummary};

/// Most rows one query fetches.
const MAX_BATCH: usize = 1001;
/// Rows one query fetches when a delimiter rolls keys up: each common prefix is skipped with a new query, so a big
/// batch would mostly fetch keys of the group it skips.
const GROUPED_BATCH: usize = 16;

impl SqlEngine {
    pub(crate) async fn list_objects(&self, bucket: &str, query: &ListQuery) -> Result<ListPage> {
        self.bucket_record(None, bucket).await?;
        let grouped = query.delimiter.as_deref().is_some_and(|d| !d.is_empty());
        let batch_size = (query.max_keys + 1).min(if grouped { GROUPED_BATCH } else { MAX_BATCH });
        let end = prefix_successor(&query.prefix).filter(|_| !query.prefix.is_empty());
        let mut walk = ListWalk::new(query);
        let mut connection = self.pool.acquire().await.map_err(db_error)?;
        // Keys from some bound on, contiguous: every key between the bound and the last one fetched is here.
        let mut batch: VecDeque<ObjectSummary> = VecDeque::new();
        let mut all_fetched = false;
        while let Some(from) = walk.seek() {
            while batch.front().is_some_and(|object| before(&object.key, &from)) {
                batch.pop_front();
            }
            if batch.is_empty() && !all_fetched {
                batch = fetch(&mut connection, bucket, &from, end.as_deref(), batch_size).await?;
                all_fetched = batch.len() < batch_size;
            }
            walk.take(batch.pop_front());
        }
        Ok(walk.finish())
    }
}

async fn fetch(
    connection: &mut AnyConnection,
    bucket: &str,
    from: &Bound<String>,
    end: Option<&str>,
    limit: usize,
) -> Result<VecDeque<ObjectSummary>> {
    let (comparison, bound) = match from {
        Bound::Included(key) => (">=", key.as_str()),
        Bound::Excluded(key) => (">", key.as_str()),
        Bound::Unbounded => (">=", ""),
    };
    let sql = format!(
        "SELECT key, size, etag, modified FROM objects WHERE bucket = $1 AND key {comparison} $2 \
             AND ($3 IS NULL OR key < $3) ORDER BY key LIMIT $4"
    );
    let rows = sqlx::query(&sql)
        .bind(bucket)
        .bind(bound.as_bytes())
        .bind(end.map(str::as_bytes))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
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

/// Whether `key` sorts before the bound.
fn before(key: &str, bound: &Bound<String>) -> bool {
    match bound {
        Bound::Included(from) => key < from.as_str(),
        Bound::Excluded(from) => key <= from.as_str(),
        Bound::Unbounded => false,
    }
}
