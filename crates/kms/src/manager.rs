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
//! refuses them), rotating a key drops its bucket keys so new writes use the new version, and raising its minimum
//! decryption version drops its cached keys so reads of retired versions stop at once.
//!
//! Where the configuration is persisted is a seam ([`StateDocuments`]): the state directory for a node alone, the
//! database for nodes sharing one ([`KmsManager::open_shared`]). A shared node announces each change it makes
//! ([`KmsChange`]) and applies the others' with [`KmsManager::follow`]: it brings its own stores to the shared
//! configuration and state without writing them back, and drops the cached keys of a key another node changed.

use std::collections::BTreeMap;
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
use crate::shared::{Document, FileDocuments, KeyDir, KeyFiles, KmsChange, SharedKms, StateDocuments};
use crate::stats::{CallStats, Metered, Stats};
use crate::stores::{InStore, Slot, Store, StoreStatus, Stores};
use crate::types::{DataKey, EncryptionContext, Health, KeyMaterial, KeyMetadata, KeyOrigin, KeyPage};
use crate::vault::VaultTransitBackend;
use crate::wrapped::WrappedKey;

const CONFIG_FILE: &str = "config.json";
/// 2: named stores. Format 1 (one backend) is still read, and written over as format 2 by the next change.
const CONFIG_FORMAT: u32 = 2;
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
    /// The default store's backend.
    pub backend_type: Option<BackendKind>,
    pub default_store: Option<String>,
    pub default_key_id: Option<String>,
    /// Every store, its health probed now.
    pub stores: Vec<StoreStatus>,
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
    documents: Arc<dyn StateDocuments>,
    /// Set when the state is shared with other nodes.
    shared: Option<SharedKms>,
    /// The configuration document as last saved or loaded, and its version: a save that would change nothing is
    /// skipped, and a save is made only over that version.
    saved: std::sync::Mutex<Option<Document>>,
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
    /// The stores, each with its backend and cache, while running.
    active: Option<Arc<Stores>>,
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
        let documents = FileDocuments::new(state_dir.clone());
        let loaded = documents.read(CONFIG_FILE);
        Ok(Self::assemble(state_dir, Arc::new(documents), None, loaded))
    }

    /// [`Self::open`] for a node sharing its KMS state with others through `shared`. The first node to open a
    /// database that holds no KMS state brings its own (its `config.json` and its local stores' key files), so a
    /// node that switches to shared state keeps its keys; it says so in the log.
    pub async fn open_shared(state_dir: PathBuf, shared: SharedKms) -> Result<Arc<KmsManager>> {
        let state_dir = std::path::absolute(&state_dir)
            .map_err(|err| KmsError::io(format!("resolving {}", state_dir.display()), err))?;
        fs::create_private_dir(&state_dir)?;
        let documents = Arc::clone(&shared.documents);
        let mut loaded = documents.load(CONFIG_FILE).await;
        if matches!(loaded, Ok(None)) {
            loaded = import_file_state(&state_dir, &shared).await;
        }
        Ok(Self::assemble(state_dir, documents, Some(shared), loaded))
    }

    fn assemble(
        state_dir: PathBuf,
        documents: Arc<dyn StateDocuments>,
        shared: Option<SharedKms>,
        loaded: Result<Option<Document>>,
    ) -> Arc<KmsManager> {
        let stats = Arc::new(Stats::default());
        let origin = documents.describe(CONFIG_FILE);
        let decoded = loaded.and_then(|document| match document {
            Some(document) => Ok(Some((decode_persisted(&document.bytes, &origin, &state_dir)?, document))),
            None => Ok(None),
        });
        let (current, saved) = match decoded {
            Ok(None) => (Current::not_configured(), None),
            Ok(Some((persisted, document))) => (Current::from_persisted(persisted), Some(document)),
            Err(err) => {
                let reason = err.to_string();
                tracing::error!("{reason}");
                stats.record_error(reason.clone());
                (Current { state: LifecycleState::Error(reason), ..Current::not_configured() }, None)
            }
        };
        Arc::new_cyclic(|this| Self {
            state_dir,
            documents,
            shared,
            saved: std::sync::Mutex::new(saved),
            transitions: tokio::sync::Mutex::new(()),
            current: RwLock::new(current),
            stats,
            this: this.clone(),
            retrying: AtomicBool::new(false),
            changes: AtomicU64::new(0),
        })
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

    /// The state, health (probed now when running, every store at once), stores, cache and call counters. The
    /// top-level health is the default store's, as RustFS and MinIO clients expect of a single KMS.
    pub async fn status(&self) -> KmsStatus {
        let current = self.snapshot();
        let enabled = current.config.as_ref().is_some_and(|config| config.cache.enabled);
        let stores = match &current.active {
            Some(stores) => stores.statuses().await,
            None => Vec::new(),
        };
        let (healthy, reason) = match (&current.state, &current.active) {
            (LifecycleState::Running, Some(_)) => match stores.iter().find(|store| store.default) {
                Some(store) => (store.healthy, store.reason.clone()),
                None => (false, Some("the default store is missing".into())),
            },
            (LifecycleState::Error(reason), _) => (false, Some(reason.clone())),
            (LifecycleState::NotConfigured, _) => (false, Some(KmsError::NotConfigured.to_string())),
            (LifecycleState::Configured, _) => (false, Some("KMS is configured but not started".into())),
            (LifecycleState::Stopped | LifecycleState::Running, _) => (false, Some(KmsError::NotRunning.to_string())),
        };
        let cached = stores.iter().map(|store| store.cached_keys).sum();
        KmsStatus {
            state: current.state,
            healthy,
            reason,
            backend_type: current.config.as_ref().map(|config| config.default_backend().kind()),
            default_store: current.config.as_ref().map(|config| config.default_store.clone()),
            default_key_id: current.config.map(|config| config.default_key_id),
            stores,
            cache: CacheStats::from_counters(&self.stats, enabled, cached),
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

    /// Drops the cached keys of one store, or of every store: the next request calls the backend.
    pub async fn clear_cache(&self, store: Option<&str>) -> Result<()> {
        self.clear_local_cache(store).await?;
        self.announce(KmsChange::ClearCache { store: store.map(str::to_owned) }).await;
        Ok(())
    }

    /// [`Self::clear_cache`] on this node only.
    async fn clear_local_cache(&self, store: Option<&str>) -> Result<()> {
        let Some(stores) = self.snapshot().active else { return Ok(()) };
        match store {
            Some(name) => stores.serving(name)?.cache.clear().await,
            None => {
                for slot in stores.slots.values() {
                    if let Slot::Serving(store) = slot {
                        store.cache.clear().await;
                    }
                }
            }
        }
        tracing::info!(store = store.unwrap_or("(all)"), "KMS data-key cache cleared");
        Ok(())
    }

    /// The running backend of a store (the default store when `None`); every call through it is counted.
    /// `NotConfigured` or `NotRunning` otherwise.
    pub fn backend(&self, store: Option<&str>) -> Result<Arc<dyn KmsBackend>> {
        let stores = self.active()?;
        Ok(Arc::clone(&stores.serving(store.unwrap_or(&stores.default_store))?.backend))
    }

    /// The key SSE-S3 and SSE-KMS without a key id use, unless the bucket has its own ([`Self::default_key_for`]).
    pub fn default_key_id(&self) -> Option<String> {
        self.snapshot().config.map(|config| config.default_key_id)
    }

    /// The key (`store/key`, or `key` in the default store) SSE-S3 and SSE-KMS without a key id use in `bucket`.
    /// On the object path this reads the running stores (no copy of the configuration); otherwise the configuration.
    pub fn default_key_for(&self, bucket: &str) -> Option<String> {
        if let Ok(stores) = self.active() {
            return Some(stores.default_key_for(bucket).to_owned());
        }
        let config = self.snapshot().config?;
        Some(config.bucket_keys.get(bucket).cloned().unwrap_or(config.default_key_id))
    }

    /// The cached bucket key for writes under `key_ref` (`store/key`, or `key` in the default store) in `bucket`
    /// with `context` (see [`DataKeyCache`]). A cached key whose master key has expired since is not used.
    pub async fn bucket_key(&self, key_ref: &str, bucket: &str, context: &EncryptionContext) -> Result<Arc<DataKey>> {
        let stores = self.active()?;
        let (store, key_id) = stores.resolve(key_ref)?;
        let data_key = store.named(store.cache.bucket_key(store.backend.as_ref(), key_id, bucket, context).await)?;
        match data_key.expires_at {
            Some(at) if at <= time::OffsetDateTime::now_utc() => Err(crate::key_requests::expired(key_ref, at)),
            _ => Ok(data_key),
        }
    }

    /// The plaintext of a stored wrapped key, opened by the store that made it and cached by blob and context.
    pub async fn unwrap_key(&self, wrapped: &WrappedKey, context: &EncryptionContext) -> Result<Arc<KeyMaterial>> {
        let stores = self.active()?;
        let store = stores.for_blob(&wrapped.header()?)?;
        store.named(store.cache.unwrap_key(store.backend.as_ref(), wrapped, context).await)
    }

    /// Which store, key and key version made a wrapped key. Reads only the blob and the configuration: the store
    /// need not be up.
    pub fn key_origin(&self, wrapped: &WrappedKey) -> Result<KeyOrigin> {
        let stores = self.active()?;
        let header = wrapped.header()?;
        let store = stores.blob_store(&header)?.to_owned();
        Ok(KeyOrigin { store, key_id: header.key_id.to_owned(), version: header.key_version })
    }

    /// The names of the configured stores (running or not).
    pub fn store_names(&self) -> std::collections::BTreeSet<String> {
        let current = self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        current.config.as_ref().map(|config| config.stores.keys().cloned().collect()).unwrap_or_default()
    }

    /// The name of the default store, once the KMS is configured.
    pub fn default_store(&self) -> Option<String> {
        let current = self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        current.config.as_ref().map(|config| config.default_store.clone())
    }

    /// The store and key id `key_ref` names (`store/key`, or `key` in the default store); checks the form only.
    pub fn locate_key(&self, key_ref: &str) -> Result<(String, String)> {
        self.active()?.locate(key_ref)
    }

    /// Creates a key in the store `key_ref` names (the default store for a bare or generated id).
    pub async fn create_key(&self, key_ref: Option<&str>, description: Option<&str>) -> Result<KeyMetadata> {
        let stores = self.active()?;
        let (store, key_id) = match key_ref {
            Some(key_ref) => {
                let (store, key_id) = stores.resolve(key_ref)?;
                (store, Some(key_id))
            }
            None => (stores.serving(&stores.default_store)?, None),
        };
        let metadata = store.named(store.backend.create_key(key_id, description).await)?;
        Ok(stores.qualify(&store, metadata))
    }

    pub async fn describe_key(&self, key_ref: &str) -> Result<KeyMetadata> {
        self.on_key(key_ref, false, |store, key_id| async move { store.backend.describe_key(&key_id).await }).await
    }

    /// Keys of one store (the default store when `None`) in id order.
    pub async fn list_keys(&self, store: Option<&str>, limit: usize, marker: Option<&str>) -> Result<KeyPage> {
        let stores = self.active()?;
        let store = stores.serving(store.unwrap_or(&stores.default_store))?;
        let mut page = store.named(store.backend.list_keys(limit, marker).await)?;
        page.keys = page.keys.into_iter().map(|metadata| stores.qualify(&store, metadata)).collect();
        if let Some(marker) = page.next_marker.as_mut() {
            // Markers are the store's own key ids.
            *marker = crate::stores::split_key_ref(marker).1.to_owned();
        }
        Ok(page)
    }

    pub async fn enable_key(&self, key_ref: &str) -> Result<KeyMetadata> {
        self.on_key(key_ref, true, |store, key_id| async move { store.backend.enable_key(&key_id).await }).await
    }

    /// Disables the key and drops its cached keys: writes and reads under it stop at once.
    pub async fn disable_key(&self, key_ref: &str) -> Result<KeyMetadata> {
        self.on_key(key_ref, true, |store, key_id| async move {
            let metadata = store.backend.disable_key(&key_id).await?;
            store.cache.invalidate_key(&key_id).await;
            Ok(metadata)
        })
        .await
    }

    /// Schedules the key's deletion and drops its cached keys: writes under it stop at once.
    pub async fn schedule_deletion(&self, key_ref: &str, pending_window_days: u32) -> Result<KeyMetadata> {
        self.on_key(key_ref, true, |store, key_id| async move {
            let metadata = store.backend.schedule_deletion(&key_id, pending_window_days).await?;
            store.cache.invalidate_key(&key_id).await;
            Ok(metadata)
        })
        .await
    }

    pub async fn cancel_deletion(&self, key_ref: &str) -> Result<KeyMetadata> {
        self.on_key(key_ref, true, |store, key_id| async move { store.backend.cancel_deletion(&key_id).await }).await
    }

    /// Rotates the key and drops its bucket keys, so new writes use the new version at once.
    pub async fn rotate_key(&self, key_ref: &str) -> Result<KeyMetadata> {
        self.on_key(key_ref, true, |store, key_id| async move {
            let metadata = store.backend.rotate_key(&key_id).await?;
            store.cache.invalidate_bucket_keys(&key_id).await;
            Ok(metadata)
        })
        .await
    }

    /// Adds a store. While running it is built and probed first: a store that cannot serve is refused and nothing
    /// changes.
    pub async fn add_store(&self, name: &str, backend: BackendConfig) -> Result<()> {
        crate::config::validate_store_name(name)?;
        self.change_stores(|config| {
            if config.stores.contains_key(name) {
                return Err(KmsError::StoreInUse(format!("KMS store {name} already exists; update it instead")));
            }
            config.stores.insert(name.to_owned(), backend);
            Ok(Some(name.to_owned()))
        })
        .await
    }

    /// Changes a store's backend settings (secrets shown as `***` keep their values). The wrapped keys it made keep
    /// naming it, so it must still reach the same keys: change addresses and credentials, not the keys' home.
    pub async fn update_store(&self, name: &str, mut backend: BackendConfig) -> Result<()> {
        self.change_stores(|config| {
            let current = config.stores.get(name).ok_or_else(|| KmsError::StoreNotFound(name.to_owned()))?;
            backend.restore_redacted(Some(current))?;
            config.stores.insert(name.to_owned(), backend);
            Ok(Some(name.to_owned()))
        })
        .await
    }

    /// Removes a store: refused for the default store and while buckets use it (with their count). Objects whose
    /// keys it wrapped can no longer be read afterwards; the operator moves them first.
    pub async fn remove_store(&self, name: &str) -> Result<()> {
        self.change_stores(|config| {
            if !config.stores.contains_key(name) {
                return Err(KmsError::StoreNotFound(name.to_owned()));
            }
            if config.default_store == name {
                return Err(KmsError::StoreInUse(format!(
                    "KMS store {name} is the default store; make another store the default first"
                )));
            }
            let buckets = config.bucket_keys.values().filter(|key| key.split_once('/').is_some_and(|(s, _)| s == name));
            let count = buckets.count();
            if count > 0 {
                return Err(KmsError::StoreInUse(format!(
                    "KMS store {name} is the key store of {count} bucket(s); unset or change their keys first"
                )));
            }
            config.stores.remove(name);
            config.legacy_stores.retain(|_, store| store != name);
            Ok(None)
        })
        .await
    }

    /// Makes `name` the default store; it must hold the default key (created there if missing, as at start).
    pub async fn set_default_store(&self, name: &str) -> Result<()> {
        self.change_stores(|config| {
            if !config.stores.contains_key(name) {
                return Err(KmsError::StoreNotFound(name.to_owned()));
            }
            config.default_store = name.to_owned();
            Ok(Some(name.to_owned()))
        })
        .await
    }

    /// The key (`store/key` or `key`) SSE-S3 and SSE-KMS naming no key use in `bucket`, if it has its own.
    pub fn bucket_key_ref(&self, bucket: &str) -> Option<String> {
        self.snapshot().config?.bucket_keys.get(bucket).cloned()
    }

    /// Sets the key SSE-S3 and SSE-KMS naming no key use in `bucket`; the key must exist (checked while running).
    pub async fn set_bucket_key(&self, bucket: &str, key_ref: &str) -> Result<()> {
        let (store, key_id) = crate::stores::split_key_ref(key_ref);
        crate::key_id::validate_key_id(key_id)?;
        if let Some(store) = store {
            crate::config::validate_store_name(store)?;
        }
        if self.snapshot().state == LifecycleState::Running {
            self.describe_key(key_ref).await?;
        }
        self.change_stores(|config| {
            config.bucket_keys.insert(bucket.to_owned(), key_ref.to_owned());
            Ok(None)
        })
        .await
    }

    pub async fn unset_bucket_key(&self, bucket: &str) -> Result<()> {
        self.change_stores(|config| {
            config.bucket_keys.remove(bucket);
            Ok(None)
        })
        .await
    }

    /// Applies a change of stores or bucket keys: validated, persisted, and while running made current with only
    /// the store `change` names rebuilt (the others keep their backends and caches). A rebuilt store must serve
    /// (health probe; the default store also gets the default key), or nothing changes.
    async fn change_stores(&self, change: impl FnOnce(&mut KmsConfig) -> Result<Option<String>>) -> Result<()> {
        let _transition = self.transitions.lock().await;
        let current = self.snapshot();
        let mut config = current.config.clone().ok_or(KmsError::NotConfigured)?;
        let rebuilt = change(&mut config)?;
        if let Some(name) = &rebuilt {
            let backend = config.stores.get_mut(name).expect("the change names a configured store");
            backend.validate()?;
            backend.make_paths_absolute()?;
            self.prepare_store(backend).await?;
        }
        config.validate()?;
        let active = match (&current.active, &rebuilt) {
            (Some(stores), rebuilt) => Some(self.rebuilt(stores, &config, rebuilt.as_deref()).await?),
            (None, _) => None,
        };
        let persisted = current.persisted.unwrap_or(PersistedState::Configured);
        self.persist(persisted, &config).await?;
        self.set_current(Current { config: Some(config), active, ..current });
        Ok(())
    }

    /// `stores` with `config`'s settings and the store `rebuilt` built anew.
    async fn rebuilt(&self, stores: &Stores, config: &KmsConfig, rebuilt: Option<&str>) -> Result<Arc<Stores>> {
        let mut slots: BTreeMap<String, Slot> = stores
            .slots
            .iter()
            .filter(|(name, _)| config.stores.contains_key(*name))
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        if let Some(name) = rebuilt {
            let store = self.build_store(config, name, &config.stores[name]).await?;
            // The default store was probed as it was built.
            let health = if name == config.default_store { Health::ok() } else { store.backend.health().await };
            if !health.healthy {
                let reason = health.reason.unwrap_or_else(|| "the health probe failed".into());
                return Err(KmsError::Unavailable(format!("store {name}: {reason}")));
            }
            slots.insert(name.to_owned(), Slot::Serving(store));
        }
        Ok(Arc::new(Stores::new(slots, config)))
    }

    /// Sets (or clears) the time after which the key makes no new data keys, and drops its cached bucket keys so
    /// the new time applies at once. The time must lie in the future.
    pub async fn set_key_expiry(&self, key_ref: &str, expires_at: Option<time::OffsetDateTime>) -> Result<KeyMetadata> {
        self.on_key(key_ref, true, |store, key_id| async move {
            let metadata = store.backend.set_expiry(&key_id, expires_at).await?;
            store.cache.invalidate_bucket_keys(&key_id).await;
            Ok(metadata)
        })
        .await
    }

    /// Sets the lowest key version whose data keys still decrypt, and drops every cached key of the key: an unwrapped
    /// key of a version now retired must not keep serving reads, nor a bucket key of one (an operator may have rotated
    /// the key outside Coffer) new writes.
    pub async fn set_min_decryption_version(&self, key_ref: &str, version: u32) -> Result<KeyMetadata> {
        self.on_key(key_ref, true, |store, key_id| async move {
            let metadata = store.backend.set_min_decryption_version(&key_id, version).await?;
            store.cache.invalidate_key(&key_id).await;
            Ok(metadata)
        })
        .await
    }

    /// Runs a key operation in the store `key_ref` names; the answer names the key as the caller does. An operation
    /// that `changes` the key is announced to the other nodes, which drop its cached keys.
    async fn on_key<F, Fut>(&self, key_ref: &str, changes: bool, operation: F) -> Result<KeyMetadata>
    where
        F: FnOnce(Arc<Store>, String) -> Fut,
        Fut: std::future::Future<Output = Result<KeyMetadata>>,
    {
        let stores = self.active()?;
        let (store, key_id) = stores.resolve(key_ref)?;
        let metadata = store.named(operation(Arc::clone(&store), key_id.to_owned()).await)?;
        if changes {
            self.announce(KmsChange::Key { store: store.name.clone(), key_id: key_id.to_owned() }).await;
        }
        Ok(stores.qualify(&store, metadata))
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

    fn active(&self) -> Result<Arc<Stores>> {
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
        tracing::info!(default_store = %config.default_store, stores = config.stores.len(), "KMS configured");
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
    async fn persisted_running(&self, config: &KmsConfig, built: Result<Arc<Stores>>) -> Result<Arc<Stores>> {
        let persisted = self.persist(PersistedState::Running, config).await;
        let active = built?;
        persisted.map(|()| active)
    }

    /// Makes the outcome of a start from `config` current: `Running` with the built backend, or `Error` with the
    /// reason (recorded and logged). Called with `transitions` held.
    fn record_start(&self, config: KmsConfig, built: Result<Arc<Stores>>) -> Result<()> {
        let (state, active, result) = match built {
            Ok(active) => {
                tracing::info!(default_store = %config.default_store, stores = config.stores.len(), "KMS started");
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
        for backend in config.stores.values_mut() {
            self.prepare_store(backend).await?;
        }
        Ok(config)
    }

    /// A local store given no master key uses the embedded default's generated master key file (created here).
    async fn prepare_store(&self, backend: &mut BackendConfig) -> Result<()> {
        if let BackendConfig::Local(local) = backend {
            if local.master_key.is_none() && local.master_key_file.is_none() {
                let path = self.embedded_master_key_file();
                let created = path.clone();
                blocking(move || create_master_key_file(&created)).await?;
                local.master_key_file = Some(path);
            }
        }
        Ok(())
    }

    /// Every store of `config`, each behind a fresh cache. The default store must answer its health probe and get
    /// the default key, or the start fails; another store that cannot be built is kept as broken (its requests fail
    /// naming it, the others serve).
    async fn build(&self, config: &KmsConfig) -> Result<Arc<Stores>> {
        let mut slots = BTreeMap::new();
        for (name, backend) in &config.stores {
            let slot = match self.build_store(config, name, backend).await {
                Ok(store) => Slot::Serving(store),
                Err(err) if *name != config.default_store => {
                    tracing::error!(store = %name, "KMS store could not be set up: {err}");
                    self.stats.record_error(format!("store {name}: {err}"));
                    Slot::Broken { kind: backend.kind(), reason: err.to_string() }
                }
                Err(err) => return Err(err),
            };
            slots.insert(name.clone(), slot);
        }
        Ok(Arc::new(Stores::new(slots, config)))
    }

    /// One store: its backend opened (the default store also probed and given the default key), metered, naming
    /// itself in the blobs it makes, behind a fresh cache.
    async fn build_store(&self, config: &KmsConfig, name: &str, backend: &BackendConfig) -> Result<Arc<Store>> {
        let options = BackendOptions {
            timeout: Duration::from_secs(config.timeout_seconds),
            retry_attempts: config.retry_attempts,
            state_dir: self.state_dir.clone(),
            shared_documents: self.shared.as_ref().map(|shared| Arc::clone(&shared.documents)),
        };
        let opened: Arc<dyn KmsBackend> = match backend {
            BackendConfig::Local(local) => {
                self.warn_if_embedded(local);
                let shared_files = self.shared.as_ref().map(|shared| (shared.key_files)(name));
                Arc::new(LocalBackend::open_with(local, shared_files).await?)
            }
            BackendConfig::VaultTransit(vault) => Arc::new(VaultTransitBackend::connect(vault, &options).await?),
        };
        // Probing and ensuring the default key happen before metering: start-up checks are not KMS traffic.
        if name == config.default_store {
            let health = opened.health().await;
            if !health.healthy {
                let reason = health.reason.unwrap_or_else(|| "the health probe failed".into());
                return Err(KmsError::Unavailable(format!("store {name}: {reason}")));
            }
            ensure_key(opened.as_ref(), &config.default_key_id).await?;
        }
        let named: Arc<dyn KmsBackend> = Arc::new(InStore::new(name.to_owned(), opened));
        let backend: Arc<dyn KmsBackend> = Arc::new(Metered::new(named, Arc::clone(&self.stats)));
        let cache = DataKeyCache::with_stats(CacheSettings::from(&config.cache), Arc::clone(&self.stats));
        Ok(Arc::new(Store { name: name.to_owned(), backend, cache }))
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

    /// Saves the configuration and state, unless the saved document already says exactly that (a restart on a full
    /// disk then needs no write), and tells the other nodes sharing it.
    async fn persist(&self, state: PersistedState, config: &KmsConfig) -> Result<()> {
        let persisted = PersistedConfig { format: CONFIG_FORMAT, state, config: config.clone() };
        let bytes = Zeroizing::new(serde_json::to_vec_pretty(&persisted).expect("the configuration always serializes"));
        let expected = {
            let saved = self.saved.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match saved.as_ref() {
                Some(saved) if saved.bytes.as_slice() == bytes.as_slice() => return Ok(()),
                saved => saved.map(|saved| saved.version),
            }
        };
        let version = self.documents.save(CONFIG_FILE, &bytes, expected).await?;
        *self.saved.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Document { bytes, version });
        self.announce(KmsChange::Config).await;
        Ok(())
    }

    /// Tells the other nodes sharing the state about a change made here. The change is made already: a failure is
    /// logged and counted (the other nodes then see a configuration change at their next poll, not a key change).
    async fn announce(&self, change: KmsChange) {
        if let Some(shared) = &self.shared {
            if let Err(err) = shared.feed.announce(&change).await {
                self.note_failure("announcing a change to the other nodes", &err);
            }
        }
    }

    /// Applies a change another node made (see the module documentation). A configuration change is read from the
    /// shared state; the lifecycle state it asks for is reached without saving anything back.
    pub async fn follow(&self, change: &KmsChange) -> Result<()> {
        match change {
            KmsChange::Config => self.follow_config().await,
            KmsChange::Key { store, key_id } => {
                if let Ok(stores) = self.active() {
                    if let Ok(store) = stores.serving(store) {
                        store.cache.invalidate_key(key_id).await;
                        tracing::info!(store = %store.name, key_id, "dropped the cached keys of a key another node changed");
                    }
                }
                Ok(())
            }
            KmsChange::ClearCache { store } => self.clear_local_cache(store.as_deref()).await,
        }
    }

    /// Reads the shared configuration and, if it changed since this node last saved or read it, applies it.
    async fn follow_config(&self) -> Result<()> {
        let _transition = self.transitions.lock().await;
        let Some(document) = self.documents.load(CONFIG_FILE).await? else {
            return Ok(());
        };
        {
            let saved = self.saved.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if saved.as_ref().is_some_and(|saved| saved.version == document.version) {
                return Ok(());
            }
        }
        let origin = self.documents.describe(CONFIG_FILE);
        let persisted = decode_persisted(&document.bytes, &origin, &self.state_dir)?;
        *self.saved.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(document);
        let current = self.snapshot();
        tracing::info!(state = ?persisted.state, "applying the KMS configuration another node saved");
        match persisted.state {
            PersistedState::Configured | PersistedState::Stopped => {
                self.set_current(Current::from_persisted(persisted));
                Ok(())
            }
            PersistedState::Running => {
                let config = persisted.config;
                let built = match (&current.active, &current.config) {
                    (Some(stores), Some(old)) if same_tuning(old, &config) => {
                        self.follow_stores(stores, old, &config).await
                    }
                    _ => self.build(&config).await,
                };
                let result = self.record_start(config, built);
                if result.is_err() {
                    self.retry_start_in_background();
                }
                result
            }
        }
    }

    /// `stores` brought to `config`: a store whose settings differ from `old`'s, or that becomes the default, is
    /// built anew (one that cannot serve is kept as broken, as at start); the others keep their backends and caches.
    async fn follow_stores(&self, stores: &Stores, old: &KmsConfig, config: &KmsConfig) -> Result<Arc<Stores>> {
        let mut slots = BTreeMap::new();
        for (name, backend) in &config.stores {
            let unchanged = old.stores.get(name).is_some_and(|before| same_backend(before, backend))
                && (*name != config.default_store || old.default_store == *name);
            let slot = match stores.slots.get(name) {
                Some(slot) if unchanged => slot.clone(),
                _ => match self.build_store(config, name, backend).await {
                    Ok(store) => Slot::Serving(store),
                    Err(err) if *name != config.default_store => {
                        tracing::error!(store = %name, "KMS store could not be set up: {err}");
                        Slot::Broken { kind: backend.kind(), reason: err.to_string() }
                    }
                    Err(err) => return Err(err),
                },
            };
            slots.insert(name.clone(), slot);
        }
        Ok(Arc::new(Stores::new(slots, config)))
    }
}

/// Whether two configurations differ at most in their stores, default store and bucket keys (what a store change
/// touches), so the unchanged stores can keep serving with their caches.
fn same_tuning(a: &KmsConfig, b: &KmsConfig) -> bool {
    let tuning = |config: &KmsConfig| {
        let mut config = config.clone();
        config.stores.clear();
        config.bucket_keys.clear();
        config.legacy_stores.clear();
        config.default_store.clear();
        Zeroizing::new(serde_json::to_vec(&config).expect("the configuration always serializes"))
    };
    tuning(a) == tuning(b)
}

fn same_backend(a: &BackendConfig, b: &BackendConfig) -> bool {
    let bytes = |backend| Zeroizing::new(serde_json::to_vec(backend).expect("the configuration always serializes"));
    bytes(a) == bytes(b)
}

/// The state of a node that had its KMS state in files, brought to a shared store holding none: the key files of
/// each local store `config.json` names, the Vault keys' lifecycle records, then `config.json` itself. Returns the
/// configuration document as saved.
async fn import_file_state(state_dir: &Path, shared: &SharedKms) -> Result<Option<Document>> {
    let files = FileDocuments::new(state_dir.to_owned());
    let Some(document) = files.load(CONFIG_FILE).await? else {
        return Ok(None);
    };
    let persisted = decode_persisted(&document.bytes, &files.describe(CONFIG_FILE), state_dir)?;
    for (name, backend) in &persisted.config.stores {
        let BackendConfig::Local(LocalConfig { key_dir: Some(dir), .. }) = backend else {
            continue;
        };
        let (target, dir) = ((shared.key_files)(name), dir.clone());
        let count = blocking(move || {
            let source = KeyDir::open(dir)?;
            let mut count = 0;
            for key_id in source.list()? {
                if let Some((bytes, _)) = source.read(&key_id)? {
                    match target.write(&key_id, &bytes, None) {
                        Ok(()) => count += 1,
                        Err(KmsError::KeyExists(_)) => {}
                        Err(err) => return Err(err),
                    }
                }
            }
            Ok(count)
        })
        .await?;
        tracing::warn!(store = %name, keys = count, "imported this node's local KMS key files into the shared KMS state");
    }
    if let Some(vault_keys) = files.load(crate::vault::LIFECYCLE_DOCUMENT).await? {
        shared.documents.save(crate::vault::LIFECYCLE_DOCUMENT, &vault_keys.bytes, None).await?;
        tracing::warn!("imported this node's Vault key lifecycle records into the shared KMS state");
    }
    let version = shared.documents.save(CONFIG_FILE, &document.bytes, None).await?;
    tracing::warn!(
        file = %files.describe(CONFIG_FILE),
        "imported this node's KMS configuration into the shared KMS state, which held none; the file is no longer read"
    );
    Ok(Some(Document { bytes: document.bytes, version }))
}

impl Current {
    fn not_configured() -> Self {
        Self { state: LifecycleState::NotConfigured, config: None, persisted: None, active: None }
    }

    /// A saved configuration, not started yet.
    fn from_persisted(persisted: PersistedConfig) -> Self {
        let state = match persisted.state {
            PersistedState::Configured | PersistedState::Running => LifecycleState::Configured,
            PersistedState::Stopped => LifecycleState::Stopped,
        };
        Current { state, config: Some(persisted.config), persisted: Some(persisted.state), active: None }
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

/// Reads a saved configuration (`origin` says where it was kept, for messages). Paths saved relative by earlier
/// versions (the embedded default saved `./data/.coffer/kms/local/keys`, relative to wherever the server was
/// started) are made absolute: a path inside a KMS state directory is taken as inside this one, any other from the
/// working directory.
fn decode_persisted(bytes: &[u8], origin: &str, state_dir: &Path) -> Result<PersistedConfig> {
    let mut persisted: PersistedConfig = serde_json::from_slice(bytes).map_err(|err| KmsError::InvalidConfig {
        field: "config".into(),
        message: format!(
            "KMS configuration {origin} is unreadable (line {}, column {}); configure the KMS again or restore it",
            err.line(),
            err.column()
        ),
    })?;
    if !(1..=CONFIG_FORMAT).contains(&persisted.format) {
        return Err(KmsError::InvalidConfig {
            field: "config".into(),
            message: format!("KMS configuration {origin} has unsupported format {}", persisted.format),
        });
    }
    persisted.format = CONFIG_FORMAT;
    persisted.config.for_each_path(|saved| {
        if saved.is_relative() {
            *saved = rebase_relative(saved, state_dir);
        }
    });
    persisted.config.make_paths_absolute()?;
    Ok(persisted)
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

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|err| KmsError::Backend(format!("KMS file task failed: {err}")))?
}

#[cfg(test)]
mod tests;
