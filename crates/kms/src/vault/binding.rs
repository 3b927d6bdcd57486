//! How a transit key binds the encryption context to the data keys it wraps, and the payload each way stores.
//!
//! A *derived* key (`derived=true`, Coffer's own keys) binds the context inside Vault: transit derives a key per
//! context, so a blob opens only with the context it was made with. A key created the standard way
//! (`bao write -f transit/keys/NAME`) is not derived, and transit ignores any context sent with it. For such keys
//! Coffer binds the context itself: beside the transit ciphertext it stores a tag, HMAC-SHA256 over the context's
//! canonical bytes under a key derived (HKDF-SHA256) from the data key, and an unwrap whose context does not match
//! the tag fails. Transit `rewrap` keeps working for both: the data key, and so the tag, does not change.
//!
//! Payloads (the backend-specific part of a [`crate::WrappedKey`]):
//!
//! ```text
//! bound by Vault:   vault:vN:<transit ciphertext>
//! bound by Coffer:  coffer-ctx1:<base64 of the 32-byte tag>:vault:vN:<transit ciphertext>
//! ```
//!
//! A blob must be opened the way its key binds: a Vault-bound payload under a non-derived key would otherwise open
//! under any context, so the binding a payload claims is checked against the key's.

use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
use aws_lc_rs::hmac;
use base64_simd::STANDARD;

use crate::error::{KmsError, Result};
use crate::types::{EncryptionContext, KeyMaterial};

const COFFER_PREFIX: &str = "coffer-ctx1:";
const TAG_INFO: &[u8] = b"coffer vault-transit context binding v1";

/// Who binds the encryption context to a data key wrapped under a transit key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ContextBinding {
    /// A derived key: transit derives a key per context.
    Vault,
    /// A non-derived key: Coffer's tag binds the context.
    Coffer,
}

/// A payload taken apart: how it is bound, its tag when Coffer binds it, and the transit ciphertext.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Sealed<'a> {
    pub binding: ContextBinding,
    pub tag: Option<[u8; 32]>,
    pub ciphertext: &'a str,
}

impl ContextBinding {
    /// The context as sent to transit: the derivation context of a derived key, nothing otherwise.
    pub fn transit_context(self, context: &EncryptionContext) -> Option<String> {
        match self {
            Self::Vault => Some(STANDARD.encode_to_string(context.canonical_bytes())),
            Self::Coffer => None,
        }
    }

    /// The payload to store for a transit ciphertext of `data_key` made under this binding.
    pub fn payload(self, ciphertext: &str, data_key: &KeyMaterial, context: &EncryptionContext) -> String {
        match self {
            Self::Vault => ciphertext.to_owned(),
            Self::Coffer => coffer_payload(context_tag(data_key, context).as_ref(), ciphertext),
        }
    }
}

impl<'a> Sealed<'a> {
    /// Parses a payload; anything malformed is `InvalidCiphertext`.
    pub fn parse(payload: &'a str) -> Result<Self> {
        let Some(rest) = payload.strip_prefix(COFFER_PREFIX) else {
            return Ok(Self { binding: ContextBinding::Vault, tag: None, ciphertext: payload });
        };
        let (tag, ciphertext) = rest.split_once(':').ok_or(KmsError::InvalidCiphertext)?;
        let tag = STANDARD.decode_to_vec(tag).map_err(|_| KmsError::InvalidCiphertext)?;
        let tag: [u8; 32] = tag.try_into().map_err(|_| KmsError::InvalidCiphertext)?;
        Ok(Self { binding: ContextBinding::Coffer, tag: Some(tag), ciphertext })
    }

    /// The same payload around another transit ciphertext of the same data key (after `rewrap`): the tag stays.
    pub fn around(&self, ciphertext: &str) -> String {
        match &self.tag {
            Some(tag) => coffer_payload(tag, ciphertext),
            None => ciphertext.to_owned(),
        }
    }

    /// Checks, in constant time, that an unwrapped data key belongs to `context` (always true for Vault-bound
    /// payloads, which transit only opens under their own context).
    pub fn verify(&self, data_key: &KeyMaterial, context: &EncryptionContext) -> Result<()> {
        let Some(tag) = &self.tag else { return Ok(()) };
        hmac::verify(&tag_key(data_key), &context.canonical_bytes(), tag).map_err(|_| KmsError::InvalidCiphertext)
    }
}

fn coffer_payload(tag: &[u8], ciphertext: &str) -> String {
    format!("{COFFER_PREFIX}{}:{ciphertext}", STANDARD.encode_to_string(tag))
}

fn tag_key(data_key: &KeyMaterial) -> hmac::Key {
    let prk = Salt::new(HKDF_SHA256, &[]).extract(data_key.as_bytes());
    let okm = prk.expand(&[TAG_INFO], hmac::HMAC_SHA256).expect("32 bytes is a valid HKDF-SHA256 output length");
    hmac::Key::from(okm)
}

fn context_tag(data_key: &KeyMaterial, context: &EncryptionContext) -> hmac::Tag {
    hmac::sign(&tag_key(data_key), &context.canonical_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(object: &str) -> EncryptionContext {
        EncryptionContext::new().with("aws:s3:arn", format!("arn:aws:s3:::b/{object}"))
    }

    #[test]
    fn coffer_bound_payloads_open_only_under_their_context() {
        let data_key = KeyMaterial::from_bytes([7; 32]);
        let payload = ContextBinding::Coffer.payload("vault:v2:abc", &data_key, &context("a"));
        let sealed = Sealed::parse(&payload).unwrap();
        assert_eq!((sealed.binding, sealed.ciphertext), (ContextBinding::Coffer, "vault:v2:abc"));
        sealed.verify(&data_key, &context("a")).unwrap();
        assert!(matches!(sealed.verify(&data_key, &context("b")), Err(KmsError::InvalidCiphertext)));
        assert!(matches!(
            sealed.verify(&KeyMaterial::from_bytes([8; 32]), &context("a")),
            Err(KmsError::InvalidCiphertext)
        ));
        assert_eq!(sealed.around("vault:v3:def"), payload.replace("vault:v2:abc", "vault:v3:def"));
    }

    #[test]
    fn vault_bound_payloads_are_the_transit_ciphertext() {
        let data_key = KeyMaterial::from_bytes([7; 32]);
        assert_eq!(ContextBinding::Vault.payload("vault:v1:abc", &data_key, &context("a")), "vault:v1:abc");
        let sealed = Sealed::parse("vault:v1:abc").unwrap();
        assert_eq!(sealed, Sealed { binding: ContextBinding::Vault, tag: None, ciphertext: "vault:v1:abc" });
        assert!(ContextBinding::Coffer.transit_context(&context("a")).is_none());
        assert!(ContextBinding::Vault.transit_context(&context("a")).is_some());
    }

    /// A test vector, so the tag can be recomputed outside Coffer (docs/kms-vault.md).
    #[test]
    fn the_tag_matches_its_test_vector() {
        let data_key = KeyMaterial::from_bytes([0x42; 32]);
        let context = EncryptionContext::new().with("aws:s3:arn", "arn:aws:s3:::photos/cat.jpg");
        let payload = ContextBinding::Coffer.payload("vault:v1:AAAA", &data_key, &context);
        assert_eq!(payload, "coffer-ctx1:KqWLnkPksljjcFiie6/GQOlbLy9pZPR/t0E6A+Q/PeM=:vault:v1:AAAA");
    }

    #[test]
    fn malformed_coffer_payloads_are_refused() {
        for bad in ["coffer-ctx1:", "coffer-ctx1:vault:v1:abc", "coffer-ctx1:AAAA:vault:v1:abc", "coffer-ctx1:!!:x"] {
            assert!(matches!(Sealed::parse(bad), Err(KmsError::InvalidCiphertext)), "{bad}");
        }
    }
}
