//! Validation of bucket names, object keys, part numbers and upload ids, and the key → directory-name mapping.
//!
//! Bucket names and upload ids are used as path components only after validation restricts them to
//! `[a-z0-9.-]` / hex. Keys never are: an object lives in a directory named by the SHA-256 of its key, so no key
//! (`../x`, `%2e%2e`, `/abs`, NUL bytes, 1024 bytes long, `meta.json`) can name or escape into another path.

use aws_lc_rs::digest;

use crate::error::{Result, StoreError};

/// S3's maximum key length in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// S3's maximum part number.
pub const MAX_PART_NUMBER: u32 = 10_000;
/// Names the admin routes own (`/coffer/admin/...` etc.), so they can never be buckets.
const RESERVED_BUCKETS: [&str; 3] = ["coffer", "rustfs", "minio"];

/// Checks `name` against the S3 bucket naming rules and Coffer's reserved names.
pub(crate) fn validate_bucket_name(name: &str) -> Result<()> {
    let invalid = |reason: &str| Err(StoreError::InvalidBucketName(reason.to_owned()));
    if !(3..=63).contains(&name.len()) {
        return invalid("bucket names must be 3 to 63 characters long");
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-') {
        return invalid("bucket names may contain only lowercase letters, digits, dots and hyphens");
    }
    let alphanumeric = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alphanumeric(name.as_bytes()[0]) || !alphanumeric(name.as_bytes()[name.len() - 1]) {
        return invalid("bucket names must begin and end with a letter or digit");
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return invalid("bucket names must not contain '..', '.-' or '-.'");
    }
    if is_ipv4_like(name) {
        return invalid("bucket names must not be formatted as an IP address");
    }
    if name.starts_with("xn--")
        || name.starts_with("sthree-")
        || name.ends_with("-s3alias")
        || name.ends_with("--ol-s3")
    {
        return invalid("bucket names must not use a prefix or suffix reserved by S3");
    }
    if RESERVED_BUCKETS.contains(&name) {
        return invalid("this bucket name is reserved");
    }
    Ok(())
}

fn is_ipv4_like(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    labels.len() == 4 && labels.iter().all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
}

/// Checks an object key: 1..=1024 bytes (any UTF-8, including `/`, `..` and NUL).
pub(crate) fn validate_key(key: &str) -> Result<()> {
    match key.len() {
        0 => Err(StoreError::InvalidKey),
        len if len > MAX_KEY_LEN => Err(StoreError::KeyTooLong),
        _ => Ok(()),
    }
}

/// Checks a part number is within 1..=10000.
pub(crate) fn validate_part_number(number: u32) -> Result<()> {
    if (1..=MAX_PART_NUMBER).contains(&number) {
        Ok(())
    } else {
        Err(StoreError::InvalidPart(number))
    }
}

/// True if `id` is `len` lowercase hex characters.
fn is_lower_hex(id: &str, len: usize) -> bool {
    id.len() == len && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// True if `id` has the shape of an id made by `create_upload` (32 lowercase hex characters).
pub(crate) fn is_upload_id(id: &str) -> bool {
    is_lower_hex(id, 32)
}

/// How S3 names the null version (the one written while a bucket was unversioned or suspended) in requests and
/// listings; never a version id the store gives.
pub const NULL_VERSION: &str = "null";

/// True if `id` has the shape of a version id the store gives (32 lowercase hex characters; never "null").
pub fn is_version_id(id: &str) -> bool {
    is_lower_hex(id, 32)
}

/// True if `name` has the shape of an object directory name (64 lowercase hex characters).
pub(crate) fn is_object_dir_name(name: &str) -> bool {
    is_lower_hex(name, 64)
}

/// The directory name of the object `key`: lowercase hex SHA-256 of its UTF-8 bytes.
pub(crate) fn object_dir_name(key: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, key.as_bytes()))
}

/// True if `name` could be a data file this store wrote (`data-` + hex); guards against a tampered metadata file
/// pointing elsewhere.
pub(crate) fn is_data_file_name(name: &str) -> bool {
    name.strip_prefix("data-").is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_bucket_names() {
        for name in ["abc", "my-bucket", "my.bucket.01", "1bucket", "a-b.c-d", "1.2.3.4a", &"a".repeat(63)] {
            assert!(validate_bucket_name(name).is_ok(), "{name} should be valid");
        }
    }

    #[test]
    fn rejects_invalid_bucket_names() {
        let long = "a".repeat(64);
        for name in [
            "",
            "ab",
            &long,
            "ABC",
            "my_bucket",
            "my bucket",
            "-abc",
            "abc-",
            ".abc",
            "abc.",
            "a..b",
            "a.-b",
            "a-.b",
            "192.168.1.1",
            "10.0.0.255",
            "xn--abc",
            "sthree-abc",
            "abc-s3alias",
            "abc--ol-s3",
            "../etc",
            "a/b",
            "café",
            "abc\0",
        ] {
            assert!(
                matches!(validate_bucket_name(name), Err(StoreError::InvalidBucketName(_))),
                "{name:?} should be invalid"
            );
        }
    }

    #[test]
    fn rejects_reserved_bucket_names() {
        for name in ["coffer", "rustfs", "minio"] {
            assert!(matches!(validate_bucket_name(name), Err(StoreError::InvalidBucketName(_))));
        }
    }

    #[test]
    fn key_length_limits() {
        assert!(validate_key("k").is_ok());
        assert!(validate_key(&"k".repeat(1024)).is_ok());
        assert!(validate_key(&"é".repeat(512)).is_ok());
        assert!(matches!(validate_key(&"k".repeat(1025)), Err(StoreError::KeyTooLong)));
        assert!(matches!(validate_key(&format!("{}k", "é".repeat(512))), Err(StoreError::KeyTooLong)));
        assert!(matches!(validate_key(""), Err(StoreError::InvalidKey)));
    }

    #[test]
    fn part_numbers() {
        assert!(validate_part_number(1).is_ok());
        assert!(validate_part_number(10_000).is_ok());
        assert!(matches!(validate_part_number(0), Err(StoreError::InvalidPart(0))));
        assert!(matches!(validate_part_number(10_001), Err(StoreError::InvalidPart(10_001))));
    }

    #[test]
    fn upload_ids_are_exactly_32_lowercase_hex() {
        assert!(is_upload_id("0123456789abcdef0123456789abcdef"));
        for id in ["", "0123456789ABCDEF0123456789abcdef", "../../../../../../../../../../etc", "0123456789abcdef"] {
            assert!(!is_upload_id(id), "{id:?}");
        }
    }

    #[test]
    fn object_dir_names_are_hashes() {
        let name = object_dir_name("../../etc/passwd");
        assert_eq!(name.len(), 64);
        assert!(name.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(object_dir_name("a"), object_dir_name("a\0"));
        // SHA-256("abc")
        assert_eq!(object_dir_name("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn data_file_names() {
        assert!(is_data_file_name("data-0123abcd"));
        for name in ["data-", "data-../x", "../data-00", "meta.json", "data-00/../../x"] {
            assert!(!is_data_file_name(name), "{name:?}");
        }
    }
}
