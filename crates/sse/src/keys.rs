//! The key hierarchy below the KMS: object keys, how they are sealed, and the per-part keys derived from them.
//!
//! ```text
//! outer key (KMS bucket key | customer key) --HKDF(seal salt)--> KEK --AES-256-GCM(AAD: mode, bucket, key)--> sealed object key
//! object key --HKDF(part salt, part number)--> part key + nonce prefix --> packages (see `package`)
//! object key --HKDF("coffer-sse/v3/part-list")--> part-list key --HMAC--> commitment to the parts (see `part_list`)
//! ```
//!
//! Every object (every version written, every multipart upload) gets a fresh random object key, and every seal a
//! fresh random salt, so no two seals share a KEK and each KEK seals exactly one key (hence the fixed zero nonce).
//! The data only depends on the object key, so changing the outer key (`reseal`) rewrites metadata only.
//! docs/encryption-format.md gives the exact byte layouts; the test vectors below pin them.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf::{KeyType, Salt, HKDF_SHA256};
use base64_simd::STANDARD;
use zeroize::Zeroizing;

use crate::metadata::SseMode;

/// Length of every symmetric key in the hierarchy (AES-256).
pub(crate) const KEY_LEN: usize = 32;
/// Length of the GCM tag of a package and of a seal.
pub(crate) const TAG_LEN: usize = 16;
const SEAL_SALT_LEN: usize = 32;
/// Length of the random per-part salt stored in the part metadata.
pub(crate) const PART_SALT_LEN: usize = 16;
const NONCE_PREFIX_LEN: usize = 7;
const SEALED_LEN: usize = SEAL_SALT_LEN + KEY_LEN + TAG_LEN;

const KEK_INFO: &[u8] = b"coffer-sse/v1/kek";
const SEAL_AAD_LABEL: &[u8] = b"coffer-sse/v1/seal";
const PART_INFO: &[u8] = b"coffer-sse/v1/part";
const PART_LIST_INFO: &[u8] = b"coffer-sse/v3/part-list";

/// Fills `bytes` from the operating system's CSPRNG.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the OS random number generator failed");
    bytes
}

/// HKDF-SHA256 with an output of `out.len()` bytes (always far below HKDF's 255 × 32 byte limit).
fn hkdf(salt: &[u8], ikm: &[u8], info: &[&[u8]], out: &mut [u8]) {
    struct Len(usize);
    impl KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    Salt::new(HKDF_SHA256, salt)
        .extract(ikm)
        .expand(info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .expect("HKDF-SHA256 output length is within limits");
}

fn aes_gcm_key(key: &[u8; KEY_LEN]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte key is valid for AES-256-GCM"))
}

/// What a seal is bound to: a sealed key copied to another bucket, object name or mode does not open.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SealBinding<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub mode: SseMode,
}

impl SealBinding<'_> {
    /// `label || (u32be len || bytes)` for mode, bucket and object key.
    fn aad(&self) -> Vec<u8> {
        let fields = [self.mode.as_str().as_bytes(), self.bucket.as_bytes(), self.key.as_bytes()];
        let mut aad = Vec::with_capacity(SEAL_AAD_LABEL.len() + fields.iter().map(|f| 4 + f.len()).sum::<usize>());
        aad.extend_from_slice(SEAL_AAD_LABEL);
        for field in fields {
            let len = u32::try_from(field.len()).expect("bucket and object names are far below 4 GiB");
            aad.extend_from_slice(&len.to_be_bytes());
            aad.extend_from_slice(field);
        }
        aad
    }
}

/// An object key sealed under a KEK: `seal salt (32) || ciphertext (32) || tag (16)`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SealedKey([u8; SEALED_LEN]);

// Not secret (it is ciphertext), but nothing a log needs either.
impl std::fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedKey(..)")
    }
}

impl SealedKey {
    pub(crate) fn to_base64(&self) -> String {
        STANDARD.encode_to_string(self.0)
    }

    pub(crate) fn from_base64(text: &str) -> Option<Self> {
        let bytes = STANDARD.decode_to_vec(text).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

/// The random 256-bit key the data of one object is encrypted under.
pub(crate) struct ObjectKey(Zeroizing<[u8; KEY_LEN]>);

impl std::fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObjectKey(<redacted>)")
    }
}

impl ObjectKey {
    pub(crate) fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(key.as_mut()).expect("the OS random number generator failed");
        Self(key)
    }

    /// Seals this key under `outer` with a fresh random salt.
    pub(crate) fn seal(&self, outer: &[u8; KEY_LEN], binding: SealBinding<'_>) -> SealedKey {
        self.seal_with_salt(outer, binding, random_bytes())
    }

    fn seal_with_salt(&self, outer: &[u8; KEY_LEN], binding: SealBinding<'_>, salt: [u8; SEAL_SALT_LEN]) -> SealedKey {
        let kek = kek(outer, &salt);
        let mut sealed = [0u8; SEALED_LEN];
        let (salt_out, rest) = sealed.split_at_mut(SEAL_SALT_LEN);
        let (ciphertext, tag_out) = rest.split_at_mut(KEY_LEN);
        salt_out.copy_from_slice(&salt);
        ciphertext.copy_from_slice(self.0.as_ref());
        let tag = kek
            .seal_in_place_separate_tag(seal_nonce(), Aad::from(binding.aad()), ciphertext)
            .expect("AES-256-GCM sealing of 32 bytes cannot fail");
        tag_out.copy_from_slice(tag.as_ref());
        SealedKey(sealed)
    }

    /// Opens a sealed key; `None` when `outer` is not the key it was sealed under or the binding differs.
    pub(crate) fn unseal(outer: &[u8; KEY_LEN], sealed: &SealedKey, binding: SealBinding<'_>) -> Option<Self> {
        let (salt, ciphertext_and_tag) = sealed.0.split_at(SEAL_SALT_LEN);
        let salt: &[u8; SEAL_SALT_LEN] = salt.try_into().expect("split at the salt length");
        let mut buffer = Zeroizing::new([0u8; KEY_LEN + TAG_LEN]);
        buffer.copy_from_slice(ciphertext_and_tag);
        let plaintext = kek(outer, salt).open_in_place(seal_nonce(), Aad::from(binding.aad()), buffer.as_mut()).ok()?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(plaintext);
        Some(Self(key))
    }

    /// The key and nonce prefix of one part: `HKDF(salt = part salt, IKM = object key, info = label || u32be(n))`.
    pub(crate) fn part_key(&self, salt: &[u8; PART_SALT_LEN], part_number: u32) -> PartKey {
        let mut okm = Zeroizing::new([0u8; KEY_LEN + NONCE_PREFIX_LEN]);
        hkdf(salt, self.0.as_ref(), &[PART_INFO, &part_number.to_be_bytes()], okm.as_mut());
        let (key, prefix) = okm.split_at(KEY_LEN);
        PartKey {
            aead: aes_gcm_key(key.try_into().expect("split at the key length")),
            nonce_prefix: prefix.try_into().expect("split at the key length"),
        }
    }

    /// The key the commitment to the object's part list is made with: `HKDF(salt = "", IKM = object key,
    /// info = "coffer-sse/v3/part-list")`, 32 bytes.
    pub(crate) fn part_list_key(&self) -> Zeroizing<[u8; KEY_LEN]> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        hkdf(&[], self.0.as_ref(), &[PART_LIST_INFO], key.as_mut());
        key
    }

    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }
}

/// `HKDF(salt = seal salt, IKM = outer key, info = "coffer-sse/v1/kek")`.
fn kek(outer: &[u8; KEY_LEN], salt: &[u8; SEAL_SALT_LEN]) -> LessSafeKey {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    hkdf(salt, outer, &[KEK_INFO], key.as_mut());
    aes_gcm_key(&key)
}

/// Each KEK seals exactly one object key (its salt is fresh), so a constant nonce never repeats under a key.
fn seal_nonce() -> Nonce {
    Nonce::assume_unique_for_key([0u8; NONCE_LEN])
}

/// The AES-256-GCM key of one part plus the prefix of its package nonces.
pub(crate) struct PartKey {
    aead: LessSafeKey,
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
}

impl PartKey {
    /// `prefix (7) || u32be(package index) || final flag (1: 0x01 on the last package, else 0x00)`.
    fn nonce(&self, index: u32, last: bool) -> Nonce {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..NONCE_PREFIX_LEN].copy_from_slice(&self.nonce_prefix);
        nonce[NONCE_PREFIX_LEN..NONCE_LEN - 1].copy_from_slice(&index.to_be_bytes());
        nonce[NONCE_LEN - 1] = u8::from(last);
        Nonce::assume_unique_for_key(nonce)
    }

    /// Encrypts one package in place, authenticating `aad` with it (empty in format 1, the part layout in format
    /// 2: see `package`), and returns its tag.
    pub(crate) fn seal(&self, index: u32, last: bool, aad: &[u8], in_out: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = self
            .aead
            .seal_in_place_separate_tag(self.nonce(index, last), Aad::from(aad), in_out)
            .expect("AES-256-GCM sealing of a package cannot fail");
        tag.as_ref().try_into().expect("AES-256-GCM tags are 16 bytes")
    }

    /// Decrypts one package in place; `false` (with `in_out` clobbered) when it does not authenticate.
    #[must_use]
    pub(crate) fn open(&self, index: u32, last: bool, aad: &[u8], tag: &[u8], in_out: &mut [u8]) -> bool {
        self.aead.open_in_place_separate_tag(self.nonce(index, last), Aad::from(aad), tag, in_out).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTER: [u8; 32] = [0x42; 32];

    fn binding(mode: SseMode) -> SealBinding<'static> {
        SealBinding { bucket: "photos", key: "2024/cat.jpg", mode }
    }

    fn object_key() -> ObjectKey {
        ObjectKey::from_bytes(std::array::from_fn(|i| i as u8))
    }

    #[test]
    fn seal_round_trips() {
        let key = ObjectKey::generate();
        let sealed = key.seal(&OUTER, binding(SseMode::SseKms));
        let opened = ObjectKey::unseal(&OUTER, &sealed, binding(SseMode::SseKms)).expect("opens");
        assert_eq!(*opened.0, *key.0);
        let parsed = SealedKey::from_base64(&sealed.to_base64()).unwrap();
        assert!(parsed == sealed);
    }

    #[test]
    fn seal_uses_a_fresh_salt_every_time() {
        let key = object_key();
        let a = key.seal(&OUTER, binding(SseMode::SseS3));
        let b = key.seal(&OUTER, binding(SseMode::SseS3));
        assert!(a != b);
        assert_ne!(a.0[..SEAL_SALT_LEN], b.0[..SEAL_SALT_LEN]);
    }

    #[test]
    fn sealed_key_moved_elsewhere_does_not_open() {
        let sealed = object_key().seal(&OUTER, binding(SseMode::SseC));
        let moved = [
            SealBinding { bucket: "photos2", ..binding(SseMode::SseC) },
            SealBinding { key: "2024/dog.jpg", ..binding(SseMode::SseC) },
            binding(SseMode::SseKms),
            binding(SseMode::SseS3),
            // Length prefixes keep "ab"+"c" apart from "a"+"bc".
            SealBinding { bucket: "photos2", key: "024/cat.jpg", mode: SseMode::SseC },
        ];
        for other in moved {
            assert!(ObjectKey::unseal(&OUTER, &sealed, other).is_none(), "{other:?}");
        }
        assert!(ObjectKey::unseal(&[0x43; 32], &sealed, binding(SseMode::SseC)).is_none());
        assert!(ObjectKey::unseal(&OUTER, &sealed, binding(SseMode::SseC)).is_some());
    }

    #[test]
    fn tampered_seal_does_not_open() {
        let sealed = object_key().seal(&OUTER, binding(SseMode::SseS3));
        for i in 0..SEALED_LEN {
            let mut bad = sealed.clone();
            bad.0[i] ^= 0x01;
            assert!(ObjectKey::unseal(&OUTER, &bad, binding(SseMode::SseS3)).is_none(), "byte {i}");
        }
    }

    #[test]
    fn malformed_sealed_keys_are_rejected() {
        assert!(SealedKey::from_base64("not base64!").is_none());
        assert!(SealedKey::from_base64(&STANDARD.encode_to_string([0u8; SEALED_LEN - 1])).is_none());
        assert!(SealedKey::from_base64(&STANDARD.encode_to_string([0u8; SEALED_LEN])).is_some());
    }

    #[test]
    fn part_keys_differ_by_salt_and_number() {
        let key = object_key();
        let mut tags = std::collections::HashSet::new();
        for (salt, number) in [([1u8; 16], 1), ([1u8; 16], 2), ([2u8; 16], 1)] {
            let mut data = *b"same plaintext";
            tags.insert(key.part_key(&salt, number).seal(0, true, &[], &mut data));
        }
        assert_eq!(tags.len(), 3);
    }

    #[test]
    fn package_nonce_layout() {
        let part = object_key().part_key(&[7u8; 16], 3);
        let nonce = part.nonce(0x0102_0304, true);
        assert_eq!(&nonce.as_ref()[..7], &part.nonce_prefix);
        assert_eq!(&nonce.as_ref()[7..], &[1, 2, 3, 4, 1]);
        assert_eq!(part.nonce(5, false).as_ref()[11], 0);
    }

    /// Pinned in docs/encryption-format.md ("Seal" vector).
    #[test]
    fn seal_test_vector() {
        let binding = SealBinding { bucket: "bucket", key: "object.txt", mode: SseMode::SseKms };
        let sealed = object_key().seal_with_salt(&[0x42; 32], binding, [0x11; 32]);
        assert_eq!(
            hex::encode(sealed.0),
            concat!(
                "1111111111111111111111111111111111111111111111111111111111111111",
                "8c7e13e24b21c93d4802563f5a6f67d7cde9d48990ae438dc744d271fa6da600e1d47f7a6d59a3fd163319e7c2f1a188"
            )
        );
        assert_eq!(hex::encode(binding.aad()), "636f666665722d7373652f76312f7365616c000000077373652d6b6d73000000066275636b65740000000a6f626a6563742e747874");
    }

    /// Pinned in docs/encryption-format.md ("Part key" vector).
    #[test]
    fn part_key_test_vector() {
        let mut okm = [0u8; KEY_LEN + NONCE_PREFIX_LEN];
        hkdf(&[0x5a; 16], object_key().0.as_ref(), &[PART_INFO, &1u32.to_be_bytes()], &mut okm);
        assert_eq!(hex::encode(okm), "c3a1558dacec19aba2316bf02eff5758a93296f1792fc01386521d32f857a745b16758fa919331");
        let mut kek_bytes = [0u8; KEY_LEN];
        hkdf(&[0x11; 32], &[0x42; 32], &[KEK_INFO], &mut kek_bytes);
        assert_eq!(hex::encode(kek_bytes), "289c2b2a0abd4aa86cb60a7769025bc5dcd814a93802ade9ab663c75955d4999");
    }
}
