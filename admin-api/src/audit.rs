//! Audit lines for the admin API: who (access key) did what (action, subject), when and with what outcome, on the
//! `coffer::audit` tracing target. Only identifiers and error codes are logged: request bodies, which carry tokens
//! and master keys, never are.

use time::OffsetDateTime;

use crate::api::rfc3339;

/// The tracing target audit lines are written to, so operators can route them to their own sink.
pub const AUDIT_TARGET: &str = "coffer::audit";

/// How an audited request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    Success,
    /// The caller is authenticated but not an admin, or not authenticated at all.
    Denied,
    /// The request was refused or failed; carries the API error code.
    Failed(&'a str),
}

/// The id the server gave a request (its `x-amz-request-id`), which it keeps in the request's extensions so that
/// audit lines name the request the client saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Writes one audit line: `access_key` did `action` on `subject` (a key, store, bucket or job) in request
/// `request_id`.
pub fn record(
    request_id: Option<&RequestId>,
    access_key: &str,
    action: &str,
    subject: Option<&str>,
    outcome: Outcome<'_>,
) {
    let at = rfc3339(OffsetDateTime::now_utc());
    let subject = subject.unwrap_or("-");
    let request_id = request_id.map_or("-", |id| id.0.as_str());
    match outcome {
        Outcome::Success => {
            tracing::info!(target: AUDIT_TARGET, request_id, access_key, action, subject, at, outcome = "success", "admin action");
        }
        Outcome::Denied => {
            tracing::warn!(target: AUDIT_TARGET, request_id, access_key, action, subject, at, outcome = "denied", "admin action refused");
        }
        Outcome::Failed(code) => {
            tracing::warn!(target: AUDIT_TARGET, request_id, access_key, action, subject, at, outcome = "failed", error = code, "admin action failed");
        }
    }
}
