//! The store's upkeep: collecting what crashes leave behind (at start and after every scrub), deleting the remote
//! data files released longer ago than the grace period (`--data-engine s3`, checked every [`RELEASE_CHECKS`]
//! grace period, at most every minute) and, with `--scrub-interval`, a scrub of every object whenever the last one
//! finished that long ago.

use std::sync::Arc;
use std::time::Duration;

use coffer_admin_api::api::{JobSpec, ScrubSpec};
use coffer_admin_api::ObjectAdmin;
use coffer_store::{Reclaimed, Store};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tracing::{info, warn};

use super::Jobs;
use crate::metrics::UpkeepMetrics;

/// Temp files untouched this long are leftovers: a write in flight touches its temp file as its body arrives, and
/// connections that send nothing are closed long before (`--idle-timeout`).
pub const TEMP_MIN_AGE: Duration = Duration::from_secs(3600);
/// How often the background scrub looks at whether one is due while a scrub is running or paused.
const RECHECK: Duration = Duration::from_secs(60);
/// Released data files are looked for this many times per grace period, so none stays much longer than it.
const RELEASE_CHECKS: u32 = 4;

/// Collects what crashes left behind, and logs and counts what it reclaimed.
pub async fn collect_garbage(store: &Store, metrics: &UpkeepMetrics) {
    match store.collect_garbage(TEMP_MIN_AGE).await {
        Ok(reclaimed) => report(reclaimed, metrics, "collected files no record references"),
        Err(e) => warn!(error = %e, "garbage collection of the data directory failed; it is tried again later"),
    }
}

fn report(reclaimed: Reclaimed, metrics: &UpkeepMetrics, what: &str) {
    metrics.reclaimed(reclaimed);
    if reclaimed.files > 0 {
        info!(files = reclaimed.files, bytes = reclaimed.bytes, "{what}");
    }
}

/// Starts the upkeep of a server that just opened its store: counts what opening it swept, collects garbage in
/// the background, and runs the background scrub when `scrub_interval` is set.
pub fn start(jobs: Arc<Jobs>, scrub_interval: Option<Duration>) {
    let metrics = Arc::clone(&jobs.metrics);
    report(jobs.state.store.swept_at_open(), &metrics, "removed the temp files of the last run");
    let store = jobs.state.store.clone();
    if let Some(grace) = store.release_grace() {
        let (store, metrics) = (store.clone(), Arc::clone(&metrics));
        tokio::spawn(async move {
            let period = (grace / RELEASE_CHECKS).clamp(Duration::from_millis(250), RECHECK);
            loop {
                tokio::time::sleep(period).await;
                match store.delete_released_data().await {
                    Ok(reclaimed) => report(reclaimed, &metrics, "deleted released data files"),
                    Err(e) => warn!(error = %e, "deleting released data files failed; it is tried again later"),
                }
            }
        });
    }
    tokio::spawn(async move {
        collect_garbage(&store, &metrics).await;
        if let Some(interval) = scrub_interval {
            background_scrubs(&jobs, interval).await;
        }
    });
}

/// Starts a scrub of every object whenever none is running or paused and the last finished `interval` ago (or
/// there was none), forever.
async fn background_scrubs(jobs: &Jobs, interval: Duration) {
    loop {
        let scrubs: Vec<_> =
            jobs.jobs().await.into_iter().filter(|job| matches!(job.spec, JobSpec::Scrub(_))).collect();
        let wait = if scrubs.iter().any(|job| !job.state.is_finished()) {
            RECHECK.min(interval)
        } else {
            let last = scrubs
                .iter()
                .filter_map(|job| job.finished_at.as_deref())
                .filter_map(|at| OffsetDateTime::parse(at, &Rfc3339).ok())
                .max();
            let since = last.map(|last| (OffsetDateTime::now_utc() - last).max(time::Duration::ZERO));
            match since.and_then(|since| Duration::try_from(since).ok()) {
                Some(since) if since < interval => interval - since,
                _ => {
                    match jobs.start_scrub(ScrubSpec::default()).await {
                        Ok(job) => info!(job = %job.id, "background scrub started (--scrub-interval)"),
                        Err(e) => warn!(error = %e, "cannot start the background scrub; trying again later"),
                    }
                    RECHECK.min(interval)
                }
            }
        };
        tokio::time::sleep(wait).await;
    }
}
