//! Key lifecycle that transit has no notion of: enabled/disabled, scheduled deletion and a description, kept per
//! key in one small document: a local file (0600, replaced atomically through [`crate::fs`]) under the backend's
//! state directory, or for nodes sharing their KMS state, the shared document every node reads (saved by
//! compare-and-swap, so two nodes changing keys at once never lose each other's change).
//!
//! Records are grouped by the Vault they belong to (address, namespace, mount), so pointing Coffer at another
//! Vault never applies one server's "disabled" to a same-named key on another. A key without a record is enabled:
//! keys created in transit by an operator are usable as they are.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::error::{KmsError, Result};
use crate::shared::StateDocuments;
use crate::types::KeyState;

/// The document's name (a file name in the state directory).
pub(crate) const FILE_NAME: &str = "vault-transit-keys.json";
/// How often a save that lost a race with another node is tried again from what that node saved.
const SAVE_ATTEMPTS: usize = 5;

/// What Coffer remembers about one transit key beyond what transit stores.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct KeyRecord {
    pub state: KeyState,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub deletion_date: Option<OffsetDateTime>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

impl KeyRecord {
    pub fn enabled(description: Option<String>) -> Self {
        Self { state: KeyState::Enabled, deletion_date: None, description, expires_at: None }
    }

    /// Whether the pending-deletion window has passed, so the key must now really be deleted.
    pub fn deletion_due(&self, now: OffsetDateTime) -> bool {
        self.state == KeyState::PendingDeletion && self.deletion_date.is_some_and(|date| date <= now)
    }
}

#[derive(Default, Serialize, Deserialize)]
struct StateFile {
    /// scope (address, namespace, mount) → key id → record
    scopes: BTreeMap<String, BTreeMap<String, KeyRecord>>,
}

/// Serializes every read-modify-write of the state in this process. Backends are rebuilt on reconfigure and
/// briefly overlap, and several mounts share one document, so no instance may write from a copy it read earlier.
static WRITES: Mutex<()> = Mutex::const_new(());

/// The lifecycle records of one Vault transit mount. Nothing is cached: every read sees the document as it is.
pub(super) struct Lifecycle {
    documents: Arc<dyn StateDocuments>,
    scope: String,
}

impl Lifecycle {
    /// Opens (without creating) the state document, failing early if it is unreadable or corrupt.
    pub async fn open(documents: Arc<dyn StateDocuments>, scope: String) -> Result<Self> {
        let lifecycle = Self { documents, scope };
        lifecycle.load().await?;
        Ok(lifecycle)
    }

    pub async fn get(&self, key_id: &str) -> Result<Option<KeyRecord>> {
        let (mut file, _) = self.load().await?;
        Ok(file.scopes.get_mut(&self.scope).and_then(|keys| keys.remove(key_id)))
    }

    /// Stores `record` for `key_id` (None forgets the key) and persists the document before returning.
    pub async fn set(&self, key_id: &str, record: Option<KeyRecord>) -> Result<()> {
        let _writing = WRITES.lock().await;
        let mut attempt = 1;
        loop {
            let (mut file, version) = self.load().await?;
            let keys = file.scopes.entry(self.scope.clone()).or_default();
            match &record {
                Some(record) => {
                    keys.insert(key_id.to_owned(), record.clone());
                }
                None => {
                    keys.remove(key_id);
                }
            }
            if keys.is_empty() {
                file.scopes.remove(&self.scope);
            }
            let bytes = serde_json::to_vec_pretty(&file).expect("lifecycle state always serializes");
            match self.documents.save(FILE_NAME, &bytes, version).await {
                Err(KmsError::Conflict(_)) if attempt < SAVE_ATTEMPTS => attempt += 1,
                saved => return saved.map(|_| ()),
            }
        }
    }

    /// The document's contents and version; a missing document is empty. A corrupt one is an error, never silently
    /// reset: losing it would re-enable disabled keys.
    async fn load(&self) -> Result<(StateFile, Option<u64>)> {
        let Some(document) = self.documents.load(FILE_NAME).await? else {
            return Ok((StateFile::default(), None));
        };
        let file = serde_json::from_slice(&document.bytes).map_err(|err| KmsError::InvalidConfig {
            field: "state_dir".into(),
            message: format!("Vault key state {} is corrupt: {err}", self.documents.describe(FILE_NAME)),
        })?;
        Ok((file, Some(document.version)))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use time::Duration;

    use super::*;
    use crate::shared::FileDocuments;

    fn files(dir: &std::path::Path) -> Arc<dyn StateDocuments> {
        Arc::new(FileDocuments::new(dir.to_owned()))
    }

    #[tokio::test]
    async fn records_persist_per_scope_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let one = Lifecycle::open(files(dir.path()), "http://a#-#transit".into()).await.unwrap();
        let mut record = KeyRecord::enabled(Some("orders".into()));
        record.state = KeyState::Disabled;
        one.set("k", Some(record.clone())).await.unwrap();

        let mode = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let reopened = Lifecycle::open(files(dir.path()), "http://a#-#transit".into()).await.unwrap();
        assert_eq!(reopened.get("k").await.unwrap(), Some(record.clone()));
        let other_vault = Lifecycle::open(files(dir.path()), "http://b#-#transit".into()).await.unwrap();
        assert_eq!(other_vault.get("k").await.unwrap(), None);

        // Instances opened earlier never write back stale contents.
        other_vault.set("k", Some(KeyRecord::enabled(None))).await.unwrap();
        assert_eq!(one.get("k").await.unwrap(), Some(record));
        reopened.set("k", None).await.unwrap();
        assert_eq!(one.get("k").await.unwrap(), None);
        assert_eq!(other_vault.get("k").await.unwrap(), Some(KeyRecord::enabled(None)));
    }

    #[tokio::test]
    async fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        let err = Lifecycle::open(files(dir.path()), "s".into()).await.err().expect("corrupt file accepted");
        assert!(matches!(err, KmsError::InvalidConfig { .. }), "{err}");
        assert!(err.to_string().contains(FILE_NAME), "{err}");
    }

    #[test]
    fn deletion_is_due_only_after_the_date() {
        let now = OffsetDateTime::now_utc();
        let mut record = KeyRecord::enabled(None);
        record.state = KeyState::PendingDeletion;
        record.deletion_date = Some(now + Duration::days(1));
        assert!(!record.deletion_due(now));
        record.deletion_date = Some(now - Duration::seconds(1));
        assert!(record.deletion_due(now));
        record.state = KeyState::Disabled;
        assert!(!record.deletion_due(now));
    }
}
