//! The wrapped data-key blob: self-describing and versioned, so a blob written today still opens after key
//! rotation and after the KMS configuration changes.
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! "CKW" | format version (u8 = 1) | backend (u8: 1 local, 2 vault-transit)
//!       | key id length (u16) | key id (UTF-8) | key version (u32) | payload (rest: backend-specific ciphertext)
//! ```

use base64_simd::STANDARD;

use crate::backend::BackendKind;
use crate::error::{KmsError, Result};

const MAGIC: &[u8; 3] = b"CKW";
const FORMAT_VERSION: u8 = 1;

/// A data key encrypted under a master key, as stored beside the data it protects.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct WrappedKey(Vec<u8>);

/// The public part of a wrapped key: which backend, key and key version made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKeyHeader<'a> {
    pub backend: BackendKind,
    pub key_id: &'a str,
    pub key_version: u32,
    pub payload: &'a [u8],
}

impl WrappedKey {
    pub fn new(backend: BackendKind, key_id: &str, key_version: u32, payload: &[u8]) -> Result<Self> {
        let id_len = u16::try_from(key_id.len()).map_err(|_| KmsError::InvalidKeyId("key id too long".into()))?;
        let mut bytes = Vec::with_capacity(3 + 1 + 1 + 2 + key_id.len() + 4 + payload.len());
        bytes.extend_from_slice(MAGIC);
        bytes.push(FORMAT_VERSION);
        bytes.push(backend_tag(backend));
        bytes.extend_from_slice(&id_len.to_be_bytes());
        bytes.extend_from_slice(key_id.as_bytes());
        bytes.extend_from_slice(&key_version.to_be_bytes());
        bytes.extend_from_slice(payload);
        Ok(Self(bytes))
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        let wrapped = Self(bytes);
        wrapped.header()?;
        Ok(wrapped)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode_to_string(&self.0)
    }

    pub fn from_base64(text: &str) -> Result<Self> {
        let bytes = STANDARD.decode_to_vec(text).map_err(|_| KmsError::InvalidCiphertext)?;
        Self::from_bytes(bytes)
    }

    /// Parses the header; fails with `InvalidCiphertext` on anything malformed.
    pub fn header(&self) -> Result<WrappedKeyHeader<'_>> {
        let bytes = &self.0;
        let malformed = || KmsError::InvalidCiphertext;
        if bytes.len() < 11 || &bytes[..3] != MAGIC || bytes[3] != FORMAT_VERSION {
            return Err(malformed());
        }
        let backend = match bytes[4] {
            1 => BackendKind::Local,
            2 => BackendKind::VaultTransit,
            _ => return Err(malformed()),
        };
        let id_len = usize::from(u16::from_be_bytes([bytes[5], bytes[6]]));
        let id_end = 7 + id_len;
        let version_end = id_end + 4;
        if bytes.len() < version_end {
            return Err(malformed());
        }
        let key_id = std::str::from_utf8(&bytes[7..id_end]).map_err(|_| malformed())?;
        let key_version = u32::from_be_bytes(bytes[id_end..version_end].try_into().map_err(|_| malformed())?);
        Ok(WrappedKeyHeader { backend, key_id, key_version, payload: &bytes[version_end..] })
    }
}

impl std::fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.header() {
            Ok(h) => write!(f, "WrappedKey({} {} v{})", h.backend.as_str(), h.key_id, h.key_version),
            Err(_) => f.write_str("WrappedKey(<malformed>)"),
        }
    }
}

fn backend_tag(kind: BackendKind) -> u8 {
    match kind {
        BackendKind::Local => 1,
        BackendKind::VaultTransit => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let w = WrappedKey::new(BackendKind::VaultTransit, "key-1", 7, b"vault:v7:abc").unwrap();
        let parsed = WrappedKey::from_base64(&w.to_base64()).unwrap();
        let h = parsed.header().unwrap();
        assert_eq!(h.backend, BackendKind::VaultTransit);
        assert_eq!(h.key_id, "key-1");
        assert_eq!(h.key_version, 7);
        assert_eq!(h.payload, b"vault:v7:abc");
    }

    #[test]
    fn malformed_blobs_are_rejected() {
        assert!(WrappedKey::from_bytes(b"CKX\x01\x01\x00\x00\x00\x00\x00\x01".to_vec()).is_err());
        assert!(WrappedKey::from_bytes(b"CKW\x01\x09\x00\x00\x00\x00\x00\x01".to_vec()).is_err());
        assert!(WrappedKey::from_bytes(b"CKW\x01\x01\x00\x05ab".to_vec()).is_err());
        assert!(WrappedKey::from_base64("not base64!").is_err());
    }
}
