//! The commitment of an object to its part list, so a record that drops, adds or swaps whole parts does not read.
//!
//! Each package is bound to its part's number and size (see `package`), but nothing in a part says how many parts
//! its object has: a record that drops its last part, with the object size lowered to match, would read as a
//! shorter object. When an object is committed with its key at hand (every single-part write: PUT, copy, a rewrap
//! that encrypts; and CompleteMultipartUpload of SSE-S3 and SSE-KMS uploads), the server stores `HMAC-SHA256(part-list key, part list)` in its encryption metadata
//! (`part_list`), the key derived from the object key (`keys`), so only someone who can open the object key can
//! make one. SSE-S3 and SSE-KMS parts are format 3, whose associated data says the commitment exists: a record that
//! drops the commitment, or relabels the parts as format 2, does not read either. A read checks the commitment before it
//! reads any data.
//!
//! SSE-C multipart uploads are the exception: S3 clients send no customer key with CompleteMultipartUpload, so
//! SSE-C parts are format 2 and such objects have no commitment (docs/encryption-format.md, "What is bound"). A
//! single-part SSE-C object is committed all the same.

use aws_lc_rs::hmac;

use crate::error::{Result, SseError};
use crate::keys::KEY_LEN;
use crate::metadata::{ObjectEncryption, PartEncryption};
use crate::package::{Layout, ObjectCipher};

const PART_LIST_LABEL: &[u8] = b"coffer-sse/v3/part-list";

/// One part as an object's record lists it, in order: what the commitment covers.
#[derive(Clone, Copy, Debug)]
pub struct ListedPart<'a> {
    pub encryption: &'a PartEncryption,
    /// The part's plaintext size.
    pub size: u64,
}

/// `HMAC-SHA256(part-list key, message)` over an object's part list (base64 `part_list` in the metadata).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PartListTag([u8; KEY_LEN]);

// Not secret, but nothing a log needs.
impl std::fmt::Debug for PartListTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PartListTag(..)")
    }
}

impl PartListTag {
    pub(crate) fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

/// `"coffer-sse/v3/part-list" || u32be(count) || per part: u32be(part number) || u64be(plaintext size) ||
/// u32be(part format) || part salt (16)`.
fn message(parts: &[ListedPart<'_>]) -> Result<Vec<u8>> {
    let count = u32::try_from(parts.len()).map_err(|_| SseError::internal("An object has too many parts"))?;
    let mut message = Vec::with_capacity(PART_LIST_LABEL.len() + 4 + parts.len() * 32);
    message.extend_from_slice(PART_LIST_LABEL);
    message.extend_from_slice(&count.to_be_bytes());
    for part in parts {
        message.extend_from_slice(&part.encryption.part_number().to_be_bytes());
        message.extend_from_slice(&part.size.to_be_bytes());
        message.extend_from_slice(&part.encryption.format().to_be_bytes());
        message.extend_from_slice(part.encryption.salt());
    }
    Ok(message)
}

impl ObjectCipher {
    fn part_list_key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, self.object_key().part_list_key().as_ref())
    }

    /// Commits `encryption` (this object's metadata) to `parts`, the object's parts in order. Called once the
    /// part list is final: PutObject and CopyObject after their one part is written, CompleteMultipartUpload.
    pub fn commit_part_list(&self, encryption: &mut ObjectEncryption, parts: &[ListedPart<'_>]) -> Result<()> {
        let tag = hmac::sign(&self.part_list_key(), &message(parts)?);
        let bytes = tag.as_ref().try_into().expect("HMAC-SHA256 tags are 32 bytes");
        encryption.set_part_list(PartListTag::from_bytes(bytes));
        Ok(())
    }

    /// Checks `parts`, the object's parts in order as its record lists them, against the commitment the object
    /// was opened with: a commitment must match, and parts of format 3 need one. An encrypted object has at least
    /// one part (an empty one is one empty package). Fails with a 500: the record is damaged.
    pub fn check_part_list(&self, parts: &[ListedPart<'_>]) -> Result<()> {
        let damaged = || SseError::internal("The object's record does not list the parts its data was written as");
        if parts.is_empty() {
            return Err(damaged());
        }
        match self.committed_part_list() {
            Some(tag) => hmac::verify(&self.part_list_key(), &message(parts)?, tag.as_bytes()).map_err(|_| damaged()),
            None if parts.iter().any(|part| part.encryption.layout() == Layout::V3) => Err(damaged()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ObjectKey;
    use crate::metadata::SseMode;

    fn cipher_with(tag: Option<PartListTag>) -> ObjectCipher {
        ObjectCipher::new(ObjectKey::from_bytes(std::array::from_fn(|i| i as u8)), SseMode::SseS3, tag)
    }

    fn encryption() -> ObjectEncryption {
        ObjectEncryption::from_json(&format!(
            r#"{{"v":1,"mode":"sse-s3","wrapped_key":"d3JhcHBlZA==","sealed_key":"{}"}}"#,
            base64_simd::STANDARD.encode_to_string([7u8; 80])
        ))
        .unwrap()
    }

    fn committed(parts: &[ListedPart<'_>]) -> ObjectCipher {
        let mut encryption = encryption();
        cipher_with(None).commit_part_list(&mut encryption, parts).unwrap();
        cipher_with(encryption.part_list().cloned())
    }

    /// Pinned in docs/encryption-format.md ("Part list" vector; checked against Python's `hmac` and
    /// `cryptography` HKDF).
    #[test]
    fn part_list_test_vector() {
        let key = ObjectKey::from_bytes(std::array::from_fn(|i| i as u8));
        assert_eq!(
            hex::encode(key.part_list_key().as_ref()),
            "8e631d18d2cba9555d72a7498b11f631545300a7bf0760e8412e7ed589b0940f"
        );
        let (one, two) =
            (PartEncryption::new(Layout::V3, 1, [0x5a; 16]), PartEncryption::new(Layout::V3, 2, [0x5b; 16]));
        let parts = [ListedPart { encryption: &one, size: 13 }, ListedPart { encryption: &two, size: 0 }];
        assert_eq!(
            hex::encode(message(&parts).unwrap()),
            "636f666665722d7373652f76332f706172742d6c6973740000000200000001000000000000000d000000035a5a5a5a5a5a5a5a5a5a\
             5a5a5a5a5a5a000000020000000000000000000000035b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b"
        );
        let mut encryption = encryption();
        cipher_with(None).commit_part_list(&mut encryption, &parts).unwrap();
        assert_eq!(
            hex::encode(encryption.part_list().unwrap().as_bytes()),
            "a3ff540056aa04b9d7049ca714b10861aa9f91aedabceae6fc493cdbc8e26f9e"
        );
    }

    #[test]
    fn only_the_committed_list_reads() {
        let parts: Vec<PartEncryption> = (1..=3).map(|n| PartEncryption::new(Layout::V3, n, [n as u8; 16])).collect();
        let listed = |sizes: &[u64]| -> Vec<ListedPart<'_>> {
            parts.iter().zip(sizes).map(|(encryption, &size)| ListedPart { encryption, size }).collect()
        };
        let full = listed(&[10, 20, 30]);
        let cipher = committed(&full);
        cipher.check_part_list(&full).unwrap();
        let refused = |list: &[ListedPart<'_>], what: &str| {
            let error = cipher.check_part_list(list).unwrap_err();
            assert_eq!(error.status(), 500, "{what}");
        };
        refused(&full[..2], "last part dropped");
        refused(&full[1..], "first part dropped");
        refused(&[full[0], full[2]], "middle part dropped");
        refused(&[full[0], full[2], full[1]], "parts swapped");
        refused(&listed(&[10, 20, 31]), "a size changed");
        refused(&[full[0], full[1], full[2], full[2]], "a part repeated");
        refused(&[], "no parts");
        let other_salt = PartEncryption::new(Layout::V3, 3, [9; 16]);
        refused(&[full[0], full[1], ListedPart { encryption: &other_salt, size: 30 }], "another upload of a part");
        // Another object's commitment, or none, does not do for format-3 parts.
        let other = ObjectCipher::new(ObjectKey::generate(), SseMode::SseS3, cipher.committed_part_list().cloned());
        assert!(other.check_part_list(&full).is_err());
        assert!(cipher_with(None).check_part_list(&full).is_err());
    }

    #[test]
    fn format_2_parts_read_without_a_commitment() {
        let part = PartEncryption::new(Layout::V2, 1, [1; 16]);
        let listed = [ListedPart { encryption: &part, size: 5 }];
        cipher_with(None).check_part_list(&listed).unwrap();
        assert!(cipher_with(None).check_part_list(&[]).is_err());
        // A commitment, when there is one, is checked whatever the parts' format (single-part SSE-C objects).
        let cipher = committed(&listed);
        cipher.check_part_list(&listed).unwrap();
        assert!(cipher.check_part_list(&[ListedPart { encryption: &part, size: 4 }]).is_err());
    }
}
