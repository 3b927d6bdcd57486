//! The values that cross the KMS boundary: key metadata, data keys, encryption contexts and health.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::wrapped::WrappedKey;

/// A 256-bit secret key. Zeroized on drop; its `Debug` never shows the bytes.
#[derive(Clone)]
pub struct KeyMaterial(Zeroizing<[u8; 32]>);

impl KeyMaterial {
    /// Fresh key material from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut()).expect("the OS random number generator failed");
        Self(bytes)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Takes a slice that must be exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let array: [u8; 32] = bytes.try_into().ok()?;
        Some(Self::from_bytes(array))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Key material written in place by `fill` (a KDF, a decryption), so no unzeroized copy is left behind.
    pub(crate) fn filled_by<E>(fill: impl FnOnce(&mut [u8; 32]) -> Result<(), E>) -> Result<Self, E> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        fill(&mut bytes)?;
        Ok(Self(bytes))
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyMaterial(<redacted>)")
    }
}

/// Key/value pairs bound to a data key: a wrapped key made under one context does not open under another.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EncryptionContext(pub BTreeMap<String, String>);

impl EncryptionContext {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.insert(key.into(), value.into());
        self
    }

    /// Canonical bytes: compact JSON of the map with keys sorted, used as AEAD associated data.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0).expect("a map of strings always serializes")
    }
}

/// A fresh data key: the plaintext for immediate use and the wrapped form to store beside the data.
#[derive(Debug)]
pub struct DataKey {
    pub key_id: String,
    pub key_version: u32,
    pub plaintext: KeyMaterial,
    pub wrapped: WrappedKey,
    /// When its master key stops making data keys: a cached data key is not used past it either.
    pub expires_at: Option<OffsetDateTime>,
}

/// Whether a master key may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
}

/// One version of a master key; rotation adds a version and old versions keep decrypting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVersion {
    pub version: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// What a backend knows about a master key (never its material).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMetadata {
    pub key_id: String,
    pub state: KeyState,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub current_version: u32,
    /// The versions whose data keys still decrypt: from `min_decryption_version` to `current_version`.
    pub versions: Vec<KeyVersion>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub deletion_date: Option<OffsetDateTime>,
    pub description: Option<String>,
    /// After this time the key makes no new data keys (it still opens the ones it made).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Data keys wrapped by versions below it no longer decrypt (1: every version does).
    #[serde(default = "first_version")]
    pub min_decryption_version: u32,
}

/// The version numbering starts at; serde's default for a minimum decryption version not written down.
pub(crate) fn first_version() -> u32 {
    1
}

/// The store, key and key version that wrapped a data key: what an object's readability depends on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyOrigin {
    pub store: String,
    pub key_id: String,
    pub version: u32,
}

/// One page of a key listing; `next_marker` continues it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyPage {
    pub keys: Vec<KeyMetadata>,
    pub next_marker: Option<String>,
}

/// Whether a backend can serve right now, and why not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub healthy: bool,
    pub reason: Option<String>,
}

impl Health {
    pub fn ok() -> Self {
        Self { healthy: true, reason: None }
    }

    pub fn failing(reason: impl Into<String>) -> Self {
        Self { healthy: false, reason: Some(reason.into()) }
    }
}
