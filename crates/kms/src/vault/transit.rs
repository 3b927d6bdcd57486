//! The transit engine's operations as typed calls, each bounded by one deadline and retried with backoff.
//!
//! Every call gets `timeout` end to end — logging in, every attempt and every pause between attempts — and a call
//! that runs out fails the backend operation, so a hung or dead Vault makes the operation fail cleanly within that
//! budget instead of hanging the request that waits on it.
//! Connection errors and 5xx answers are retried up to `retry_attempts` times with exponential backoff and jitter;
//! 4xx answers are not (asking again gets the same answer), except that one 403 triggers a fresh login first.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use vaultrs::api::transit::requests::{
    CreateKeyRequest, DecryptDataRequest, EncryptDataRequest, RewrapDataRequest, UpdateKeyConfigurationRequest,
};
use vaultrs::api::transit::responses::ReadKeyResponse;
use vaultrs::api::transit::KeyType;
use vaultrs::client::VaultClient;
use vaultrs::error::ClientError;
use zeroize::Zeroizing;

use super::auth::Authenticator;
use super::client::{Failure, Http};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// One transit mount reached through one authenticated Vault connection.
#[derive(Debug)]
pub(super) struct Transit {
    http: Http,
    auth: Authenticator,
    mount: String,
    timeout: Duration,
    retry_attempts: u32,
}

impl Transit {
    pub fn new(http: Http, auth: Authenticator, mount: String, timeout: Duration, retry_attempts: u32) -> Self {
        Self { http, auth, mount, timeout, retry_attempts }
    }

    pub fn mount(&self) -> &str {
        &self.mount
    }

    pub fn address(&self) -> &str {
        self.http.address()
    }

    /// Runs `op` with a logged-in client under the deadline, retrying what is worth retrying.
    async fn call<T, F, Fut>(&self, op: F) -> Result<T, Failure>
    where
        F: Fn(Arc<VaultClient>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let deadline = Instant::now() + self.timeout;
        let mut retries = 0;
        let mut logged_in_again = false;
        loop {
            let attempt = async {
                let client = self.auth.client(&self.http).await?;
                let result = op(client.clone()).await.map_err(Failure::from);
                if let Err(Failure::Denied(_)) = &result {
                    self.auth.reject(&client).await;
                }
                result
            };
            let failure = match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(failure)) => failure,
                Err(_) => return Err(Failure::TimedOut(self.timeout)),
            };
            match failure {
                Failure::Denied(_) if !logged_in_again && self.auth.can_log_in_again() => logged_in_again = true,
                failure if failure.is_transient() && retries < self.retry_attempts => {
                    let pause = backoff(retries);
                    if Instant::now() + pause >= deadline {
                        return Err(failure);
                    }
                    retries += 1;
                    tracing::debug!(retry = retries, ?pause, ?failure, "Vault call failed, retrying");
                    tokio::time::sleep(pause).await;
                }
                failure => return Err(failure),
            }
        }
    }

    /// The deadline-bounded, single-attempt form used by health probes, which report the state as it is now.
    async fn probe<T>(&self, deadline: Instant, op: impl Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
        tokio::time::timeout_at(deadline, op).await.unwrap_or(Err(Failure::TimedOut(self.timeout)))
    }

    pub async fn read_key(&self, name: &str) -> Result<ReadKeyResponse, Failure> {
        self.call(|c| async move { vaultrs::transit::key::read(&*c, &self.mount, name).await }).await
    }

    /// Key names in the mount; an empty mount answers 404 without errors, a missing mount 404 with one.
    pub async fn list_keys(&self) -> Result<Vec<String>, Failure> {
        self.call(|c| async move {
            match vaultrs::transit::key::list(&*c, &self.mount).await {
                Ok(list) => Ok(list.keys),
                Err(ClientError::APIError { code: 404, errors }) if errors.is_empty() => Ok(Vec::new()),
                Err(err) => Err(err),
            }
        })
        .await
    }

    /// Creates an `aes256-gcm96` key with `derived=true`, so each encryption context gets its own derived key.
    pub async fn create_key(&self, name: &str) -> Result<(), Failure> {
        self.call(|c| async move {
            let mut options = CreateKeyRequest::builder();
            options.key_type(KeyType::Aes256Gcm96).derived(true);
            vaultrs::transit::key::create(&*c, &self.mount, name, Some(&mut options)).await
        })
        .await
    }

    pub async fn rotate_key(&self, name: &str) -> Result<(), Failure> {
        self.call(|c| async move { vaultrs::transit::key::rotate(&*c, &self.mount, name).await }).await
    }

    /// Sets the lowest key version transit decrypts with; transit refuses one above the latest version.
    pub async fn set_min_decryption_version(&self, name: &str, version: u32) -> Result<(), Failure> {
        self.call(|c| async move {
            let mut options = UpdateKeyConfigurationRequest::builder();
            options.min_decryption_version(Some(u64::from(version)));
            vaultrs::transit::key::update(&*c, &self.mount, name, Some(&mut options)).await
        })
        .await
    }

    /// Really deletes a key: transit refuses until `deletion_allowed` is set on it.
    pub async fn delete_key(&self, name: &str) -> Result<(), Failure> {
        self.call(|c| async move {
            let mut options = UpdateKeyConfigurationRequest::builder();
            options.deletion_allowed(Some(true));
            vaultrs::transit::key::update(&*c, &self.mount, name, Some(&mut options)).await
        })
        .await?;
        self.call(|c| async move { vaultrs::transit::key::delete(&*c, &self.mount, name).await }).await
    }

    /// Encrypts base64 `plaintext` under the key (derived for base64 `context`, when given); returns `vault:vN:…`.
    pub async fn encrypt(&self, name: &str, plaintext: &str, context: Option<&str>) -> Result<String, Failure> {
        self.call(|c| async move {
            let mut options = EncryptDataRequest::builder();
            if let Some(context) = context {
                options.context(context);
            }
            vaultrs::transit::data::encrypt(&*c, &self.mount, name, plaintext, Some(&mut options)).await
        })
        .await
        .map(|reply| reply.ciphertext)
    }

    /// Decrypts `ciphertext` under the key (derived for `context`, when given); returns the base64 plaintext.
    pub async fn decrypt(
        &self,
        name: &str,
        ciphertext: &str,
        context: Option<&str>,
    ) -> Result<Zeroizing<String>, Failure> {
        self.call(|c| async move {
            let mut options = DecryptDataRequest::builder();
            if let Some(context) = context {
                options.context(context);
            }
            vaultrs::transit::data::decrypt(&*c, &self.mount, name, ciphertext, Some(&mut options)).await
        })
        .await
        .map(|reply| Zeroizing::new(reply.plaintext))
    }

    /// Re-encrypts `ciphertext` under the key's latest version inside Vault; the plaintext never leaves it.
    pub async fn rewrap(&self, name: &str, ciphertext: &str, context: Option<&str>) -> Result<String, Failure> {
        self.call(|c| async move {
            let mut options = RewrapDataRequest::builder();
            if let Some(context) = context {
                options.context(context);
            }
            vaultrs::transit::data::rewrap(&*c, &self.mount, name, ciphertext, Some(&mut options)).await
        })
        .await
        .map(|reply| reply.ciphertext)
    }

    /// `sys/health`'s status code, one attempt.
    pub async fn server_status(&self, deadline: Instant) -> Result<u16, Failure> {
        self.probe(deadline, self.http.sys_health()).await
    }

    /// Proves the token works (logging in if needed), one attempt.
    pub async fn check_token(&self, deadline: Instant) -> Result<(), Failure> {
        self.probe(deadline, async {
            let client = self.auth.client(&self.http).await?;
            vaultrs::token::lookup_self(client.as_ref()).await.map(drop).map_err(Failure::from)
        })
        .await
    }

    /// Proves the transit mount answers this token, one attempt.
    pub async fn check_mount(&self, deadline: Instant) -> Result<(), Failure> {
        self.probe(deadline, async {
            let client = self.auth.client(&self.http).await?;
            match vaultrs::transit::key::list(client.as_ref(), &self.mount).await {
                Ok(_) => Ok(()),
                Err(ClientError::APIError { code: 404, errors }) if errors.is_empty() => Ok(()),
                Err(err) => Err(Failure::from(err)),
            }
        })
        .await
    }

    pub fn probe_deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }
}

/// 100 ms, 200 ms, 400 ms … capped at 2 s, each scaled by a random factor in [0.5, 1) so many Coffer nodes
/// retrying at once do not hit Vault in lockstep.
fn backoff(retry: u32) -> Duration {
    let base = FIRST_BACKOFF.saturating_mul(1 << retry.min(16)).min(MAX_BACKOFF);
    let jitter = f64::from(getrandom::u32().unwrap_or(u32::MAX / 2)) / f64::from(u32::MAX);
    base.mul_f64(0.5 + jitter / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for retry in 0..20 {
            let pause = backoff(retry);
            let base = FIRST_BACKOFF.saturating_mul(1 << retry.min(16)).min(MAX_BACKOFF);
            assert!(pause >= base / 2 && pause <= base, "retry {retry}: {pause:?}");
        }
        assert!(backoff(30) <= MAX_BACKOFF);
    }
}
