//! The local-directory backend: one file per master key (`<key id>.key`, mode 0600) in a private directory (0700),
//! every version's material sealed under a key-encryption key derived from the operator's master secret.
//!
//! Each operation reads the key's file afresh, so a corrupt or truncated file only fails the operations on that key
//! (with an error naming the file) and never the others. Changes are written with temp file + fsync + rename +
//! directory fsync, one at a time. The file format and the cryptography are in [`key_file`]. Where the files are
//! kept is a seam ([`KeyFiles`]): a directory, or for a cluster the database the nodes share ([`Self::open_with`]),
//! where a change made from a version another node has replaced meanwhile is refused rather than written over it.
//!
//! Key states follow AWS KMS: a disabled key neither makes nor opens data keys; a key pending deletion opens data
//! keys but makes none, and is deleted for good (file removed) the first time it is touched after its deletion date.
//! As in Vault transit, a key's minimum decryption version retires older versions: data keys they wrapped are refused.

mod key_file;

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use self::key_file::StoredKey;
use crate::backend::{BackendKind, KmsBackend};
use crate::config::LocalConfig;
use crate::error::{KmsError, Result};
use crate::fs;
use crate::key_id::validate_key_id;
use crate::key_requests::{deletion_date, expiry_to_set, key_to_create, refuse_if_expired};
use crate::shared::{KeyDir, KeyFiles};
use crate::types::{DataKey, EncryptionContext, Health, KeyMaterial, KeyMetadata, KeyPage, KeyState};
use crate::wrapped::WrappedKey;

/// The shortest master secret accepted, in bytes (e.g. `openssl rand -hex 32` gives 64).
pub const MIN_MASTER_KEY_LEN: usize = 32;

/// A [`KmsBackend`] over a directory of encrypted key files.
pub struct LocalBackend {
    store: Arc<KeyStore>,
}

struct KeyStore {
    files: Arc<dyn KeyFiles>,
    master: MasterSecret,
    /// Serializes read-modify-write of key files; reads need no lock (files are replaced atomically).
    writes: Mutex<()>,
}

/// The operator's master secret: the input keying material of every key file's key-encryption key.
pub(crate) struct MasterSecret(Zeroizing<Vec<u8>>);

impl fmt::Debug for LocalBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalBackend").field("keys", &self.store.files.describe("*")).finish_non_exhaustive()
    }
}

impl fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterSecret(<redacted>)")
    }
}

impl MasterSecret {
    /// The secret as given, without surrounding whitespace (a file usually ends with a newline).
    pub(crate) fn from_text(text: &str) -> Result<Self> {
        let trimmed = text.trim();
        if trimmed.len() < MIN_MASTER_KEY_LEN {
            return Err(KmsError::InvalidConfig {
                field: "master_key".into(),
                message: format!(
                    "KMS master key must be at least {MIN_MASTER_KEY_LEN} characters (e.g. the output of `openssl \
                     rand -hex 32`)"
                ),
            });
        }
        Ok(Self(Zeroizing::new(trimmed.as_bytes().to_vec())))
    }

    /// Reads the secret from the configuration or the file it names.
    fn resolve(config: &LocalConfig) -> Result<Self> {
        match (&config.master_key, &config.master_key_file) {
            (Some(secret), None) => Self::from_text(secret.expose()),
            (None, Some(path)) => {
                let text = Zeroizing::new(
                    std::fs::read_to_string(path)
                        .map_err(|err| KmsError::io(format!("reading KMS master key file {}", path.display()), err))?,
                );
                if fs::is_shared(path)? {
                    tracing::warn!(path = %path.display(), "KMS master key file is readable by other users; chmod 600 it");
                }
                Self::from_text(&text).map_err(|err| match err {
                    KmsError::InvalidConfig { message, .. } => KmsError::InvalidConfig {
                        field: "master_key_file".into(),
                        message: format!("{}: {message}", path.display()),
                    },
                    other => other,
                })
            }
            (None, None) => Err(KmsError::InvalidConfig {
                field: "master_key".into(),
                message: "the local KMS backend needs a master key (master_key or master_key_file)".into(),
            }),
            (Some(_), Some(_)) => Err(KmsError::InvalidConfig {
                field: "master_key".into(),
                message: "master_key and master_key_file are mutually exclusive".into(),
            }),
        }
    }

    fn expose(&self) -> &[u8] {
        &self.0
    }
}

/// Writes a new random master secret (64 hex digits) to `path` (0600) unless the file exists; used for the embedded
/// default, where no operator supplied one.
pub(crate) fn create_master_key_file(path: &Path) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    let material = KeyMaterial::generate();
    let text = Zeroizing::new(format!("{}\n", hex::encode(material.as_bytes())));
    fs::write_atomically(path, text.as_bytes())
}

impl LocalBackend {
    /// Reads the master secret, creates the key directory (0700) if needed and removes temp files a crash left.
    pub async fn open(config: &LocalConfig) -> Result<Self> {
        Self::open_with(config, None).await
    }

    /// [`Self::open`] with the key files kept in `files` rather than in the configured key directory.
    pub(crate) async fn open_with(config: &LocalConfig, files: Option<Arc<dyn KeyFiles>>) -> Result<Self> {
        let config = config.clone();
        let store = tokio::task::spawn_blocking(move || KeyStore::open(&config, files))
            .await
            .map_err(|err| KmsError::Backend(format!("opening the local key store failed: {err}")))??;
        Ok(Self { store: Arc::new(store) })
    }

    /// Runs `operation` on the blocking pool (file I/O and fsync must not stall the async workers).
    async fn blocking<T, F>(&self, operation: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&KeyStore) -> Result<T> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || operation(&store))
            .await
            .map_err(|err| KmsError::Backend(format!("local key store task failed: {err}")))?
    }
}

#[async_trait]
impl KmsBackend for LocalBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Local
    }

    async fn create_key(&self, key_id: Option<&str>, description: Option<&str>) -> Result<KeyMetadata> {
        let key_id = key_to_create(key_id, description)?;
        let description = description.map(str::to_owned);
        self.blocking(move |store| store.create(key_id, description)).await
    }

    async fn describe_key(&self, key_id: &str) -> Result<KeyMetadata> {
        validate_key_id(key_id)?;
        let key_id = key_id.to_owned();
        self.blocking(move |store| Ok(store.read(&key_id)?.metadata())).await
    }

    async fn list_keys(&self, limit: usize, marker: Option<&str>) -> Result<KeyPage> {
        let marker = marker.map(str::to_owned);
        self.blocking(move |store| store.list(limit.max(1), marker.as_deref())).await
    }

    async fn enable_key(&self, key_id: &str) -> Result<KeyMetadata> {
        self.update(key_id, |key| {
            refuse_pending_deletion(key)?;
            key.state = KeyState::Enabled;
            Ok(())
        })
        .await
    }

    async fn disable_key(&self, key_id: &str) -> Result<KeyMetadata> {
        self.update(key_id, |key| {
            refuse_pending_deletion(key)?;
            key.state = KeyState::Disabled;
            Ok(())
        })
        .await
    }

    async fn schedule_deletion(&self, key_id: &str, pending_window_days: u32) -> Result<KeyMetadata> {
        let deletion_date = deletion_date(pending_window_days)?;
        self.update(key_id, move |key| {
            refuse_pending_deletion(key)?;
            key.state = KeyState::PendingDeletion;
            key.deletion_date = Some(deletion_date);
            Ok(())
        })
        .await
    }

    /// Like AWS KMS, a key whose deletion is cancelled comes back disabled; for a key not pending deletion this
    /// changes nothing.
    async fn cancel_deletion(&self, key_id: &str) -> Result<KeyMetadata> {
        self.update(key_id, |key| {
            if key.state == KeyState::PendingDeletion {
                key.state = KeyState::Disabled;
                key.deletion_date = None;
            }
            Ok(())
        })
        .await
    }

    async fn rotate_key(&self, key_id: &str) -> Result<KeyMetadata> {
        self.update(key_id, |key| {
            refuse_unless_enabled(key)?;
            key.rotate(OffsetDateTime::now_utc())
        })
        .await
    }

    async fn set_expiry(&self, key_id: &str, expires_at: Option<OffsetDateTime>) -> Result<KeyMetadata> {
        let expires_at = expiry_to_set(expires_at)?;
        self.update(key_id, move |key| {
            refuse_pending_deletion(key)?;
            key.expires_at = expires_at;
            Ok(())
        })
        .await
    }

    async fn set_min_decryption_version(&self, key_id: &str, version: u32) -> Result<KeyMetadata> {
        self.update(key_id, move |key| {
            refuse_pending_deletion(key)?;
            key.set_min_decryption_version(version)
        })
        .await
    }

    async fn generate_data_key(&self, key_id: &str, context: &EncryptionContext) -> Result<DataKey> {
        validate_key_id(key_id)?;
        let key_id = key_id.to_owned();
        let context = context.clone();
        self.blocking(move |store| {
            let key = store.read(&key_id)?;
            refuse_unless_enabled(&key)?;
            refuse_if_expired(&key_id, key.expires_at)?;
            let plaintext = KeyMaterial::generate();
            let wrapped = key.wrap(&plaintext, &context)?;
            Ok(DataKey { key_version: key.current_version(), key_id, plaintext, wrapped, expires_at: key.expires_at })
        })
        .await
    }

    async fn decrypt_data_key(&self, wrapped: &WrappedKey, context: &EncryptionContext) -> Result<KeyMaterial> {
        let header = wrapped.header()?;
        // The key id becomes a file name: anything but a valid id is a foreign or forged blob.
        if header.backend != BackendKind::Local || validate_key_id(header.key_id).is_err() {
            return Err(KmsError::InvalidCiphertext);
        }
        let wrapped = wrapped.clone();
        let context = context.clone();
        self.blocking(move |store| {
            let header = wrapped.header()?;
            let key = store.read(header.key_id)?;
            if key.state == KeyState::Disabled {
                return Err(KmsError::KeyDisabled(key.key_id));
            }
            key.unwrap(header.key_version, header.payload, &context)
        })
        .await
    }

    async fn health(&self) -> Health {
        match self.blocking(|store| store.files.probe()).await {
            Ok(()) => Health::ok(),
            Err(err) => Health::failing(err.to_string()),
        }
    }
}

impl LocalBackend {
    /// Loads a key, applies `change` and writes it back, all under the write lock.
    async fn update<F>(&self, key_id: &str, change: F) -> Result<KeyMetadata>
    where
        F: FnOnce(&mut StoredKey) -> Result<()> + Send + 'static,
    {
        validate_key_id(key_id)?;
        let key_id = key_id.to_owned();
        self.blocking(move |store| {
            let _writing = store.lock_writes();
            let (mut key, version) = store.load_live(&key_id)?;
            change(&mut key)?;
            store.save(&key, Some(version))?;
            Ok(key.metadata())
        })
        .await
    }
}

impl KeyStore {
    fn open(config: &LocalConfig, files: Option<Arc<dyn KeyFiles>>) -> Result<Self> {
        // The key directory is checked before the master secret, and opened after it.
        let key_dir = match &files {
            Some(_) => None,
            None => Some(config.key_dir.clone().ok_or_else(|| KmsError::InvalidConfig {
                field: "key_dir".into(),
                message: "KMS key directory is required for local backend".into(),
            })?),
        };
        let master = MasterSecret::resolve(config)?;
        let files = match (files, key_dir) {
            (Some(files), _) => files,
            (None, Some(dir)) => Arc::new(KeyDir::open(dir)?),
            (None, None) => unreachable!("a key directory is required when no key files are given"),
        };
        Ok(Self { files, master, writes: Mutex::new(()) })
    }

    fn lock_writes(&self) -> MutexGuard<'_, ()> {
        // The guarded data is `()`: a panic while holding it leaves nothing inconsistent behind.
        self.writes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The key and the version of its file, or `None` when its deletion date has passed (the caller finishes the
    /// deletion).
    fn load(&self, key_id: &str) -> Result<Option<(StoredKey, u64)>> {
        let Some((bytes, version)) = self.files.read(key_id)? else {
            return Err(KmsError::KeyNotFound(key_id.to_owned()));
        };
        let key = StoredKey::decode(&bytes, key_id, &self.master)
            .map_err(|reason| KmsError::Backend(format!("{} is unusable: {reason}", self.files.describe(key_id))))?;
        Ok((!key.deletion_due(OffsetDateTime::now_utc())).then_some((key, version)))
    }

    /// [`Self::load`] for a caller holding the write lock: a key past its deletion date is deleted now.
    fn load_live(&self, key_id: &str) -> Result<(StoredKey, u64)> {
        match self.load(key_id)? {
            Some(loaded) => Ok(loaded),
            None => {
                self.delete(key_id)?;
                Err(KmsError::KeyNotFound(key_id.to_owned()))
            }
        }
    }

    /// [`Self::load`] for a caller without the write lock.
    fn read(&self, key_id: &str) -> Result<StoredKey> {
        match self.load(key_id)? {
            Some((key, _)) => Ok(key),
            None => {
                let _writing = self.lock_writes();
                self.load_live(key_id).map(|(key, _)| key)
            }
        }
    }

    /// Writes `key`: created when `expected` is `None`, else replacing that version of its file.
    fn save(&self, key: &StoredKey, expected: Option<u64>) -> Result<()> {
        self.files.write(&key.key_id, &key.encode(&self.master), expected)
    }

    fn delete(&self, key_id: &str) -> Result<()> {
        self.files.remove(key_id)?;
        tracing::info!(key_id, "deleted local KMS key after its pending deletion window");
        Ok(())
    }

    fn create(&self, key_id: String, description: Option<String>) -> Result<KeyMetadata> {
        let _writing = self.lock_writes();
        let key = StoredKey::new(key_id, description, OffsetDateTime::now_utc());
        self.save(&key, None)?;
        Ok(key.metadata())
    }

    /// Keys in id order after `marker`. A key file that cannot be read is logged and skipped, so one bad file never
    /// hides the others.
    fn list(&self, limit: usize, marker: Option<&str>) -> Result<KeyPage> {
        let mut ids: Vec<String> = self
            .files
            .list()?
            .into_iter()
            .filter(|key_id| validate_key_id(key_id).is_ok() && marker.is_none_or(|marker| key_id.as_str() > marker))
            .collect();
        ids.sort_unstable();
        let mut remaining = ids.into_iter().peekable();
        let mut keys = Vec::new();
        let mut last_visited = None;
        while keys.len() < limit {
            let Some(key_id) = remaining.next() else {
                break;
            };
            match self.read(&key_id) {
                Ok(key) => keys.push(key.metadata()),
                Err(KmsError::KeyNotFound(_)) => {}
                Err(err) => {
                    tracing::warn!(key_id, "leaving an unusable key out of the key list: {err}")
                }
            }
            last_visited = Some(key_id);
        }
        let next_marker = remaining.peek().and(last_visited);
        Ok(KeyPage { keys, next_marker })
    }
}

fn refuse_pending_deletion(key: &StoredKey) -> Result<()> {
    if key.state == KeyState::PendingDeletion {
        return Err(KmsError::KeyPendingDeletion(key.key_id.clone()));
    }
    Ok(())
}

fn refuse_unless_enabled(key: &StoredKey) -> Result<()> {
    match key.state {
        KeyState::Enabled => Ok(()),
        KeyState::Disabled => Err(KmsError::KeyDisabled(key.key_id.clone())),
        KeyState::PendingDeletion => Err(KmsError::KeyPendingDeletion(key.key_id.clone())),
    }
}

#[cfg(test)]
mod tests;
