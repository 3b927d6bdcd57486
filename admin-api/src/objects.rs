//! [`ObjectAdmin`]: what the admin API needs from the side of the server that holds objects — key impact reports
//! and jobs over stored objects (rewraps, scrubs). The server implements it and hands it to [`crate::AdminRoute::with_objects`]; this
//! crate only routes, checks and answers, so it never touches the store or object data itself.

use coffer_kms::KmsError;
use http::StatusCode;

use crate::api::{ImpactReport, JobInfo, RewrapSpec, ScrubSpec};
use crate::error::ApiError;

/// What an impact report counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImpactScope {
    /// Objects whose bucket key this key (`store/key`, or `key` in the default store) wrapped.
    Key(String),
    /// Objects whose bucket key any key of this store wrapped.
    Store(String),
}

/// A change of a job's state asked for by an admin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobAction {
    Pause,
    Resume,
    Cancel,
}

/// Why the object side refused or failed a call.
#[derive(Debug, thiserror::Error)]
pub enum ObjectAdminError {
    /// No job with that id.
    #[error("no job {0}")]
    NoSuchJob(String),
    /// The job's state does not allow the action (e.g. resuming a completed job).
    #[error("{0}")]
    InvalidJobState(String),
    /// The request names something that does not fit (a missing bucket, a plaintext target…).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Kms(#[from] KmsError),
    /// A storage failure; the message is safe to show (it names buckets and keys at most).
    #[error("{0}")]
    Internal(String),
}

impl From<ObjectAdminError> for ApiError {
    fn from(err: ObjectAdminError) -> Self {
        match err {
            ObjectAdminError::NoSuchJob(id) => {
                ApiError::new(StatusCode::NOT_FOUND, "NoSuchJob", format!("there is no job {id}"))
            }
            ObjectAdminError::InvalidJobState(message) => {
                ApiError::new(StatusCode::CONFLICT, "InvalidJobState", message)
            }
            ObjectAdminError::Invalid(message) => ApiError::bad_request("InvalidRequest", message),
            ObjectAdminError::Kms(err) => err.into(),
            ObjectAdminError::Internal(message) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
            }
        }
    }
}

/// The object side of the admin API.
#[async_trait::async_trait]
pub trait ObjectAdmin: Send + Sync {
    /// Counts the objects (and bytes) whose readability depends on `scope`, per bucket (and per key version).
    async fn impact(&self, scope: &ImpactScope) -> Result<ImpactReport, ObjectAdminError>;
    /// Checks `spec` and starts a rewrap job (nothing is created when the spec is refused).
    async fn start_rewrap(&self, spec: RewrapSpec) -> Result<JobInfo, ObjectAdminError>;
    /// Checks `spec` and starts a scrub job (nothing is created when the spec is refused).
    async fn start_scrub(&self, spec: ScrubSpec) -> Result<JobInfo, ObjectAdminError>;
    /// Every job, newest first.
    async fn jobs(&self) -> Vec<JobInfo>;
    async fn job(&self, id: &str) -> Result<JobInfo, ObjectAdminError>;
    async fn control_job(&self, id: &str, action: JobAction) -> Result<JobInfo, ObjectAdminError>;
}
