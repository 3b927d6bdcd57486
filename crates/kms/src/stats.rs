//! Counters the KMS reports in its status: backend calls, errors and latency per operation, and the data-key
//! cache's hits, misses and evictions (moka keeps no statistics of its own).
//!
//! [`Metered`] wraps a backend so that every call made through it — by the cache, the admin API or anyone holding
//! [`crate::KmsManager::backend`] — is counted. The counters outlive backend swaps and cache rebuilds: they describe
//! the KMS since the process started.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;

use crate::backend::{BackendKind, KmsBackend};
use crate::error::{KmsError, Result};
use crate::types::{DataKey, EncryptionContext, Health, KeyMaterial, KeyMetadata, KeyPage};
use crate::wrapped::WrappedKey;

/// The backend operations, as named in the status report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    CreateKey,
    DescribeKey,
    ListKeys,
    EnableKey,
    DisableKey,
    ScheduleDeletion,
    CancelDeletion,
    RotateKey,
    SetExpiry,
    SetMinDecryptionVersion,
    GenerateDataKey,
    DecryptDataKey,
    Health,
}

impl Operation {
    const ALL: [Operation; 13] = [
        Self::CreateKey,
        Self::DescribeKey,
        Self::ListKeys,
        Self::EnableKey,
        Self::DisableKey,
        Self::ScheduleDeletion,
        Self::CancelDeletion,
        Self::RotateKey,
        Self::SetExpiry,
        Self::SetMinDecryptionVersion,
        Self::GenerateDataKey,
        Self::DecryptDataKey,
        Self::Health,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::CreateKey => "create_key",
            Self::DescribeKey => "describe_key",
            Self::ListKeys => "list_keys",
            Self::EnableKey => "enable_key",
            Self::DisableKey => "disable_key",
            Self::ScheduleDeletion => "schedule_deletion",
            Self::CancelDeletion => "cancel_deletion",
            Self::RotateKey => "rotate_key",
            Self::SetExpiry => "set_expiry",
            Self::SetMinDecryptionVersion => "set_min_decryption_version",
            Self::GenerateDataKey => "generate_data_key",
            Self::DecryptDataKey => "decrypt_data_key",
            Self::Health => "health",
        }
    }
}

/// Latency of one operation over all its calls, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatencyStats {
    pub total_ms: f64,
    pub avg_ms: f64,
    pub max_ms: f64,
}

/// A snapshot of the backend call counters, keyed by operation name (`generate_data_key`, `decrypt_data_key`, …).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CallStats {
    pub kms_calls: BTreeMap<&'static str, u64>,
    pub kms_errors: BTreeMap<&'static str, u64>,
    pub latency: BTreeMap<&'static str, LatencyStats>,
    /// The last failure of a backend call or a lifecycle step; never contains secrets.
    pub last_error: Option<String>,
}

#[derive(Default)]
struct OperationCounters {
    calls: AtomicU64,
    errors: AtomicU64,
    total_micros: AtomicU64,
    max_micros: AtomicU64,
}

/// The shared counters.
#[derive(Default)]
pub(crate) struct Stats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub evictions: AtomicU64,
    operations: [OperationCounters; Operation::ALL.len()],
    last_error: Mutex<Option<String>>,
}

impl Stats {
    fn counters(&self, operation: Operation) -> &OperationCounters {
        let index = Operation::ALL.iter().position(|&op| op == operation).expect("every operation is listed");
        &self.operations[index]
    }

    fn record_call(&self, operation: Operation, elapsed: Duration, error: Option<&str>) {
        let counters = self.counters(operation);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        counters.calls.fetch_add(1, Ordering::Relaxed);
        counters.total_micros.fetch_add(micros, Ordering::Relaxed);
        counters.max_micros.fetch_max(micros, Ordering::Relaxed);
        if let Some(error) = error {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            self.record_error(format!("{}: {error}", operation.name()));
        }
    }

    /// Remembers a failure for the status report.
    pub fn record_error(&self, message: String) {
        *self.last_error.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(message);
    }

    pub fn calls(&self) -> CallStats {
        let mut stats = CallStats {
            kms_calls: BTreeMap::new(),
            kms_errors: BTreeMap::new(),
            latency: BTreeMap::new(),
            last_error: self.last_error.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone(),
        };
        for operation in Operation::ALL {
            let counters = self.counters(operation);
            let calls = counters.calls.load(Ordering::Relaxed);
            let total_ms = counters.total_micros.load(Ordering::Relaxed) as f64 / 1000.0;
            let latency = LatencyStats {
                total_ms,
                avg_ms: if calls == 0 { 0.0 } else { total_ms / calls as f64 },
                max_ms: counters.max_micros.load(Ordering::Relaxed) as f64 / 1000.0,
            };
            stats.kms_calls.insert(operation.name(), calls);
            stats.kms_errors.insert(operation.name(), counters.errors.load(Ordering::Relaxed));
            stats.latency.insert(operation.name(), latency);
        }
        stats
    }
}

/// A backend whose every call is counted and timed in [`Stats`].
pub(crate) struct Metered {
    inner: Arc<dyn KmsBackend>,
    stats: Arc<Stats>,
}

impl Metered {
    pub fn new(inner: Arc<dyn KmsBackend>, stats: Arc<Stats>) -> Self {
        Self { inner, stats }
    }

    async fn timed<T>(&self, operation: Operation, call: impl Future<Output = Result<T>> + Send) -> Result<T> {
        let started = Instant::now();
        let result = call.await;
        let fault = result.as_ref().err().filter(|err| err.is_fault()).map(KmsError::to_string);
        self.stats.record_call(operation, started.elapsed(), fault.as_deref());
        result
    }
}

#[async_trait]
impl KmsBackend for Metered {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }

    async fn create_key(&self, key_id: Option<&str>, description: Option<&str>) -> Result<KeyMetadata> {
        self.timed(Operation::CreateKey, self.inner.create_key(key_id, description)).await
    }

    async fn describe_key(&self, key_id: &str) -> Result<KeyMetadata> {
        self.timed(Operation::DescribeKey, self.inner.describe_key(key_id)).await
    }

    async fn list_keys(&self, limit: usize, marker: Option<&str>) -> Result<KeyPage> {
        self.timed(Operation::ListKeys, self.inner.list_keys(limit, marker)).await
    }

    async fn enable_key(&self, key_id: &str) -> Result<KeyMetadata> {
        self.timed(Operation::EnableKey, self.inner.enable_key(key_id)).await
    }

    async fn disable_key(&self, key_id: &str) -> Result<KeyMetadata> {
        self.timed(Operation::DisableKey, self.inner.disable_key(key_id)).await
    }

    async fn schedule_deletion(&self, key_id: &str, pending_window_days: u32) -> Result<KeyMetadata> {
        self.timed(Operation::ScheduleDeletion, self.inner.schedule_deletion(key_id, pending_window_days)).await
    }

    async fn cancel_deletion(&self, key_id: &str) -> Result<KeyMetadata> {
        self.timed(Operation::CancelDeletion, self.inner.cancel_deletion(key_id)).await
    }

    async fn rotate_key(&self, key_id: &str) -> Result<KeyMetadata> {
        self.timed(Operation::RotateKey, self.inner.rotate_key(key_id)).await
    }

    async fn set_expiry(&self, key_id: &str, expires_at: Option<OffsetDateTime>) -> Result<KeyMetadata> {
        self.timed(Operation::SetExpiry, self.inner.set_expiry(key_id, expires_at)).await
    }

    async fn set_min_decryption_version(&self, key_id: &str, version: u32) -> Result<KeyMetadata> {
        self.timed(Operation::SetMinDecryptionVersion, self.inner.set_min_decryption_version(key_id, version)).await
    }

    async fn generate_data_key(&self, key_id: &str, context: &EncryptionContext) -> Result<DataKey> {
        self.timed(Operation::GenerateDataKey, self.inner.generate_data_key(key_id, context)).await
    }

    async fn decrypt_data_key(&self, wrapped: &WrappedKey, context: &EncryptionContext) -> Result<KeyMaterial> {
        self.timed(Operation::DecryptDataKey, self.inner.decrypt_data_key(wrapped, context)).await
    }

    async fn health(&self) -> Health {
        let started = Instant::now();
        let health = self.inner.health().await;
        self.stats.record_call(
            Operation::Health,
            started.elapsed(),
            health.reason.as_deref().filter(|_| !health.healthy),
        );
        health
    }
}
