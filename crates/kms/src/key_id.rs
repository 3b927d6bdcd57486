//! Master key ids: what a valid one looks like and how one is generated when the caller names none.
//!
//! Ids become file names (local backend) and URL path segments (Vault transit), so they are restricted to a safe
//! alphabet and can never name a path outside the key store.

use crate::error::{KmsError, Result};

/// The longest key id accepted.
pub const MAX_KEY_ID_LEN: usize = 128;

/// Accepts 1 to [`MAX_KEY_ID_LEN`] ASCII letters, digits, `-`, `_` or `.`, starting with a letter or digit.
pub fn validate_key_id(key_id: &str) -> Result<()> {
    let valid = key_id.len() <= MAX_KEY_ID_LEN
        && key_id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && key_id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(KmsError::InvalidKeyId(format!(
            "key ids are 1 to {MAX_KEY_ID_LEN} letters, digits, '-', '_' or '.', starting with a letter or digit"
        )))
    }
}

/// A fresh random id (`coffer-` and 32 hex digits) for a key created without a name.
pub fn generate_key_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random number generator failed");
    format!("coffer-{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_safe_file_names_and_path_segments() {
        for good in ["k", "coffer-default", "Orders_2024.v1", "0", &"a".repeat(MAX_KEY_ID_LEN)] {
            assert!(validate_key_id(good).is_ok(), "{good}");
        }
        let too_long = "a".repeat(MAX_KEY_ID_LEN + 1);
        for bad in ["", ".", "..", ".hidden", "-k", "_k", "a/b", "a\\b", "a b", "k?x", "k%2F", "ключ", "k\0", &too_long]
        {
            assert!(matches!(validate_key_id(bad), Err(KmsError::InvalidKeyId(_))), "{bad:?}");
        }
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let one = generate_key_id();
        assert!(validate_key_id(&one).is_ok(), "{one}");
        assert!(one.starts_with("coffer-") && one.len() == "coffer-".len() + 32);
        assert_ne!(one, generate_key_id());
    }
}
