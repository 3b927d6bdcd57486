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
    BackendConfig, CacheConfig, KmsConfig, KmsError, KmsManager, LocalConfig, Secret, VaultAuth, VaultConfig,
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

/// The configuration the `--kms-*` settings ask for, or `None` when none was given (the persisted configuration or
/// the embedded default applies). Without `--kms-backend`, a Vault address selects Vault and anything else the
/// local backend, by default in the embedded default's key directory.
pub fn kms_config(args: &KmsArgs, secrets: KmsSecrets, state_dir: &Path) -> Result<Option<KmsConfig>, KmsError> {
    if !args.any_given() {
        return Ok(None);
    }
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
            BackendConfig::Local(LocalConfig {
                key_dir,
                master_key: secrets.local_master_key,
                master_key_file: args.kms_master_key_file.clone(),
            })
        }
        KmsBackendKind::Vault => BackendConfig::VaultTransit(vault_config(args, secrets)?),
    };
    let defaults = KmsConfig::new(backend);
    let config = KmsConfig {
        default_key_id: args.kms_default_key_id.clone().unwrap_or(defaults.default_key_id.clone()),
        timeout_seconds: args.kms_timeout_seconds.unwrap_or(defaults.timeout_seconds),
        retry_attempts: args.kms_retry_attempts.unwrap_or(defaults.retry_attempts),
        cache: CacheConfig {
            enabled: args.kms_cache.unwrap_or(defaults.cache.enabled),
            max_cached_keys: args.kms_cache_capacity.unwrap_or(defaults.cache.max_cached_keys),
            ttl_seconds: args.kms_cache_ttl_seconds.unwrap_or(defaults.cache.ttl_seconds),
            ..defaults.cache.clone()
        },
        ..defaults
    };
    config.validate()?;
    Ok(Some(config))
}

/// The embedded default's key directory, relative to the KMS state directory (where the manager puts it).
fn embedded_key_dir() -> PathBuf {
    Path::new("local").join("keys")
}

fn vault_config(args: &KmsArgs, secrets: KmsSecrets) -> Result<VaultConfig, KmsError> {
    let invalid = |field: &str, message: &str| KmsError::InvalidConfig { field: field.into(), message: message.into() };
    let address = args
        .kms_vault_address
        .clone()
        .ok_or_else(|| invalid("address", "KMS Vault address is required for vault backend (--kms-vault-address)"))?;
    let auth = match (&args.kms_vault_role_id, &args.kms_vault_token_file, secrets.vault_token) {
        (Some(role_id), None, None) => VaultAuth::AppRole {
            role_id: role_id.clone(),
            secret_id: secrets.vault_secret_id,
            secret_id_file: args.kms_vault_secret_id_file.clone(),
            mount: "approle".to_owned(),
        },
        (None, Some(path), None) => VaultAuth::TokenFile { path: path.clone() },
        (None, None, Some(token)) => VaultAuth::Token { token },
        (None, None, None) => {
            return Err(invalid(
                "auth",
                "Vault authentication is required: set COFFER_KMS_VAULT_TOKEN, --kms-vault-token-file or \
                 --kms-vault-role-id",
            ))
        }
        _ => {
            return Err(invalid(
                "auth",
                "give exactly one Vault authentication: COFFER_KMS_VAULT_TOKEN, --kms-vault-token-file or \
                 --kms-vault-role-id",
            ))
        }
    };
    Ok(VaultConfig {
        address,
        mount_path: args.kms_vault_mount.clone().unwrap_or_else(|| "transit".to_owned()),
        namespace: args.kms_vault_namespace.clone(),
        auth,
        ca_cert_path: args.kms_vault_ca_cert.clone(),
        client_cert_path: args.kms_vault_client_cert.clone(),
        client_key_path: args.kms_vault_client_key.clone(),
        skip_tls_verify: args.kms_vault_skip_tls_verify.unwrap_or(false),
    })
}

/// Opens the KMS manager and brings it to the configured state. `config` is what [`kms_config`] returned. Only a
/// state directory that cannot be opened is an error; a KMS that fails to start is logged (and the manager keeps
/// trying to start it).
pub async fn start_kms(state_dir: PathBuf, config: Option<KmsConfig>) -> Result<Arc<KmsManager>, KmsError> {
    let kms = KmsManager::open(state_dir)?;
    let started = match config {
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

    #[test]
    fn no_flags_means_no_configuration() {
        assert!(kms_config(&KmsArgs::default(), KmsSecrets::default(), &state_dir()).unwrap().is_none());
    }

    #[test]
    fn local_backend_without_a_key_dir_fails_with_the_documented_message() {
        let args = KmsArgs { kms_backend: Some(KmsBackendKind::Local), ..KmsArgs::default() };
        let err = kms_config(&args, KmsSecrets::default(), &state_dir()).unwrap_err();
        assert_eq!(err.to_string(), "KMS key directory is required for local backend");
    }

    #[test]
    fn cache_flags_alone_tune_the_embedded_local_backend() {
        let args = KmsArgs { kms_cache: Some(false), kms_default_key_id: Some("k1".into()), ..KmsArgs::default() };
        let config = kms_config(&args, KmsSecrets::default(), &state_dir()).unwrap().unwrap();
        let BackendConfig::Local(local) = &config.backend else { panic!("not local: {config:?}") };
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
        let config = kms_config(&args, secrets, &state_dir()).unwrap().unwrap();
        let BackendConfig::Local(local) = &config.backend else { panic!("not local") };
        assert_eq!(local.master_key.as_ref().map(Secret::expose), Some("m".repeat(32).as_str()));
        assert_eq!((config.cache.ttl_seconds, config.cache.max_cached_keys), (9, 7));

        let both = KmsArgs { kms_master_key_file: Some("/mk".into()), ..args };
        let secrets = KmsSecrets { local_master_key: Some(Secret::new("m".repeat(32))), ..KmsSecrets::default() };
        assert!(kms_config(&both, secrets, &state_dir()).is_err());
    }

    #[test]
    fn vault_needs_an_address_and_exactly_one_authentication() {
        let vault = KmsArgs { kms_backend: Some(KmsBackendKind::Vault), ..KmsArgs::default() };
        let token = || KmsSecrets { vault_token: Some(Secret::new("t")), ..KmsSecrets::default() };
        assert!(kms_config(&vault, token(), &state_dir()).unwrap_err().to_string().contains("address"));

        let addressed = KmsArgs { kms_vault_address: Some("http://127.0.0.1:8200".into()), ..vault };
        assert!(kms_config(&addressed, KmsSecrets::default(), &state_dir()).is_err());
        let config = kms_config(&addressed, token(), &state_dir()).unwrap().unwrap();
        let BackendConfig::VaultTransit(v) = &config.backend else { panic!("not vault") };
        assert!(matches!(v.auth, VaultAuth::Token { .. }));
        assert_eq!(v.mount_path, "transit");
        assert!(!format!("{config:?}").contains("\"t\""));

        let ambiguous = KmsArgs { kms_vault_token_file: Some("/token".into()), ..addressed.clone() };
        assert!(kms_config(&ambiguous, token(), &state_dir()).is_err());

        let approle = KmsArgs {
            kms_vault_role_id: Some("role".into()),
            kms_vault_secret_id_file: Some("/secret-id".into()),
            ..addressed
        };
        let config = kms_config(&approle, KmsSecrets::default(), &state_dir()).unwrap().unwrap();
        let BackendConfig::VaultTransit(v) = &config.backend else { panic!("not vault") };
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
        let config = kms_config(&args, secrets, &state_dir()).unwrap().unwrap();
        assert_eq!((config.timeout_seconds, config.retry_attempts), (3, 0));
        let BackendConfig::VaultTransit(v) = &config.backend else { panic!("not vault") };
        assert_eq!(v.client_cert_path.as_deref(), Some(Path::new("/tls/client.pem")));
        assert_eq!(v.client_key_path.as_deref(), Some(Path::new("/tls/client-key.pem")));

        let defaults =
            kms_config(&KmsArgs { kms_cache: Some(true), ..KmsArgs::default() }, KmsSecrets::default(), &state_dir())
                .unwrap()
                .unwrap();
        assert_eq!((defaults.timeout_seconds, defaults.retry_attempts), (10, 3));
        let zero = KmsArgs { kms_timeout_seconds: Some(0), ..args };
        let secrets = KmsSecrets { vault_token: Some(Secret::new("t")), ..KmsSecrets::default() };
        assert!(kms_config(&zero, secrets, &state_dir()).unwrap_err().to_string().contains("timeout"));
    }

    #[test]
    fn a_vault_address_without_a_backend_selects_vault() {
        let args = KmsArgs { kms_vault_address: Some("http://127.0.0.1:8200".into()), ..KmsArgs::default() };
        let secrets = KmsSecrets { vault_token: Some(Secret::new("t")), ..KmsSecrets::default() };
        let config = kms_config(&args, secrets, &state_dir()).unwrap().unwrap();
        assert!(matches!(config.backend, BackendConfig::VaultTransit(_)));
    }
}
