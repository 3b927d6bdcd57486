//! The contract every KMS backend fulfils: key lifecycle, data-key generation and unwrapping, health.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::Result;
use crate::types::{DataKey, EncryptionContext, Health, KeyMaterial, KeyMetadata, KeyPage};
use crate::wrapped::WrappedKey;

/// Which backend produced a wrapped key or serves a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    Local,
    VaultTransit,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::VaultTransit => "vault-transit",
        }
    }
}

/// A store of master keys that makes and opens data keys.
///
/// Data keys are bound to their encryption context cryptographically (AEAD associated data), so a wrapped key only
/// opens with the context it was made with. Wrapped keys name the key version that made them, so they keep opening
/// after rotation.
#[async_trait]
pub trait KmsBackend: Send + Sync {
    fn kind(&self) -> BackendKind;
    /// Creates a master key; `key_id` None lets the backend generate one.
    async fn create_key(&self, key_id: Option<&str>, description: Option<&str>) -> Result<KeyMetadata>;
    async fn describe_key(&self, key_id: &str) -> Result<KeyMetadata>;
    /// Keys in id order, at most `limit`, starting after `marker`.
    async fn list_keys(&self, limit: usize, marker: Option<&str>) -> Result<KeyPage>;
    async fn enable_key(&self, key_id: &str) -> Result<KeyMetadata>;
    async fn disable_key(&self, key_id: &str) -> Result<KeyMetadata>;
    /// Marks the key for deletion after `pending_window_days`; until then it can be cancelled and only decrypts.
    async fn schedule_deletion(&self, key_id: &str, pending_window_days: u32) -> Result<KeyMetadata>;
    async fn cancel_deletion(&self, key_id: &str) -> Result<KeyMetadata>;
    /// Adds a key version; new data keys use it, old wrapped keys still open.
    async fn rotate_key(&self, key_id: &str) -> Result<KeyMetadata>;
    /// Sets (or clears, with `None`) the time after which the key makes no new data keys; it must lie in the future.
    async fn set_expiry(&self, key_id: &str, expires_at: Option<OffsetDateTime>) -> Result<KeyMetadata>;
    /// Sets the lowest key version whose data keys still decrypt (1 to the current version; lowering is allowed).
    async fn set_min_decryption_version(&self, key_id: &str, version: u32) -> Result<KeyMetadata>;
    async fn generate_data_key(&self, key_id: &str, context: &EncryptionContext) -> Result<DataKey>;
    async fn decrypt_data_key(&self, wrapped: &WrappedKey, context: &EncryptionContext) -> Result<KeyMaterial>;
    async fn health(&self) -> Health;
}

/// Settings every backend shares: how long one call may take, how often a failed call is retried, and where the
/// backend may keep small local state (e.g. Vault key lifecycle state that transit itself has no notion of).
#[derive(Clone)]
pub struct BackendOptions {
    pub timeout: std::time::Duration,
    pub retry_attempts: u32,
    pub state_dir: std::path::PathBuf,
    /// Where that state is kept when the node shares it with others; `None`: files in `state_dir`.
    pub shared_documents: Option<std::sync::Arc<dyn crate::shared::StateDocuments>>,
}

impl std::fmt::Debug for BackendOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendOptions")
            .field("timeout", &self.timeout)
            .field("retry_attempts", &self.retry_attempts)
            .field("state_dir", &self.state_dir)
            .field("shared", &self.shared_documents.is_some())
            .finish()
    }
}
