//! How the SQL engine's changes commit: [`SqlEngine::transact`] runs one change (a closure over a transaction)
//! and returns its outcome once it is durable.
//!
//! With PostgreSQL each change is its own transaction: the server takes concurrent transactions and serializes
//! writers of one name by advisory locks. With SQLite, which has one writer and syncs the WAL on every commit
//! (`synchronous = FULL`), a transaction per change would cost an fsync per change, one after the other. Changes
//! go instead to one committer task, which joins the changes waiting at that moment into one transaction (group
//! commit): each change runs inside a savepoint, so a change that fails rolls back alone and reports its error,
//! while the others commit together with one fsync. A change's outcome is reported only after the commit that
//! holds it returned, so an acknowledged change is on disk exactly as with a transaction of its own. The
//! committer's changes run one after the other: no change sees another's uncommitted state half-applied.

use std::panic::AssertUnwindSafe;
use std::sync::Weak;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};

use super::{db_error, Dialect, SqlEngine, Tx};
use crate::error::{Result, StoreError};

/// Most changes one group commit joins: bounds how long the first of them waits for the others to run.
const MAX_GROUP: usize = 256;

/// What a change reports to the committer once it ran: whether to keep it, and how to hand its outcome to the
/// caller once the commit's own outcome is known (`Err` with the commit's error).
type Ran = (bool, Box<dyn FnOnce(std::result::Result<(), &sqlx::Error>) + Send>);

/// A change waiting for the committer. Dropped without running, its caller is told it did not commit.
pub(super) type Change = Box<dyn for<'a> FnOnce(&'a SqlEngine, &'a mut Tx) -> BoxFuture<'a, Ran> + Send>;

/// The sending side of the committer's queue (SQLite only).
pub(super) type Changes = mpsc::UnboundedSender<Change>;

impl SqlEngine {
    /// Runs `change` in a transaction and commits it; its result is returned once the commit is durable, or its
    /// error if it failed (then nothing of it is kept).
    pub(super) async fn transact<T, F>(&self, change: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a SqlEngine, &'a mut Tx) -> BoxFuture<'a, Result<T>> + Send + 'static,
    {
        let Some(changes) = &self.changes else {
            let mut tx = self.pool.begin().await.map_err(db_error)?;
            let value = change(self, &mut tx).await?;
            tx.commit().await.map_err(db_error)?;
            return Ok(value);
        };
        let (report, outcome) = oneshot::channel();
        let queued: Change = Box::new(move |engine, tx| {
            async move {
                let result = change(engine, tx).await;
                let keep = result.is_ok();
                let deliver = move |committed: std::result::Result<(), &sqlx::Error>| {
                    let result = match committed {
                        Ok(()) => result,
                        Err(e) => result.and(Err(db_error(e))),
                    };
                    // The caller may have gone: its change committed all the same.
                    let _ = report.send(result);
                };
                (keep, Box::new(deliver) as Box<dyn FnOnce(std::result::Result<(), &sqlx::Error>) + Send>)
            }
            .boxed()
        });
        changes.send(queued).map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

/// The error of a change whose commit never happened: the committer stopped, or its batch failed before the
/// change ran.
fn stopped() -> StoreError {
    StoreError::Io(std::io::Error::other("metadata database: the change was not committed"))
}

/// The committer task of an SQLite engine: commits the queued changes in groups until the engine is dropped.
pub(super) async fn run_committer(engine: Weak<SqlEngine>, mut queue: mpsc::UnboundedReceiver<Change>) {
    let mut waiting: Vec<Change> = Vec::new();
    loop {
        if waiting.is_empty() {
            // Every change queued by now, up to a group's worth: the ones that arrived during the last commit.
            if queue.recv_many(&mut waiting, MAX_GROUP).await == 0 {
                return;
            }
        } else {
            while waiting.len() < MAX_GROUP {
                match queue.try_recv() {
                    Ok(change) => waiting.push(change),
                    Err(_) => break,
                }
            }
        }
        let Some(engine) = engine.upgrade() else { return };
        debug_assert_eq!(engine.dialect, Dialect::Sqlite);
        waiting = engine.commit_group(std::mem::take(&mut waiting)).await;
    }
}

impl SqlEngine {
    /// Runs `changes` in one transaction, each in a savepoint, and commits it. A failure of the transaction
    /// itself fails the changes that ran; the ones it did not reach are returned to run in the next group.
    async fn commit_group(&self, changes: Vec<Change>) -> Vec<Change> {
        let _writer = self.writer.lock().await;
        let mut tx = match self.pool.begin().await {
            Ok(tx) => tx,
            Err(e) => {
                tracing::error!(error = %e, "cannot begin a metadata transaction");
                // Dropped: each caller learns that its change did not commit.
                return Vec::new();
            }
        };
        let mut ran = Vec::with_capacity(changes.len());
        let mut changes = changes.into_iter();
        let mut failed = None;
        for change in changes.by_ref() {
            if let Err(e) = sqlx::query("SAVEPOINT change").execute(&mut *tx).await {
                failed = Some(e);
                break;
            }
            // A change that panicked is rolled back like one that failed; its caller learns it did not commit.
            let (keep, deliver) = match AssertUnwindSafe(change(self, &mut tx)).catch_unwind().await {
                Ok((keep, deliver)) => (keep, Some(deliver)),
                Err(_) => (false, None),
            };
            let end = if keep { "RELEASE change" } else { "ROLLBACK TO change" };
            let ended = sqlx::query(end).execute(&mut *tx).await;
            let ended = match ended {
                Ok(_) if !keep => sqlx::query("RELEASE change").execute(&mut *tx).await,
                other => other,
            };
            ran.extend(deliver);
            if let Err(e) = ended {
                failed = Some(e);
                break;
            }
        }
        let committed = match failed {
            Some(e) => Err(e),
            None => tx.commit().await,
        };
        for deliver in ran {
            deliver(committed.as_ref().map(|_| ()));
        }
        changes.collect()
    }
}
