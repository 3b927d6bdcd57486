//! Checks on key-management requests that every backend applies the same way: the arguments of a create-key
//! request, the pending-deletion window, expiration times and minimum decryption versions.

use time::OffsetDateTime;

use crate::error::{KmsError, Result};
use crate::key_id::{generate_key_id, validate_key_id};

/// The pending-deletion window AWS KMS allows, in days.
pub const PENDING_WINDOW_DAYS: std::ops::RangeInclusive<u32> = 7..=30;
/// The longest key description accepted, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 8192;

/// The id of a key to create: `key_id` once validated, or a fresh one; refuses an over-long description.
pub(crate) fn key_to_create(key_id: Option<&str>, description: Option<&str>) -> Result<String> {
    let key_id = match key_id {
        Some(key_id) => {
            validate_key_id(key_id)?;
            key_id.to_owned()
        }
        None => generate_key_id(),
    };
    if description.is_some_and(|text| text.len() > MAX_DESCRIPTION_LEN) {
        return Err(KmsError::invalid_argument(
            "description",
            format!("key description must be at most {MAX_DESCRIPTION_LEN} bytes"),
        ));
    }
    Ok(key_id)
}

/// Checks an expiration time to set on a key: it must lie in the future (a key created already expired is useless).
pub fn expiry_to_set(expires_at: Option<OffsetDateTime>) -> Result<Option<OffsetDateTime>> {
    match expires_at {
        Some(at) if at <= OffsetDateTime::now_utc() => {
            Err(KmsError::invalid_argument("expires_at", "a key's expiration time must lie in the future"))
        }
        other => Ok(other),
    }
}

/// Refuses to make data keys with a key whose expiration time has passed.
pub(crate) fn refuse_if_expired(key_id: &str, expires_at: Option<OffsetDateTime>) -> Result<()> {
    match expires_at {
        Some(at) if at <= OffsetDateTime::now_utc() => Err(expired(key_id, at)),
        _ => Ok(()),
    }
}

pub(crate) fn expired(key_id: &str, at: OffsetDateTime) -> KmsError {
    let expired_at = at.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| at.to_string());
    KmsError::KeyExpired { key_id: key_id.to_owned(), expired_at }
}

/// Checks a minimum decryption version to set on a key whose newest version is `current_version`: as in Vault, it
/// must name one of the key's versions (so the newest always decrypts); lowering it again is allowed.
pub(crate) fn check_min_decryption_version(version: u32, current_version: u32) -> Result<()> {
    if (1..=current_version).contains(&version) {
        return Ok(());
    }
    Err(KmsError::invalid_argument(
        "min_decryption_version",
        format!("minimum decryption version must be between 1 and the key's current version {current_version}"),
    ))
}

/// When a key scheduled for deletion now with a window of `pending_window_days` is deleted; refuses a window
/// outside [`PENDING_WINDOW_DAYS`].
pub(crate) fn deletion_date(pending_window_days: u32) -> Result<OffsetDateTime> {
    if !PENDING_WINDOW_DAYS.contains(&pending_window_days) {
        return Err(KmsError::invalid_argument(
            "pending_window_days",
            format!(
                "pending window must be between {} and {} days",
                PENDING_WINDOW_DAYS.start(),
                PENDING_WINDOW_DAYS.end()
            ),
        ));
    }
    Ok(OffsetDateTime::now_utc() + time::Duration::days(i64::from(pending_window_days)))
}
