//! What a scrub job does to one stored object: the store checks its record and every stored byte against what it
//! keeps for them ([`coffer_store::Store::scrub_object`]), reading, never changing. No KMS is involved: the
//! checksums are of the stored bytes, encrypted or not.

use coffer_admin_api::api::ScrubSpec;
use coffer_admin_api::ObjectAdminError;
use coffer_store::{ScrubFinding, StoreError};

use super::Outcome;
use crate::service::AppState;

/// A scrub's work on each object (its spec holds only the walk's scope and pace).
#[derive(Debug)]
pub(crate) struct ScrubPlan;

impl ScrubPlan {
    /// Refuses a spec naming a bucket that does not exist, before any job exists.
    pub(crate) async fn check(state: &AppState, spec: &ScrubSpec) -> Result<(), ObjectAdminError> {
        let Some(bucket) = &spec.bucket else { return Ok(()) };
        match state.store.head_bucket(bucket).await {
            Ok(_) => Ok(()),
            Err(StoreError::NoSuchBucket | StoreError::InvalidBucketName(_)) => {
                Err(ObjectAdminError::Invalid(format!("there is no bucket {bucket}")))
            }
            Err(e) => Err(ObjectAdminError::Internal(e.to_string())),
        }
    }

    /// Checks the stored object `id` of `bucket`.
    pub(crate) async fn process(&self, state: &AppState, bucket: &str, id: &str, prefix: &str) -> Outcome {
        match state.store.scrub_object(bucket, id, prefix).await {
            Ok(ScrubFinding::Intact { stored_bytes, .. }) => Outcome::Verified(stored_bytes),
            Ok(ScrubFinding::Unverifiable { stored_bytes, .. }) => Outcome::Unverifiable(stored_bytes),
            Ok(ScrubFinding::Damaged { key: Some(key), reason }) => Outcome::Damaged { key, reason },
            Ok(ScrubFinding::Damaged { key: None, reason }) => {
                Outcome::Damaged { key: String::new(), reason: format!("object directory {id}: {reason}") }
            }
            Ok(ScrubFinding::Absent | ScrubFinding::OutOfScope) | Err(StoreError::NoSuchBucket) => Outcome::Skipped,
            Err(e) => Outcome::Unchecked { key: String::new(), reason: format!("object directory {id}: {e}") },
        }
    }
}
