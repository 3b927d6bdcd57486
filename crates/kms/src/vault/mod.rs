//! The Vault / OpenBao transit backend: master keys live in a transit mount and never leave Vault.
//!
//! Keys Coffer creates are `aes256-gcm96` transit keys with `derived=true`. A data key is 32 bytes from the OS
//! CSPRNG, wrapped with `transit/encrypt` under the key transit derives (HKDF) for the encryption context's canonical
//! bytes, and unwrapped with `transit/decrypt` under the same context: another context derives another key and the
//! AES-GCM tag check fails. The context is bound this way rather than as `associated_data` because transit's
//! `rewrap` ignores associated data (verified against OpenBao 2.7: rewrapping such a ciphertext always fails), while
//! it honours a derivation context — so rewrap keeps working and the plaintext never leaves Vault to be re-wrapped.
//! Any other symmetric encryption key (`aes128-gcm96`, `aes256-gcm96`, `chacha20-poly1305`, derived or not) works
//! too: for a key that is not derived, Coffer binds the context itself ([`binding`]). Keys of other types (signing,
//! asymmetric) are refused as unusable, a client error. docs/kms-vault.md gives the operator-facing reasoning,
//! including why keys are generated locally.
//!
//! Transit has no notion of enabled/disabled keys or of scheduled deletion; that lifecycle is kept locally
//! ([`lifecycle`]) and a key whose deletion date has passed is deleted in transit the next time it is touched or
//! listed.

mod auth;
mod binding;
mod client;
mod lifecycle;
mod transit;

/// The name of the document holding the Vault keys' lifecycle records.
pub(crate) use self::lifecycle::FILE_NAME as LIFECYCLE_DOCUMENT;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64_simd::STANDARD;
use time::OffsetDateTime;
use vaultrs::api::transit::responses::{ReadKeyData, ReadKeyResponse};
use vaultrs::api::transit::KeyType;
use zeroize::Zeroizing;

use self::auth::Authenticator;
use self::binding::{ContextBinding, Sealed};
use self::client::{Failure, Http};
use self::lifecycle::{KeyRecord, Lifecycle};
use self::transit::Transit;
use crate::backend::{BackendKind, BackendOptions, KmsBackend};
use crate::config::VaultConfig;
use crate::error::{KmsError, Result};
use crate::key_id::validate_key_id;
use crate::key_requests::{
    check_min_decryption_version, deletion_date, expiry_to_set, key_to_create, refuse_if_expired,
};
use crate::shared::FileDocuments;
use crate::types::{DataKey, EncryptionContext, Health, KeyMaterial, KeyMetadata, KeyPage, KeyState, KeyVersion};
use crate::wrapped::WrappedKey;

/// A [`KmsBackend`] over a Vault or OpenBao transit mount.
pub struct VaultTransitBackend {
    transit: Transit,
    lifecycle: Lifecycle,
    /// Keys already confirmed usable, with how each binds the encryption context. Checked before first use because
    /// transit silently ignores a context on a non-derived key (Coffer must then bind it) and silently creates a
    /// missing key on encrypt when the token may.
    verified: Mutex<HashMap<String, ContextBinding>>,
}

impl fmt::Debug for VaultTransitBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultTransitBackend")
            .field("address", &self.transit.address())
            .field("mount", &self.transit.mount())
            .finish_non_exhaustive()
    }
}

impl VaultTransitBackend {
    /// Checks the configuration, reads the local lifecycle state and prepares the client. Vault itself is first
    /// contacted by the first call (or health probe), so a Vault that is down at start-up does not stop Coffer.
    pub async fn connect(config: &VaultConfig, options: &BackendOptions) -> Result<VaultTransitBackend> {
        let mount = config.mount_path.trim_matches('/').to_owned();
        if mount.is_empty() || !mount.split('/').all(is_path_segment) {
            return Err(KmsError::InvalidConfig {
                field: "mount_path".into(),
                message: "Vault transit mount path must be path segments of letters, digits, '-', '_' or '.'".into(),
            });
        }
        let http = Http::new(config)?;
        let auth = Authenticator::new(&config.auth)?;
        let scope = format!("{}#{}#{}", http.address(), config.namespace.as_deref().unwrap_or(""), mount);
        let documents = match &options.shared_documents {
            Some(shared) => Arc::clone(shared),
            None => Arc::new(FileDocuments::new(options.state_dir.clone())),
        };
        let lifecycle = Lifecycle::open(documents, scope).await?;
        let transit = Transit::new(http, auth, mount, options.timeout, options.retry_attempts);
        Ok(Self { transit, lifecycle, verified: Mutex::new(HashMap::new()) })
    }

    /// Re-encrypts a wrapped data key under the key's latest version with `transit/rewrap`; the data key itself
    /// never leaves Vault. Needs the context it was made with; the key must be enabled.
    pub async fn rewrap(&self, wrapped: &WrappedKey, context: &EncryptionContext) -> Result<WrappedKey> {
        let (key_id, sealed) = parse_blob(wrapped)?;
        let record = self.live_record(key_id).await?;
        refuse_unless_enabled(key_id, &record)?;
        self.ensure_binding(key_id, sealed.binding).await?;
        let rewrapped = self
            .transit
            .rewrap(key_id, sealed.ciphertext, sealed.binding.transit_context(context).as_deref())
            .await
            .map_err(|failure| self.open_failure(key_id, &sealed, failure))?;
        wrap_blob(key_id, &sealed.around(&rewrapped))
    }

    /// The key's lifecycle record (enabled when Coffer has none), finishing its deletion first when it is due.
    async fn live_record(&self, key_id: &str) -> Result<KeyRecord> {
        match self.lifecycle.get(key_id).await? {
            Some(record) if record.deletion_due(OffsetDateTime::now_utc()) => {
                self.finish_deletion(key_id).await?;
                Err(KmsError::KeyNotFound(key_id.to_owned()))
            }
            Some(record) => Ok(record),
            None => Ok(KeyRecord::enabled(None)),
        }
    }

    async fn finish_deletion(&self, key_id: &str) -> Result<()> {
        match self.transit.delete_key(key_id).await {
            Ok(()) | Err(Failure::NotFound) => {}
            Err(failure) => return Err(failure.into_kms(Some(key_id))),
        }
        self.forget(key_id);
        self.lifecycle.set(key_id, None).await?;
        tracing::info!(key_id, "deleted Vault transit key after its pending deletion window");
        Ok(())
    }

    /// Reads the key from transit and merges Coffer's record into its metadata.
    async fn metadata(&self, key_id: &str, record: &KeyRecord) -> Result<KeyMetadata> {
        let key = self.transit.read_key(key_id).await.map_err(|failure| self.key_failure(key_id, failure))?;
        let (versions, binding) = usable_versions(&key).ok_or_else(|| KmsError::UnusableKey {
            key_id: key_id.to_owned(),
            reason: "it must be a symmetric encryption key (aes256-gcm96, aes128-gcm96 or chacha20-poly1305)".into(),
        })?;
        let metadata = to_metadata(key_id, versions, key.min_decryption_version, record)?;
        self.verified.lock().expect("verified set poisoned").insert(key_id.to_owned(), binding);
        Ok(metadata)
    }

    /// Confirms once per key that it is a usable transit key, and says how it binds the context.
    async fn ensure_usable(&self, key_id: &str) -> Result<ContextBinding> {
        if let Some(binding) = self.verified.lock().expect("verified set poisoned").get(key_id) {
            return Ok(*binding);
        }
        self.metadata(key_id, &KeyRecord::enabled(None)).await?;
        self.verified.lock().expect("verified set poisoned").get(key_id).copied().ok_or(KmsError::InvalidCiphertext)
    }

    /// Refuses a blob whose payload claims another binding than its key has: a Vault-bound payload under a key that
    /// is not derived would open under any context.
    async fn ensure_binding(&self, key_id: &str, claimed: ContextBinding) -> Result<()> {
        if self.ensure_usable(key_id).await? == claimed {
            Ok(())
        } else {
            Err(KmsError::InvalidCiphertext)
        }
    }

    /// Maps a transit failure about `key_id`, forgetting verifications that may no longer hold: the key's when
    /// transit no longer has it, all of them after an outage (what answers afterwards may have lost or replaced keys —
    /// a dev server restarts empty).
    fn key_failure(&self, key_id: &str, failure: Failure) -> KmsError {
        if matches!(failure, Failure::NotFound) {
            self.forget(key_id);
        } else if failure.is_outage() {
            self.verified.lock().expect("verified set poisoned").clear();
        }
        failure.into_kms(Some(key_id))
    }

    /// [`Self::key_failure`] for a call opening `sealed`: a retired key version is named.
    fn open_failure(&self, key_id: &str, sealed: &Sealed<'_>, failure: Failure) -> KmsError {
        match (failure, ciphertext_version(sealed.ciphertext)) {
            (Failure::VersionRetired, Some(version)) => {
                KmsError::KeyVersionRetired { key_id: key_id.to_owned(), version }
            }
            (failure, _) => self.key_failure(key_id, failure),
        }
    }

    fn forget(&self, key_id: &str) {
        self.verified.lock().expect("verified set poisoned").remove(key_id);
    }

    /// Changes the record of an existing key and returns the key's metadata with it.
    async fn set_record(&self, key_id: &str, record: KeyRecord) -> Result<KeyMetadata> {
        let metadata = self.metadata(key_id, &record).await?;
        self.lifecycle.set(key_id, Some(record)).await?;
        Ok(metadata)
    }
}

#[async_trait]
impl KmsBackend for VaultTransitBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::VaultTransit
    }

    async fn create_key(&self, key_id: Option<&str>, description: Option<&str>) -> Result<KeyMetadata> {
        let key_id = key_to_create(key_id, description)?;
        // Transit answers a create for an existing key with success, so existence is checked first.
        match self.transit.read_key(&key_id).await {
            Ok(_) => return Err(KmsError::KeyExists(key_id)),
            Err(Failure::NotFound) => {}
            Err(failure) => return Err(failure.into_kms(Some(&key_id))),
        }
        self.transit.create_key(&key_id).await.map_err(|failure| failure.into_kms(Some(&key_id)))?;
        let record = KeyRecord::enabled(description.map(str::to_owned));
        self.lifecycle.set(&key_id, Some(record.clone())).await?;
        self.metadata(&key_id, &record).await
    }

    async fn describe_key(&self, key_id: &str) -> Result<KeyMetadata> {
        validate_key_id(key_id)?;
        let record = self.live_record(key_id).await?;
        self.metadata(key_id, &record).await
    }

    async fn list_keys(&self, limit: usize, marker: Option<&str>) -> Result<KeyPage> {
        let limit = limit.max(1);
        let mut names = self.transit.list_keys().await.map_err(|failure| match failure {
            Failure::NotFound => KmsError::Backend(format!("no transit engine is mounted at {}", self.transit.mount())),
            other => other.into_kms(None),
        })?;
        names.sort();
        let mut remaining = names
            .into_iter()
            .filter(|name| marker.is_none_or(|marker| name.as_str() > marker) && validate_key_id(name).is_ok())
            .peekable();
        let mut keys = Vec::new();
        while keys.len() < limit {
            let Some(name) = remaining.next() else { break };
            let record = match self.live_record(&name).await {
                Ok(record) => record,
                Err(KmsError::KeyNotFound(_)) => continue,
                Err(err) => return Err(err),
            };
            let key = match self.transit.read_key(&name).await {
                Ok(key) => key,
                Err(Failure::NotFound) => continue,
                Err(failure) => return Err(failure.into_kms(Some(&name))),
            };
            // Signing and asymmetric keys share the mount but cannot wrap data keys.
            if let Some((versions, _)) = usable_versions(&key) {
                keys.push(to_metadata(&name, versions, key.min_decryption_version, &record)?);
            }
        }
        let next_marker = match (remaining.peek(), keys.last()) {
            (Some(_), Some(last)) => Some(last.key_id.clone()),
            _ => None,
        };
        Ok(KeyPage { keys, next_marker })
    }

    async fn enable_key(&self, key_id: &str) -> Result<KeyMetadata> {
        validate_key_id(key_id)?;
        let record = self.live_record(key_id).await?;
        if record.state == KeyState::PendingDeletion {
            return Err(KmsError::KeyPendingDeletion(key_id.to_owned()));
        }
        self.set_record(key_id, KeyRecord { state: KeyState::Enabled, ..record }).await
    }

    async fn disable_key(&self, key_id: &str) -> Result<KeyMetadata> {
        validate_key_id(key_id)?;
        let record = self.live_record(key_id).await?;
        if record.state == KeyState::PendingDeletion {
            return Err(KmsError::KeyPendingDeletion(key_id.to_owned()));
        }
        self.set_record(key_id, KeyRecord { state: KeyState::Disabled, ..record }).await
    }

    async fn schedule_deletion(&self, key_id: &str, pending_window_days: u32) -> Result<KeyMetadata> {
        validate_key_id(key_id)?;
        let deletion_date = deletion_date(pending_window_days)?;
        let record = self.live_record(key_id).await?;
        if record.state == KeyState::PendingDeletion {
            return Err(KmsError::KeyPendingDeletion(key_id.to_owned()));
        }
        self.set_record(
            key_id,
            KeyRecord { state: KeyState::PendingDeletion, deletion_date: Some(deletion_date), ..record },
        )
        .await
    }

    /// Like AWS KMS, a key whose deletion is cancelled comes back disabled; cancelling for a key that is not pending
    /// deletion changes nothing.
    async fn cancel_deletion(&self, key_id: &str) -> Result<KeyMetadata> {
        validate_key_id(key_id)?;
        let record = self.live_record(key_id).await?;
        if record.state != KeyState::PendingDeletion {
            return self.metadata(key_id, &record).await;
        }
        self.set_record(key_id, KeyRecord { state: KeyState::Disabled, deletion_date: None, ..record }).await
    }

    async fn rotate_key(&self, key_id: &str) -> Result<KeyMetadata> {
        validate_key_id(key_id)?;
        let record = self.live_record(key_id).await?;
        refuse_unless_enabled(key_id, &record)?;
        self.ensure_usable(key_id).await?;
        self.transit.rotate_key(key_id).await.map_err(|failure| self.key_failure(key_id, failure))?;
        self.metadata(key_id, &record).await
    }

    async fn set_expiry(&self, key_id: &str, expires_at: Option<OffsetDateTime>) -> Result<KeyMetadata> {
        validate_key_id(key_id)?;
        let expires_at = expiry_to_set(expires_at)?;
        let record = self.live_record(key_id).await?;
        if record.state == KeyState::PendingDeletion {
            return Err(KmsError::KeyPendingDeletion(key_id.to_owned()));
        }
        self.set_record(key_id, KeyRecord { expires_at, ..record }).await
    }

    /// Transit's own `min_decryption_version`: Vault then refuses older ciphertexts itself.
    async fn set_min_decryption_version(&self, key_id: &str, version: u32) -> Result<KeyMetadata> {
        validate_key_id(key_id)?;
        let record = self.live_record(key_id).await?;
        if record.state == KeyState::PendingDeletion {
            return Err(KmsError::KeyPendingDeletion(key_id.to_owned()));
        }
        check_min_decryption_version(version, self.metadata(key_id, &record).await?.current_version)?;
        self.transit
            .set_min_decryption_version(key_id, version)
            .await
            .map_err(|failure| self.key_failure(key_id, failure))?;
        self.metadata(key_id, &record).await
    }

    async fn generate_data_key(&self, key_id: &str, context: &EncryptionContext) -> Result<DataKey> {
        validate_key_id(key_id)?;
        let record = self.live_record(key_id).await?;
        refuse_unless_enabled(key_id, &record)?;
        refuse_if_expired(key_id, record.expires_at)?;
        let binding = self.ensure_usable(key_id).await?;
        let plaintext = KeyMaterial::generate();
        let encoded = Zeroizing::new(STANDARD.encode_to_string(plaintext.as_bytes()));
        let ciphertext = self
            .transit
            .encrypt(key_id, &encoded, binding.transit_context(context).as_deref())
            .await
            .map_err(|failure| self.key_failure(key_id, failure))?;
        let wrapped = wrap_blob(key_id, &binding.payload(&ciphertext, &plaintext, context))?;
        let key_version = wrapped.header()?.key_version;
        Ok(DataKey { key_id: key_id.to_owned(), key_version, plaintext, wrapped, expires_at: record.expires_at })
    }

    async fn decrypt_data_key(&self, wrapped: &WrappedKey, context: &EncryptionContext) -> Result<KeyMaterial> {
        let (key_id, sealed) = parse_blob(wrapped)?;
        // Disabled keys refuse decryption too (as in AWS KMS); keys pending deletion still decrypt.
        let record = self.live_record(key_id).await?;
        if record.state == KeyState::Disabled {
            return Err(KmsError::KeyDisabled(key_id.to_owned()));
        }
        self.ensure_binding(key_id, sealed.binding).await?;
        let encoded = self
            .transit
            .decrypt(key_id, sealed.ciphertext, sealed.binding.transit_context(context).as_deref())
            .await
            .map_err(|failure| self.open_failure(key_id, &sealed, failure))?;
        let bytes =
            Zeroizing::new(STANDARD.decode_to_vec(encoded.as_bytes()).map_err(|_| KmsError::InvalidCiphertext)?);
        let data_key = KeyMaterial::from_slice(&bytes).ok_or(KmsError::InvalidCiphertext)?;
        sealed.verify(&data_key, context)?;
        Ok(data_key)
    }

    async fn health(&self) -> Health {
        let deadline = self.transit.probe_deadline();
        let address = self.transit.address();
        let reason = match self.transit.server_status(deadline).await {
            Ok(200) => None,
            Ok(429) => Some(format!("Vault at {address} is a standby node")),
            Ok(472) => Some(format!("Vault at {address} is a disaster-recovery secondary")),
            Ok(473) => Some(format!("Vault at {address} is a performance standby")),
            Ok(501) => Some(format!("Vault at {address} is not initialized")),
            Ok(503) => Some(format!("Vault at {address} is sealed")),
            Ok(status) => Some(format!("Vault at {address} answered its health check with status {status}")),
            Err(failure) => Some(match failure.into_kms(None) {
                KmsError::Unavailable(reason) => reason,
                other => other.to_string(),
            }),
        };
        if let Some(reason) = reason {
            return Health::failing(reason);
        }
        if let Err(failure) = self.transit.check_token(deadline).await {
            return Health::failing(format!("Vault login is not valid: {}", failure.into_kms(None)));
        }
        match self.transit.check_mount(deadline).await {
            Ok(()) => Health::ok(),
            Err(Failure::NotFound) => {
                Health::failing(format!("no transit engine is mounted at {} on {address}", self.transit.mount()))
            }
            Err(failure) => Health::failing(format!(
                "transit mount {} is not usable: {}",
                self.transit.mount(),
                failure.into_kms(None)
            )),
        }
    }
}

fn is_path_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn refuse_unless_enabled(key_id: &str, record: &KeyRecord) -> Result<()> {
    match record.state {
        KeyState::Enabled => Ok(()),
        KeyState::Disabled => Err(KmsError::KeyDisabled(key_id.to_owned())),
        KeyState::PendingDeletion => Err(KmsError::KeyPendingDeletion(key_id.to_owned())),
    }
}

/// The key version in a transit ciphertext `vault:vN:…` (N canonical: no sign, no leading zero).
fn ciphertext_version(ciphertext: &str) -> Option<u32> {
    let (digits, body) = ciphertext.strip_prefix("vault:v")?.split_once(':')?;
    let canonical = !body.is_empty() && !digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit());
    canonical.then(|| digits.parse().ok()).flatten()
}

/// Packs a payload ([`binding`]) into Coffer's self-describing blob.
fn wrap_blob(key_id: &str, payload: &str) -> Result<WrappedKey> {
    let version = Sealed::parse(payload)
        .ok()
        .and_then(|sealed| ciphertext_version(sealed.ciphertext))
        .ok_or_else(|| KmsError::Backend("Vault returned a ciphertext in an unexpected format".into()))?;
    WrappedKey::new(BackendKind::VaultTransit, key_id, version, payload.as_bytes())
}

/// The key id and payload of a blob made by this backend; anything else is `InvalidCiphertext`.
fn parse_blob(wrapped: &WrappedKey) -> Result<(&str, Sealed<'_>)> {
    let header = wrapped.header()?;
    if header.backend != BackendKind::VaultTransit || validate_key_id(header.key_id).is_err() {
        return Err(KmsError::InvalidCiphertext);
    }
    let payload = std::str::from_utf8(header.payload).map_err(|_| KmsError::InvalidCiphertext)?;
    let sealed = Sealed::parse(payload)?;
    // The header's version must be the one transit will use, or the blob was altered.
    if ciphertext_version(sealed.ciphertext) != Some(header.key_version) {
        return Err(KmsError::InvalidCiphertext);
    }
    Ok((header.key_id, sealed))
}

/// The versions (number → creation time) of a key Coffer can use, and how it binds the context: any symmetric
/// encryption key — derived ones bind the context in Vault, the others in Coffer ([`binding`]).
fn usable_versions(key: &ReadKeyResponse) -> Option<(&HashMap<String, u64>, ContextBinding)> {
    let symmetric = matches!(key.key_type, KeyType::Aes256Gcm96 | KeyType::Aes128Gcm96 | KeyType::Chacha20Poly1305);
    match &key.keys {
        ReadKeyData::Symmetric(versions) if symmetric && key.supports_encryption && key.supports_decryption => {
            Some((versions, if key.derived { ContextBinding::Vault } else { ContextBinding::Coffer }))
        }
        _ => None,
    }
}

/// The key's metadata from what transit says of it (`versions` lists only the versions at or above
/// `min_decryption_version`: transit archives the others) and Coffer's record.
fn to_metadata(
    key_id: &str,
    versions: &HashMap<String, u64>,
    min_decryption_version: u64,
    record: &KeyRecord,
) -> Result<KeyMetadata> {
    let mut versions = versions
        .iter()
        .map(|(version, created)| {
            let version = version.parse::<u32>().ok()?;
            let created_at = OffsetDateTime::from_unix_timestamp(i64::try_from(*created).ok()?).ok()?;
            Some(KeyVersion { version, created_at })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| KmsError::Backend(format!("Vault returned unreadable versions for key {key_id}")))?;
    versions.sort_by_key(|version| version.version);
    let (Some(first), Some(latest)) = (versions.first(), versions.last()) else {
        return Err(KmsError::Backend(format!("Vault returned no versions for key {key_id}")));
    };
    Ok(KeyMetadata {
        key_id: key_id.to_owned(),
        state: record.state,
        created_at: first.created_at,
        current_version: latest.version,
        deletion_date: record.deletion_date,
        description: record.description.clone(),
        expires_at: record.expires_at,
        // Transit reports 1 for a key made before it kept a minimum, and forces 0 up to 1.
        min_decryption_version: u32::try_from(min_decryption_version).unwrap_or(u32::MAX).max(1),
        versions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_segments_are_checked() {
        assert!("transit".split('/').all(is_path_segment));
        assert!("team-a/transit".split('/').all(is_path_segment));
        assert!(!"team/../sys".split('/').all(is_path_segment));
        assert!(!"a//b".split('/').all(is_path_segment));
    }

    #[test]
    fn ciphertext_versions_are_parsed_strictly() {
        assert_eq!(ciphertext_version("vault:v1:abc"), Some(1));
        assert_eq!(ciphertext_version("vault:v42:abc"), Some(42));
        for bad in
            ["vault:v0:abc", "vault:v01:abc", "vault:v+1:abc", "vault:v1:", "vault:1:abc", "vault:vx:abc", "v1:abc"]
        {
            assert_eq!(ciphertext_version(bad), None, "{bad}");
        }
    }

    #[test]
    fn blobs_of_other_backends_or_with_mismatched_versions_are_invalid() {
        let good = WrappedKey::new(BackendKind::VaultTransit, "k", 3, b"vault:v3:abc").unwrap();
        let (key_id, sealed) = parse_blob(&good).unwrap();
        assert_eq!((key_id, sealed.binding, sealed.ciphertext), ("k", ContextBinding::Vault, "vault:v3:abc"));
        let local = WrappedKey::new(BackendKind::Local, "k", 3, b"vault:v3:abc").unwrap();
        assert!(matches!(parse_blob(&local), Err(KmsError::InvalidCiphertext)));
        let version_moved = WrappedKey::new(BackendKind::VaultTransit, "k", 2, b"vault:v3:abc").unwrap();
        assert!(matches!(parse_blob(&version_moved), Err(KmsError::InvalidCiphertext)));
        let path_escape = WrappedKey::new(BackendKind::VaultTransit, "../sys", 3, b"vault:v3:abc").unwrap();
        assert!(matches!(parse_blob(&path_escape), Err(KmsError::InvalidCiphertext)));
        let binary = WrappedKey::new(BackendKind::VaultTransit, "k", 3, &[0xff, 0xfe]).unwrap();
        assert!(matches!(parse_blob(&binary), Err(KmsError::InvalidCiphertext)));
    }

    #[test]
    fn wrapping_takes_the_version_from_the_ciphertext() {
        let wrapped = wrap_blob("k", "vault:v7:Zm9v").unwrap();
        let header = wrapped.header().unwrap();
        assert_eq!((header.backend, header.key_id, header.key_version), (BackendKind::VaultTransit, "k", 7));
        assert_eq!(header.payload, b"vault:v7:Zm9v");
        assert!(matches!(wrap_blob("k", "garbage"), Err(KmsError::Backend(_))));
    }

    #[test]
    fn the_context_is_sent_as_its_canonical_bytes() {
        let context = EncryptionContext::new().with("bucket", "b").with("aws:s3:arn", "arn:aws:s3:::b/k");
        let sent = STANDARD.decode_to_vec(ContextBinding::Vault.transit_context(&context).unwrap()).unwrap();
        assert_eq!(sent, br#"{"aws:s3:arn":"arn:aws:s3:::b/k","bucket":"b"}"#);
    }

    #[test]
    fn a_coffer_bound_blob_keeps_its_tag_and_takes_the_version_of_the_inner_ciphertext() {
        let context = EncryptionContext::new().with("aws:s3:arn", "arn:aws:s3:::b/k");
        let payload = ContextBinding::Coffer.payload("vault:v4:Zm9v", &KeyMaterial::from_bytes([1; 32]), &context);
        let wrapped = wrap_blob("k", &payload).unwrap();
        assert_eq!(wrapped.header().unwrap().key_version, 4);
        let (_, sealed) = parse_blob(&wrapped).unwrap();
        assert_eq!((sealed.binding, sealed.ciphertext), (ContextBinding::Coffer, "vault:v4:Zm9v"));
        let version_moved = WrappedKey::new(BackendKind::VaultTransit, "k", 3, payload.as_bytes()).unwrap();
        assert!(matches!(parse_blob(&version_moved), Err(KmsError::InvalidCiphertext)));
    }

    #[test]
    fn lifecycle_states_gate_use() {
        let mut record = KeyRecord::enabled(None);
        assert!(refuse_unless_enabled("k", &record).is_ok());
        record.state = KeyState::Disabled;
        assert!(matches!(refuse_unless_enabled("k", &record), Err(KmsError::KeyDisabled(_))));
        record.state = KeyState::PendingDeletion;
        assert!(matches!(refuse_unless_enabled("k", &record), Err(KmsError::KeyPendingDeletion(_))));
    }

    #[test]
    fn metadata_lists_versions_in_order_with_the_record() {
        let versions = HashMap::from([("2".to_owned(), 1_700_000_100), ("1".to_owned(), 1_700_000_000)]);
        let mut record = KeyRecord::enabled(Some("orders".into()));
        record.state = KeyState::Disabled;
        let metadata = to_metadata("k", &versions, 2, &record).unwrap();
        assert_eq!(metadata.current_version, 2);
        assert_eq!(metadata.versions.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(metadata.created_at.unix_timestamp(), 1_700_000_000);
        assert_eq!(metadata.state, KeyState::Disabled);
        assert_eq!(metadata.description.as_deref(), Some("orders"));
        assert_eq!(metadata.min_decryption_version, 2);
        assert_eq!(to_metadata("k", &versions, 0, &record).unwrap().min_decryption_version, 1);
        assert!(to_metadata("k", &HashMap::new(), 1, &record).is_err());
    }

    #[tokio::test]
    async fn connect_checks_configuration_without_contacting_vault_and_debug_hides_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let options = BackendOptions {
            timeout: std::time::Duration::from_secs(1),
            retry_attempts: 0,
            state_dir: dir.path().to_owned(),
            shared_documents: None,
        };
        let mut config = VaultConfig {
            address: "http://127.0.0.1:1".into(),
            mount_path: "/transit/".into(),
            namespace: Some("team-a".into()),
            auth: crate::config::VaultAuth::Token { token: crate::config::Secret::new("s.very-secret-token") },
            ca_cert_path: None,
            client_cert_path: None,
            client_key_path: None,
            skip_tls_verify: false,
        };
        let backend = VaultTransitBackend::connect(&config, &options).await.unwrap();
        let shown = format!("{backend:?}");
        assert!(shown.contains("transit") && !shown.contains("very-secret"), "{shown}");

        config.mount_path = "transit/../sys".into();
        let err = VaultTransitBackend::connect(&config, &options).await.expect_err("bad mount accepted");
        assert!(matches!(err, KmsError::InvalidConfig { ref field, .. } if field == "mount_path"), "{err}");
    }
}
