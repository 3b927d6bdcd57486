//! A server as one node of a cluster (`--cluster-key-file` with `--metadata postgres`): the KMS state kept in the
//! database the nodes share, and the task that applies the other nodes' KMS changes.
//!
//! The KMS's seams ([`StateDocuments`], [`KeyFiles`], [`ChangeFeed`]) are implemented over the store's
//! [`SharedState`]: the configuration document in namespace `kms`, each local store's key files in
//! `kms-local/<store>` (already sealed under the KMS master key; sealed again under the cluster key like every
//! shared value), and each change appended to the event log as a `kms` event whose detail names what changed (never
//! a secret).
//!
//! Propagation bound: a node learns of a change at once through `LISTEN`, and in any case at its next poll of the
//! event log, every [`POLL_INTERVAL`] (1 s); applying it takes a database read and, for a configuration change, the
//! stores' start-up. So a change made on one node is in force on every node within about 2 s (docs/operations.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use coffer_kms::{
    ChangeFeed, Document, KeyFiles, KmsChange, KmsError, KmsManager, Result as KmsResult, SharedKms, StateDocuments,
};
use coffer_store::{SharedState, StoreError, EVENT_RETENTION};
use tokio::runtime::Handle;
use tracing::{info, warn};

/// How often a node polls the event log when no notification woke it.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
const KMS_NAMESPACE: &str = "kms";
const KMS_TOPIC: &str = "kms";

/// The KMS seams of a cluster node, over `shared`.
pub fn shared_kms(shared: &Arc<SharedState>) -> SharedKms {
    let runtime = Handle::current();
    let files_of = Arc::clone(shared);
    SharedKms {
        documents: Arc::new(SharedDocuments(Arc::clone(shared))),
        key_files: Arc::new(move |store: &str| -> Arc<dyn KeyFiles> {
            Arc::new(SharedKeyFiles {
                shared: Arc::clone(&files_of),
                namespace: format!("kms-local/{store}"),
                store: store.to_owned(),
                runtime: runtime.clone(),
            })
        }),
        feed: Arc::new(SharedFeed(Arc::clone(shared))),
    }
}

fn unavailable(err: StoreError) -> KmsError {
    KmsError::Unavailable(format!("cluster database: {err}"))
}

struct SharedDocuments(Arc<SharedState>);

#[async_trait]
impl StateDocuments for SharedDocuments {
    async fn load(&self, name: &str) -> KmsResult<Option<Document>> {
        let value = self.0.get(KMS_NAMESPACE, name).await.map_err(unavailable)?;
        Ok(value.map(|value| Document { bytes: value.value, version: value.version }))
    }

    async fn save(&self, name: &str, bytes: &[u8], expected: Option<u64>) -> KmsResult<u64> {
        self.0.put(KMS_NAMESPACE, name, bytes, expected).await.map_err(unavailable)?.ok_or_else(|| {
            KmsError::Conflict(
                "another node changed the KMS configuration meanwhile; nothing was changed here: look at the \
                 configuration again and retry"
                    .into(),
            )
        })
    }

    fn describe(&self, name: &str) -> String {
        format!("{KMS_NAMESPACE}/{name} in the cluster database")
    }
}

/// The key files of one local store; called from the blocking pool, so it may wait on the runtime.
struct SharedKeyFiles {
    shared: Arc<SharedState>,
    namespace: String,
    store: String,
    runtime: Handle,
}

impl KeyFiles for SharedKeyFiles {
    fn read(&self, key_id: &str) -> KmsResult<Option<(Vec<u8>, u64)>> {
        let value = self.runtime.block_on(self.shared.get(&self.namespace, key_id)).map_err(unavailable)?;
        Ok(value.map(|value| (value.value.to_vec(), value.version)))
    }

    fn write(&self, key_id: &str, bytes: &[u8], expected: Option<u64>) -> KmsResult<()> {
        let written =
            self.runtime.block_on(self.shared.put(&self.namespace, key_id, bytes, expected)).map_err(unavailable)?;
        match (written, expected) {
            (Some(_), _) => Ok(()),
            (None, None) => Err(KmsError::KeyExists(key_id.to_owned())),
            (None, Some(_)) => Err(KmsError::Conflict(format!(
                "another node changed KMS key {key_id} meanwhile; nothing was changed here: retry"
            ))),
        }
    }

    fn remove(&self, key_id: &str) -> KmsResult<()> {
        self.runtime.block_on(self.shared.remove(&self.namespace, key_id)).map_err(unavailable)
    }

    fn list(&self) -> KmsResult<Vec<String>> {
        self.runtime.block_on(self.shared.names(&self.namespace)).map_err(unavailable)
    }

    fn probe(&self) -> KmsResult<()> {
        self.list().map(|_| ())
    }

    fn describe(&self, key_id: &str) -> String {
        format!("key {key_id} of local store {} in the cluster database", self.store)
    }
}

struct SharedFeed(Arc<SharedState>);

#[async_trait]
impl ChangeFeed for SharedFeed {
    async fn announce(&self, change: &KmsChange) -> KmsResult<()> {
        let detail = serde_json::to_string(change).expect("a change always serializes");
        self.0.publish(KMS_TOPIC, &detail).await.map_err(unavailable)
    }
}

/// Starts the task that applies the KMS changes other nodes make, from event `after` on (read before the KMS
/// state was loaded, so nothing between is missed). It runs for the life of the server.
pub fn follow_changes(shared: Arc<SharedState>, kms: Arc<KmsManager>, after: i64) {
    tokio::spawn(async move {
        let mut last_seq = after;
        let mut last_poll = Instant::now();
        let mut listener = None;
        loop {
            if listener.is_none() {
                listener = shared
                    .listen()
                    .await
                    .inspect_err(|err| warn!("cluster: cannot LISTEN for changes, polling only: {err}"))
                    .ok();
            }
            match listener.as_mut() {
                Some(connection) => {
                    // A notification or the poll interval, whichever comes first.
                    if let Ok(Err(err)) = tokio::time::timeout(POLL_INTERVAL, connection.recv()).await {
                        warn!("cluster: the LISTEN connection failed, polling until it is back: {err}");
                        listener = None;
                    }
                }
                None => tokio::time::sleep(POLL_INTERVAL).await,
            }
            let events = match shared.events_after(last_seq).await {
                Ok(events) => events,
                Err(err) => {
                    warn!("cluster: cannot read the change log: {err}");
                    continue;
                }
            };
            if last_poll.elapsed() > EVENT_RETENTION / 2 {
                // Key events may have expired unseen: every cached key goes.
                warn!("cluster: the change log was out of reach for long; clearing the data-key cache");
                apply(&kms, &KmsChange::ClearCache { store: None }).await;
            }
            last_poll = Instant::now();
            for event in events {
                last_seq = event.seq;
                if event.origin == shared.origin() || event.topic != KMS_TOPIC {
                    continue;
                }
                match serde_json::from_str::<KmsChange>(&event.detail) {
                    // Read below, on every poll.
                    Ok(KmsChange::Config) => {}
                    Ok(change) => apply(&kms, &change).await,
                    Err(err) => warn!(seq = event.seq, "cluster: skipping a change this version cannot read: {err}"),
                }
            }
            // The configuration's version is compared on every poll, so a configuration change whose event was
            // missed, or whose application failed (a store that could not start), is still picked up.
            if let Err(err) = kms.follow(&KmsChange::Config).await {
                warn!("cluster: applying the KMS configuration saved by another node failed: {err}");
            }
        }
    });
}

async fn apply(kms: &KmsManager, change: &KmsChange) {
    match kms.follow(change).await {
        Ok(()) => info!(?change, "cluster: applied a KMS change made on another node"),
        Err(err) => warn!(?change, "cluster: applying a KMS change made on another node failed: {err}"),
    }
}
