//! Checks on key-management requests that every backend applies the same way: the arguments of a create-key
//! request and the pending-deletion window.

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
