//! The wrapped data-key blob: self-describing and versioned, so a blob written today still opens after key
//! rotation and after the KMS configuration changes.
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! "CKW" | format version (u8) | backend (u8: 1 local, 2 vault-transit)
//!       | version 2 only: store name length (u8) | store name (UTF-8)
//!       | key id length (u16) | key id (UTF-8) | key version (u32) | payload (rest: backend-specific ciphertext)
//! ```
//!
//! Version 2 names the store that made the blob, so it is always opened there whatever the default store is now.
//! Backends make version-1 blobs (they do not know their store's name) and the manager stamps the name
//! ([`WrappedKey::in_store`]); version-1 blobs written before stores had names keep opening.

use base64_simd::STANDARD;

use crate::backend::BackendKind;
use crate::error::{KmsError, Result};

const MAGIC: &[u8; 3] = b"CKW";
const UNNAMED: u8 = 1;
const NAMED: u8 = 2;

/// A data key encrypted under a master key, as stored beside the data it protects.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct WrappedKey(Vec<u8>);

/// The public part of a wrapped key: which backend, store, key and key version made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKeyHeader<'a> {
    pub backend: BackendKind,
    /// The store that made it; `None` for blobs made before stores had names.
    pub store: Option<&'a str>,
    pub key_id: &'a str,
    pub key_version: u32,
    pub payload: &'a [u8],
}

impl WrappedKey {
    pub fn new(backend: BackendKind, key_id: &str, key_version: u32, payload: &[u8]) -> Result<Self> {
        let id_len = u16::try_from(key_id.len()).map_err(|_| KmsError::InvalidKeyId("key id too long".into()))?;
        let mut bytes = Vec::with_capacity(3 + 1 + 1 + 2 + key_id.len() + 4 + payload.len());
        bytes.extend_from_slice(MAGIC);
        bytes.push(UNNAMED);
        bytes.push(backend_tag(backend));
        bytes.extend_from_slice(&id_len.to_be_bytes());
        bytes.extend_from_slice(key_id.as_bytes());
        bytes.extend_from_slice(&key_version.to_be_bytes());
        bytes.extend_from_slice(payload);
        Ok(Self(bytes))
    }

    /// The same blob naming `store` as the store that made it.
    pub fn in_store(&self, store: &str) -> Result<Self> {
        let name_len = u8::try_from(store.len()).map_err(|_| KmsError::InvalidKeyId("store name too long".into()))?;
        let header = self.header()?;
        let mut bytes = Vec::with_capacity(self.0.len() + 1 + store.len());
        bytes.extend_from_slice(MAGIC);
        bytes.push(NAMED);
        bytes.push(backend_tag(header.backend));
        bytes.push(name_len);
        bytes.extend_from_slice(store.as_bytes());
        // Key id, version and payload as they are.
        bytes.extend_from_slice(&self.0[self.body_offset()..]);
        Ok(Self(bytes))
    }

    /// Where the key id length starts.
    fn body_offset(&self) -> usize {
        match self.0[3] {
            NAMED => 6 + usize::from(self.0[5]),
            _ => 5,
        }
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
        if bytes.len() < 11 || &bytes[..3] != MAGIC || !matches!(bytes[3], UNNAMED | NAMED) {
            return Err(malformed());
        }
        let backend = match bytes[4] {
            1 => BackendKind::Local,
            2 => BackendKind::VaultTransit,
            _ => return Err(malformed()),
        };
        let store = match bytes[3] {
            NAMED => {
                let end = 6 + usize::from(bytes[5]);
                let name = bytes.get(6..end).ok_or_else(malformed)?;
                Some(std::str::from_utf8(name).map_err(|_| malformed())?)
            }
            _ => None,
        };
        let id_start = self.body_offset() + 2;
        let id_len_bytes = bytes.get(id_start - 2..id_start).ok_or_else(malformed)?;
        let id_len = usize::from(u16::from_be_bytes([id_len_bytes[0], id_len_bytes[1]]));
        let id_end = id_start + id_len;
        let version_end = id_end + 4;
        if bytes.len() < version_end {
            return Err(malformed());
        }
        let key_id = std::str::from_utf8(&bytes[id_start..id_end]).map_err(|_| malformed())?;
        let key_version = u32::from_be_bytes(bytes[id_end..version_end].try_into().map_err(|_| malformed())?);
        Ok(WrappedKeyHeader { backend, store, key_id, key_version, payload: &bytes[version_end..] })
    }
}

impl std::fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.header() {
            Ok(h) => {
                let store = h.store.map(|store| format!(" {store}/")).unwrap_or_else(|| " ".into());
                write!(f, "WrappedKey({}{store}{} v{})", h.backend.as_str(), h.key_id, h.key_version)
            }
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
        assert_eq!(h.store, None);
    }

    #[test]
    fn a_blob_in_a_store_names_it_and_keeps_the_rest() {
        let unnamed = WrappedKey::new(BackendKind::Local, "key-1", 3, b"payload").unwrap();
        let named = unnamed.in_store("eu-vault").unwrap();
        let parsed = WrappedKey::from_base64(&named.to_base64()).unwrap();
        let h = parsed.header().unwrap();
        assert_eq!(
            (h.backend, h.store, h.key_id, h.key_version, h.payload),
            (BackendKind::Local, Some("eu-vault"), "key-1", 3, &b"payload"[..])
        );
        assert_eq!(named.in_store("other").unwrap().header().unwrap().store, Some("other"));
        assert_eq!(format!("{named:?}"), "WrappedKey(local eu-vault/key-1 v3)");
        // A name longer than the blob, or not UTF-8, is malformed.
        assert!(WrappedKey::from_bytes(b"CKW\x02\x01\x40ab\x00\x01k\x00\x00\x00\x01".to_vec()).is_err());
        assert!(WrappedKey::from_bytes(b"CKW\x02\x01\x01\xff\x00\x01k\x00\x00\x00\x01".to_vec()).is_err());
    }

    /// A blob as the previous format wrote it (before stores had names): still read, store unknown.
    #[test]
    fn blobs_of_the_previous_format_still_read() {
        let bytes = b"CKW\x01\x02\x00\x05key-1\x00\x00\x00\x07vault:v7:abc".to_vec();
        let wrapped = WrappedKey::from_bytes(bytes).unwrap();
        let h = wrapped.header().unwrap();
        assert_eq!((h.backend, h.store, h.key_id, h.key_version), (BackendKind::VaultTransit, None, "key-1", 7));
    }

    #[test]
    fn malformed_blobs_are_rejected() {
        assert!(WrappedKey::from_bytes(b"CKX\x01\x01\x00\x00\x00\x00\x00\x01".to_vec()).is_err());
        assert!(WrappedKey::from_bytes(b"CKW\x01\x09\x00\x00\x00\x00\x00\x01".to_vec()).is_err());
        assert!(WrappedKey::from_bytes(b"CKW\x01\x01\x00\x05ab".to_vec()).is_err());
        assert!(WrappedKey::from_base64("not base64!").is_err());
    }
}
