//! The metrics read when `/metrics` is scraped rather than counted as things happen: the KMS's state, store
//! health, call and cache counters ([`KmsManager::status`]), the age and expiry of every enabled key
//! ([`KmsManager::list_keys`]), and the progress of rewrap jobs ([`ObjectAdmin::jobs`]).
//!
//! The endpoint may be open to anyone, so the costly reads are bounded: the KMS status (which probes every store's
//! health, a Vault call each) is reused for [`STATUS_REUSE_FOR`] and may take [`CHECK_TIMEOUT`], after which the
//! stores of the last status count as unhealthy, as the readiness check does; key listings (a Vault call per key)
//! are reused for [`KEYS_REUSE_FOR`]. Ages and times left are computed at each scrape from the cached timestamps.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_admin_api::api::{JobInfo, JobState};
use coffer_admin_api::ObjectAdmin;
use coffer_kms::{split_key_ref, KeyState, KmsManager, KmsStatus, LifecycleState};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use time::OffsetDateTime;
use tokio::sync::Mutex;
use tracing::{debug, warn};

use crate::health::CHECK_TIMEOUT;

/// How long a KMS status (and its store health probes) is reused.
pub const STATUS_REUSE_FOR: Duration = Duration::from_secs(1);
/// How long key listings are reused.
pub const KEYS_REUSE_FOR: Duration = Duration::from_secs(60);
/// Keys asked for per listing call.
const KEYS_PER_PAGE: usize = 1000;

/// Every lifecycle state, for the one-hot `coffer_kms_state`.
const LIFECYCLE_STATES: [&str; 5] = ["NotConfigured", "Configured", "Running", "Stopped", "Error"];
/// Every job state, for `coffer_jobs`.
const JOB_STATES: [JobState; 5] =
    [JobState::Running, JobState::Paused, JobState::Completed, JobState::Cancelled, JobState::Failed];

/// Reads the scraped metrics of one server.
pub struct Scraped {
    kms: Arc<KmsManager>,
    jobs: Option<Arc<dyn ObjectAdmin>>,
    status: Mutex<Option<(Instant, KmsStatus)>>,
    keys: Mutex<Option<(Instant, Vec<KeyTimes>)>>,
}

/// What the key metrics need of one enabled key.
#[derive(Clone, Debug)]
struct KeyTimes {
    store: String,
    key: String,
    /// When its current version was made (its creation if it was never rotated).
    rotated_at: OffsetDateTime,
    expires_at: Option<OffsetDateTime>,
}

impl Scraped {
    pub fn new(kms: Arc<KmsManager>, jobs: Option<Arc<dyn ObjectAdmin>>) -> Self {
        Scraped { kms, jobs, status: Mutex::new(None), keys: Mutex::new(None) }
    }

    /// A registry holding the scraped metrics as they are now.
    pub async fn registry(&self) -> Registry {
        let mut registry = Registry::with_prefix("coffer");
        let status = self.status().await;
        if let Some(status) = &status {
            register_kms(&mut registry, status);
            let keys = self.keys(status).await;
            register_keys(&mut registry, &keys, OffsetDateTime::now_utc());
        }
        if let Some(jobs) = &self.jobs {
            register_jobs(&mut registry, &jobs.jobs().await);
        }
        registry
    }

    /// The KMS status, reused for [`STATUS_REUSE_FOR`]; when the probes time out, the last status with every
    /// store unhealthy (none before the first status).
    async fn status(&self) -> Option<KmsStatus> {
        let mut last = self.status.lock().await;
        if let Some((taken, status)) = last.as_ref() {
            if taken.elapsed() < STATUS_REUSE_FOR {
                return Some(status.clone());
            }
        }
        match tokio::time::timeout(CHECK_TIMEOUT, self.kms.status()).await {
            Ok(status) => {
                *last = Some((Instant::now(), status.clone()));
                Some(status)
            }
            Err(_) => {
                warn!("metrics: the KMS health probes did not finish within {}s", CHECK_TIMEOUT.as_secs());
                let (_, status) = last.as_mut()?;
                status.healthy = false;
                for store in &mut status.stores {
                    store.healthy = false;
                }
                Some(status.clone())
            }
        }
    }

    /// The enabled keys of every serving store, listed again after [`KEYS_REUSE_FOR`].
    async fn keys(&self, status: &KmsStatus) -> Vec<KeyTimes> {
        let mut cached = self.keys.lock().await;
        if let Some((listed, keys)) = cached.as_ref() {
            if listed.elapsed() < KEYS_REUSE_FOR {
                return keys.clone();
            }
        }
        let mut keys = Vec::new();
        if status.state == LifecycleState::Running {
            for store in status.stores.iter().filter(|store| store.healthy) {
                if let Err(error) = self.list_store(&store.name, &mut keys).await {
                    debug!(store = %store.name, %error, "metrics: cannot list the store's keys");
                }
            }
        }
        *cached = Some((Instant::now(), keys.clone()));
        keys
    }

    async fn list_store(&self, store: &str, keys: &mut Vec<KeyTimes>) -> coffer_kms::Result<()> {
        let mut marker = None;
        loop {
            let page = self.kms.list_keys(Some(store), KEYS_PER_PAGE, marker.as_deref()).await?;
            for metadata in page.keys.into_iter().filter(|metadata| metadata.state == KeyState::Enabled) {
                let rotated_at = metadata
                    .versions
                    .iter()
                    .find(|version| version.version == metadata.current_version)
                    .map_or(metadata.created_at, |version| version.created_at);
                keys.push(KeyTimes {
                    store: store.to_owned(),
                    key: split_key_ref(&metadata.key_id).1.to_owned(),
                    rotated_at,
                    expires_at: metadata.expires_at,
                });
            }
            match page.next_marker {
                Some(next) => marker = Some(next),
                None => return Ok(()),
            }
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    store: String,
    backend: &'static str,
    default: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabel {
    store: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    store: String,
    key: String,
}

// `job_id`, not `job`: Prometheus gives every series the `job` of its scrape configuration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobObjects {
    job_id: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobStateLabels {
    job_id: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabel {
    job_id: String,
}

fn register_kms(registry: &mut Registry, status: &KmsStatus) {
    let state = Family::<StateLabel, Gauge>::default();
    for name in LIFECYCLE_STATES {
        state.get_or_create(&StateLabel { state: name }).set(i64::from(status.state.name() == name));
    }
    registry.register("kms_state", "The KMS's lifecycle state: 1 for the current one", state);

    let healthy = Family::<StoreLabels, Gauge>::default();
    let entries = Family::<StoreLabel, Gauge>::default();
    for store in &status.stores {
        let labels =
            StoreLabels { store: store.name.clone(), backend: store.backend_type.as_str(), default: store.default };
        healthy.get_or_create(&labels).set(i64::from(store.healthy));
        entries.get_or_create(&StoreLabel { store: store.name.clone() }).set(saturating_i64(store.cached_keys));
    }
    registry.register("kms_store_healthy", "Whether a KMS store's health probe passes (1) or not (0)", healthy);
    registry.register("kms_cache_entries", "Data keys held by a store's cache", entries);

    let counter = |value: u64| {
        let counter = Counter::<u64>::default();
        counter.inc_by(value);
        counter
    };
    let cache = &status.cache;
    registry.register("kms_cache_hits", "Data-key cache lookups answered from the cache", counter(cache.hit_count));
    registry.register("kms_cache_misses", "Data-key cache lookups that called the KMS", counter(cache.miss_count));
    registry.register("kms_cache_evictions", "Data keys dropped from the cache", counter(cache.eviction_count));

    let calls = Family::<CallLabels, Counter>::default();
    let seconds = Family::<OperationLabel, Counter<f64>>::default();
    for (&operation, &count) in &status.calls.kms_calls {
        let errors = status.calls.kms_errors.get(operation).copied().unwrap_or(0);
        calls.get_or_create(&CallLabels { operation, outcome: "ok" }).inc_by(count.saturating_sub(errors));
        calls.get_or_create(&CallLabels { operation, outcome: "error" }).inc_by(errors);
        let total_ms = status.calls.latency.get(operation).map_or(0.0, |latency| latency.total_ms);
        seconds.get_or_create(&OperationLabel { operation }).inc_by(total_ms / 1000.0);
    }
    registry.register("kms_calls", "KMS backend calls by operation and outcome", calls);
    registry.register_with_unit(
        "kms_call_duration",
        "Time spent in KMS backend calls, by operation (divide by coffer_kms_calls_total for the mean)",
        Unit::Seconds,
        seconds,
    );
}

fn register_keys(registry: &mut Registry, keys: &[KeyTimes], now: OffsetDateTime) {
    let age = Family::<KeyLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let expiry = Family::<KeyLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for key in keys {
        let labels = KeyLabels { store: key.store.clone(), key: key.key.clone() };
        age.get_or_create(&labels).set((now - key.rotated_at).as_seconds_f64());
        if let Some(expires_at) = key.expires_at {
            expiry.get_or_create(&labels).set((expires_at - now).as_seconds_f64());
        }
    }
    registry.register_with_unit(
        "kms_key_rotation_age",
        "Time since an enabled key's current version was made (its last rotation, or its creation)",
        Unit::Seconds,
        age,
    );
    registry.register_with_unit(
        "kms_key_expiry",
        "Time until an enabled key expires (negative once expired); keys without an expiry are not listed",
        Unit::Seconds,
        expiry,
    );
}

fn register_jobs(registry: &mut Registry, jobs: &[JobInfo]) {
    let by_state = Family::<StateLabel, Gauge>::default();
    for state in JOB_STATES {
        let count = jobs.iter().filter(|job| job.state == state).count();
        by_state.get_or_create(&StateLabel { state: state.as_str() }).set(saturating_i64(count as u64));
    }
    registry.register("jobs", "Jobs (rewraps and scrubs) by state", by_state);

    let state = Family::<JobStateLabels, Gauge>::default();
    let objects = Family::<JobObjects, Gauge>::default();
    let bytes = Family::<JobLabel, Gauge>::default();
    for job in jobs.iter().filter(|job| !job.state.is_finished()) {
        state.get_or_create(&JobStateLabels { job_id: job.id.clone(), state: job.state.as_str() }).set(1);
        let progress = &job.progress;
        for (kind, count) in [
            ("total", progress.total),
            ("examined", progress.examined),
            ("changed", progress.changed),
            ("unchanged", progress.unchanged),
            ("skipped_sse_c", progress.skipped_sse_c),
            ("verified", progress.verified),
            ("unverifiable", progress.unverifiable),
            ("damaged", progress.damaged),
            ("failed", progress.failed),
        ] {
            objects.get_or_create(&JobObjects { job_id: job.id.clone(), kind }).set(saturating_i64(count));
        }
        bytes.get_or_create(&JobLabel { job_id: job.id.clone() }).set(saturating_i64(progress.bytes));
    }
    registry.register("job_state", "State of each unfinished job (1 for its current state)", state);
    registry.register("job_objects", "Objects of each unfinished job, by what became of them", objects);
    registry.register_with_unit(
        "job_changed",
        "Size of the objects each unfinished job changed (a scrub: stored bytes read)",
        Unit::Bytes,
        bytes,
    );
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, registry).unwrap();
        text
    }

    #[test]
    fn key_ages_and_times_left_are_counted_from_now() {
        let now = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        let keys = [
            KeyTimes {
                store: "vault".into(),
                key: "k1".into(),
                rotated_at: now - Duration::from_secs(90),
                expires_at: Some(now + Duration::from_secs(86_400)),
            },
            KeyTimes { store: "local".into(), key: "k2".into(), rotated_at: now, expires_at: None },
        ];
        let mut registry = Registry::with_prefix("coffer");
        register_keys(&mut registry, &keys, now);
        let text = encode(&registry);
        assert!(text.contains("coffer_kms_key_rotation_age_seconds{store=\"vault\",key=\"k1\"} 90.0\n"), "{text}");
        assert!(text.contains("coffer_kms_key_rotation_age_seconds{store=\"local\",key=\"k2\"} 0.0\n"), "{text}");
        assert!(text.contains("coffer_kms_key_expiry_seconds{store=\"vault\",key=\"k1\"} 86400.0\n"), "{text}");
        assert!(!text.contains("coffer_kms_key_expiry_seconds{store=\"local\""), "no expiry, no series:\n{text}");
    }
}
