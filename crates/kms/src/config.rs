//! The KMS configuration: its named stores (which backend each is, how to reach and authenticate to it), the default
//! store and key, per-bucket keys, and how the data-key cache behaves.
//!
//! The same type is persisted (0600, by the manager) and accepted from the server's flags and the admin API. Secrets
//! are [`Secret`]s: they serialize for the persisted file only, print as `***`, and [`KmsConfig::redacted`] is the
//! only view ever shown to a person.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::backend::BackendKind;
use crate::error::{KmsError, Result};

/// A credential or key in text form: zeroized on drop, `***` when printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    fn redacted() -> Self {
        Self::new("***")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

/// Everything the manager needs to run the KMS: its named stores (one of them the default), the default key, the
/// per-bucket keys, time-outs and the data-key cache.
///
/// A *store* is one backend instance — a local key directory, or one Vault/OpenBao transit mount — under a name that
/// wrapped keys carry, so a wrapped key is always opened by the store that made it. The configuration of earlier
/// versions, one `backend` and no names, still reads: its backend becomes the one store, named after its kind.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "ConfigDocument")]
pub struct KmsConfig {
    /// The store that serves requests naming no store.
    pub default_store: String,
    pub stores: BTreeMap<String, BackendConfig>,
    /// The key of the default store that SSE-S3, and SSE-KMS naming no key, use.
    pub default_key_id: String,
    /// Keys (`store/key` or `key`) that SSE-S3 and SSE-KMS naming no key use in particular buckets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bucket_keys: BTreeMap<String, String>,
    /// The store that reads wrapped keys of a backend kind made before stores had names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub legacy_stores: BTreeMap<BackendKind, String>,
    pub timeout_seconds: u64,
    pub retry_attempts: u32,
    pub cache: CacheConfig,
}

/// The configuration as written: with named stores, or with the single `backend` of earlier versions.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigDocument {
    #[serde(default)]
    backend: Option<BackendConfig>,
    #[serde(default)]
    default_store: Option<String>,
    #[serde(default)]
    stores: Option<BTreeMap<String, BackendConfig>>,
    #[serde(default = "default_key_id")]
    default_key_id: String,
    #[serde(default)]
    bucket_keys: BTreeMap<String, String>,
    #[serde(default)]
    legacy_stores: BTreeMap<BackendKind, String>,
    #[serde(default = "default_timeout_seconds")]
    timeout_seconds: u64,
    #[serde(default = "default_retry_attempts")]
    retry_attempts: u32,
    #[serde(default)]
    cache: CacheConfig,
}

impl TryFrom<ConfigDocument> for KmsConfig {
    type Error = String;

    fn try_from(document: ConfigDocument) -> std::result::Result<Self, String> {
        let (default_store, stores, mut legacy_stores) = match (document.backend, document.stores) {
            (Some(backend), None) => {
                let name = store_name_for(&backend).to_owned();
                let legacy = BTreeMap::from([(backend.kind(), name.clone())]);
                (document.default_store.unwrap_or_else(|| name.clone()), BTreeMap::from([(name, backend)]), legacy)
            }
            (None, Some(stores)) => {
                let default_store = document.default_store.ok_or("missing field `default_store`")?;
                (default_store, stores, BTreeMap::new())
            }
            (Some(_), Some(_)) => return Err("give either `backend` or `stores`, not both".into()),
            (None, None) => return Err("missing field `stores`".into()),
        };
        legacy_stores.extend(document.legacy_stores);
        Ok(Self {
            default_store,
            stores,
            default_key_id: document.default_key_id,
            bucket_keys: document.bucket_keys,
            legacy_stores,
            timeout_seconds: document.timeout_seconds,
            retry_attempts: document.retry_attempts,
            cache: document.cache,
        })
    }
}

/// The name a store gets when nobody names it: `local` or `vault`.
pub fn store_name_for(backend: &BackendConfig) -> &'static str {
    match backend {
        BackendConfig::Local(_) => "local",
        BackendConfig::VaultTransit(_) => "vault",
    }
}

/// Checks a store name: 1–64 lowercase letters, digits, `-` or `_`, starting with a letter or digit. No `/`: key
/// references are `store/key`. `alias` is reserved: `alias/NAME` is how AWS names key aliases, which Coffer does not
/// have, and must not be read as a store.
pub fn validate_store_name(name: &str) -> Result<()> {
    let valid = name != "alias"
        && (1..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(KmsError::InvalidConfig {
            field: "store".into(),
            message: "a store name is 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit \
                      (not `alias`)"
                .into(),
        })
    }
}

/// The backend and its own settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BackendConfig {
    Local(LocalConfig),
    VaultTransit(VaultConfig),
}

/// A directory of key files encrypted at rest under a key-encryption key derived from a master secret.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    pub key_dir: Option<PathBuf>,
    /// The master secret itself (from `COFFER_KMS_LOCAL_MASTER_KEY` or the admin API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_key: Option<Secret>,
    /// A file holding the master secret (`--kms-master-key-file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_key_file: Option<PathBuf>,
}

/// A Vault or OpenBao server with the transit engine.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    pub address: String,
    #[serde(default = "default_mount_path")]
    pub mount_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub auth: VaultAuth,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_path: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_path: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_path: Option<PathBuf>,
    #[serde(default)]
    pub skip_tls_verify: bool,
}

/// How Coffer logs in to Vault.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case", deny_unknown_fields)]
pub enum VaultAuth {
    Token {
        token: Secret,
    },
    TokenFile {
        path: PathBuf,
    },
    AppRole {
        role_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret_id: Option<Secret>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret_id_file: Option<PathBuf>,
        #[serde(default = "default_approle_mount")]
        mount: String,
    },
}

/// The data-key cache: on/off, capacity, lifetime and how many objects one cached bucket key may serve.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_max_cached_keys")]
    pub max_cached_keys: u64,
    #[serde(default = "default_ttl_seconds")]
    pub ttl_seconds: u64,
    #[serde(default = "default_max_uses")]
    pub max_uses: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_cached_keys: default_max_cached_keys(),
            ttl_seconds: default_ttl_seconds(),
            max_uses: default_max_uses(),
        }
    }
}

impl BackendConfig {
    pub fn kind(&self) -> BackendKind {
        match self {
            Self::Local(_) => BackendKind::Local,
            Self::VaultTransit(_) => BackendKind::VaultTransit,
        }
    }

    /// Checks what can be checked without touching the backend.
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::Local(local) => {
                if local.key_dir.as_ref().is_none_or(|dir| dir.as_os_str().is_empty()) {
                    return invalid("key_dir", "KMS key directory is required for local backend");
                }
                if local.master_key.is_some() && local.master_key_file.is_some() {
                    return invalid("master_key", "master_key and master_key_file are mutually exclusive");
                }
            }
            Self::VaultTransit(vault) => {
                if !(vault.address.starts_with("http://") || vault.address.starts_with("https://")) {
                    return invalid("address", "Vault address must be an http:// or https:// URL");
                }
                if vault.mount_path.trim_matches('/').is_empty() {
                    return invalid("mount_path", "Vault transit mount path must not be empty");
                }
                if let VaultAuth::AppRole { role_id, secret_id, secret_id_file, .. } = &vault.auth {
                    if role_id.is_empty() {
                        return invalid("role_id", "AppRole role_id must not be empty");
                    }
                    if secret_id.is_some() == secret_id_file.is_some() {
                        return invalid("secret_id", "AppRole needs exactly one of secret_id or secret_id_file");
                    }
                }
            }
        }
        Ok(())
    }

    /// Puts `current`'s secrets back where this one shows them redacted (`***`); see
    /// [`KmsConfig::restore_redacted`].
    pub fn restore_redacted(&mut self, current: Option<&BackendConfig>) -> Result<()> {
        let redacted = |secret: &Secret| secret.expose() == "***";
        let missing = |field: &str| {
            Err(KmsError::InvalidConfig {
                field: field.to_owned(),
                message: format!(
                    "field `{field}` is redacted (***) and the current configuration has no such secret to keep; \
                     give the value, or a file holding it"
                ),
            })
        };
        match self {
            Self::Local(local) => {
                if let Some(secret) = local.master_key.as_mut().filter(|secret| redacted(secret)) {
                    match current {
                        Some(Self::Local(LocalConfig { master_key: Some(kept), .. })) => *secret = kept.clone(),
                        _ => return missing("master_key"),
                    }
                }
            }
            Self::VaultTransit(vault) => match &mut vault.auth {
                VaultAuth::Token { token } if redacted(token) => match current {
                    Some(Self::VaultTransit(VaultConfig { auth: VaultAuth::Token { token: kept }, .. })) => {
                        *token = kept.clone();
                    }
                    _ => return missing("token"),
                },
                VaultAuth::AppRole { secret_id: Some(secret_id), .. } if redacted(secret_id) => match current {
                    Some(Self::VaultTransit(VaultConfig {
                        auth: VaultAuth::AppRole { secret_id: Some(kept), .. },
                        ..
                    })) => *secret_id = kept.clone(),
                    _ => return missing("secret_id"),
                },
                VaultAuth::Token { .. } | VaultAuth::TokenFile { .. } | VaultAuth::AppRole { .. } => {}
            },
        }
        Ok(())
    }

    /// Calls `visit` on every file or directory path.
    pub fn for_each_path(&mut self, mut visit: impl FnMut(&mut PathBuf)) {
        let paths: Vec<&mut PathBuf> = match self {
            Self::Local(local) => local.key_dir.iter_mut().chain(local.master_key_file.iter_mut()).collect(),
            Self::VaultTransit(vault) => {
                let auth_files: Vec<&mut PathBuf> = match &mut vault.auth {
                    VaultAuth::TokenFile { path } => vec![path],
                    VaultAuth::AppRole { secret_id_file, .. } => secret_id_file.iter_mut().collect(),
                    VaultAuth::Token { .. } => Vec::new(),
                };
                vault
                    .ca_cert_path
                    .iter_mut()
                    .chain(vault.client_cert_path.iter_mut())
                    .chain(vault.client_key_path.iter_mut())
                    .chain(auth_files)
                    .collect()
            }
        };
        paths.into_iter().for_each(&mut visit);
    }

    /// Resolves relative paths against the working directory, so the configuration means the same files whatever
    /// directory the server is started from next time.
    pub fn make_paths_absolute(&mut self) -> Result<()> {
        let mut failure = None;
        self.for_each_path(|path| match std::path::absolute(&*path) {
            Ok(absolute) => *path = absolute,
            Err(err) => failure = Some(KmsError::io(format!("resolving {}", path.display()), err)),
        });
        failure.map_or(Ok(()), Err)
    }

    /// Every secret replaced by `***`.
    pub fn redact(&mut self) {
        match self {
            Self::Local(local) => {
                if local.master_key.is_some() {
                    local.master_key = Some(Secret::redacted());
                }
            }
            Self::VaultTransit(vault) => match &mut vault.auth {
                VaultAuth::Token { token } => *token = Secret::redacted(),
                VaultAuth::AppRole { secret_id: Some(secret_id), .. } => *secret_id = Secret::redacted(),
                VaultAuth::AppRole { secret_id: None, .. } | VaultAuth::TokenFile { .. } => {}
            },
        }
    }

    /// The backend as shown to operators: every secret replaced by `***`.
    pub fn redacted(&self) -> serde_json::Value {
        let mut shown = self.clone();
        shown.redact();
        serde_json::to_value(&shown).expect("a backend configuration always serializes")
    }
}

fn invalid(field: &str, message: &str) -> Result<()> {
    Err(KmsError::InvalidConfig { field: field.to_owned(), message: message.to_owned() })
}

impl KmsConfig {
    /// A configuration of one store, named after its kind ([`store_name_for`]), with defaults for everything else.
    pub fn new(backend: BackendConfig) -> Self {
        let name = store_name_for(&backend).to_owned();
        Self {
            default_store: name.clone(),
            stores: BTreeMap::from([(name, backend)]),
            default_key_id: default_key_id(),
            bucket_keys: BTreeMap::new(),
            legacy_stores: BTreeMap::new(),
            timeout_seconds: default_timeout_seconds(),
            retry_attempts: default_retry_attempts(),
            cache: CacheConfig::default(),
        }
    }

    /// The default store's backend.
    pub fn default_backend(&self) -> &BackendConfig {
        self.stores.get(&self.default_store).expect("a validated configuration has its default store")
    }

    pub fn default_backend_mut(&mut self) -> &mut BackendConfig {
        self.stores.get_mut(&self.default_store).expect("a validated configuration has its default store")
    }

    /// Replaces the default store's backend, keeping its name when it is of the same kind; otherwise the store
    /// takes the new kind's name ([`store_name_for`]) unless another store has it (the RustFS-style single-KMS
    /// configure, which knows nothing of stores, acts on the default store this way).
    pub fn set_default_backend(&mut self, backend: BackendConfig) {
        if self.default_backend().kind() != backend.kind() {
            let name = store_name_for(&backend);
            if !self.stores.contains_key(name) {
                self.stores.remove(&self.default_store);
                self.default_store = name.to_owned();
            }
        }
        self.stores.insert(self.default_store.clone(), backend);
    }

    /// Checks what can be checked without touching the backends.
    pub fn validate(&self) -> Result<()> {
        for (name, backend) in &self.stores {
            validate_store_name(name)?;
            backend.validate()?;
        }
        if !self.stores.contains_key(&self.default_store) {
            return invalid("default_store", "the default store must be one of the configured stores");
        }
        for (bucket, key) in &self.bucket_keys {
            if let Some((store, _)) = key.split_once('/') {
                if !self.stores.contains_key(store) {
                    return Err(KmsError::InvalidConfig {
                        field: "bucket_keys".into(),
                        message: format!("bucket {bucket} names key {key} of a store that is not configured"),
                    });
                }
            }
        }
        if self.default_key_id.is_empty() {
            return invalid("default_key_id", "default_key_id must not be empty");
        }
        if self.timeout_seconds == 0 {
            return invalid("timeout_seconds", "timeout_seconds must be at least 1");
        }
        if self.cache.enabled
            && (self.cache.max_cached_keys == 0 || self.cache.ttl_seconds == 0 || self.cache.max_uses == 0)
        {
            return invalid("cache", "cache capacity, TTL and max uses must be at least 1 when the cache is enabled");
        }
        Ok(())
    }

    /// Puts the current secrets back where this configuration shows them redacted (`***`, as
    /// [`KmsConfig::redacted`] prints them), store by store, so the configuration an operator was shown can be
    /// submitted again. A redacted secret with no counterpart in the current store of the same name (another
    /// backend or authentication method) is an error naming the field.
    pub fn restore_redacted(&mut self, current: Option<&KmsConfig>) -> Result<()> {
        for (name, backend) in &mut self.stores {
            backend.restore_redacted(current.and_then(|current| current.stores.get(name)))?;
        }
        Ok(())
    }

    /// Calls `visit` on every file or directory path in the configuration.
    pub fn for_each_path(&mut self, mut visit: impl FnMut(&mut PathBuf)) {
        for backend in self.stores.values_mut() {
            backend.for_each_path(&mut visit);
        }
    }

    /// Resolves relative paths against the working directory (see [`BackendConfig::make_paths_absolute`]).
    pub fn make_paths_absolute(&mut self) -> Result<()> {
        self.stores.values_mut().try_for_each(BackendConfig::make_paths_absolute)
    }

    /// The configuration as shown to operators: every secret replaced by `***`.
    pub fn redacted(&self) -> serde_json::Value {
        let mut shown = self.clone();
        shown.stores.values_mut().for_each(BackendConfig::redact);
        serde_json::to_value(&shown).expect("the configuration always serializes")
    }
}

fn default_key_id() -> String {
    "coffer-default".to_owned()
}
fn default_timeout_seconds() -> u64 {
    10
}
fn default_retry_attempts() -> u32 {
    3
}
fn default_mount_path() -> String {
    "transit".to_owned()
}
fn default_approle_mount() -> String {
    "approle".to_owned()
}
fn default_true() -> bool {
    true
}
fn default_max_cached_keys() -> u64 {
    1000
}
fn default_ttl_seconds() -> u64 {
    300
}
fn default_max_uses() -> u64 {
    100_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_backend_requires_a_key_dir() {
        let config = KmsConfig::new(BackendConfig::Local(LocalConfig::default()));
        let err = config.validate().unwrap_err();
        assert_eq!(err.to_string(), "KMS key directory is required for local backend");
    }

    #[test]
    fn redacted_hides_every_secret() {
        let config = KmsConfig::new(BackendConfig::VaultTransit(VaultConfig {
            address: "http://127.0.0.1:8200".into(),
            mount_path: "transit".into(),
            namespace: None,
            auth: VaultAuth::AppRole {
                role_id: "role".into(),
                secret_id: Some(Secret::new("s3cr3t-id")),
                secret_id_file: None,
                mount: "approle".into(),
            },
            ca_cert_path: None,
            client_cert_path: None,
            client_key_path: None,
            skip_tls_verify: false,
        }));
        let shown = config.redacted().to_string();
        assert!(!shown.contains("s3cr3t-id"), "{shown}");
        assert!(shown.contains("***"));
        assert!(!format!("{config:?}").contains("s3cr3t-id"));
    }

    #[test]
    fn persisted_form_round_trips_secrets() {
        let mut config = KmsConfig::new(BackendConfig::Local(LocalConfig {
            key_dir: Some("/keys".into()),
            master_key: Some(Secret::new("master")),
            master_key_file: None,
        }));
        config.cache.ttl_seconds = 7;
        let text = serde_json::to_string(&config).unwrap();
        let back: KmsConfig = serde_json::from_str(&text).unwrap();
        let BackendConfig::Local(local) = back.default_backend() else { panic!("backend changed") };
        assert_eq!(local.master_key.as_ref().unwrap().expose(), "master");
        assert_eq!(back.cache.ttl_seconds, 7);
    }

    #[test]
    fn a_redacted_configuration_submitted_again_keeps_the_current_secrets() {
        let current = KmsConfig::new(BackendConfig::VaultTransit(VaultConfig {
            address: "http://127.0.0.1:8200".into(),
            mount_path: "transit".into(),
            namespace: None,
            auth: VaultAuth::Token { token: Secret::new("s.current") },
            ca_cert_path: None,
            client_cert_path: None,
            client_key_path: None,
            skip_tls_verify: false,
        }));
        let mut shown: KmsConfig = serde_json::from_value(current.redacted()).unwrap();
        shown.restore_redacted(Some(&current)).unwrap();
        let BackendConfig::VaultTransit(vault) = shown.default_backend() else { panic!("not vault") };
        assert!(matches!(&vault.auth, VaultAuth::Token { token } if token.expose() == "s.current"));

        let mut shown: KmsConfig = serde_json::from_value(current.redacted()).unwrap();
        let err = shown.restore_redacted(None).unwrap_err();
        assert!(matches!(&err, KmsError::InvalidConfig { field, .. } if field == "token"), "{err}");
        let local = KmsConfig::new(BackendConfig::Local(LocalConfig {
            key_dir: Some("/keys".into()),
            master_key: Some(Secret::new("***")),
            master_key_file: None,
        }));
        let mut submitted = local.clone();
        assert!(submitted.restore_redacted(Some(&current)).is_err(), "a Vault token is no master key");
    }

    #[test]
    fn the_single_backend_of_earlier_versions_becomes_a_named_store_that_reads_their_blobs() {
        let old = r#"{"backend":{"type":"vault-transit","address":"http://v:8200","auth":{"method":"token","token":"t"}},
                     "default_key_id":"k","cache":{"enabled":false}}"#;
        let config: KmsConfig = serde_json::from_str(old).unwrap();
        assert_eq!(config.default_store, "vault");
        assert_eq!(config.stores.keys().collect::<Vec<_>>(), ["vault"]);
        assert_eq!(config.legacy_stores[&BackendKind::VaultTransit], "vault");
        assert_eq!((config.default_key_id.as_str(), config.cache.enabled), ("k", false));
        config.validate().unwrap();

        let again: KmsConfig = serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
        assert_eq!((again.default_store, again.legacy_stores), (config.default_store, config.legacy_stores));
        assert!(serde_json::from_str::<KmsConfig>(r#"{"default_key_id":"k"}"#).is_err());
    }

    #[test]
    fn stores_are_checked() {
        let mut config = KmsConfig::new(BackendConfig::Local(LocalConfig {
            key_dir: Some("/keys".into()),
            ..LocalConfig::default()
        }));
        config.validate().unwrap();
        config.default_store = "elsewhere".into();
        assert!(config.validate().is_err());
        config.default_store = "local".into();
        config.bucket_keys.insert("photos".into(), "prod/key".into());
        assert!(config.validate().unwrap_err().to_string().contains("photos"));
        for bad in ["", "Prod", "a/b", "-x", "alias", &"x".repeat(65)] {
            assert!(validate_store_name(bad).is_err(), "{bad}");
        }
        validate_store_name("eu-vault_2").unwrap();
    }
}
