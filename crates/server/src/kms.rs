//! Bringing the KMS up with the server: the `--kms-*` settings become a [`KmsConfig`], and [`start_kms`] opens the
//! manager under `DATA/.coffer/kms`, applies that configuration (or restores the persisted one, or sets up the
//! embedded default) and starts it.
//!
//! A configuration that cannot be valid (e.g. `--kms-backend local` without `--kms-key-dir`) stops the server from
//! starting. A KMS that fails to start (an unreachable Vault, a wrong master key) is logged and left in its error
//! state: the server still serves plaintext, SSE requests answer 503 until an operator fixes the KMS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use coffer_kms::{
    BackendConfig, KmsConfig, KmsError, KmsManager, LocalConfig, Secret, SharedKms, VaultAuth, VaultConfig,
};
use tracing::{error, info};

use crate::config::{KmsArgs, KmsBackendKind};

/// Where the KMS manager keeps its state, under the data directory.
pub fn kms_state_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(".coffer").join("kms")
}

/// The KMS secrets, which come only from the environment.
#[derive(Default)]
pub struct KmsSecrets {
    /// `COFFER_KMS_LOCAL_MASTER_KEY`
    pub local_master_key: Option<Secret>,
    /// `COFFER_KMS_VAULT_TOKEN`
    pub vault_token: Option<Secret>,
    /// `COFFER_KMS_VAULT_SECRET_ID`
    pub vault_secret_id: Option<Secret>,
}

impl KmsSecrets {
    pub fn from_env() -> Self {
        let read = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty()).map(Secret::new);
        KmsSecrets {
            local_master_key: read("COFFER_KMS_LOCAL_MASTER_KEY"),
            vault_token: read("COFFER_KMS_VAULT_TOKEN"),
            vault_secret_id: read("COFFER_KMS_VAULT_SECRET_ID"),
        }
    }
}

/// What the `--kms-*` settings make of the KMS at start, given what its state directory has saved (`saved`: the
/// configuration in force, or an error when a saved one could not be read). The rule (docs/kms.md, "Which
/// configuration wins"):
///
/// - no settings: the saved configuration, or the embedded default when nothing is saved (`None`);
/// - nothing saved: the configuration the settings describe;
/// - a saved configuration: the settings complete it — credentials, TLS files, the default key, time-outs and the
///   cache apply to the saved store — but they never replace its store. Settings that name another store (another
///   backend, key directory, Vault address, mount or namespace, or settings of the other backend) stop the server
///   with a message saying so, unless `--kms-replace-saved-config` is given.
pub fn kms_config(
    args: &KmsArgs,
    secrets: KmsSecrets,
    state_dir: &Path,
    saved: Result<Option<KmsConfig>, KmsError>,
) -> Result<Option<KmsConfig>, KmsError> {
    if !args.any_given() {
        return Ok(None);
    }
    let replace = args.kms_replace_saved_config.unwrap_or(false);
    let config = match saved {
        Ok(Some(saved)) if !replace => complete_saved(saved, args, secrets)?,
        Ok(_) => from_settings(args, secrets, state_dir)?,
        Err(_) if replace => from_settings(args, secrets, state_dir)?,
        Err(err) => {
            return Err(KmsError::InvalidConfig {
                field: "kms".into(),
                message: format!(
                    "{err}; the --kms-* settings would replace it, so the server does not start: restore the file, \
                     or start once with --kms-replace-saved-config to replace it"
                ),
            })
        }
    };
    config.validate()?;
    Ok(Some(config))
}

/// The configuration the settings describe on their own. Without `--kms-backend`, a Vault address selects Vault and
/// anything else the local backend, by default in the embedded default's key directory.
fn from_settings(args: &KmsArgs, secrets: KmsSecrets, state_dir: &Path) -> Result<KmsConfig, KmsError> {
    let kind = args.kms_backend.unwrap_or(if args.kms_vault_address.is_some() {
        KmsBackendKind::Vault
    } else {
        KmsBackendKind::Local
    });
    let backend = match kind {
        KmsBackendKind::Local => {
            let key_dir = match (&args.kms_key_dir, args.kms_backend) {
                (Some(dir), _) => Some(dir.clone()),
                // Named explicitly, the local backend needs its directory named too.
                (None, Some(_)) => None,
                (None, None) => Some(state_dir.join(embedded_key_dir())),
            };
            let mut local = LocalConfig { key_dir, master_key: None, master_key_file: None };
            apply_master_key(&mut local, args, secrets);
            BackendConfig::Local(local)
        }
        KmsBackendKind::Vault => BackendConfig::VaultTransit(vault_config(args, secrets)?),
    };
    let mut config = KmsConfig::new(backend);
    apply_tuning(&mut config, args);
    Ok(config)
}

/// The saved configuration with the settings applied to its store, or a conflict if they name another store.
fn complete_saved(mut config: KmsConfig, args: &KmsArgs, secrets: KmsSecrets) -> Result<KmsConfig, KmsError> {
    let saved_store = describe_store(config.default_backend());
    let conflict = |asked: String| KmsError::InvalidConfig {
        field: "kms".into(),
        message: format!(
            "the KMS settings ask for {asked}, but this data directory's saved KMS configuration is {saved_store}; \
             objects encrypted under it need it, so the server does not replace it. Start without the settings \
             that choose the backend (--kms-backend, --kms-key-dir, --kms-vault-address, --kms-vault-mount, \
             --kms-vault-namespace) to use the saved store, change it with `coffer admin kms reconfigure`, or \
             start once with --kms-replace-saved-config to replace it"
        ),
    };
    match config.default_backend_mut() {
        BackendConfig::Local(local) => {
            if args.kms_backend == Some(KmsBackendKind::Vault) || args.any_vault_setting() {
                return Err(conflict("Vault transit".into()));
            }
            if let Some(dir) = &args.kms_key_dir {
                let dir = std::path::absolute(dir).map_err(|err| KmsError::io("resolving --kms-key-dir", err))?;
                if local.key_dir.as_deref() != Some(dir.as_path()) {
                    return Err(conflict(format!("the local key store at {}", dir.display())));
                }
            }
            apply_master_key(local, args, secrets);
        }
        BackendConfig::VaultTransit(vault) => {
            if args.kms_backend == Some(KmsBackendKind::Local)
                || args.kms_key_dir.is_some()
                || args.kms_master_key_file.is_some()
            {
                return Err(conflict("the local key store".into()));
            }
            let differs = |given: &Option<String>, saved: &str, normalize: fn(&str) -> &str| {
                given.as_deref().is_some_and(|given| normalize(given) != normalize(saved))
            };
            let namespace_differs = args.kms_vault_namespace.is_some() && args.kms_vault_namespace != vault.namespace;
            if differs(&args.kms_vault_address, &vault.address, |a| a.trim_end_matches('/'))
                || differs(&args.kms_vault_mount, &vault.mount_path, |m| m.trim_matches('/'))
                || namespace_differs
            {
                let asked = VaultConfig {
                    address: args.kms_vault_address.clone().unwrap_or_else(|| vault.address.clone()),
                    mount_path: args.kms_vault_mount.clone().unwrap_or_else(|| vault.mount_path.clone()),
                    namespace: args.kms_vault_namespace.clone().or_else(|| vault.namespace.clone()),
                    ..vault.clone()
                };
                return Err(conflict(describe_store(&BackendConfig::VaultTransit(asked))));
            }
            if let Some(auth) = vault_auth(args, secrets)? {
                vault.auth = auth;
            }
            apply_vault_options(vault, args);
        }
    }
    apply_tuning(&mut config, args);
    Ok(config)
}

/// A store as an operator recognizes it, for messages (no secrets).
fn describe_store(backend: &BackendConfig) -> String {
    match backend {
        BackendConfig::Local(local) => match &local.key_dir {
            Some(dir) => format!("the local key store at {}", dir.display()),
            None => "the local key store".to_owned(),
        },
        BackendConfig::VaultTransit(vault) => {
            let namespace = vault.namespace.as_deref().map(|ns| format!(", namespace {ns}")).unwrap_or_default();
            format!("Vault transit at {} (mount {}{namespace})", vault.address, vault.mount_path)
        }
    }
}

/// The master secret, when the settings give one (they replace each other).
fn apply_master_key(local: &mut LocalConfig, args: &KmsArgs, secrets: KmsSecrets) {
    if secrets.local_master_key.is_some() || args.kms_master_key_file.is_some() {
        local.master_key = secrets.local_master_key;
        local.master_key_file = args.kms_master_key_file.clone();
    }
}

/// The settings every store has: default key, time-outs, retries and the cache.
fn apply_tuning(config: &mut KmsConfig, args: &KmsArgs) {
    if let Some(default_key_id) = &args.kms_default_key_id {
        config.default_key_id = default_key_id.clone();
    }
    if let Some(timeout_seconds) = args.kms_timeout_seconds {
        config.timeout_seconds = timeout_seconds;
    }
    if let Some(retry_attempts) = args.kms_retry_attempts {
        config.retry_attempts = retry_attempts;
    }
    if let Some(enabled) = args.kms_cache {
        config.cache.enabled = enabled;
    }
    if let Some(max_cached_keys) = args.kms_cache_capacity {
        config.cache.max_cached_keys = max_cached_keys;
    }
    if let Some(ttl_seconds) = args.kms_cache_ttl_seconds {
        config.cache.ttl_seconds = ttl_seconds;
    }
}

/// The embedded default's key directory, relative to the KMS state directory (where the manager puts it).
fn embedded_key_dir() -> PathBuf {
    Path::new("local").join("keys")
}

fn invalid(field: &str, message: &str) -> KmsError {
    KmsError::InvalidConfig { field: field.into(), message: message.into() }
}

fn vault_config(args: &KmsArgs, secrets: KmsSecrets) -> Result<VaultConfig, KmsError> {
    let address = args
        .kms_vault_address
        .clone()
        .ok_or_else(|| invalid("address", "KMS Vault address is required for vault backend (--kms-vault-address)"))?;
    let auth = vault_auth(args, secrets)?.ok_or_else(|| {
        invalid(
            "auth",
            "Vault authentication is required: set COFFER_KMS_VAULT_TOKEN, --kms-vault-token-file or \
             --kms-vault-role-id",
        )
    })?;
    let mut vault = VaultConfig {
        address,
        mount_path: "transit".to_owned(),
        namespace: None,
        auth,
        ca_cert_path: None,
        client_cert_path: None,
        client_key_path: None,
        skip_tls_verify: false,
    };
    apply_vault_options(&mut vault, args);
    Ok(vault)
}

/// The Vault authentication the settings give, if any; more than one is an error.
fn vault_auth(args: &KmsArgs, secrets: KmsSecrets) -> Result<Option<VaultAuth>, KmsError> {
    match (&args.kms_vault_role_id, &args.kms_vault_token_file, secrets.vault_token) {
        (Some(role_id), None, None) => Ok(Some(VaultAuth::AppRole {
            role_id: role_id.clone(),
            secret_id: secrets.vault_secret_id,
            secret_id_file: args.kms_vault_secret_id_file.clone(),
            mount: "approle".to_owned(),
        })),
        (None, Some(path), None) => Ok(Some(VaultAuth::TokenFile { path: path.clone() })),
        (None, None, Some(token)) => Ok(Some(VaultAuth::Token { token })),
        (None, None, None) => Ok(None),
        _ => Err(invalid(
            "auth",
            "give exactly one Vault authentication: COFFER_KMS_VAULT_TOKEN, --kms-vault-token-file or \
             --kms-vault-role-id",
        )),
    }
}

/// Mount, namespace and TLS settings, where given.
fn apply_vault_options(vault: &mut VaultConfig, args: &KmsArgs) {
    if let Some(mount) = &args.kms_vault_mount {
        vault.mount_path = mount.clone();
    }
    if let Some(namespace) = &args.kms_vault_namespace {
        vault.namespace = Some(namespace.clone());
    }
    if let Some(ca_cert) = &args.kms_vault_ca_cert {
        vault.ca_cert_path = Some(ca_cert.clone());
    }
    if let Some(client_cert) = &args.kms_vault_client_cert {
        vault.client_cert_path = Some(client_cert.clone());
    }
    if let Some(client_key) = &args.kms_vault_client_key {
        vault.client_key_path = Some(client_key.clone());
    }
    if let Some(skip) = args.kms_vault_skip_tls_verify {
        vault.skip_tls_verify = skip;
    }
}

/// Opens the KMS manager under `state_dir` and brings it to the state the settings and the saved configuration
/// call for ([`kms_config`]). Settings that cannot work, or that conflict with the saved configuration, are an
/// error (the server does not start); a KMS that fails to start is logged, and the manager keeps trying to start it.
///
/// With `shared` (a cluster node) the state is the one the nodes share. Settings that describe exactly the saved
/// configuration only start the KMS (they do not save a configuration again, which every other node would apply).
pub async fn start_kms(
    state_dir: PathBuf,
    args: &KmsArgs,
    secrets: KmsSecrets,
    shared: Option<SharedKms>,
) -> Result<Arc<KmsManager>, KmsError> {
    let kms = match shared {
        Some(shared) => KmsManager::open_shared(state_dir, shared).await?,
        None => KmsManager::open(state_dir)?,
    };
    let saved = kms.saved_config();
    let unchanged = |config: &KmsConfig| {
        let bytes = |config: &KmsConfig| zeroize::Zeroizing::new(serde_json::to_vec(config).unwrap_or_default());
        matches!(&saved, Ok(Some(saved)) if bytes(saved) == bytes(config))
    };
    let config = kms_config(args, secrets, kms.state_dir(), kms.saved_config())?;
    let started = match config {
        Some(config) if unchanged(&config) => {
            kms.start().await.map(|()| info!("KMS running with its saved configuration"))
        }
        Some(config) => async {
            kms.reconfigure(config).await?;
            kms.start().await
        }
        .await
        .map(|()| info!("KMS configured from the server settings and running")),
        None => {
            async {
                kms.restore().await?;
                kms.ensure_embedded_default().await
            }
            .await
        }
    };
    if let Err(err) = started {
        error!(error = %err, "the KMS did not start: SSE requests fail with 503 until it does; plaintext works");
    }
    Ok(kms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_dir() -> PathBuf {
        PathBuf::from("/data/.coffer/kms")
    }

    /// With nothing saved.
    fn fresh(args: &KmsArgs, secrets: KmsSecrets) -> Result<Option<KmsConfig>, KmsError> {
        kms_config(args, secrets, &state_dir(), Ok(None))
    }

    #[test]
    fn no_flags_means_no_configuration() {
        assert!(fresh(&KmsArgs::default(), KmsSecrets::default()).unwrap().is_none());
    }

    #[test]
    fn local_backend_without_a_key_dir_fails_with_the_documented_message() {
        let args = KmsArgs { kms_backend: Some(KmsBackendKind::Local), ..KmsArgs::default() };
        let err = fresh(&args, KmsSecrets::default()).unwrap_err();
        assert_eq!(err.to_string(), "KMS key directory is required for local backend");
    }

    #[test]
    fn cache_flags_alone_tune_the_embedded_local_backend() {
        let args = KmsArgs { kms_cache: Some(false), kms_default_key_id: Some("k1".into()), ..KmsArgs::default() };
        let config = fresh(&args, KmsSecrets::default()).unwrap().unwrap();
        let BackendConfig::Local(local) = config.default_backend() else { panic!("not local: {config:?}") };
        assert_eq!(local.key_dir.as_deref(), Some(Path::new("/data/.coffer/kms/local/keys")));
        assert!(!config.cache.enabled);
        assert_eq!(config.default_key_id, "k1");
    }

    #[test]
    fn local_backend_takes_the_master_key_from_env_or_file() {
        let args = KmsArgs {
            kms_backend: Some(KmsBackendKind::Local),
            kms_key_dir: Some("/keys".into()),
            kms_cache_ttl_seconds: Some(9),
            kms_cache_capacity: Some(7),
            ..KmsArgs::default()
        };
        let secrets = KmsSecrets { local_master_key: Some(Secret::new("m".repeat(32))), ..KmsSecrets::default() };
        let config = fresh(&args, secrets).unwrap().unwrap();
        let BackendConfig::Local(local) = config.default_backend() else { panic!("not local") };
        assert_eq!(local.master_key.as_ref().map(Secret::expose), Some("m".repeat(32).as_str()));
        assert_eq!((config.cache.ttl_seconds, config.cache.max_cached_keys), (9, 7));

        let both = KmsArgs { kms_master_key_file: Some("/mk".into()), ..args };
        let secrets = KmsSecrets { local_master_key: Some(Secret::new("m".repeat(32))), ..KmsSecrets::default() };
        assert!(fresh(&both, secrets).is_err());
    }

    #[test]
    fn vault_needs_an_address_and_exactly_one_authentication() {
        let vault = KmsArgs { kms_backend: Some(KmsBackendKind::Vault), ..KmsArgs::default() };
        let token = || KmsSecrets { vault_token: Some(Secret::new("t")), ..KmsSecrets::default() };
        assert!(fresh(&vault, token()).unwrap_err().to_string().contains("address"));

        let addressed = KmsArgs { kms_vault_address: Some("http://127.0.0.1:8200".into()), ..vault };
        assert!(fresh(&addressed, KmsSecrets::default()).is_err());
        let config = fresh(&addressed, token()).unwrap().unwrap();
        let BackendConfig::VaultTransit(v) = config.default_backend() else { panic!("not vault") };
        assert!(matches!(v.auth, VaultAuth::Token { .. }));
        assert_eq!(v.mount_path, "transit");
        assert!(!format!("{config:?}").contains("\"t\""));

        let ambiguous = KmsArgs { kms_vault_token_file: Some("/token".into()), ..addressed.clone() };
        assert!(fresh(&ambiguous, token()).is_err());

        let approle = KmsArgs {
            kms_vault_role_id: Some("role".into()),
            kms_vault_secret_id_file: Some("/secret-id".into()),
            ..addressed
        };
        let config = fresh(&approle, KmsSecrets::default()).unwrap().unwrap();
        let BackendConfig::VaultTransit(v) = config.default_backend() else { panic!("not vault") };
        assert!(matches!(&v.auth, VaultAuth::AppRole { role_id, .. } if role_id == "role"));
    }

    #[test]
    fn vault_tls_identity_timeout_and_retries_come_from_flags() {
        let args = KmsArgs {
            kms_vault_address: Some("https://vault.example:8200".into()),
            kms_vault_client_cert: Some("/tls/client.pem".into()),
            kms_vault_client_key: Some("/tls/client-key.pem".into()),
            kms_timeout_seconds: Some(3),
            kms_retry_attempts: Some(0),
            ..KmsArgs::default()
        };
        let secrets = KmsSecrets { vault_token: Some(Secret::new("t")), ..KmsSecrets::default() };
        let config = fresh(&args, secrets).unwrap().unwrap();
        assert_eq!((config.timeout_seconds, config.retry_attempts), (3, 0));
        let BackendConfig::VaultTransit(v) = config.default_backend() else { panic!("not vault") };
        assert_eq!(v.client_cert_path.as_deref(), Some(Path::new("/tls/client.pem")));
        assert_eq!(v.client_key_path.as_deref(), Some(Path::new("/tls/client-key.pem")));

        let defaults =
            fresh(&KmsArgs { kms_cache: Some(true), ..KmsArgs::default() }, KmsSecrets::default()).unwrap().unwrap();
        assert_eq!((defaults.timeout_seconds, defaults.retry_attempts), (10, 3));
        let zero = KmsArgs { kms_timeout_seconds: Some(0), ..args };
        let secrets = KmsSecrets { vault_token: Some(Secret::new("t")), ..KmsSecrets::default() };
        assert!(fresh(&zero, secrets).unwrap_err().to_string().contains("timeout"));
    }

    #[test]
    fn a_vault_address_without_a_backend_selects_vault() {
        let args = KmsArgs { kms_vault_address: Some("http://127.0.0.1:8200".into()), ..KmsArgs::default() };
        let secrets = KmsSecrets { vault_token: Some(Secret::new("t")), ..KmsSecrets::default() };
        let config = fresh(&args, secrets).unwrap().unwrap();
        assert!(matches!(config.default_backend(), BackendConfig::VaultTransit(_)));
    }

    fn saved_vault() -> KmsConfig {
        let mut config = KmsConfig::new(BackendConfig::VaultTransit(VaultConfig {
            address: "http://127.0.0.1:8200".into(),
            mount_path: "transit".into(),
            namespace: None,
            auth: VaultAuth::Token { token: Secret::new("s.saved-token") },
            ca_cert_path: None,
            client_cert_path: None,
            client_key_path: None,
            skip_tls_verify: false,
        }));
        config.cache.ttl_seconds = 60;
        config
    }

    fn with_saved(args: &KmsArgs, secrets: KmsSecrets, saved: KmsConfig) -> Result<Option<KmsConfig>, KmsError> {
        kms_config(args, secrets, &state_dir(), Ok(Some(saved)))
    }

    #[test]
    fn tuning_settings_apply_to_a_saved_vault_store_instead_of_replacing_it() {
        let args = KmsArgs { kms_cache: Some(false), kms_default_key_id: Some("app".into()), ..KmsArgs::default() };
        let config = with_saved(&args, KmsSecrets::default(), saved_vault()).unwrap().unwrap();
        let BackendConfig::VaultTransit(vault) = config.default_backend() else {
            panic!("the saved Vault store was replaced")
        };
        assert!(matches!(&vault.auth, VaultAuth::Token { token } if token.expose() == "s.saved-token"));
        assert_eq!((config.cache.enabled, config.cache.ttl_seconds), (false, 60), "unnamed settings are kept");
        assert_eq!(config.default_key_id, "app");

        let same = KmsArgs {
            kms_vault_address: Some("http://127.0.0.1:8200/".into()),
            kms_vault_ca_cert: Some("/tls/ca.pem".into()),
            ..KmsArgs::default()
        };
        let secrets = KmsSecrets { vault_token: Some(Secret::new("s.new-token")), ..KmsSecrets::default() };
        let config = with_saved(&same, secrets, saved_vault()).unwrap().unwrap();
        let BackendConfig::VaultTransit(vault) = config.default_backend() else { panic!("not vault") };
        assert!(matches!(&vault.auth, VaultAuth::Token { token } if token.expose() == "s.new-token"));
        assert_eq!(vault.ca_cert_path.as_deref(), Some(Path::new("/tls/ca.pem")));
    }

    #[test]
    fn settings_naming_another_store_than_the_saved_one_are_refused() {
        let conflicts = [
            KmsArgs { kms_backend: Some(KmsBackendKind::Local), ..KmsArgs::default() },
            KmsArgs { kms_key_dir: Some("/keys".into()), ..KmsArgs::default() },
            KmsArgs { kms_vault_address: Some("http://10.0.0.9:8200".into()), ..KmsArgs::default() },
            KmsArgs { kms_vault_mount: Some("other-transit".into()), ..KmsArgs::default() },
            KmsArgs { kms_vault_namespace: Some("team-b".into()), ..KmsArgs::default() },
        ];
        for args in conflicts {
            let err = with_saved(&args, KmsSecrets::default(), saved_vault()).unwrap_err().to_string();
            assert!(err.contains("saved KMS configuration is Vault transit at http://127.0.0.1:8200"), "{err}");
            assert!(err.contains("--kms-replace-saved-config") && !err.contains("s.saved-token"), "{err}");
        }

        let local =
            fresh(&KmsArgs { kms_cache: Some(true), ..KmsArgs::default() }, KmsSecrets::default()).unwrap().unwrap();
        let vault = KmsArgs {
            kms_vault_address: Some("http://127.0.0.1:8200".into()),
            kms_vault_token_file: Some("/token".into()),
            ..KmsArgs::default()
        };
        let err = with_saved(&vault, KmsSecrets::default(), local.clone()).unwrap_err().to_string();
        assert!(err.contains("ask for Vault transit") && err.contains("/data/.coffer/kms/local/keys"), "{err}");

        let replace = KmsArgs { kms_replace_saved_config: Some(true), ..vault };
        let config = with_saved(&replace, KmsSecrets::default(), local).unwrap().unwrap();
        assert!(matches!(config.default_backend(), BackendConfig::VaultTransit(_)));
    }

    #[test]
    fn an_unreadable_saved_configuration_is_not_replaced_unless_asked() {
        let unreadable = || Err(KmsError::InvalidConfig { field: "config".into(), message: "unreadable".into() });
        let args = KmsArgs { kms_cache: Some(false), ..KmsArgs::default() };
        let err = kms_config(&args, KmsSecrets::default(), &state_dir(), unreadable()).unwrap_err();
        assert!(err.to_string().contains("unreadable") && err.to_string().contains("--kms-replace-saved-config"));
        assert!(kms_config(&KmsArgs::default(), KmsSecrets::default(), &state_dir(), unreadable()).unwrap().is_none());
        let replace = KmsArgs { kms_replace_saved_config: Some(true), ..args };
        assert!(kms_config(&replace, KmsSecrets::default(), &state_dir(), unreadable()).unwrap().is_some());
    }
}
