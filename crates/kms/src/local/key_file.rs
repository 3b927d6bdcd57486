//! One master key as stored by the local backend: every version's material sealed at rest, and the data keys those
//! versions wrap.
//!
//! A key file is JSON (so an operator can see state and versions without tools) holding only sealed material:
//!
//! ```text
//! {"format":1, "key_id":"orders", "state":"Enabled", "created_at":"2025-01-01T00:00:00Z", "deletion_date":null,
//!  "description":null, "expires_at":"2027-01-01T00:00:00Z", "min_decryption_version":2,
//!  "kek_salt":"<base64, 32 bytes>",
//!  "versions":[{"version":1, "created_at":"…", "material":"<base64: nonce(12) | ciphertext(32) | tag(16)>"}, …]}
//! ```
//!
//! `expires_at` is written only when set and `min_decryption_version` only when above 1, so files written before
//! either existed still load, and a file that uses neither stays readable by those versions of Coffer. Data keys
//! wrapped by a version below `min_decryption_version` are refused; the version's material stays in the file, so
//! lowering the minimum again makes them open again.
//!
//! The file's key-encryption key is HKDF-SHA256(salt = `kek_salt`, ikm = master secret, info = [`KEK_INFO`]); each
//! version is sealed with AES-256-GCM under it, the associated data binding the key id and the version number so
//! material cannot be moved between files or versions. A wrapped data key is AES-256-GCM under the version's
//! material with the associated data binding key id, version and the encryption context's canonical bytes.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
use base64_simd::STANDARD;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::MasterSecret;
use crate::backend::BackendKind;
use crate::error::{KmsError, Result};
use crate::key_requests::check_min_decryption_version;
use crate::types::{first_version, EncryptionContext, KeyMaterial, KeyMetadata, KeyState, KeyVersion};
use crate::wrapped::WrappedKey;

const FORMAT: u32 = 1;
const KEK_INFO: &[u8] = b"coffer-kms local key-encryption key v1";
const VERSION_DOMAIN: &[u8] = b"coffer-kms local key version v1";
const DATA_KEY_DOMAIN: &[u8] = b"coffer-kms local data key v1";
const SALT_LEN: usize = 32;
const TAG_LEN: usize = 16;

/// A master key with its versions' material unsealed, as held while one operation runs.
pub(super) struct StoredKey {
    pub key_id: String,
    pub state: KeyState,
    pub created_at: OffsetDateTime,
    pub deletion_date: Option<OffsetDateTime>,
    pub description: Option<String>,
    pub expires_at: Option<OffsetDateTime>,
    /// Data keys wrapped by versions below it are refused; between 1 and the current version.
    pub min_decryption_version: u32,
    kek_salt: [u8; SALT_LEN],
    versions: Vec<Version>,
}

/// One version of a master key; never empty in a [`StoredKey`], kept in ascending order.
struct Version {
    number: u32,
    created_at: OffsetDateTime,
    material: KeyMaterial,
}

/// The on-disk form.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    format: u32,
    key_id: String,
    state: KeyState,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    deletion_date: Option<OffsetDateTime>,
    description: Option<String>,
    /// Absent in files written before keys could expire.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
    /// Absent (1) in files written before versions could be retired, and whenever every version decrypts.
    #[serde(default = "first_version", skip_serializing_if = "is_first_version")]
    min_decryption_version: u32,
    kek_salt: String,
    versions: Vec<SealedVersion>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedVersion {
    version: u32,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    material: String,
}

impl StoredKey {
    /// A new enabled key with one freshly generated version.
    pub fn new(key_id: String, description: Option<String>, now: OffsetDateTime) -> Self {
        let mut kek_salt = [0u8; SALT_LEN];
        getrandom::fill(&mut kek_salt).expect("the OS random number generator failed");
        Self {
            key_id,
            state: KeyState::Enabled,
            created_at: now,
            deletion_date: None,
            description,
            expires_at: None,
            min_decryption_version: first_version(),
            kek_salt,
            versions: vec![Version { number: 1, created_at: now, material: KeyMaterial::generate() }],
        }
    }

    /// Parses and unseals a key file. The error is a short reason (no file contents) for the caller to put beside
    /// the file's path.
    pub fn decode(bytes: &[u8], expected_id: &str, master: &MasterSecret) -> std::result::Result<Self, String> {
        let file: KeyFile = serde_json::from_slice(bytes).map_err(|err| describe_json_error(&err))?;
        if file.format != FORMAT {
            return Err(format!("unsupported key file format {}", file.format));
        }
        if file.key_id != expected_id {
            return Err(format!("it holds key {:?}, not {expected_id:?}", file.key_id));
        }
        let kek_salt: [u8; SALT_LEN] = STANDARD
            .decode_to_vec(&file.kek_salt)
            .ok()
            .and_then(|salt| salt.try_into().ok())
            .ok_or("its key-encryption salt is malformed")?;
        if file.state == KeyState::PendingDeletion && file.deletion_date.is_none() {
            return Err("it is pending deletion without a deletion date".into());
        }
        let kek = master.key_encryption_key(&kek_salt);
        let mut versions = Vec::with_capacity(file.versions.len());
        for sealed in &file.versions {
            if versions.last().is_some_and(|last: &Version| last.number >= sealed.version) || sealed.version == 0 {
                return Err("its versions are not numbered in ascending order".into());
            }
            let material = STANDARD
                .decode_to_vec(&sealed.material)
                .ok()
                .and_then(|bytes| open(&kek, &version_aad(&file.key_id, sealed.version), &bytes))
                .and_then(|plain| KeyMaterial::filled_by(|out| copy_key(&plain, out)).ok())
                .ok_or_else(|| {
                    format!(
                        "version {} does not open with the configured master key (another master key, or the file \
                         was altered)",
                        sealed.version
                    )
                })?;
            versions.push(Version { number: sealed.version, created_at: sealed.created_at, material });
        }
        let Some(current) = versions.last() else {
            return Err("it has no key versions".into());
        };
        if !(1..=current.number).contains(&file.min_decryption_version) {
            return Err(format!(
                "its minimum decryption version {} is not one of its versions",
                file.min_decryption_version
            ));
        }
        Ok(Self {
            key_id: file.key_id,
            state: file.state,
            created_at: file.created_at,
            deletion_date: file.deletion_date,
            description: file.description,
            expires_at: file.expires_at,
            min_decryption_version: file.min_decryption_version,
            kek_salt,
            versions,
        })
    }

    /// The on-disk form, every version sealed afresh under the master secret.
    pub fn encode(&self, master: &MasterSecret) -> Vec<u8> {
        let kek = master.key_encryption_key(&self.kek_salt);
        let file = KeyFile {
            format: FORMAT,
            key_id: self.key_id.clone(),
            state: self.state,
            created_at: self.created_at,
            deletion_date: self.deletion_date,
            description: self.description.clone(),
            expires_at: self.expires_at,
            min_decryption_version: self.min_decryption_version,
            kek_salt: STANDARD.encode_to_string(self.kek_salt),
            versions: self
                .versions
                .iter()
                .map(|version| SealedVersion {
                    version: version.number,
                    created_at: version.created_at,
                    material: STANDARD.encode_to_string(seal(
                        &kek,
                        &version_aad(&self.key_id, version.number),
                        version.material.as_bytes(),
                    )),
                })
                .collect(),
        };
        serde_json::to_vec_pretty(&file).expect("a key file always serializes")
    }

    pub fn metadata(&self) -> KeyMetadata {
        KeyMetadata {
            key_id: self.key_id.clone(),
            state: self.state,
            created_at: self.created_at,
            current_version: self.current().number,
            // As Vault transit does, only the versions that still decrypt.
            versions: self
                .versions
                .iter()
                .filter(|version| version.number >= self.min_decryption_version)
                .map(|version| KeyVersion { version: version.number, created_at: version.created_at })
                .collect(),
            deletion_date: self.deletion_date,
            description: self.description.clone(),
            expires_at: self.expires_at,
            min_decryption_version: self.min_decryption_version,
        }
    }

    /// Whether the pending-deletion window has passed, so the key must now really be deleted.
    pub fn deletion_due(&self, now: OffsetDateTime) -> bool {
        self.state == KeyState::PendingDeletion && self.deletion_date.is_some_and(|date| date <= now)
    }

    /// Adds a version with fresh material; it becomes the one new data keys are made with.
    pub fn rotate(&mut self, now: OffsetDateTime) -> Result<()> {
        let number = self
            .current()
            .number
            .checked_add(1)
            .ok_or_else(|| KmsError::Backend(format!("key {} has no version numbers left", self.key_id)))?;
        self.versions.push(Version { number, created_at: now, material: KeyMaterial::generate() });
        Ok(())
    }

    /// Wraps `plaintext` under the current version, bound to `context`.
    pub fn wrap(&self, plaintext: &KeyMaterial, context: &EncryptionContext) -> Result<WrappedKey> {
        let version = self.current();
        let aad = data_key_aad(&self.key_id, version.number, context);
        let payload = seal(&version.material, &aad, plaintext.as_bytes());
        WrappedKey::new(BackendKind::Local, &self.key_id, version.number, &payload)
    }

    /// Sets the lowest version whose data keys still open (1 to the current version).
    pub fn set_min_decryption_version(&mut self, version: u32) -> Result<()> {
        check_min_decryption_version(version, self.current_version())?;
        self.min_decryption_version = version;
        Ok(())
    }

    /// Opens a data key wrapped under `version`; any mismatch (context, version, tampering) is `InvalidCiphertext`,
    /// a version below the minimum decryption version `KeyVersionRetired`.
    pub fn unwrap(&self, version: u32, payload: &[u8], context: &EncryptionContext) -> Result<KeyMaterial> {
        let version = self.versions.iter().find(|v| v.number == version).ok_or(KmsError::InvalidCiphertext)?;
        if version.number < self.min_decryption_version {
            return Err(KmsError::KeyVersionRetired { key_id: self.key_id.clone(), version: version.number });
        }
        let aad = data_key_aad(&self.key_id, version.number, context);
        let plain = open(&version.material, &aad, payload).ok_or(KmsError::InvalidCiphertext)?;
        KeyMaterial::filled_by(|out| copy_key(&plain, out)).map_err(|()| KmsError::InvalidCiphertext)
    }

    pub fn current_version(&self) -> u32 {
        self.current().number
    }

    fn current(&self) -> &Version {
        self.versions.last().expect("a stored key always has a version")
    }
}

impl MasterSecret {
    /// The key-encryption key for one key file.
    fn key_encryption_key(&self, salt: &[u8]) -> KeyMaterial {
        let prk = Salt::new(HKDF_SHA256, salt).extract(self.expose());
        KeyMaterial::filled_by(|out| prk.expand(&[KEK_INFO], HKDF_SHA256)?.fill(out))
            .expect("HKDF-SHA256 yields 32 bytes")
    }
}

/// AES-256-GCM with a random nonce: `nonce | ciphertext | tag`. The plaintext is encrypted in place in the output
/// buffer, which has room for the tag, so no copy of it is left behind.
fn seal(key: &KeyMaterial, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).expect("the OS random number generator failed");
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = aead_key(key)
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut out[NONCE_LEN..])
        .expect("AES-256-GCM sealing of a short message cannot fail");
    out.extend_from_slice(tag.as_ref());
    out
}

/// Opens what [`seal`] made; `None` if the tag does not verify.
fn open(key: &KeyMaterial, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buffer = Zeroizing::new(body.to_vec());
    let plain_len = aead_key(key).open_in_place(nonce, Aad::from(aad), &mut buffer).ok()?.len();
    buffer.truncate(plain_len);
    Some(buffer)
}

fn aead_key(key: &KeyMaterial) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key.as_bytes()).expect("32 bytes is an AES-256 key"))
}

fn copy_key(plain: &[u8], out: &mut [u8; 32]) -> std::result::Result<(), ()> {
    if plain.len() != out.len() {
        return Err(());
    }
    out.copy_from_slice(plain);
    Ok(())
}

fn version_aad(key_id: &str, version: u32) -> Vec<u8> {
    bound_prefix(VERSION_DOMAIN, key_id, version)
}

fn data_key_aad(key_id: &str, version: u32, context: &EncryptionContext) -> Vec<u8> {
    let mut aad = bound_prefix(DATA_KEY_DOMAIN, key_id, version);
    aad.extend_from_slice(&context.canonical_bytes());
    aad
}

/// `domain | key id length (u16 BE) | key id | version (u32 BE)`: lengths fixed or prefixed, so no two different
/// inputs give the same bytes.
fn bound_prefix(domain: &[u8], key_id: &str, version: u32) -> Vec<u8> {
    let id_len = u16::try_from(key_id.len()).expect("key ids are at most 128 bytes");
    let mut aad = Vec::with_capacity(domain.len() + 2 + key_id.len() + 4 + 64);
    aad.extend_from_slice(domain);
    aad.extend_from_slice(&id_len.to_be_bytes());
    aad.extend_from_slice(key_id.as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

fn is_first_version(version: &u32) -> bool {
    *version == first_version()
}

/// Where and how the JSON broke, without quoting the file.
fn describe_json_error(err: &serde_json::Error) -> String {
    let what = match err.classify() {
        serde_json::error::Category::Eof => "it is truncated",
        serde_json::error::Category::Syntax => "it is not valid JSON",
        serde_json::error::Category::Data => "it has unexpected content",
        serde_json::error::Category::Io => "it could not be read",
    };
    format!("{what} (line {}, column {})", err.line(), err.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master(text: &str) -> MasterSecret {
        MasterSecret::from_text(text).unwrap()
    }

    #[test]
    fn a_key_round_trips_through_its_file_and_the_file_holds_no_plaintext_material() {
        let master = master(&"m".repeat(32));
        let mut key = StoredKey::new("orders".into(), Some("for orders".into()), OffsetDateTime::now_utc());
        key.rotate(OffsetDateTime::now_utc()).unwrap();
        let bytes = key.encode(&master);
        let text = String::from_utf8(bytes.clone()).unwrap();
        for version in &key.versions {
            assert!(!text.contains(&STANDARD.encode_to_string(version.material.as_bytes())));
            assert!(!text.contains(&hex::encode(version.material.as_bytes())));
        }
        let back = StoredKey::decode(&bytes, "orders", &master).unwrap();
        assert_eq!(back.metadata(), key.metadata());
        assert_eq!(back.versions[1].material.as_bytes(), key.versions[1].material.as_bytes());
    }

    #[test]
    fn the_minimum_decryption_version_is_written_only_above_1_and_checked_on_load() {
        let master = master(&"m".repeat(32));
        let mut key = StoredKey::new("k".into(), None, OffsetDateTime::now_utc());
        key.rotate(OffsetDateTime::now_utc()).unwrap();
        // A file written before versions could be retired has no such field, and loads with every version open.
        let old_file = key.encode(&master);
        assert!(!String::from_utf8_lossy(&old_file).contains("min_decryption_version"));
        assert_eq!(StoredKey::decode(&old_file, "k", &master).unwrap().min_decryption_version, 1);

        key.set_min_decryption_version(2).unwrap();
        let back = StoredKey::decode(&key.encode(&master), "k", &master).unwrap();
        assert_eq!(back.min_decryption_version, 2);
        assert!(matches!(key.set_min_decryption_version(3), Err(KmsError::InvalidArgument { .. })));

        let mut file: serde_json::Value = serde_json::from_slice(&key.encode(&master)).unwrap();
        for outside in [0, 3] {
            file["min_decryption_version"] = outside.into();
            let err = StoredKey::decode(&serde_json::to_vec(&file).unwrap(), "k", &master).err().unwrap();
            assert!(err.contains("minimum decryption version"), "{err}");
        }
    }

    #[test]
    fn another_master_secret_or_another_file_name_does_not_open_the_file() {
        let key = StoredKey::new("orders".into(), None, OffsetDateTime::now_utc());
        let bytes = key.encode(&master(&"a".repeat(32)));
        let err = StoredKey::decode(&bytes, "orders", &master(&"b".repeat(32))).err().unwrap();
        assert!(err.contains("master key"), "{err}");
        let err = StoredKey::decode(&bytes, "billing", &master(&"a".repeat(32))).err().unwrap();
        assert!(err.contains("billing"), "{err}");
    }

    #[test]
    fn material_moved_between_versions_does_not_open() {
        let master = master(&"m".repeat(32));
        let mut key = StoredKey::new("k".into(), None, OffsetDateTime::now_utc());
        key.rotate(OffsetDateTime::now_utc()).unwrap();
        let mut file: KeyFile = serde_json::from_slice(&key.encode(&master)).unwrap();
        file.versions.swap(0, 1);
        (file.versions[0].version, file.versions[1].version) = (1, 2);
        let err = StoredKey::decode(&serde_json::to_vec(&file).unwrap(), "k", &master).err().unwrap();
        assert!(err.contains("version 1"), "{err}");
    }

    #[test]
    fn truncated_and_malformed_files_are_described_without_quoting_them() {
        let master = master(&"m".repeat(32));
        let bytes = StoredKey::new("k".into(), None, OffsetDateTime::now_utc()).encode(&master);
        let err = StoredKey::decode(&bytes[..bytes.len() / 2], "k", &master).err().unwrap();
        assert!(err.starts_with("it is truncated"), "{err}");
        let err = StoredKey::decode(b"\x00garbage", "k", &master).err().unwrap();
        assert!(err.starts_with("it is not valid JSON"), "{err}");
        let mut file: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        file["versions"] = serde_json::json!([]);
        let err = StoredKey::decode(&serde_json::to_vec(&file).unwrap(), "k", &master).err().unwrap();
        assert!(err.contains("no key versions"), "{err}");
    }

    #[test]
    fn data_keys_are_bound_to_key_version_and_context() {
        let key = StoredKey::new("k".into(), None, OffsetDateTime::now_utc());
        let context = EncryptionContext::new().with("bucket", "photos");
        let plaintext = KeyMaterial::generate();
        let wrapped = key.wrap(&plaintext, &context).unwrap();
        let header = wrapped.header().unwrap();
        assert_eq!((header.backend, header.key_id, header.key_version), (BackendKind::Local, "k", 1));
        let opened = key.unwrap(1, header.payload, &context).unwrap();
        assert_eq!(opened.as_bytes(), plaintext.as_bytes());

        let other_context = EncryptionContext::new().with("bucket", "videos");
        assert!(matches!(key.unwrap(1, header.payload, &other_context), Err(KmsError::InvalidCiphertext)));
        assert!(matches!(key.unwrap(2, header.payload, &context), Err(KmsError::InvalidCiphertext)));
        let mut tampered = header.payload.to_vec();
        tampered[20] ^= 1;
        assert!(matches!(key.unwrap(1, &tampered, &context), Err(KmsError::InvalidCiphertext)));
        assert!(matches!(key.unwrap(1, &tampered[..10], &context), Err(KmsError::InvalidCiphertext)));
    }
}
