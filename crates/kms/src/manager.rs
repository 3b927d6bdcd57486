//! The KMS lifecycle: configure, start, stop and reconfigure the backend, persist the configuration and the state
//! the operator left the KMS in, and serve the object path and the admin API through the data-key cache.
//!
//! States: `NotConfigured → Configured → Running ⇄ Stopped`, and `Error(reason)` when a start failed. The persisted
//! file (`config.json`, 0600, replaced atomically) holds the configuration with its secrets and the state to come
//! back to after a restart: `Configured`, `Running` (also after a failed start: the operator asked for it to run) or
//! `Stopped`. A failed start is tried again in the background, with pauses growing from 1 s to 30 s, for as long
//! as the KMS is in `Error` and still meant to run: Vault is often started, or unsealed, after the server.
//!
//! Lifecycle changes are serialized; the object path never waits for them. It takes the running backend and cache
//! (one `Arc`) and keeps them for the length of its request, so a reconfigure or stop never breaks a request already
//! in flight.
//!
//! Key administration goes through the manager too, so calls are counted and the cache follows key changes: disabling
//! a key or scheduling its deletion drops its cached keys at once (new writes and reads go to the backend, which
//! refuses them), and rotating a key drops its bucket keys so new writes use the new version.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::backend::{BackendKind, BackendOptions, KmsBackend};
use crate::cache::{CacheSettings, CacheStats, DataKeyCache};
use crate::config::{BackendConfig, KmsConfig, LocalConfig};
use crate::error::{KmsError, Result};
use crate::fs;
use crate::local::{create_master_key_file, LocalBackend};
use crate::stats::{CallStats, Metered, Stats};
use crate::types::{DataKey, EncryptionContext, KeyMaterial, KeyMetadata, KeyPage};
use crate::vault::VaultTransitBackend;
use crate::wrapped::WrappedKey;

const CONFIG_FILE: &str = "config.json";
const CONFIG_FORMAT: u32 = 1;
/// The embedded default's key directory and generated master key, under the state directory.
const EMBEDDED_KEY_DIR: &str = "local/keys";
const EMBEDDED_MASTER_KEY_FILE: &str = "local/master.key";
const DEFAULT_KEY_DESCRIPTION: &str = "Coffer default key (SSE-S3 and SSE-KMS without a key id)";
/// The pause before the first retry of a failed start; each further pause doubles, up to [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_secs(1);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(30);

/// Where the KMS is in its lifecycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LifecycleState {
    NotConfigured,
    Configured,
    Running,
    Stopped,
    /// A start failed; the reason says why (never secrets).
    Error(String),
}

impl LifecycleState {
    /// The state's name without the error reason: `NotConfigured`, `Configured`, `Running`, `Stopped` or `Error`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::NotConfigured => "NotConfigured",
            Self::Configured => "Configured",
            Self::Running => "Running",
            Self::Stopped => "Stopped",
            Self::Error(_) => "Error",
        }
    }
}

impl fmt::Display for LifecycleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Serialized as its name; an error's reason is reported beside it ([`KmsStatus::reason`]).
impl Serialize for LifecycleState {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// What the admin API reports as the KMS status. Serializes as
/// `{"status":"Running","healthy":true,"reason":null,"backend_type":"local","default_key_id":"coffer-default",
/// "cache":{…},"kms_calls":{…},"kms_errors":{…},"latency":{…},"last_error":null}`.
#[derive(Clone, Debug, Serialize)]
pub struct KmsStatus {
    #[serde(rename = "status")]
    pub state: LifecycleState,
    /// Whether the KMS can serve right now: running and its backend's health probe passed.
    pub healthy: bool,
    /// Why it cannot serve, when it cannot.
    pub reason: Option<String>,
    pub backend_type: Option<BackendKind>,
    pub default_key_id: Option<String>,
    pub cache: CacheStats,
    #[serde(flatten)]
    pub calls: CallStats,
}

/// The configuration and the state to come back to, as persisted.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PersistedConfig {
    format: u32,
    state: PersistedState,
    config: KmsConfig,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum PersistedState {
    Configured,
    Running,
    Stopped,
}

/// The KMS of one server, shared (`Arc`) by the object path and the admin API.
pub struct KmsManager {
    state_dir: PathBuf,
    /// Serializes lifecycle changes (configure, start, stop, reconfigure); the object path never takes it.
    transitions: tokio::sync::Mutex<()>,
    current: RwLock<Current>,
    stats: Arc<Stats>,
    /// The manager itself, for the task retrying a failed start (which must not keep it alive).
    this: Weak<KmsManager>,
    /// Whether that task runs; read and written only under `transitions`, so at most one does.
    retrying: AtomicBool,
    /// Counts the changes of `current`, so the retry task can tell whether anything happened while it was trying.
    changes: AtomicU64,
}

#[derive(Clone)]
struct Current {
    state: LifecycleState,
    config: Option<KmsConfig>,
    /// The state `restore` comes back to.
    persisted: Option<PersistedState>,
    /// The backend and cache while running.
    active: Option<Arc<Active>>,
}

struct Active {
    /// Metered: every call through it is counted.
    backend: Arc<dyn KmsBackend>,
    cache: DataKeyCache,
}

impl fmt::Debug for KmsManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsManager")
            .field("state_dir", &self.state_dir)
            .field("state", &self.snapshot().state)
            .finish_non_exhaustive()
    }
}

impl KmsManager {
    /// Opens the KMS state directory (created 0700 if missing) and loads the persisted configuration, if any. An
    /// unreadable configuration file does not stop the server: the KMS is then in `Error` until it is configured
    /// again (the file is never silently replaced, so a Vault configuration is not lost to a default).
    /// The directory is made absolute first, and so is every path in the configuration, so the KMS works whatever
    /// directory the server is started from.
    pub fn open(state_dir: PathBuf) -> Result<Arc<KmsManager>> {
        let state_dir = std::path::absolute(&state_dir)
            .map_err(|err| KmsError::io(format!("resolving {}", state_dir.display()), err))?;
        fs::create_private_dir(&state_dir)?;
        let stats = Arc::new(Stats::default());
        let current = match load_persisted(&state_dir.join(CONFIG_FILE), &state_dir) {
            Ok(None) => Current::not_configured(),
            Ok(Some(persisted)) => {
                let state = match persisted.state {
                    PersistedState::Configured | PersistedState::Running => LifecycleState::Configured,
                    PersistedState::Stopped => LifecycleState::Stopped,
                };
                Current { state, config: Some(persisted.config), persisted: Some(persisted.state), active: None }
            }
            Err(err) => {
                let reason = err.to_string();
                tracing::error!("{reason}");
                stats.record_error(reason.clone());
                Current { state: LifecycleState::Error(reason), ..Current::not_configured() }
            }
        };
        Ok(Arc::new_cyclic(|this| Self {
            state_dir,
            transitions: tokio::sync::Mutex::new(()),
            current: RwLock::new(current),
            stats,
            this: this.clone(),
            retrying: AtomicBool::new(false),
            changes: AtomicU64::new(0),
        }))
    }

    /// Comes back to the persisted state: starts the KMS again if it was running (or failed to start) when the
    /// server stopped. A failed start leaves the KMS in `Error`, retrying in the background, and returns the error
    /// for the server to log; plaintext requests are unaffected.
    pub async fn restore(&self) -> Result<()> {
        let _transition = self.transitions.lock().await;
        let current = self.snapshot();
        if current.persisted == Some(PersistedState::Running) && current.state != LifecycleState::Running {
            self.start_locked().await?;
        }
        Ok(())
    }

    /// With nothing configured yet, sets up and starts the embedded default: a local backend under
    /// `state_dir/local` with a generated master key file (0600). Does nothing once a configuration exists.
    pub async fn ensure_embedded_default(&self) -> Result<()> {
        let _transition = self.transitions.lock().await;
        if self.snapshot().state != LifecycleState::NotConfigured {
            return Ok(());
        }
        let config = KmsConfig::new(BackendConfig::Local(LocalConfig {
            key_dir: Some(self.state_dir.join(EMBEDDED_KEY_DIR)),
            master_key: None,
            master_key_file: None,
        }));
        self.configure_locked(config).await?;
        self.start_locked().await
    }

    /// Validates and persists a configuration; the KMS is then `Configured`. Refused while running (use
    /// [`Self::reconfigure`]). A local backend given no master key uses the generated one of the embedded default.
    pub async fn configure(&self, config: KmsConfig) -> Result<()> {
        let _transition = self.transitions.lock().await;
        let state = self.snapshot().state;
        if state == LifecycleState::Running {
            return Err(KmsError::WrongState { state: state.name().into(), action: "configure".into() });
        }
        self.configure_locked(config).await
    }

    /// Applies a configuration whatever the state. While running, the new backend is built, health-probed and given
    /// its default key first, then swapped in atomically; if any of that fails the old backend keeps running and
    /// the error is returned. Otherwise this is [`Self::configure`].
    pub async fn reconfigure(&self, config: KmsConfig) -> Result<()> {
        let _transition = self.transitions.lock().await;
        if self.snapshot().state != LifecycleState::Running {
            return self.configure_locked(config).await;
        }
        let config = self.prepare(config).await?;
        let active = self.build(&config).await.inspect_err(|err| self.note_failure("reconfigure", err))?;
        self.persist(PersistedState::Running, &config).await?;
        self.set_current(Current {
            state: LifecycleState::Running,
            config: Some(config),
            persisted: Some(PersistedState::Running),
            active: Some(active),
        });
        tracing::info!("KMS reconfigured; the new backend is serving");
        Ok(())
    }

    /// Builds the backend from the configuration, probes its health and ensures the default key exists. Starting
    /// a running KMS changes nothing. On failure the KMS is in `Error(reason)` and the start is retried in the
    /// background until it succeeds or the operator stops or reconfigures the KMS.
    pub async fn start(&self) -> Result<()> {
        let _transition = self.transitions.lock().await;
        self.start_locked().await
    }

    /// Stops serving keys: SSE requests fail with "KMS is not running" until the next start. The cache is dropped
    /// (and zeroized once requests in flight finish). Stopping a stopped KMS changes nothing.
    pub async fn stop(&self) -> Result<()> {
        let _transition = self.transitions.lock().await;
        let current = self.snapshot();
        match (&current.state, current.config) {
            (LifecycleState::Stopped, _) => Ok(()),
            (LifecycleState::Running | LifecycleState::Error(_), Some(config)) => {
                self.persist(PersistedState::Stopped, &config).await?;
                self.set_current(Current {
                    state: LifecycleState::Stopped,
                    config: Some(config),
                    persisted: Some(PersistedState::Stopped),
                    active: None,
                });
                tracing::info!("KMS stopped");
                Ok(())
            }
            (LifecycleState::NotConfigured | LifecycleState::Error(_), _) => Err(KmsError::NotConfigured),
            (state, _) => Err(KmsError::WrongState { state: state.name().into(), action: "stop".into() }),
        }
    }

    /// The state, health (probed now when running), backend, cache and call counters.
    pub async fn status(&self) -> KmsStatus {
        let current = self.snapshot();
        let (healthy, reason) = match (&current.state, &current.active) {
            (LifecycleState::Running, Some(active)) => {
                let health = active.backend.health().await;
                (health.healthy, health.reason)
            }
            (LifecycleState::Error(reason), _) => (false, Some(reason.clone())),
            (LifecycleState::NotConfigured, _) => (false, Some(KmsError::NotConfigured.to_string())),
            (LifecycleState::Configured, _) => (false, Some("KMS is configured but not started".into())),
            (LifecycleState::Stopped | LifecycleState::Running, _) => (false, Some(KmsError::NotRunning.to_string())),
        };
        let cache = match &current.active {
            Some(active) => active.cache.stats().await,
            None => {
                let enabled = current.config.as_ref().is_some_and(|config| config.cache.enabled);
                CacheStats::from_counters(&self.stats, enabled, 0)
            }
        };
        KmsStatus {
            state: current.state,
            healthy,
            reason,
            backend_type: current.config.as_ref().map(|config| backend_kind(&config.backend)),
            default_key_id: current.config.map(|config| config.default_key_id),
            cache,
            calls: self.stats.calls(),
        }
    }

    /// Where the KMS keeps its state (absolute).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The configuration with every secret replaced by `***`.
    pub fn config(&self) -> Option<serde_json::Value> {
        self.snapshot().config.map(|config| config.redacted())
    }

    /// The configuration in force (saved, or applied since), secrets included, for the server to compare its
    /// start-up settings with. Fails when a saved configuration exists but could not be read: it must not be
    /// replaced unawares.
    pub fn saved_config(&self) -> Result<Option<KmsConfig>> {
        let current = self.snapshot();
        match (current.config, current.state) {
            (None, LifecycleState::Error(reason)) => {
                Err(KmsError::InvalidConfig { field: "config".into(), message: reason })
            }
            (config, _) => Ok(config),
        }
    }

    /// Drops every cached key at once; the next request calls the backend.
    pub async fn clear_cache(&self) {
        if let Some(active) = self.snapshot().active {
            active.cache.clear().await;
            tracing::info!("KMS data-key cache cleared");
        }
    }

    /// The running backend (every call through it is counted). `NotConfigured` or `NotRunning` otherwise.
    pub fn backend(&self) -> Result<Arc<dyn KmsBackend>> {
        Ok(Arc::clone(&self.active()?.backend))
    }

    /// The key SSE-S3 and SSE-KMS without a key id use.
    pub fn default_key_id(&self) -> Option<String> {
        self.snapshot().config.map(|config| config.default_key_id)
    }

    /// The cached bucket key for writes under `key_id` in `bucket` with `context` (see [`DataKeyCache`]).
    pub async fn bucket_key(&self, key_id: &str, bucket: &str, context: &EncryptionContext) -> Result<Arc<DataKey>> {
        let active = self.active()?;
        active.cache.bucket_key(active.backend.as_ref(), key_id, bucket, context).await
    }

    /// The plaintext of a stored wrapped key, cached by blob and context.
    pub async fn unwrap_key(&self, wrapped: &WrappedKey, context: &EncryptionContext) -> Result<Arc<KeyMaterial>> {
        let active = self.active()?;
        active.cache.unwrap_key(active.backend.as_ref(), wrapped, context).await
    }

    pub async fn create_key(&self, key_id: Option<&str>, description: Option<&str>) -> Result<KeyMetadata> {
        self.active()?.backend.create_key(key_id, description).await
    }

    pub async fn describe_key(&self, key_id: &str) -> Result<KeyMetadata> {
        self.active()?.backend.describe_key(key_id).await
    }

    pub async fn list_keys(&self, limit: usize, marker: Option<&str>) -> Result<KeyPage> {
        self.active()?.backend.list_keys(limit, marker).await
    }

    pub async fn enable_key(&self, key_id: &str) -> Result<KeyMetadata> {
        self.active()?.backend.enable_key(key_id).await
    }

    /// Disables the key and drops its cached keys: writes and reads under it stop at once.
    pub async fn disable_key(&self, key_id: &str) -> Result<KeyMetadata> {
        let active = self.active()?;
        let metadata = active.backend.disable_key(key_id).await?;
        active.cache.invalidate_key(key_id).await;
        Ok(metadata)
    }

    /// Schedules the key's deletion and drops its cached keys: writes under it stop at once.
    pub async fn schedule_deletion(&self, key_id: &str, pending_window_days: u32) -> Result<KeyMetadata> {
        let active = self.active()?;
        let metadata = active.backend.schedule_deletion(key_id, pending_window_days).await?;
        active.cache.invalidate_key(key_id).await;
        Ok(metadata)
    }

    pub async fn cancel_deletion(&self, key_id: &str) -> Result<KeyMetadata> {
        self.active()?.backend.cancel_deletion(key_id).await
    }

    /// Rotates the key and drops its bucket keys, so new writes use the new version at once.
    pub async fn rotate_key(&self, key_id: &str) -> Result<KeyMetadata> {
        let active = self.active()?;
        let metadata = active.backend.rotate_key(key_id).await?;
        active.cache.invalidate_bucket_keys(key_id).await;
        Ok(metadata)
    }

    fn snapshot(&self) -> Current {
        self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn set_current(&self, next: Current) {
        self.changes.fetch_add(1, Ordering::Relaxed);
        let previous = std::mem::replace(&mut *self.current.write().unwrap_or_else(|p| p.into_inner()), next);
        // The previous backend and cache go once requests holding them finish.
        drop(previous);
    }

    fn active(&self) -> Result<Arc<Active>> {
        let current = self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        match (&current.active, &current.state) {
            (Some(active), _) => Ok(Arc::clone(active)),
            (None, LifecycleState::NotConfigured) => Err(KmsError::NotConfigured),
            (None, _) => Err(KmsError::NotRunning),
        }
    }

    async fn configure_locked(&self, config: KmsConfig) -> Result<()> {
        let config = self.prepare(config).await?;
        self.persist(PersistedState::Configured, &config).await?;
        tracing::info!(backend = backend_kind(&config.backend).as_str(), "KMS configured");
        self.set_current(Current {
            state: LifecycleState::Configured,
            config: Some(config),
            persisted: Some(PersistedState::Configured),
            active: None,
        });
        Ok(())
    }

    async fn start_locked(&self) -> Result<()> {
        let current = self.snapshot();
        let Some(config) = current.config else {
            return Err(KmsError::NotConfigured);
        };
        if current.state == LifecycleState::Running {
            return Ok(());
        }
        let built = self.build(&config).await;
        let built = self.persisted_running(&config, built).await;
        let result = self.record_start(config, built);
        if result.is_err() {
            self.retry_start_in_background();
        }
        result
    }

    /// Records that the KMS is meant to run (even when the start failed, so a restart tries again) and passes on the
    /// built backend, or the failure to record it: a start the server cannot persist (a full disk) is a failed start
    /// like any other, and is retried. Called with `transitions` held.
    async fn persisted_running(&self, config: &KmsConfig, built: Result<Arc<Active>>) -> Result<Arc<Active>> {
        let persisted = self.persist(PersistedState::Running, config).await;
        let active = built?;
        persisted.map(|()| active)
    }

    /// Makes the outcome of a start from `config` current: `Running` with the built backend, or `Error` with the
    /// reason (recorded and logged). Called with `transitions` held.
    fn record_start(&self, config: KmsConfig, built: Result<Arc<Active>>) -> Result<()> {
        let (state, active, result) = match built {
            Ok(active) => {
                tracing::info!(backend = backend_kind(&config.backend).as_str(), "KMS started");
                (LifecycleState::Running, Some(active), Ok(()))
            }
            Err(err) => {
                self.note_failure("start", &err);
                (LifecycleState::Error(format!("KMS failed to start: {err}")), None, Err(err))
            }
        };
        self.set_current(Current { state, config: Some(config), persisted: Some(PersistedState::Running), active });
        result
    }

    /// Starts a task that tries the failed start again after growing pauses, for as long as the KMS stays in
    /// `Error` and meant to run. Called with `transitions` held. The task tries without holding it, so a stop or
    /// a new configuration sent while an attempt waits on an unresponsive Vault answers at once; the attempt's
    /// outcome counts only if nothing changed meanwhile, and a stop or a new configuration ends the task.
    fn retry_start_in_background(&self) {
        if self.retrying.swap(true, Ordering::Relaxed) {
            return;
        }
        tracing::warn!("the KMS start is retried in the background until it succeeds or the KMS is stopped");
        let this = self.this.clone();
        tokio::spawn(async move {
            let mut pause = FIRST_RETRY_PAUSE;
            loop {
                tokio::time::sleep(pause).await;
                let Some(manager) = this.upgrade() else {
                    return;
                };
                let Some((config, changes)) = manager.start_to_retry().await else {
                    return;
                };
                let built = manager.build(&config).await;
                let _transition = manager.transitions.lock().await;
                if manager.changes.load(Ordering::Relaxed) == changes {
                    let built = manager.persisted_running(&config, built).await;
                    let _ = manager.record_start(config, built);
                }
                pause = (pause * 2).min(MAX_RETRY_PAUSE);
            }
        });
    }

    /// The configuration to try starting again and the change count it was read at, while the KMS is in `Error`
    /// and meant to run; otherwise `None`, and the retry task ends.
    async fn start_to_retry(&self) -> Option<(KmsConfig, u64)> {
        let _transition = self.transitions.lock().await;
        let current = self.snapshot();
        let failed = matches!(current.state, LifecycleState::Error(_));
        match current.config {
            Some(config) if failed && current.persisted == Some(PersistedState::Running) => {
                Some((config, self.changes.load(Ordering::Relaxed)))
            }
            _ => {
                self.retrying.store(false, Ordering::Relaxed);
                None
            }
        }
    }

    /// Validates `config`, makes its paths absolute (relative ones are taken from the server's working directory)
    /// and, for a local backend given no master key, points it at the embedded default's generated master key file
    /// (creating it).
    async fn prepare(&self, mut config: KmsConfig) -> Result<KmsConfig> {
        config.validate()?;
        config.make_paths_absolute()?;
        let BackendConfig::Local(local) = &mut config.backend else {
            return Ok(config);
        };
        if local.master_key.is_none() && local.master_key_file.is_none() {
            let path = self.embedded_master_key_file();
            let created = path.clone();
            blocking(move || create_master_key_file(&created)).await?;
            local.master_key_file = Some(path);
        }
        Ok(config)
    }

    /// A started backend with its default key, behind a fresh cache.
    async fn build(&self, config: &KmsConfig) -> Result<Arc<Active>> {
        let options = BackendOptions {
            timeout: Duration::from_secs(config.timeout_seconds),
            retry_attempts: config.retry_attempts,
            state_dir: self.state_dir.clone(),
        };
        let backend: Arc<dyn KmsBackend> = match &config.backend {
            BackendConfig::Local(local) => {
                self.warn_if_embedded(local);
                Arc::new(LocalBackend::open(local).await?)
            }
            BackendConfig::VaultTransit(vault) => Arc::new(VaultTransitBackend::connect(vault, &options).await?),
        };
        // Probing and ensuring the default key happen before metering: start-up checks are not KMS traffic.
        let health = backend.health().await;
        if !health.healthy {
            let reason = health.reason.unwrap_or_else(|| "the health probe failed".into());
            return Err(KmsError::Unavailable(reason));
        }
        ensure_key(backend.as_ref(), &config.default_key_id).await?;
        let backend: Arc<dyn KmsBackend> = Arc::new(Metered::new(backend, Arc::clone(&self.stats)));
        let cache = DataKeyCache::with_stats(CacheSettings::from(&config.cache), Arc::clone(&self.stats));
        Ok(Arc::new(Active { backend, cache }))
    }

    fn warn_if_embedded(&self, local: &LocalConfig) {
        let master_key_file = self.embedded_master_key_file();
        if local.master_key_file.as_deref() == Some(master_key_file.as_path()) {
            tracing::warn!(
                key_dir = %local.key_dir.as_deref().unwrap_or(Path::new("")).display(),
                master_key_file = %master_key_file.display(),
                "KMS is using the embedded local key store with a master key generated on this machine; for \
                 production supply the master secret (COFFER_KMS_LOCAL_MASTER_KEY or --kms-master-key-file) or \
                 use Vault transit (--kms-backend vault)"
            );
        }
    }

    fn embedded_master_key_file(&self) -> PathBuf {
        self.state_dir.join(EMBEDDED_MASTER_KEY_FILE)
    }

    fn note_failure(&self, action: &str, err: &KmsError) {
        tracing::error!("KMS {action} failed: {err}");
        self.stats.record_error(format!("{action}: {err}"));
    }

    /// Saves the configuration and state, unless the file already says exactly that (a restart on a full disk then
    /// needs no write).
    async fn persist(&self, state: PersistedState, config: &KmsConfig) -> Result<()> {
        let persisted = PersistedConfig { format: CONFIG_FORMAT, state, config: config.clone() };
        let bytes = Zeroizing::new(serde_json::to_vec_pretty(&persisted).expect("the configuration always serializes"));
        let path = self.state_dir.join(CONFIG_FILE);
        blocking(move || {
            if std::fs::read(&path).is_ok_and(|saved| Zeroizing::new(saved).as_slice() == bytes.as_slice()) {
                return Ok(());
            }
            fs::write_atomically(&path, &bytes)
        })
        .await
    }
}

impl Current {
    fn not_configured() -> Self {
        Self { state: LifecycleState::NotConfigured, config: None, persisted: None, active: None }
    }
}

/// Creates `key_id` unless it exists (another server or an earlier start may have made it).
async fn ensure_key(backend: &dyn KmsBackend, key_id: &str) -> Result<()> {
    match backend.describe_key(key_id).await {
        Ok(_) => Ok(()),
        Err(KmsError::KeyNotFound(_)) => match backend.create_key(Some(key_id), Some(DEFAULT_KEY_DESCRIPTION)).await {
            Ok(_) | Err(KmsError::KeyExists(_)) => {
                tracing::info!(key_id, "created the default KMS key");
                Ok(())
            }
            Err(err) => Err(err),
        },
        Err(err) => Err(err),
    }
}

/// Reads the saved configuration. Paths saved relative by earlier versions (the embedded default saved
/// `./data/.coffer/kms/local/keys`, relative to wherever the server was started) are made absolute: a path inside a
/// KMS state directory is taken as inside this one, any other from the working directory.
fn load_persisted(path: &Path, state_dir: &Path) -> Result<Option<PersistedConfig>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => Zeroizing::new(bytes),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(KmsError::io(format!("reading KMS configuration file {}", path.display()), err)),
    };
    let persisted: PersistedConfig = serde_json::from_slice(&bytes).map_err(|err| KmsError::InvalidConfig {
        field: "config".into(),
        message: format!(
            "KMS configuration file {} is unreadable (line {}, column {}); configure the KMS again or restore the \
             file",
            path.display(),
            err.line(),
            err.column()
        ),
    })?;
    if persisted.format != CONFIG_FORMAT {
        return Err(KmsError::InvalidConfig {
            field: "config".into(),
            message: format!("KMS configuration file {} has unsupported format {}", path.display(), persisted.format),
        });
    }
    let mut persisted = persisted;
    persisted.config.for_each_path(|saved| {
        if saved.is_relative() {
            *saved = rebase_relative(saved, state_dir);
        }
    });
    persisted.config.make_paths_absolute()?;
    Ok(Some(persisted))
}

/// `…/.coffer/kms/REST` → `state_dir/REST`; any other relative path stays as it is.
fn rebase_relative(path: &Path, state_dir: &Path) -> PathBuf {
    let components: Vec<_> = path.components().collect();
    let inside = components.windows(2).position(|pair| {
        pair[0].as_os_str() == std::ffi::OsStr::new(".coffer") && pair[1].as_os_str() == std::ffi::OsStr::new("kms")
    });
    match inside {
        Some(index) => components[index + 2..].iter().fold(state_dir.to_owned(), |dir, part| dir.join(part)),
        None => path.to_owned(),
    }
}

fn backend_kind(backend: &BackendConfig) -> BackendKind {
    match backend {
        BackendConfig::Local(_) => BackendKind::Local,
        BackendConfig::VaultTransit(_) => BackendKind::VaultTransit,
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|err| KmsError::Backend(format!("KMS file task failed: {err}")))?
}

#[cfg(test)]
mod tests;
