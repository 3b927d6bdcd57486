//! The named stores of a running KMS: which store serves a key reference (`store/key`, or `key` in the default
//! store), which store opens a wrapped key (the one it names, or for blobs made before stores had names the store
//! recorded for their backend kind), and each store's backend and data-key cache.
//!
//! A store that could not be built (an unreadable key directory, say) stays in the set as broken: requests that
//! need it fail naming it, every other store keeps serving.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;

use crate::backend::{BackendKind, KmsBackend};
use crate::cache::DataKeyCache;
use crate::config::{validate_store_name, KmsConfig};
use crate::error::{KmsError, Result};
use crate::key_id::validate_key_id;
use crate::types::{DataKey, EncryptionContext, Health, KeyMaterial, KeyMetadata, KeyPage};
use crate::wrapped::{WrappedKey, WrappedKeyHeader};

/// One serving store: its (metered) backend and its own data-key cache.
pub(crate) struct Store {
    pub name: String,
    pub backend: Arc<dyn KmsBackend>,
    pub cache: DataKeyCache,
}

impl Store {
    /// Names the store in an outage, so an operator reading a 503 knows which store is down.
    pub fn named<T>(&self, result: Result<T>) -> Result<T> {
        result.map_err(|err| match err {
            KmsError::Unavailable(reason) => KmsError::Unavailable(format!("store {}: {reason}", self.name)),
            other => other,
        })
    }
}

/// A store as the running KMS has it.
#[derive(Clone)]
pub(crate) enum Slot {
    Serving(Arc<Store>),
    /// It could not be built; the reason says why (never secrets).
    Broken {
        kind: BackendKind,
        reason: String,
    },
}

impl Slot {
    pub fn kind(&self) -> BackendKind {
        match self {
            Self::Serving(store) => store.backend.kind(),
            Self::Broken { kind, .. } => *kind,
        }
    }
}

/// What the status report says of one store.
#[derive(Clone, Debug, Serialize)]
pub struct StoreStatus {
    pub name: String,
    pub backend_type: BackendKind,
    pub default: bool,
    pub healthy: bool,
    pub reason: Option<String>,
    /// Keys its data-key cache holds now.
    pub cached_keys: u64,
}

/// The stores of a running KMS and how requests find them. Immutable: a change builds a new set that shares the
/// stores it did not change.
#[derive(Clone)]
pub(crate) struct Stores {
    pub slots: BTreeMap<String, Slot>,
    pub default_store: String,
    pub legacy_stores: BTreeMap<BackendKind, String>,
    default_key_id: String,
    bucket_keys: BTreeMap<String, String>,
}

impl Stores {
    /// The running set of `config`'s stores, given as `slots`.
    pub fn new(slots: BTreeMap<String, Slot>, config: &KmsConfig) -> Self {
        Self {
            slots,
            default_store: config.default_store.clone(),
            legacy_stores: config.legacy_stores.clone(),
            default_key_id: config.default_key_id.clone(),
            bucket_keys: config.bucket_keys.clone(),
        }
    }

    /// The key (`store/key` or `key`) SSE-S3, and SSE-KMS naming no key, use in `bucket`.
    pub fn default_key_for(&self, bucket: &str) -> &str {
        self.bucket_keys.get(bucket).unwrap_or(&self.default_key_id)
    }

    /// The store serving `key_ref` and the key's id in it.
    pub fn resolve<'a>(&self, key_ref: &'a str) -> Result<(Arc<Store>, &'a str)> {
        let (store, key_id) = checked_key_ref(key_ref)?;
        Ok((self.serving(store.unwrap_or(&self.default_store))?, key_id))
    }

    /// The names of the store and key `key_ref` refers to (the default store for a bare key id); the store need not
    /// exist or be up.
    pub fn locate(&self, key_ref: &str) -> Result<(String, String)> {
        let (store, key_id) = checked_key_ref(key_ref)?;
        Ok((store.unwrap_or(&self.default_store).to_owned(), key_id.to_owned()))
    }

    /// The store that opens a wrapped key.
    pub fn for_blob(&self, header: &WrappedKeyHeader<'_>) -> Result<Arc<Store>> {
        let store = self.serving(self.blob_store(header)?)?;
        if store.backend.kind() != header.backend {
            return Err(KmsError::InvalidCiphertext);
        }
        Ok(store)
    }

    /// The name of the store that made a wrapped key (for blobs made before stores had names: the store of their
    /// backend kind that took over the unnamed backend).
    pub fn blob_store<'a>(&'a self, header: &WrappedKeyHeader<'a>) -> Result<&'a str> {
        match header.store {
            Some(name) => Ok(name),
            None => self.legacy_store(header.backend).ok_or_else(|| {
                KmsError::StoreNotFound(format!(
                    "(any {} store, for a key wrapped before stores had names)",
                    header.backend.as_str()
                ))
            }),
        }
    }

    /// A key's metadata as the admin API shows it: ids of keys outside the default store are `store/key`.
    pub fn qualify(&self, store: &Store, mut metadata: KeyMetadata) -> KeyMetadata {
        if store.name != self.default_store {
            metadata.key_id = format!("{}/{}", store.name, metadata.key_id);
        }
        metadata
    }

    /// Every store's health (probed now, all at once) and cache size.
    pub async fn statuses(&self) -> Vec<StoreStatus> {
        let probes = self.slots.iter().map(|(name, slot)| async move {
            let (health, cached_keys) = match slot {
                Slot::Serving(store) => {
                    let (health, cache) = tokio::join!(store.backend.health(), store.cache.stats());
                    (health, cache.entry_count)
                }
                Slot::Broken { reason, .. } => (Health::failing(reason.clone()), 0),
            };
            StoreStatus {
                name: name.clone(),
                backend_type: slot.kind(),
                default: *name == self.default_store,
                healthy: health.healthy,
                reason: health.reason,
                cached_keys,
            }
        });
        futures::future::join_all(probes).await
    }

    pub fn serving(&self, name: &str) -> Result<Arc<Store>> {
        match self.slots.get(name) {
            Some(Slot::Serving(store)) => Ok(Arc::clone(store)),
            Some(Slot::Broken { reason, .. }) => Err(KmsError::Unavailable(format!("store {name}: {reason}"))),
            None => Err(KmsError::StoreNotFound(name.to_owned())),
        }
    }

    /// The store reading blobs of `kind` made before stores had names: the one recorded when the configuration was
    /// upgraded, else the default store if it is of that kind, else the first of that kind.
    fn legacy_store(&self, kind: BackendKind) -> Option<&str> {
        if let Some(name) = self.legacy_stores.get(&kind) {
            return Some(name);
        }
        if self.slots.get(&self.default_store).is_some_and(|slot| slot.kind() == kind) {
            return Some(&self.default_store);
        }
        self.slots.iter().find(|(_, slot)| slot.kind() == kind).map(|(name, _)| name.as_str())
    }
}

/// `store/key` → (`Some(store)`, `key`); `key` → (`None`, `key`). Key ids never contain `/`.
pub fn split_key_ref(key_ref: &str) -> (Option<&str>, &str) {
    match key_ref.split_once('/') {
        Some((store, key_id)) => (Some(store), key_id),
        None => (None, key_ref),
    }
}

/// [`split_key_ref`], refusing a malformed reference as a malformed key id (`../x`), not a missing store.
fn checked_key_ref(key_ref: &str) -> Result<(Option<&str>, &str)> {
    let (store, key_id) = split_key_ref(key_ref);
    if let Some(store) = store {
        validate_store_name(store).map_err(|_| KmsError::InvalidKeyId(format!("{key_ref}: not `store/key`")))?;
        validate_key_id(key_id)?;
    }
    Ok((store, key_id))
}

/// A backend serving as a named store: the blobs it makes name the store.
pub(crate) struct InStore {
    name: String,
    inner: Arc<dyn KmsBackend>,
}

impl InStore {
    pub fn new(name: String, inner: Arc<dyn KmsBackend>) -> Self {
        Self { name, inner }
    }
}

#[async_trait]
impl KmsBackend for InStore {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }

    async fn create_key(&self, key_id: Option<&str>, description: Option<&str>) -> Result<KeyMetadata> {
        self.inner.create_key(key_id, description).await
    }

    async fn describe_key(&self, key_id: &str) -> Result<KeyMetadata> {
        self.inner.describe_key(key_id).await
    }

    async fn list_keys(&self, limit: usize, marker: Option<&str>) -> Result<KeyPage> {
        self.inner.list_keys(limit, marker).await
    }

    async fn enable_key(&self, key_id: &str) -> Result<KeyMetadata> {
        self.inner.enable_key(key_id).await
    }

    async fn disable_key(&self, key_id: &str) -> Result<KeyMetadata> {
        self.inner.disable_key(key_id).await
    }

    async fn schedule_deletion(&self, key_id: &str, pending_window_days: u32) -> Result<KeyMetadata> {
        self.inner.schedule_deletion(key_id, pending_window_days).await
    }

    async fn cancel_deletion(&self, key_id: &str) -> Result<KeyMetadata> {
        self.inner.cancel_deletion(key_id).await
    }

    async fn rotate_key(&self, key_id: &str) -> Result<KeyMetadata> {
        self.inner.rotate_key(key_id).await
    }

    async fn set_expiry(&self, key_id: &str, expires_at: Option<OffsetDateTime>) -> Result<KeyMetadata> {
        self.inner.set_expiry(key_id, expires_at).await
    }

    async fn set_min_decryption_version(&self, key_id: &str, version: u32) -> Result<KeyMetadata> {
        self.inner.set_min_decryption_version(key_id, version).await
    }

    async fn generate_data_key(&self, key_id: &str, context: &EncryptionContext) -> Result<DataKey> {
        let mut data_key = self.inner.generate_data_key(key_id, context).await?;
        data_key.wrapped = data_key.wrapped.in_store(&self.name)?;
        Ok(data_key)
    }

    async fn decrypt_data_key(&self, wrapped: &WrappedKey, context: &EncryptionContext) -> Result<KeyMaterial> {
        self.inner.decrypt_data_key(wrapped, context).await
    }

    async fn health(&self) -> Health {
        self.inner.health().await
    }
}
