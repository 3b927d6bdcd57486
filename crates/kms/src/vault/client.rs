//! The HTTP side of talking to Vault: vaultrs clients built from the operator's address, namespace and TLS
//! settings (one client per token, since a vaultrs client carries its token), the raw `sys/health` call that
//! vaultrs cannot parse on OpenBao, and the sorting of every answer into a [`Failure`] the backend acts on.
//!
//! Raw calls go through the same reqwest client vaultrs built, so health probes exercise exactly the TLS setup and
//! connection pool the transit calls use.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use vaultrs::client::{Identity, VaultClient, VaultClientSettings, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;
use zeroize::Zeroizing;

use crate::config::{Secret, VaultConfig};
use crate::error::{KmsError, Result};

/// Why a Vault call did not succeed, sorted by what the caller does about it.
#[derive(Debug)]
pub(super) enum Failure {
    /// No answer at all: refused, reset, TLS failure. Worth retrying.
    Unreachable(String),
    /// Vault answered but cannot serve right now (5xx, 429: sealed, standby, overloaded). Worth retrying.
    Unavailable { status: Option<u16>, message: String },
    /// The whole call, retries included, ran out of time.
    TimedOut(Duration),
    /// 403: the token is missing, expired or revoked, or its policy lacks the path.
    Denied(String),
    /// The key (or the path) does not exist.
    NotFound,
    /// The ciphertext does not open: wrong encryption context, another key, tampered bytes.
    BadCiphertext,
    /// The ciphertext's key version is below the key's `min_decryption_version`.
    VersionRetired,
    /// Any other refusal (4xx).
    Rejected { status: u16, message: String },
    /// An answer or a local input Coffer cannot use.
    Invalid(String),
    /// A configured file or value is unusable (token file, secret id file).
    Config { field: &'static str, message: String },
}

impl Failure {
    /// Whether trying again soon can help: connection problems and server-side errors, never 4xx.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable(_) | Self::Unavailable { .. })
    }

    /// Whether Vault was unreachable or not serving: afterwards it may not be the same Vault (or state) as before.
    pub fn is_outage(&self) -> bool {
        self.is_transient() || matches!(self, Self::TimedOut(_))
    }

    /// Sorts a status code and Vault's error strings.
    fn from_status(status: u16, errors: &[String]) -> Self {
        let message = if errors.is_empty() { "no details".to_owned() } else { errors.join("; ") };
        let mentions = |needle: &str| errors.iter().any(|e| e.contains(needle));
        match status {
            403 => Self::Denied(message),
            404 => Self::NotFound,
            429 | 500..=599 => Self::Unavailable { status: Some(status), message },
            _ if mentions("key not found") => Self::NotFound,
            _ if mentions("message authentication failed") || mentions("invalid ciphertext") => Self::BadCiphertext,
            _ if mentions("version is disallowed by policy") => Self::VersionRetired,
            _ => Self::Rejected { status, message },
        }
    }

    /// The operator-facing error; `key_id` names the key a `NotFound` is about.
    pub fn into_kms(self, key_id: Option<&str>) -> KmsError {
        match self {
            Self::Unreachable(message) => KmsError::Unavailable(message),
            Self::Unavailable { status: Some(status), message } => {
                KmsError::Unavailable(format!("Vault answered {status}: {message}"))
            }
            Self::Unavailable { status: None, message } => KmsError::Unavailable(message),
            Self::TimedOut(budget) => {
                KmsError::Unavailable(format!("Vault did not answer within {}", humanize(budget)))
            }
            Self::Denied(message) => {
                KmsError::Backend(format!("Vault denied the request ({message}); check the token and its policy"))
            }
            Self::NotFound => match key_id {
                Some(key_id) => KmsError::KeyNotFound(key_id.to_owned()),
                None => KmsError::Backend("Vault path not found".to_owned()),
            },
            Self::BadCiphertext => KmsError::InvalidCiphertext,
            // Callers that know the ciphertext's version say which one ([`KmsError::KeyVersionRetired`]).
            Self::VersionRetired => KmsError::Backend(
                "Vault refused a ciphertext of a retired key version (below the key's minimum decryption version)"
                    .into(),
            ),
            Self::Rejected { status, message } => {
                KmsError::Backend(format!("Vault refused the request ({status}): {message}"))
            }
            Self::Invalid(message) => KmsError::Backend(message),
            Self::Config { field, message } => KmsError::InvalidConfig { field: field.to_owned(), message },
        }
    }
}

impl From<ClientError> for Failure {
    fn from(err: ClientError) -> Self {
        match &err {
            ClientError::APIError { code, errors } => Self::from_status(*code, errors),
            ClientError::RestClientError { source } => {
                // vaultrs hands transport errors over as rustify errors, whose type this crate cannot name: they are
                // told apart by their fixed messages. "sending" = no answer; "Server returned error" = a non-2xx
                // answer without a Vault error body (e.g. a proxy's HTML page), treated as a server-side problem.
                let rest = source.to_string();
                if rest.starts_with("Error sending HTTP request") {
                    // The rustify layer only says "Error sending HTTP request"; its cause names the URL and why.
                    Self::Unreachable(source.source().map_or_else(|| describe(source), describe))
                } else if rest.starts_with("Server returned error") {
                    Self::Unavailable {
                        status: None,
                        message: "Vault answered with an error but no error details".into(),
                    }
                } else {
                    // Only the fixed top-level message: the causes of a parse error may quote the reply, and a
                    // decrypt reply holds key material.
                    Self::Invalid(format!("unexpected reply from Vault: {rest}"))
                }
            }
            other => Self::Invalid(format!("unexpected reply from Vault: {other}")),
        }
    }
}

/// One line for an error and its causes, without repeating a cause that its parent already quotes.
pub(super) fn describe(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        let line = inner.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        cause = inner.source();
    }
    text
}

fn humanize(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

/// Makes vaultrs clients for one Vault server; holds no token itself.
pub(super) struct Http {
    address: String,
    settings: VaultClientSettings,
    anonymous: VaultClient,
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http").field("address", &self.address).finish_non_exhaustive()
    }
}

impl Http {
    /// Checks the address, namespace and TLS files and builds the token-less client used for login and health.
    pub fn new(config: &VaultConfig) -> Result<Self> {
        let address = config.address.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&address)
            .map_err(|err| invalid("address", format!("Vault address is not a URL: {err}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid("address", "Vault address must be an http:// or https:// URL with a host".into()));
        }
        if let Some(namespace) = &config.namespace {
            if namespace.is_empty() || !is_header_safe(namespace) {
                return Err(invalid("namespace", "Vault namespace must be non-empty printable ASCII".into()));
            }
        }

        let mut ca_certs = Vec::new();
        if let Some(path) = &config.ca_cert_path {
            std::fs::metadata(path).map_err(|err| {
                invalid("ca_cert_path", format!("cannot read Vault CA bundle {}: {err}", path.display()))
            })?;
            let path =
                path.to_str().ok_or_else(|| invalid("ca_cert_path", "Vault CA bundle path must be UTF-8".into()))?;
            ca_certs.push(path.to_owned());
        }
        let identity = match (&config.client_cert_path, &config.client_key_path) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let read = |path: &std::path::Path, field: &str| {
                    std::fs::read(path)
                        .map(Zeroizing::new)
                        .map_err(|err| invalid(field, format!("cannot read {}: {err}", path.display())))
                };
                let mut pem = read(cert, "client_cert_path")?;
                pem.push(b'\n');
                pem.extend_from_slice(&read(key, "client_key_path")?);
                let identity = Identity::from_pem(&pem).map_err(|_| {
                    invalid("client_cert_path", "Vault client certificate and key are not a valid PEM pair".into())
                })?;
                Some(identity)
            }
            _ => {
                return Err(invalid(
                    "client_cert_path",
                    "a Vault client certificate needs both client_cert_path and client_key_path".into(),
                ));
            }
        };

        // Every field is set explicitly: vaultrs would otherwise fill gaps from VAULT_* environment variables.
        let settings = VaultClientSettingsBuilder::default()
            .address(&address)
            .ca_certs(ca_certs)
            .identity(identity)
            // The one timer is the operation's deadline (see transit.rs); a per-request timer here would cut an
            // attempt short with a vaguer error.
            .timeout(None)
            .token(String::new())
            .verify(!config.skip_tls_verify)
            .namespace(config.namespace.clone())
            .wrapping(false)
            .build()
            .map_err(|err| invalid("address", format!("invalid Vault client settings: {err}")))?;
        let anonymous = VaultClient::new(settings.clone())
            .map_err(|err| invalid("ca_cert_path", format!("cannot set up the Vault client: {}", describe(&err))))?;
        Ok(Self { address, settings, anonymous })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// The client without a token, for logins.
    pub fn anonymous(&self) -> &VaultClient {
        &self.anonymous
    }

    /// A client that sends `token`.
    pub fn with_token(&self, token: &Secret) -> Result<VaultClient, Failure> {
        if token.expose().is_empty() || !is_header_safe(token.expose()) {
            return Err(Failure::Config {
                field: "token",
                message: "the Vault token is empty or contains characters not allowed in an HTTP header".into(),
            });
        }
        let mut settings = self.settings.clone();
        settings.token = token.expose().to_owned();
        VaultClient::new(settings)
            .map_err(|err| Failure::Invalid(format!("cannot set up the Vault client: {}", describe(&err))))
    }

    /// `GET /v1/sys/health` (unauthenticated, outside any namespace): the HTTP status tells the server's state.
    pub async fn sys_health(&self) -> Result<u16, Failure> {
        let url = format!("{}/v1/sys/health", self.address);
        let response =
            self.anonymous.http.http.get(url).send().await.map_err(|err| Failure::Unreachable(describe(&err)))?;
        Ok(response.status().as_u16())
    }
}

/// Visible ASCII only: vaultrs puts tokens and namespaces into headers and panics on anything else.
fn is_header_safe(value: &str) -> bool {
    value.bytes().all(|b| b.is_ascii_graphic())
}

fn invalid(field: &str, message: String) -> KmsError {
    KmsError::InvalidConfig { field: field.to_owned(), message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::VaultAuth;

    fn config(address: &str) -> VaultConfig {
        VaultConfig {
            address: address.into(),
            mount_path: "transit".into(),
            namespace: None,
            auth: VaultAuth::Token { token: Secret::new("t") },
            ca_cert_path: None,
            client_cert_path: None,
            client_key_path: None,
            skip_tls_verify: false,
        }
    }

    #[test]
    fn statuses_sort_into_failures() {
        let errs = |e: &[&str]| e.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(matches!(Failure::from_status(403, &errs(&["permission denied"])), Failure::Denied(_)));
        assert!(matches!(Failure::from_status(404, &[]), Failure::NotFound));
        assert!(matches!(Failure::from_status(400, &errs(&["encryption key not found"])), Failure::NotFound));
        assert!(matches!(
            Failure::from_status(400, &errs(&["cipher: message authentication failed"])),
            Failure::BadCiphertext
        ));
        assert!(matches!(
            Failure::from_status(400, &errs(&["invalid ciphertext: version is too new"])),
            Failure::BadCiphertext
        ));
        assert!(matches!(
            Failure::from_status(400, &errs(&["ciphertext or signature version is disallowed by policy (too old)"])),
            Failure::VersionRetired
        ));
        let sealed = Failure::from_status(503, &errs(&["Vault is sealed"]));
        assert!(sealed.is_transient());
        assert_eq!(sealed.into_kms(None).to_string(), "KMS backend unavailable: Vault answered 503: Vault is sealed");
        let bad = Failure::from_status(400, &errs(&["invalid key type"]));
        assert!(!bad.is_transient());
        assert!(matches!(bad, Failure::Rejected { status: 400, .. }));
    }

    #[test]
    fn not_found_names_the_key() {
        assert!(matches!(Failure::NotFound.into_kms(Some("k")), KmsError::KeyNotFound(id) if id == "k"));
    }

    #[test]
    fn bad_settings_are_config_errors() {
        for address in ["not a url", "ftp://vault:8200", "http://"] {
            assert!(matches!(Http::new(&config(address)), Err(KmsError::InvalidConfig { .. })), "{address}");
        }
        let mut missing_ca = config("https://127.0.0.1:8200");
        missing_ca.ca_cert_path = Some("/nonexistent/ca.pem".into());
        assert!(
            matches!(Http::new(&missing_ca), Err(KmsError::InvalidConfig { field, .. }) if field == "ca_cert_path")
        );
        let mut half_identity = config("https://127.0.0.1:8200");
        half_identity.client_cert_path = Some("/nonexistent/cert.pem".into());
        assert!(Http::new(&half_identity).is_err());
        let mut namespace = config("http://127.0.0.1:8200");
        namespace.namespace = Some("team\na".into());
        assert!(Http::new(&namespace).is_err());
    }

    #[test]
    fn tokens_that_cannot_be_a_header_are_refused_without_echoing_them() {
        let http = Http::new(&config("http://127.0.0.1:8200")).unwrap();
        let err = http.with_token(&Secret::new("s.abc\ndef")).err().expect("token with a newline accepted");
        let text = err.into_kms(None).to_string();
        assert!(!text.contains("s.abc"), "{text}");
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_and_transient() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let http = Http::new(&config(&address)).unwrap();
        let err = vaultrs::token::lookup_self(http.anonymous()).await.expect_err("closed port answered");
        let failure = Failure::from(err);
        assert!(matches!(failure, Failure::Unreachable(_)), "{failure:?}");
        assert!(failure.is_transient());
        assert!(matches!(http.sys_health().await, Err(Failure::Unreachable(_))));
    }
}
