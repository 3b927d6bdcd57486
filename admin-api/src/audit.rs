//! Audit lines for the admin API: who (access key) did what (action, key), when and with what outcome, on the
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

/// Writes one audit line.
pub fn record(who: &str, action: &str, key_id: Option<&str>, outcome: Outcome<'_>) {
    let at = rfc3339(OffsetDateTime::now_utc());
    let key_id = key_id.unwrap_or("-");
    match outcome {
        Outcome::Success => {
            tracing::info!(target: AUDIT_TARGET, who, action, key_id, at, outcome = "success", "admin action");
        }
        Outcome::Denied => {
            tracing::warn!(target: AUDIT_TARGET, who, action, key_id, at, outcome = "denied", "admin action refused");
        }
        Outcome::Failed(code) => {
            tracing::warn!(target: AUDIT_TARGET, who, action, key_id, at, outcome = "failed", error = code, "admin action failed");
        }
    }
}
