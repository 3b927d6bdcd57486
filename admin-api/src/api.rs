//! The JSON documents the admin API returns, shared by the handlers (which build them) and the CLI (which reads them),
//! so both sides agree on one shape, the one `openapi.yaml` describes.

use std::collections::BTreeMap;

use coffer_kms::{KeyMetadata, KeyState, KmsStatus, StoreStatus};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A master key as the API shows it (never its material).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub key_id: String,
    /// `Enabled`, `Disabled` or `PendingDeletion`.
    pub state: String,
    /// RFC 3339.
    pub created_at: String,
    pub current_version: u32,
    /// Data keys wrapped by versions below it no longer decrypt (1: every version decrypts).
    #[serde(default = "first_version")]
    pub min_decryption_version: u32,
    /// The versions that still decrypt, from `min_decryption_version` to `current_version`.
    pub versions: Vec<KeyVersionInfo>,
    /// When a key pending deletion is destroyed (RFC 3339).
    pub deletion_date: Option<String>,
    pub description: Option<String>,
    /// After this time (RFC 3339) the key makes no new data keys; objects it encrypted stay readable.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Whole days until `expires_at`, rounded down: 0 on its last day, negative once expired.
    #[serde(default)]
    pub days_left: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVersionInfo {
    pub version: u32,
    pub created_at: String,
}

impl From<KeyMetadata> for KeyInfo {
    fn from(key: KeyMetadata) -> Self {
        Self {
            key_id: key.key_id,
            state: key_state_name(key.state).to_owned(),
            created_at: rfc3339(key.created_at),
            current_version: key.current_version,
            min_decryption_version: key.min_decryption_version,
            versions: key
                .versions
                .into_iter()
                .map(|version| KeyVersionInfo { version: version.version, created_at: rfc3339(version.created_at) })
                .collect(),
            deletion_date: key.deletion_date.map(rfc3339),
            description: key.description,
            expires_at: key.expires_at.map(rfc3339),
            days_left: key.expires_at.map(|at| (at - OffsetDateTime::now_utc()).whole_seconds().div_euclid(86_400)),
        }
    }
}

/// What a server that predates minimum decryption versions means: every version decrypts.
fn first_version() -> u32 {
    1
}

/// One page of `GET keys`; pass `next_marker` as `marker` for the next page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyList {
    pub keys: Vec<KeyInfo>,
    pub next_marker: Option<String>,
}

/// An entry of MinIO's `GET key/list`, in MinIO's field names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinioKeyInfo {
    pub name: String,
    #[serde(rename = "createdAt")]
    pub created_at: String,
}

/// MinIO's `GET key/status` answer: the key made and opened a data key (failures are error responses instead).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinioKeyStatus {
    #[serde(rename = "key-id")]
    pub key_id: String,
}

pub(crate) fn key_state_name(state: KeyState) -> &'static str {
    match state {
        KeyState::Enabled => "Enabled",
        KeyState::Disabled => "Disabled",
        KeyState::PendingDeletion => "PendingDeletion",
    }
}

pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).expect("a UTC timestamp always formats as RFC 3339")
}

/// `GET status` (also the answer of configure, reconfigure, start, stop and clear-cache).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KmsStatusInfo {
    /// `NotConfigured`, `Configured`, `Running`, `Stopped` or `Error`.
    pub status: String,
    pub healthy: bool,
    /// Why the KMS cannot serve (sealed Vault, unreadable key directory, not started…).
    pub reason: Option<String>,
    /// The default store's backend: `local` or `vault-transit`, once configured.
    pub backend_type: Option<String>,
    pub default_store: Option<String>,
    pub default_key_id: Option<String>,
    /// Every store with its health, probed for this answer (empty unless running).
    pub stores: Vec<StoreInfo>,
    pub cache: CacheInfo,
    /// Backend calls since the server started, by operation (`generate_data_key`, `decrypt_data_key`, …).
    pub kms_calls: BTreeMap<String, u64>,
    /// Failed backend calls, by operation.
    pub kms_errors: BTreeMap<String, u64>,
    /// Backend call latency, by operation.
    pub latency: BTreeMap<String, LatencyInfo>,
    /// The last failure of a backend call or a lifecycle step.
    pub last_error: Option<String>,
}

/// One KMS store: its health now and, in `GET stores/{name}` and `GET stores`, its configuration (secrets as `***`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoreInfo {
    pub name: String,
    pub backend_type: String,
    pub default: bool,
    pub healthy: bool,
    pub reason: Option<String>,
    /// Keys its data-key cache holds now.
    pub cached_keys: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
}

impl From<StoreStatus> for StoreInfo {
    fn from(store: StoreStatus) -> Self {
        Self {
            name: store.name,
            backend_type: store.backend_type.as_str().to_owned(),
            default: store.default,
            healthy: store.healthy,
            reason: store.reason,
            cached_keys: store.cached_keys,
            config: None,
        }
    }
}

/// `GET stores`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoreList {
    pub default_store: Option<String>,
    pub stores: Vec<StoreInfo>,
}

/// `GET buckets/{bucket}/key`: the key SSE-S3, and SSE-KMS naming no key, use in the bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketKeyInfo {
    pub bucket: String,
    /// `store/key`, or `key` in the default store.
    pub key_id: String,
    /// Whether the bucket has its own key, or uses the KMS's default key.
    pub own: bool,
}

/// Data-key cache statistics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheInfo {
    pub enabled: bool,
    pub hit_count: u64,
    pub miss_count: u64,
    pub entry_count: u64,
    pub eviction_count: u64,
}

/// Latency of one backend operation over all its calls, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyInfo {
    pub total_ms: f64,
    pub avg_ms: f64,
    pub max_ms: f64,
}

impl From<KmsStatus> for KmsStatusInfo {
    fn from(status: KmsStatus) -> Self {
        let by_name = |counts: BTreeMap<&'static str, u64>| {
            counts.into_iter().map(|(name, count)| (name.to_owned(), count)).collect()
        };
        let cache = status.cache;
        Self {
            status: status.state.name().to_owned(),
            healthy: status.healthy,
            reason: status.reason,
            backend_type: status.backend_type.map(|kind| kind.as_str().to_owned()),
            default_store: status.default_store,
            default_key_id: status.default_key_id,
            stores: status.stores.into_iter().map(StoreInfo::from).collect(),
            cache: CacheInfo {
                enabled: cache.enabled,
                hit_count: cache.hit_count,
                miss_count: cache.miss_count,
                entry_count: cache.entry_count,
                eviction_count: cache.eviction_count,
            },
            kms_calls: by_name(status.calls.kms_calls),
            kms_errors: by_name(status.calls.kms_errors),
            latency: status
                .calls
                .latency
                .into_iter()
                .map(|(name, latency)| {
                    let info =
                        LatencyInfo { total_ms: latency.total_ms, avg_ms: latency.avg_ms, max_ms: latency.max_ms };
                    (name.to_owned(), info)
                })
                .collect(),
            last_error: status.calls.last_error,
        }
    }
}

/// An object's encryption as a rewrap job selects and targets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectMode {
    SseS3,
    SseKms,
    Plaintext,
}

/// What a rewrap job changes: the objects in `buckets` (all when empty) under `prefix` matching every `from`
/// filter, moved to `to` (docs/rewrap.md).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewrapSpec {
    #[serde(default)]
    pub buckets: Vec<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub from: RewrapFrom,
    #[serde(default)]
    pub to: RewrapTo,
    /// At most this many objects per second (0: no limit).
    #[serde(default)]
    pub objects_per_second: u32,
    /// Objects changed at once, 1 to [`MAX_JOB_CONCURRENCY`].
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Walk and count, change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// The most objects a job changes at once.
pub const MAX_JOB_CONCURRENCY: u32 = 64;

fn default_concurrency() -> u32 {
    4
}

/// Which objects a rewrap job selects: all filters given must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewrapFrom {
    /// Objects whose bucket key this store wrapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// … this key wrapped (`store/key`, or `key` in the default store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// … a version lower than this wrapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions_below: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ObjectMode>,
}

/// Where a rewrap job moves objects; see docs/rewrap.md for the defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewrapTo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `sse-s3` or `sse-kms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ObjectMode>,
}

/// What a scrub job checks: every stored object of `bucket` (all buckets when absent) whose key starts with
/// `prefix`; see docs/operations.md.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrubSpec {
    #[serde(default)]
    pub bucket: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    /// At most this many objects per second (0: no limit).
    #[serde(default)]
    pub objects_per_second: u32,
}

/// What a job does: its `kind` and its `spec`, side by side in the job's document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "spec", rename_all = "kebab-case")]
pub enum JobSpec {
    Rewrap(RewrapSpec),
    Scrub(ScrubSpec),
}

impl JobSpec {
    /// The `kind` the API shows.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Rewrap(_) => "rewrap",
            Self::Scrub(_) => "scrub",
        }
    }

    /// At most this many objects per second (0: no limit).
    pub fn objects_per_second(&self) -> u32 {
        match self {
            Self::Rewrap(spec) => spec.objects_per_second,
            Self::Scrub(spec) => spec.objects_per_second,
        }
    }

    /// The key prefix the job is limited to.
    pub fn prefix(&self) -> Option<&str> {
        match self {
            Self::Rewrap(spec) => spec.prefix.as_deref(),
            Self::Scrub(spec) => spec.prefix.as_deref(),
        }
    }
}

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    Running,
    Paused,
    Completed,
    Cancelled,
    /// The job as a whole could not go on (`error` says why); per-object failures do not fail a job.
    Failed,
}

impl JobState {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }

    /// Whether the job is over for good.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled | Self::Failed)
    }
}

/// A job as `GET jobs/{job_id}` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    pub id: String,
    /// `kind` (`rewrap`, `scrub`) and `spec`.
    #[serde(flatten)]
    pub spec: JobSpec,
    pub state: JobState,
    /// A rewrap that walks and counts without changing anything (a scrub never changes anything either).
    pub dry_run: bool,
    /// RFC 3339.
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub progress: JobProgress,
    /// Objects that could not be changed, or (a scrub) checked (the first [`MAX_JOB_FAILURES`]).
    pub failures: Vec<JobFailure>,
    /// Objects a scrub found damaged (the first [`MAX_JOB_FAILURES`]; `progress.damaged` counts them all).
    #[serde(default)]
    pub damaged: Vec<JobFailure>,
    pub error: Option<String>,
}

/// The most per-object failures a job keeps.
pub const MAX_JOB_FAILURES: usize = 1000;

/// A job's counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobProgress {
    /// Objects in scope when the job started.
    pub total: u64,
    pub examined: u64,
    /// Objects changed (in a dry run: that would change).
    pub changed: u64,
    pub unchanged: u64,
    pub skipped_sse_c: u64,
    /// Objects a scrub found intact.
    #[serde(default)]
    pub verified: u64,
    /// Objects a scrub found nothing wrong with, but could not check every byte of (stored before data checksums
    /// were kept).
    #[serde(default)]
    pub unverifiable: u64,
    /// Objects a scrub found damaged.
    #[serde(default)]
    pub damaged: u64,
    pub failed: u64,
    /// Size of the changed objects; for a scrub, the stored bytes read.
    pub bytes: u64,
    /// Examined objects per second while running.
    pub objects_per_second: f64,
    /// Seconds left at that rate, while running.
    pub eta_seconds: Option<u64>,
}

/// An object a job could not change or check, or found damaged, and why. `key` is empty when a damaged record no
/// longer tells its key (the reason names the object's directory then).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFailure {
    pub bucket: String,
    pub key: String,
    pub reason: String,
}

/// `GET jobs`, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobList {
    pub jobs: Vec<JobInfo>,
}

/// Which objects depend on a key or a store: `GET keys/{key_id}/impact`, `GET stores/{store}/impact`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImpactReport {
    pub store: String,
    /// `store/key` for a key report; `None` for a store report.
    pub key: Option<String>,
    pub objects: u64,
    pub bytes: u64,
    pub buckets: Vec<UsageCount>,
    /// Per key version, for a key report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<Vec<VersionCount>>,
}

/// Objects and bytes of one bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageCount {
    pub bucket: String,
    pub objects: u64,
    pub bytes: u64,
}

/// Objects and bytes under one key version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionCount {
    pub version: u32,
    pub objects: u64,
    pub bytes: u64,
}
