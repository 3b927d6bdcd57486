//! The admin API's error: an HTTP status, a stable code and an operator-readable message, sent as
//! `{"code":…,"message":…,"field":…}`. Every [`KmsError`] becomes one here, in [`From<KmsError>`], and nowhere else.
//!
//! Messages are built from KMS errors (which never carry secrets) or from field names, never from submitted values.

use coffer_kms::KmsError;
use http::StatusCode;
use serde::Serialize;

/// An error response of the admin API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The request or configuration field the error is about, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None }
    }

    /// 400 about one named field of the request.
    pub fn invalid_field(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: Some(field.into()), ..Self::new(StatusCode::BAD_REQUEST, code, message) }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn access_denied(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "AccessDenied", message)
    }

    /// The JSON body sent to the client: `{"code":…,"message":…,"field":…}`.
    pub fn to_body(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an error body always serializes")
    }
}

impl From<KmsError> for ApiError {
    fn from(err: KmsError) -> Self {
        let message = err.to_string();
        let (status, code) = match &err {
            KmsError::NotConfigured => (StatusCode::CONFLICT, "KMSNotConfigured"),
            KmsError::NotRunning => (StatusCode::CONFLICT, "KMSNotRunning"),
            KmsError::WrongState { .. } => (StatusCode::CONFLICT, "InvalidKMSState"),
            KmsError::KeyNotFound(_) => (StatusCode::NOT_FOUND, "KeyNotFound"),
            KmsError::StoreNotFound(_) => (StatusCode::NOT_FOUND, "StoreNotFound"),
            KmsError::StoreInUse(_) => (StatusCode::CONFLICT, "StoreInUse"),
            KmsError::Conflict(_) => (StatusCode::CONFLICT, "ConcurrentChange"),
            KmsError::KeyDisabled(_) => (StatusCode::CONFLICT, "KeyDisabled"),
            KmsError::KeyPendingDeletion(_) => (StatusCode::CONFLICT, "KeyPendingDeletion"),
            KmsError::KeyExpired { .. } => (StatusCode::CONFLICT, "KeyExpired"),
            KmsError::KeyVersionRetired { .. } => (StatusCode::CONFLICT, "KeyVersionRetired"),
            KmsError::KeyExists(_) => (StatusCode::CONFLICT, "KeyAlreadyExists"),
            KmsError::InvalidKeyId(_) => (StatusCode::BAD_REQUEST, "InvalidKeyId"),
            KmsError::UnusableKey { .. } => (StatusCode::BAD_REQUEST, "InvalidKeyUsage"),
            KmsError::InvalidConfig { field, .. } => {
                return Self::invalid_field("InvalidConfig", field.clone(), message);
            }
            KmsError::InvalidArgument { field, .. } => {
                return Self::invalid_field("InvalidArgument", field.clone(), message);
            }
            KmsError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "KMSUnavailable"),
            KmsError::Backend(_) => (StatusCode::BAD_GATEWAY, "KMSBackendError"),
            // The admin API never takes ciphertext from callers: a wrapped key failing to open here is the KMS's fault.
            KmsError::InvalidCiphertext => (StatusCode::INTERNAL_SERVER_ERROR, "KMSInternalError"),
            KmsError::Io { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "KMSStorageError"),
        };
        Self::new(status, code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kms_errors_map_to_their_statuses() {
        let cases = [
            (KmsError::KeyNotFound("k".into()), StatusCode::NOT_FOUND),
            (KmsError::WrongState { state: "running".into(), action: "configure".into() }, StatusCode::CONFLICT),
            (KmsError::Unavailable("Vault is sealed".into()), StatusCode::SERVICE_UNAVAILABLE),
            (KmsError::Backend("permission denied".into()), StatusCode::BAD_GATEWAY),
            (KmsError::NotRunning, StatusCode::CONFLICT),
        ];
        for (err, status) in cases {
            let api = ApiError::from(err);
            assert_eq!(api.status, status, "{api:?}");
            assert!(!api.status.is_success());
        }
    }

    #[test]
    fn invalid_config_names_the_field() {
        let api = ApiError::from(KmsError::InvalidConfig {
            field: "key_dir".into(),
            message: "KMS key directory is required for local backend".into(),
        });
        assert_eq!(api.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&api.to_body()).unwrap(),
            serde_json::json!({
                "code": "InvalidConfig",
                "message": "KMS key directory is required for local backend",
                "field": "key_dir",
            })
        );
    }
}
