//! Where the KMS keeps its state, as seams: the manager's persisted documents ([`StateDocuments`]: the
//! configuration with its secrets and the lifecycle state, the Vault keys' lifecycle records), the local backend's
//! sealed key files ([`KeyFiles`]), and the feed that tells the other nodes of a cluster what changed
//! ([`ChangeFeed`]).
//!
//! A node alone keeps everything in its KMS state directory ([`FileDocuments`], [`KeyDir`]) and tells no one. Nodes
//! sharing one database get implementations from the server (which owns the database; this crate must not know it)
//! through [`SharedKms`]: documents are versioned and saved by compare-and-swap, so a node never writes over a change
//! it has not seen, and every change is announced so the other nodes apply it ([`crate::KmsManager::follow`]).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{KmsError, Result};
use crate::fs;

/// A saved document and the version it was saved at (a file has no versions: always 0).
pub struct Document {
    pub bytes: Zeroizing<Vec<u8>>,
    pub version: u64,
}

/// The manager's persisted documents, by name (`config.json`, `vault-transit-keys.json`).
#[async_trait]
pub trait StateDocuments: Send + Sync {
    async fn load(&self, name: &str) -> Result<Option<Document>>;
    /// Saves `bytes` as `name` if its saved version is still `expected` (`None`: nothing saved yet) and returns the
    /// new version; [`KmsError::Conflict`] when another node changed it since.
    async fn save(&self, name: &str, bytes: &[u8], expected: Option<u64>) -> Result<u64>;
    /// Where the documents are, for messages.
    fn describe(&self, name: &str) -> String;
}

/// The local backend's key files of one store: sealed bytes by key id. Called from the blocking pool.
pub trait KeyFiles: Send + Sync {
    /// The sealed bytes and their version, or `None` if the key does not exist.
    fn read(&self, key_id: &str) -> Result<Option<(Vec<u8>, u64)>>;
    /// Creates the key (`expected` `None`; [`KmsError::KeyExists`] if it exists) or replaces the version read
    /// (`Some`; [`KmsError::Conflict`] if it changed since).
    fn write(&self, key_id: &str, bytes: &[u8], expected: Option<u64>) -> Result<()>;
    /// Removes the key for good; a missing key is not an error.
    fn remove(&self, key_id: &str) -> Result<()>;
    /// Every key id, in no particular order.
    fn list(&self) -> Result<Vec<String>>;
    /// Checks that keys can be read and written (the health probe).
    fn probe(&self) -> Result<()>;
    /// Where one key is kept, for messages.
    fn describe(&self, key_id: &str) -> String;
}

/// A change of the KMS state that the other nodes must apply. Carries names only, never secrets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum KmsChange {
    /// The configuration or the lifecycle state (configure, reconfigure, start, stop, stores, bucket keys).
    Config,
    /// A key's state or versions changed: its cached data keys go.
    Key { store: String, key_id: String },
    /// The data-key cache of one store, or of all, was cleared.
    ClearCache { store: Option<String> },
}

/// Tells the other nodes of a cluster about a change this node made.
#[async_trait]
pub trait ChangeFeed: Send + Sync {
    async fn announce(&self, change: &KmsChange) -> Result<()>;
}

/// The key files of a local store, given its name.
pub type KeyFilesFor = Arc<dyn Fn(&str) -> Arc<dyn KeyFiles> + Send + Sync>;

/// The KMS state of a node that shares it with others.
#[derive(Clone)]
pub struct SharedKms {
    pub documents: Arc<dyn StateDocuments>,
    /// Key files by local store name: shared stores ignore their `key_dir`.
    pub key_files: KeyFilesFor,
    pub feed: Arc<dyn ChangeFeed>,
}

impl fmt::Debug for SharedKms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedKms")
    }
}

/// Documents as files (0600, replaced atomically) in the KMS state directory.
pub struct FileDocuments {
    dir: PathBuf,
}

impl FileDocuments {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// [`StateDocuments::load`] for a caller outside the async runtime.
    pub(crate) fn read(&self, name: &str) -> Result<Option<Document>> {
        let path = self.dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(Document { bytes: Zeroizing::new(bytes), version: 0 })),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(KmsError::io(format!("reading {}", path.display()), err)),
        }
    }
}

#[async_trait]
impl StateDocuments for FileDocuments {
    async fn load(&self, name: &str) -> Result<Option<Document>> {
        let (dir, name) = (self.dir.clone(), name.to_owned());
        blocking(move || FileDocuments { dir }.read(&name)).await
    }

    /// One process writes the directory, so there is nothing to compare and swap against.
    async fn save(&self, name: &str, bytes: &[u8], _expected: Option<u64>) -> Result<u64> {
        let path = self.dir.join(name);
        let bytes = Zeroizing::new(bytes.to_vec());
        blocking(move || fs::write_atomically(&path, &bytes)).await?;
        Ok(0)
    }

    fn describe(&self, name: &str) -> String {
        format!("file {}", self.dir.join(name).display())
    }
}

/// Key files as `<key id>.key` files in a private directory.
pub(crate) struct KeyDir {
    dir: PathBuf,
}

pub(crate) const KEY_FILE_SUFFIX: &str = ".key";

impl KeyDir {
    /// Creates the directory (0700) if needed and removes temp files a crash left.
    pub fn open(dir: PathBuf) -> Result<Self> {
        fs::create_private_dir(&dir)?;
        if !dir.is_dir() {
            return Err(KmsError::InvalidConfig {
                field: "key_dir".into(),
                message: format!("KMS key directory {} is not a directory", dir.display()),
            });
        }
        if fs::is_shared(&dir)? {
            tracing::warn!(dir = %dir.display(), "KMS key directory is accessible to other users; chmod 700 it");
        }
        fs::sweep_temp_files(&dir)?;
        Ok(Self { dir })
    }

    fn path(&self, key_id: &str) -> PathBuf {
        self.dir.join(format!("{key_id}{KEY_FILE_SUFFIX}"))
    }
}

impl KeyFiles for KeyDir {
    fn read(&self, key_id: &str) -> Result<Option<(Vec<u8>, u64)>> {
        let path = self.path(key_id);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some((bytes, 0))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(KmsError::io(format!("reading key file {}", path.display()), err)),
        }
    }

    /// The backend serializes its writes, so a replace needs no version check.
    fn write(&self, key_id: &str, bytes: &[u8], expected: Option<u64>) -> Result<()> {
        let path = self.path(key_id);
        if expected.is_none() && path.exists() {
            return Err(KmsError::KeyExists(key_id.to_owned()));
        }
        fs::write_atomically(&path, bytes)
    }

    fn remove(&self, key_id: &str) -> Result<()> {
        fs::remove_durably(&self.path(key_id))
    }

    fn list(&self) -> Result<Vec<String>> {
        let entries =
            std::fs::read_dir(&self.dir).map_err(|err| KmsError::io(format!("listing {}", self.dir.display()), err))?;
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|err| KmsError::io(format!("listing {}", self.dir.display()), err))?;
            if let Some(key_id) = entry.file_name().to_str().and_then(|name| name.strip_suffix(KEY_FILE_SUFFIX)) {
                ids.push(key_id.to_owned());
            }
        }
        Ok(ids)
    }

    fn probe(&self) -> Result<()> {
        fs::probe_writable(&self.dir)
    }

    fn describe(&self, key_id: &str) -> String {
        format!("key file {}", self.path(key_id).display())
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|err| KmsError::Backend(format!("KMS file task failed: {err}")))?
}
