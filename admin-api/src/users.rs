//! [`UserAdmin`]: what the admin API needs from the server to manage users' identity policies. The server parses,
//! keeps and applies them; this crate routes, authorizes and answers.

use http::StatusCode;
use serde::Serialize;

use crate::error::ApiError;

/// Why the server refused or failed a user-policy call.
#[derive(Debug, thiserror::Error)]
pub enum UserAdminError {
    #[error("there is no user {0}")]
    NoSuchUser(String),
    #[error("user {0} has no attached policy")]
    NoSuchPolicy(String),
    /// The document is not a valid identity policy; the message names the element.
    #[error("{0}")]
    MalformedPolicy(String),
    /// A storage failure; the message is safe to show.
    #[error("{0}")]
    Internal(String),
}

impl From<UserAdminError> for ApiError {
    fn from(err: UserAdminError) -> Self {
        let message = err.to_string();
        match err {
            UserAdminError::NoSuchUser(_) => ApiError::new(StatusCode::NOT_FOUND, "NoSuchUser", message),
            UserAdminError::NoSuchPolicy(_) => ApiError::new(StatusCode::NOT_FOUND, "NoSuchUserPolicy", message),
            UserAdminError::MalformedPolicy(_) => ApiError::bad_request("MalformedPolicy", message),
            UserAdminError::Internal(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message),
        }
    }
}

/// A user's attached policy, as the user-policy endpoints answer it.
#[derive(Debug, Serialize)]
pub struct UserPolicy {
    pub user: String,
    /// The policy document as attached; `null` once detached.
    pub policy: Option<Box<serde_json::value::RawValue>>,
}

/// The user side of the admin API.
#[async_trait::async_trait]
pub trait UserAdmin: Send + Sync {
    /// The policy attached to `user` through this API (not the users file's).
    async fn user_policy(&self, user: &str) -> Result<String, UserAdminError>;
    /// Checks `policy` and attaches it to `user`, replacing any; effective for the next request.
    async fn put_user_policy(&self, user: &str, policy: &str) -> Result<(), UserAdminError>;
    /// Detaches `user`'s policy.
    async fn delete_user_policy(&self, user: &str) -> Result<(), UserAdminError>;
}
