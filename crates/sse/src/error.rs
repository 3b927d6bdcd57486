//! The one error type of the crate: an S3 error code, its HTTP status and a message safe to send to the client.
//!
//! Messages name headers, modes and KMS key ids, never key material. KMS failures are mapped here so the server
//! never has to know what a [`KmsError`] means in S3 terms.

use std::borrow::Cow;
use std::fmt;

use coffer_kms::KmsError;

/// Result alias for SSE operations.
pub type Result<T, E = SseError> = std::result::Result<T, E>;

/// An S3 error answer: `code()` is the S3 error code, `status()` the HTTP status, `message()` the text.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct SseError {
    code: &'static str,
    status: u16,
    message: Cow<'static, str>,
}

impl SseError {
    fn new(code: &'static str, status: u16, message: impl Into<Cow<'static, str>>) -> Self {
        Self { code, status, message: message.into() }
    }

    /// The S3 error code, e.g. `InvalidArgument` or `KMS.NotFoundException`.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The HTTP status of the answer.
    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn invalid_argument(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new("InvalidArgument", 400, message)
    }

    pub(crate) fn invalid_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new("InvalidRequest", 400, message)
    }

    pub(crate) fn access_denied(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new("AccessDenied", 403, message)
    }

    pub(crate) fn invalid_range() -> Self {
        Self::new("InvalidRange", 416, "The requested range is not satisfiable")
    }

    /// Something stored is wrong: unreadable metadata, a key that does not open, data that fails authentication.
    pub(crate) fn internal(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new("InternalError", 500, message)
    }

    pub(crate) fn corrupted_data() -> Self {
        Self::internal("The stored object data failed authentication: it is corrupted or was tampered with")
    }

    pub(crate) fn kms_unavailable(detail: impl fmt::Display) -> Self {
        Self::new(
            "ServiceUnavailable",
            503,
            format!("The KMS is unavailable, so encrypted objects cannot be read or written: {detail}"),
        )
    }
}

// Hand-written so a log line reads like the S3 answer; there is nothing secret in it either way.
impl fmt::Debug for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SseError({} {}: {})", self.status, self.code, self.message)
    }
}

impl From<KmsError> for SseError {
    fn from(error: KmsError) -> Self {
        match error {
            KmsError::KeyNotFound(id) | KmsError::InvalidKeyId(id) => {
                Self::new("KMS.NotFoundException", 400, format!("Invalid keyId '{id}'"))
            }
            KmsError::StoreNotFound(_) => Self::new("KMS.NotFoundException", 400, error.to_string()),
            KmsError::UnusableKey { .. } => Self::new("KMS.InvalidKeyUsageException", 400, error.to_string()),
            KmsError::KeyDisabled(id) => Self::new("KMS.DisabledException", 400, format!("KMS key '{id}' is disabled")),
            KmsError::KeyExpired { .. } | KmsError::KeyVersionRetired { .. } => {
                Self::new("KMS.KMSInvalidStateException", 400, error.to_string())
            }
            KmsError::KeyPendingDeletion(id) => {
                Self::new("KMS.KMSInvalidStateException", 400, format!("KMS key '{id}' is pending deletion"))
            }
            KmsError::NotConfigured => Self::kms_unavailable("no KMS is configured"),
            KmsError::NotRunning => Self::kms_unavailable("the KMS is stopped"),
            KmsError::WrongState { .. } | KmsError::Unavailable(_) | KmsError::Conflict(_) => {
                Self::kms_unavailable(&error)
            }
            KmsError::InvalidArgument { message, .. } => Self::invalid_argument(message),
            KmsError::InvalidCiphertext => {
                Self::internal("The object's wrapped data key could not be decrypted by the KMS")
            }
            KmsError::KeyExists(_)
            | KmsError::StoreInUse(_)
            | KmsError::InvalidConfig { .. }
            | KmsError::Backend(_)
            | KmsError::Io { .. } => Self::internal(format!("KMS error: {error}")),
        }
    }
}

impl From<SseError> for std::io::Error {
    /// For body streams: a decryption failure mid-response must end the stream with an error.
    fn from(error: SseError) -> Self {
        std::io::Error::other(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kms_errors_map_to_s3_answers() {
        let cases = [
            (KmsError::KeyNotFound("k1".into()), "KMS.NotFoundException", 400),
            (KmsError::InvalidKeyId("bad id".into()), "KMS.NotFoundException", 400),
            (KmsError::KeyDisabled("k1".into()), "KMS.DisabledException", 400),
            (
                KmsError::UnusableKey { key_id: "k1".into(), reason: "a signing key".into() },
                "KMS.InvalidKeyUsageException",
                400,
            ),
            (KmsError::KeyPendingDeletion("k1".into()), "KMS.KMSInvalidStateException", 400),
            (
                KmsError::KeyExpired { key_id: "k1".into(), expired_at: "2026-01-01T00:00:00Z".into() },
                "KMS.KMSInvalidStateException",
                400,
            ),
            (KmsError::KeyVersionRetired { key_id: "k1".into(), version: 1 }, "KMS.KMSInvalidStateException", 400),
            (KmsError::NotRunning, "ServiceUnavailable", 503),
            (KmsError::NotConfigured, "ServiceUnavailable", 503),
            (KmsError::Unavailable("connection refused".into()), "ServiceUnavailable", 503),
            (
                KmsError::WrongState { state: "stopped".into(), action: "generate data key".into() },
                "ServiceUnavailable",
                503,
            ),
            (KmsError::invalid_argument("context", "context too large"), "InvalidArgument", 400),
            (KmsError::InvalidCiphertext, "InternalError", 500),
            (KmsError::Backend("boom".into()), "InternalError", 500),
        ];
        for (kms, code, status) in cases {
            let e = SseError::from(kms);
            assert_eq!((e.code(), e.status()), (code, status), "{e:?}");
        }
    }

    #[test]
    fn kms_outage_message_says_so() {
        let e = SseError::from(KmsError::NotRunning);
        assert!(e.message().contains("KMS is unavailable"), "{}", e.message());
        assert!(e.message().contains("stopped"), "{}", e.message());
        let e = SseError::from(KmsError::Unavailable("vault sealed".into()));
        assert!(e.message().contains("vault sealed"), "{}", e.message());
    }

    #[test]
    fn not_found_names_the_key() {
        let e = SseError::from(KmsError::KeyNotFound("my-key".into()));
        assert_eq!(e.message(), "Invalid keyId 'my-key'");
    }
}
