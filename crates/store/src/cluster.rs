//! Cluster mode: several `coffer server` nodes on one PostgreSQL database. Two things every node must share beyond
//! the metadata rows are here.
//!
//! - The cluster key ([`ClusterKey`]): 32 random bytes given to every node out of band (`--cluster-key-file`,
//!   0600). It is the record MAC key, so a record written by one node verifies on all (an existing single-node
//!   deployment uses its `DATA/.coffer/record-mac.key` as the cluster key, and its records stay readable), and it
//!   derives (HKDF-SHA256) the key that seals the shared state. The database holds only its fingerprint (an HMAC of
//!   a fixed label under it): a node given another key refuses to start, and a database editor can neither read
//!   the key nor forge records with it.
//! - Shared state ([`SharedState`]): small named values (`shared_state`: namespace, name, version, value), each
//!   sealed with AES-256-GCM under the derived key with `namespace/name` as associated data (a value moved to
//!   another row does not open), replaced by compare-and-swap on its version; and an event log (`shared_events`)
//!   that each change appends to and announces with `NOTIFY coffer_shared`. Nodes LISTEN and also poll the log, so
//!   a dropped LISTEN connection delays a change by at most one poll. Appends are serialized by an advisory lock,
//!   so sequence numbers commit in order and a poll never skips one committed later. Events older than
//!   [`EVENT_RETENTION`] are removed.

use std::fmt;
use std::io;
use std::path::Path;
use std::time::Duration;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
use aws_lc_rs::{constant_time, hmac};
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sqlx::Row;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::error::{Result, StoreError};

const KEY_LEN: usize = 32;
const FINGERPRINT_LABEL: &[u8] = b"coffer cluster key fingerprint v1";
const SEAL_INFO: &[u8] = b"coffer shared state seal v1";
const HKDF_SALT: &[u8] = b"coffer cluster v1";
/// The notification channel every node listens on.
pub const NOTIFY_CHANNEL: &str = "coffer_shared";
/// How long events stay in the log: a node that could not poll for longer resynchronizes fully.
pub const EVENT_RETENTION: Duration = Duration::from_secs(600);
const FINGERPRINT_NAMESPACE: &str = "cluster";
const FINGERPRINT_NAME: &str = "key-fingerprint";

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS shared_state (
    namespace TEXT COLLATE "C" NOT NULL, name TEXT COLLATE "C" NOT NULL, version BIGINT NOT NULL,
    value BYTEA NOT NULL, PRIMARY KEY (namespace, name));
CREATE TABLE IF NOT EXISTS shared_events (
    seq BIGSERIAL PRIMARY KEY, origin TEXT NOT NULL, topic TEXT NOT NULL, detail TEXT NOT NULL, at BIGINT NOT NULL);
"#;
/// Serializes schema creation (concurrent `CREATE TABLE IF NOT EXISTS` can collide) and event appends.
const SCHEMA_LOCK: i64 = 0x636f_6666_6572_0001;
const EVENTS_LOCK: i64 = 0x636f_6666_6572_0002;

/// The secret every node of a cluster shares. Never printed; zeroized on drop.
pub struct ClusterKey(Zeroizing<[u8; KEY_LEN]>);

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterKey(<redacted>)")
    }
}

impl ClusterKey {
    /// Reads the key file: exactly 32 bytes (`head -c 32 /dev/urandom`). A file readable by others is warned about.
    pub fn read(path: &Path) -> io::Result<ClusterKey> {
        use std::os::unix::fs::PermissionsExt as _;
        let bytes = Zeroizing::new(std::fs::read(path)?);
        let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: a cluster key is {KEY_LEN} bytes (create one with `head -c 32 /dev/urandom`), found {}",
                    path.display(),
                    bytes.len()
                ),
            )
        })?;
        if std::fs::metadata(path)?.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "the cluster key file is readable by other users; chmod 600 it");
        }
        Ok(ClusterKey(Zeroizing::new(key)))
    }

    /// The record MAC key: the cluster key itself (see the module documentation).
    pub(crate) fn record_mac_key(&self) -> &[u8] {
        &self.0[..]
    }

    /// What the database keeps to recognize the key.
    fn fingerprint(&self) -> String {
        hex::encode(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &self.0[..]), FINGERPRINT_LABEL))
    }

    fn sealing_key(&self) -> LessSafeKey {
        let prk = Salt::new(HKDF_SHA256, HKDF_SALT).extract(&self.0[..]);
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        prk.expand(&[SEAL_INFO], HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut key[..]))
            .expect("HKDF-SHA256 yields 32 bytes");
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key[..]).expect("32 bytes is an AES-256 key"))
    }
}

/// A value of the shared state and the version it was read at.
pub struct SharedValue {
    pub value: Zeroizing<Vec<u8>>,
    pub version: u64,
}

/// One entry of the event log.
#[derive(Debug, Clone)]
pub struct SharedEvent {
    pub seq: i64,
    /// The node that appended it ([`SharedState::origin`]).
    pub origin: String,
    pub topic: String,
    pub detail: String,
}

/// The state the nodes of a cluster share, in their PostgreSQL database (see the module documentation).
pub struct SharedState {
    pool: PgPool,
    sealing: LessSafeKey,
    origin: String,
}

impl fmt::Debug for SharedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedState").field("origin", &self.origin).finish_non_exhaustive()
    }
}

fn db_error(e: sqlx::Error) -> StoreError {
    StoreError::Io(io::Error::other(format!("shared state database: {e}")))
}

impl SharedState {
    /// Connects, creates the tables if needed and checks `key` against the fingerprint the database keeps (the
    /// first node records it). A node with another key is refused with a message saying so.
    pub async fn open(url: &str, key: &ClusterKey) -> Result<SharedState> {
        let pool = PgPoolOptions::new().max_connections(4).connect(url).await.map_err(db_error)?;
        let mut tx = pool.begin().await.map_err(db_error)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(SCHEMA_LOCK).execute(&mut *tx).await.map_err(db_error)?;
        sqlx::raw_sql(SCHEMA).execute(&mut *tx).await.map_err(db_error)?;
        let fingerprint = key.fingerprint();
        sqlx::query(
            "INSERT INTO shared_state (namespace, name, version, value) VALUES ($1, $2, 1, $3) ON CONFLICT DO NOTHING",
        )
        .bind(FINGERPRINT_NAMESPACE)
        .bind(FINGERPRINT_NAME)
        .bind(fingerprint.as_bytes())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let recorded: Vec<u8> = sqlx::query("SELECT value FROM shared_state WHERE namespace = $1 AND name = $2")
            .bind(FINGERPRINT_NAMESPACE)
            .bind(FINGERPRINT_NAME)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?
            .get(0);
        tx.commit().await.map_err(db_error)?;
        if constant_time::verify_slices_are_equal(&recorded, fingerprint.as_bytes()).is_err() {
            return Err(StoreError::Io(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "this node's cluster key (--cluster-key-file) is not the key of the cluster whose database this is \
                 (the fingerprints differ): give every node the same key file",
            )));
        }
        let mut origin = [0u8; 8];
        getrandom::fill(&mut origin).map_err(|e| StoreError::Io(io::Error::other(e.to_string())))?;
        Ok(SharedState { pool, sealing: key.sealing_key(), origin: hex::encode(origin) })
    }

    /// This process's name in the event log, so it can skip its own events.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The value `namespace/name`, opened, or `None`.
    pub async fn get(&self, namespace: &str, name: &str) -> Result<Option<SharedValue>> {
        let row = sqlx::query("SELECT version, value FROM shared_state WHERE namespace = $1 AND name = $2")
            .bind(namespace)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        let Some(row) = row else { return Ok(None) };
        let version: i64 = row.get(0);
        let sealed: Vec<u8> = row.get(1);
        let value = self.open_value(namespace, name, &sealed)?;
        Ok(Some(SharedValue { value, version: u64::try_from(version).unwrap_or(0) }))
    }

    /// Sets `namespace/name` to `value` if its version is still `expected` (`None`: it must not exist). Returns the
    /// new version, or `None` if another writer got there first.
    pub async fn put(&self, namespace: &str, name: &str, value: &[u8], expected: Option<u64>) -> Result<Option<u64>> {
        let sealed = self.seal_value(namespace, name, value);
        let updated = match expected {
            None => sqlx::query(
                "INSERT INTO shared_state (namespace, name, version, value) VALUES ($1, $2, 1, $3) \
                 ON CONFLICT DO NOTHING RETURNING version",
            )
            .bind(namespace)
            .bind(name)
            .bind(sealed)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?,
            Some(version) => sqlx::query(
                "UPDATE shared_state SET version = version + 1, value = $3 \
                 WHERE namespace = $1 AND name = $2 AND version = $4 RETURNING version",
            )
            .bind(namespace)
            .bind(name)
            .bind(sealed)
            .bind(i64::try_from(version).unwrap_or(i64::MAX))
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?,
        };
        Ok(updated.map(|row| u64::try_from(row.get::<i64, _>(0)).unwrap_or(0)))
    }

    /// Removes `namespace/name`; a missing value is not an error.
    pub async fn remove(&self, namespace: &str, name: &str) -> Result<()> {
        sqlx::query("DELETE FROM shared_state WHERE namespace = $1 AND name = $2")
            .bind(namespace)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// The names in `namespace`, in byte order.
    pub async fn names(&self, namespace: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT name FROM shared_state WHERE namespace = $1 ORDER BY name")
            .bind(namespace)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(|row| row.get(0)).collect())
    }

    /// Appends an event and notifies the listening nodes (on commit). `topic` and `detail` are names, never
    /// secrets: they are stored in clear.
    pub async fn publish(&self, topic: &str, detail: &str) -> Result<()> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(EVENTS_LOCK).execute(&mut *tx).await.map_err(db_error)?;
        sqlx::query("INSERT INTO shared_events (origin, topic, detail, at) VALUES ($1, $2, $3, $4)")
            .bind(&self.origin)
            .bind(topic)
            .bind(detail)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let retention = i64::try_from(EVENT_RETENTION.as_secs()).unwrap_or(i64::MAX);
        sqlx::query("DELETE FROM shared_events WHERE at < $1")
            .bind(now - retention)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(NOTIFY_CHANNEL)
            .bind(topic)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    /// The events after `seq`, oldest first.
    pub async fn events_after(&self, seq: i64) -> Result<Vec<SharedEvent>> {
        let rows = sqlx::query("SELECT seq, origin, topic, detail FROM shared_events WHERE seq > $1 ORDER BY seq")
            .bind(seq)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|row| SharedEvent { seq: row.get(0), origin: row.get(1), topic: row.get(2), detail: row.get(3) })
            .collect())
    }

    /// The newest event's sequence number (0 when the log is empty): where a node starting now begins to follow.
    pub async fn last_event(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM shared_events")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(row.get(0))
    }

    /// A connection listening on [`NOTIFY_CHANNEL`].
    pub async fn listen(&self) -> Result<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await.map_err(db_error)?;
        listener.listen(NOTIFY_CHANNEL).await.map_err(db_error)?;
        Ok(listener)
    }

    fn seal_value(&self, namespace: &str, name: &str, value: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the OS random number generator failed");
        let mut out = Vec::with_capacity(NONCE_LEN + value.len() + 16);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(value);
        let aad = format!("{namespace}/{name}");
        let tag = self
            .sealing
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut out[NONCE_LEN..],
            )
            .expect("AES-256-GCM sealing of a short value cannot fail");
        out.extend_from_slice(tag.as_ref());
        out
    }

    fn open_value(&self, namespace: &str, name: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let unusable = || {
            StoreError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("shared state {namespace}/{name} does not open under the cluster key (edited or moved)"),
            ))
        };
        if sealed.len() < NONCE_LEN {
            return Err(unusable());
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| unusable())?;
        let mut buffer = Zeroizing::new(body.to_vec());
        let aad = format!("{namespace}/{name}");
        let len =
            self.sealing.open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buffer).map_err(|_| unusable())?.len();
        buffer.truncate(len);
        Ok(buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_depends_on_the_key_and_does_not_reveal_it() {
        let one = ClusterKey(Zeroizing::new([1u8; KEY_LEN]));
        let two = ClusterKey(Zeroizing::new([2u8; KEY_LEN]));
        assert_ne!(one.fingerprint(), two.fingerprint());
        assert!(!one.fingerprint().contains(&hex::encode([1u8; KEY_LEN])));
        assert_eq!(format!("{one:?}"), "ClusterKey(<redacted>)");
    }

    #[test]
    fn the_key_file_must_hold_exactly_32_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        std::fs::write(&path, b"short").unwrap();
        let err = ClusterKey::read(&path).unwrap_err();
        assert!(err.to_string().contains("32 bytes"), "{err}");
        std::fs::write(&path, [7u8; KEY_LEN]).unwrap();
        assert_eq!(ClusterKey::read(&path).unwrap().record_mac_key(), &[7u8; KEY_LEN]);
    }
}
