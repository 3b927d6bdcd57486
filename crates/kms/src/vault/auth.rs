//! Logging in to Vault and keeping the login alive.
//!
//! A session is a vaultrs client carrying a token plus the moment it should be refreshed (two thirds into the
//! token's TTL). Refreshing happens on demand, just before a call that finds the moment passed: AppRole logs in
//! again, a token file is re-read (Vault Agent may have written a new token) and a renewable token is renewed. A call
//! Vault refuses with 403 drops the session so the retry logs in afresh — that covers tokens that expired while
//! Coffer was idle or were revoked. Secrets are read from their files at each login, never kept longer than needed,
//! and never printed.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;
use vaultrs::client::VaultClient;

use super::client::{Failure, Http};
use crate::config::{Secret, VaultAuth};
use crate::error::{KmsError, Result as KmsResult};

/// Tokens never get refreshed more often than this, however short their remaining TTL.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// Where a secret comes from.
enum SecretSource {
    Value(Secret),
    File(PathBuf),
}

impl SecretSource {
    /// The secret, trimmed of the newline files usually end with.
    fn read(&self, what: &'static str) -> Result<Secret, Failure> {
        match self {
            Self::Value(secret) => Ok(Secret::new(secret.expose().trim())),
            Self::File(path) => {
                let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|err| Failure::Config {
                    field: what,
                    message: format!("cannot read the Vault {what} file {}: {err}", path.display()),
                })?);
                let secret = text.trim();
                if secret.is_empty() {
                    return Err(Failure::Config {
                        field: what,
                        message: format!("the Vault {what} file {} is empty", path.display()),
                    });
                }
                Ok(Secret::new(secret))
            }
        }
    }
}

/// How Coffer proves itself to Vault.
enum Method {
    Token(SecretSource),
    AppRole { mount: String, role_id: String, secret_id: SecretSource },
}

/// A logged-in client and when to refresh it.
struct Session {
    client: Arc<VaultClient>,
    token: Secret,
    renewable: bool,
    refresh_at: Option<Instant>,
}

/// Hands out logged-in clients, logging in, renewing or re-reading credentials as needed.
pub(super) struct Authenticator {
    method: Method,
    session: Mutex<Option<Session>>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let method = match &self.method {
            Method::Token(SecretSource::Value(_)) => "token",
            Method::Token(SecretSource::File(_)) => "token-file",
            Method::AppRole { .. } => "approle",
        };
        f.debug_struct("Authenticator").field("method", &method).finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn new(auth: &VaultAuth) -> KmsResult<Self> {
        let invalid =
            |field: &str, message: &str| KmsError::InvalidConfig { field: field.into(), message: message.into() };
        let method = match auth {
            VaultAuth::Token { token } => Method::Token(SecretSource::Value(token.clone())),
            VaultAuth::TokenFile { path } => Method::Token(SecretSource::File(path.clone())),
            VaultAuth::AppRole { role_id, secret_id, secret_id_file, mount } => {
                if role_id.is_empty() {
                    return Err(invalid("role_id", "AppRole role_id must not be empty"));
                }
                let secret_id = match (secret_id, secret_id_file) {
                    (Some(secret), None) => SecretSource::Value(secret.clone()),
                    (None, Some(path)) => SecretSource::File(path.clone()),
                    _ => return Err(invalid("secret_id", "AppRole needs exactly one of secret_id or secret_id_file")),
                };
                Method::AppRole { mount: mount.trim_matches('/').to_owned(), role_id: role_id.clone(), secret_id }
            }
        };
        Ok(Self { method, session: Mutex::new(None) })
    }

    /// Whether logging in again can fix a 403 (a fixed token stays what it is).
    pub fn can_log_in_again(&self) -> bool {
        !matches!(self.method, Method::Token(SecretSource::Value(_)))
    }

    /// A client with a live token, logging in or refreshing first when due.
    pub async fn client(&self, http: &Http) -> Result<Arc<VaultClient>, Failure> {
        let mut session = self.session.lock().await;
        let due = session.as_ref().is_none_or(|s| s.refresh_at.is_some_and(|at| Instant::now() >= at));
        if due {
            // On failure the session stays dropped: the next call starts with a fresh login.
            let next = match session.take() {
                Some(current) => self.refresh(http, current).await?,
                None => self.log_in(http).await?,
            };
            *session = Some(next);
        }
        Ok(session.as_ref().expect("a session was just made").client.clone())
    }

    /// Forgets the session `client` belongs to after Vault refused its token, unless a newer one replaced it.
    pub async fn reject(&self, client: &Arc<VaultClient>) {
        let mut session = self.session.lock().await;
        if session.as_ref().is_some_and(|s| Arc::ptr_eq(&s.client, client)) {
            *session = None;
        }
    }

    async fn log_in(&self, http: &Http) -> Result<Session, Failure> {
        match &self.method {
            Method::Token(source) => {
                let token = source.read("token")?;
                Self::adopt(http, token).await
            }
            Method::AppRole { mount, role_id, secret_id } => {
                let secret_id = secret_id.read("secret_id")?;
                let auth = vaultrs::auth::approle::login(http.anonymous(), mount, role_id, secret_id.expose()).await;
                drop(secret_id);
                let auth = auth.map_err(|err| match Failure::from(err) {
                    // AppRole answers a wrong role id or secret id with 400 "invalid role or secret ID".
                    Failure::Rejected { message, .. } | Failure::Denied(message) => {
                        Failure::Denied(format!("AppRole login failed: {message}"))
                    }
                    other => other,
                })?;
                let token = Secret::new(auth.client_token);
                let client = Arc::new(http.with_token(&token)?);
                Ok(Session { client, token, renewable: auth.renewable, refresh_at: refresh_point(auth.lease_duration) })
            }
        }
    }

    /// Takes a token as it is and learns its TTL with a lookup (which also proves it works).
    async fn adopt(http: &Http, token: Secret) -> Result<Session, Failure> {
        let client = Arc::new(http.with_token(&token)?);
        let info = vaultrs::token::lookup_self(client.as_ref()).await?;
        let renewable = info.renewable.unwrap_or(false);
        Ok(Session { client, token, renewable, refresh_at: refresh_point(info.ttl) })
    }

    async fn refresh(&self, http: &Http, current: Session) -> Result<Session, Failure> {
        match &self.method {
            Method::AppRole { .. } => self.log_in(http).await,
            Method::Token(source) => {
                if let SecretSource::File(_) = source {
                    let token = source.read("token")?;
                    if token != current.token {
                        return Self::adopt(http, token).await;
                    }
                }
                if !current.renewable {
                    // Nothing to renew: look again later (a token file may change meanwhile) and let Vault's 403
                    // report the expiry.
                    return Self::adopt(http, current.token).await;
                }
                let auth = vaultrs::token::renew_self(current.client.as_ref(), None).await?;
                Ok(Session { refresh_at: refresh_point(auth.lease_duration), renewable: auth.renewable, ..current })
            }
        }
    }
}

/// Two thirds into a TTL of `ttl_seconds` (0 = never expires), but not sooner than [`MIN_REFRESH_INTERVAL`].
fn refresh_point(ttl_seconds: u64) -> Option<Instant> {
    (ttl_seconds > 0).then(|| Instant::now() + Duration::from_secs(ttl_seconds * 2 / 3).max(MIN_REFRESH_INTERVAL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_trimmed_and_empty_files_refused_without_echoing_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s.hunter2\n").unwrap();
        let token = SecretSource::File(path.clone()).read("token").unwrap();
        assert_eq!(token.expose(), "s.hunter2");

        std::fs::write(&path, "\n").unwrap();
        let err = SecretSource::File(path).read("token").expect_err("empty token file accepted");
        assert!(matches!(err, Failure::Config { field: "token", .. }));

        let missing = SecretSource::File(dir.path().join("missing")).read("secret_id").expect_err("missing file");
        assert!(missing.into_kms(None).to_string().contains("secret_id"));
    }

    #[test]
    fn debug_shows_the_method_only() {
        let auth = Authenticator::new(&VaultAuth::AppRole {
            role_id: "role".into(),
            secret_id: Some(Secret::new("s3cr3t")),
            secret_id_file: None,
            mount: "approle".into(),
        })
        .unwrap();
        let shown = format!("{auth:?}");
        assert!(shown.contains("approle") && !shown.contains("s3cr3t"), "{shown}");
        assert!(auth.can_log_in_again());
        assert!(!Authenticator::new(&VaultAuth::Token { token: Secret::new("t") }).unwrap().can_log_in_again());
    }

    #[test]
    fn refresh_comes_two_thirds_into_the_ttl() {
        assert!(refresh_point(0).is_none());
        let at = refresh_point(30).unwrap();
        let in_secs = (at - Instant::now()).as_secs_f64();
        assert!(in_secs > 19.0 && in_secs <= 20.0, "{in_secs}");
        assert!(refresh_point(1).unwrap() >= Instant::now() + Duration::from_millis(900));
    }
}
