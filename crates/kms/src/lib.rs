//! coffer-kms: master keys, data keys and the data-key cache.
//!
//! This crate owns the KMS backends (a local directory of encrypted key files and a Vault/OpenBao transit engine),
//! the named stores that run several of them at once (each with its own data-key cache, one the default), and the
//! lifecycle manager that configures, starts, stops and persists them. It hands out data keys and unwraps wrapped
//! ones, and knows which key a bucket uses by default; it must not know about buckets' objects, S3 headers, the
//! encryption format of object data or HTTP routing — those belong to `coffer-sse`, the server and `admin-api`.
//! Plaintext key material never leaves this crate except as [`KeyMaterial`], which zeroizes on drop and cannot be
//! printed.
//!
//! Its persisted state (configuration, key files) goes through seams ([`StateDocuments`], [`KeyFiles`],
//! [`ChangeFeed`]) so several servers can share it; the crate never knows where a shared state is kept.

mod backend;
mod cache;
mod config;
mod error;
mod fs;
mod key_id;
mod key_requests;
mod local;
mod manager;
mod shared;
mod stats;
mod stores;
mod types;
pub mod vault;
mod wrapped;

pub use backend::{BackendKind, BackendOptions, KmsBackend};
pub use cache::{CacheSettings, CacheStats, DataKeyCache};
pub use config::{
    store_name_for, validate_store_name, BackendConfig, CacheConfig, KmsConfig, LocalConfig, Secret, VaultAuth,
    VaultConfig,
};
pub use error::{KmsError, Result};
pub use key_id::{generate_key_id, validate_key_id, MAX_KEY_ID_LEN};
pub use key_requests::{expiry_to_set, MAX_DESCRIPTION_LEN, PENDING_WINDOW_DAYS};
pub use local::{LocalBackend, MIN_MASTER_KEY_LEN};
pub use manager::{KmsManager, KmsStatus, LifecycleState};
pub use shared::{ChangeFeed, Document, FileDocuments, KeyFiles, KeyFilesFor, KmsChange, SharedKms, StateDocuments};
pub use stats::{CallStats, LatencyStats};
pub use stores::{split_key_ref, StoreStatus};
pub use types::{
    DataKey, EncryptionContext, Health, KeyMaterial, KeyMetadata, KeyOrigin, KeyPage, KeyState, KeyVersion,
};
pub use wrapped::{WrappedKey, WrappedKeyHeader};
