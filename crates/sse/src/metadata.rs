//! What the store keeps for an encrypted object, and what a response may show of it.
//!
//! [`ObjectEncryption`] is the object-level (and multipart-upload-level) `encryption` JSON: mode, sealed object key
//! and what is needed to get the outer key back, and the commitment to the object's part list (see `part_list`).
//! [`PartEncryption`] is the part-level JSON: the part's salt, number and format. Both are versioned: objects
//! `"v": 1`; parts `"v": 3` (SSE-S3, SSE-KMS) or `"v": 2` (SSE-C), see `package`, and parts written as `"v": 1`
//! still read. [`SseResponse`] is the only view of them that reaches a client: the
//! sealed key, wrapped key and salts never leave this crate's metadata.

use base64_simd::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{Result, SseError};
use crate::keys::{SealedKey, PART_SALT_LEN};
use crate::package::Layout;
use crate::part_list::PartListTag;

const FORMAT_VERSION: u32 = 1;
/// Part formats read: 1 (packages without associated data or marker), 2 and 3 (see `package`).
const PART_FORMATS_READ: std::ops::RangeInclusive<u32> = 1..=3;

/// The three server-side encryption modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SseMode {
    SseS3,
    SseKms,
    SseC,
}

impl SseMode {
    /// The name used in metadata and in the seal's associated data.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SseS3 => "sse-s3",
            Self::SseKms => "sse-kms",
            Self::SseC => "sse-c",
        }
    }

    /// Whether the ETag of a single PUT in this mode is the plaintext MD5 (SSE-S3), or the package-tag digest
    /// returned by [`crate::PartEncryptor::finish`] (SSE-KMS, SSE-C).
    pub fn etag_is_plaintext_md5(self) -> bool {
        self == Self::SseS3
    }
}

/// The object-level `encryption` JSON of an object or a multipart upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEncryption {
    v: u32,
    #[serde(flatten)]
    scheme: Scheme,
    /// The object key sealed under the KEK (`seal salt || ciphertext || tag`, base64).
    #[serde(with = "base64_sealed")]
    sealed_key: SealedKey,
    /// The commitment to the object's part list (base64), made when the object was committed; never on an upload.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "base64_tag")]
    part_list: Option<PartListTag>,
}

/// How the outer key of an object is obtained, per mode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub(crate) enum Scheme {
    /// Bucket key of the server's default KMS key, wrapped (base64 of the KMS's wrapped-key blob).
    SseS3 { wrapped_key: String },
    /// Bucket key of `key_id` (as the client named it, or the default key id when it named none).
    SseKms {
        key_id: String,
        wrapped_key: String,
        /// The client's `x-amz-server-side-encryption-context`, exactly as sent (base64 JSON).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context: Option<String>,
        #[serde(default)]
        bucket_key_enabled: bool,
    },
    /// Customer key: only its MD5 is kept, to tell a wrong key from a missing one.
    SseC {
        #[serde(with = "base64_array")]
        key_md5: [u8; 16],
    },
}

impl Scheme {
    pub(crate) fn mode(&self) -> SseMode {
        match self {
            Self::SseS3 { .. } => SseMode::SseS3,
            Self::SseKms { .. } => SseMode::SseKms,
            Self::SseC { .. } => SseMode::SseC,
        }
    }
}

impl ObjectEncryption {
    pub(crate) fn new(scheme: Scheme, sealed_key: SealedKey) -> Self {
        Self { v: FORMAT_VERSION, scheme, sealed_key, part_list: None }
    }

    /// The same object key sealed anew (reseal, rewrap): the part list it committed to stays committed.
    pub(crate) fn keeping_part_list_of(mut self, stored: &ObjectEncryption) -> Self {
        self.part_list = stored.part_list.clone();
        self
    }

    pub(crate) fn part_list(&self) -> Option<&PartListTag> {
        self.part_list.as_ref()
    }

    pub(crate) fn set_part_list(&mut self, tag: PartListTag) {
        self.part_list = Some(tag);
    }

    /// Reads the JSON the store kept; fails with a 500 on anything this version cannot read.
    pub fn from_json(json: &str) -> Result<Self> {
        let parsed = serde_json::from_str::<Self>(json)
            .map_err(|_| SseError::internal("The object's stored encryption metadata is invalid"))?;
        if parsed.v != FORMAT_VERSION {
            return Err(SseError::internal("The object's stored encryption metadata has an unsupported version"));
        }
        Ok(parsed)
    }

    /// The JSON to hand to the store (`ObjectMeta::encryption` / `UploadMeta::encryption`).
    pub fn to_json(&self) -> Box<RawValue> {
        serde_json::value::to_raw_value(self).expect("encryption metadata always serializes")
    }

    pub fn mode(&self) -> SseMode {
        self.scheme.mode()
    }

    pub(crate) fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    pub(crate) fn sealed_key(&self) -> &SealedKey {
        &self.sealed_key
    }

    /// The MD5 of the customer key of an SSE-C object.
    pub(crate) fn customer_key_md5(&self) -> Option<&[u8; 16]> {
        match &self.scheme {
            Scheme::SseC { key_md5 } => Some(key_md5),
            _ => None,
        }
    }

    /// The SSE response headers for this object (PUT, GET, HEAD, copy, multipart create/part/complete).
    pub fn response(&self) -> SseResponse {
        match &self.scheme {
            Scheme::SseS3 { .. } => SseResponse { server_side_encryption: Some("AES256"), ..SseResponse::default() },
            Scheme::SseKms { key_id, context, bucket_key_enabled, .. } => SseResponse {
                server_side_encryption: Some("aws:kms"),
                kms_key_id: Some(key_id.clone()),
                context: context.clone(),
                bucket_key_enabled: bucket_key_enabled.then_some(true),
                ..SseResponse::default()
            },
            Scheme::SseC { key_md5 } => SseResponse {
                customer_algorithm: Some("AES256"),
                customer_key_md5: Some(STANDARD.encode_to_string(key_md5)),
                ..SseResponse::default()
            },
        }
    }
}

/// The part-level `encryption` JSON: which salt and part number the part's key was derived with, and its format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartEncryption {
    v: u32,
    part: u32,
    #[serde(with = "base64_array")]
    salt: [u8; PART_SALT_LEN],
}

impl PartEncryption {
    pub(crate) fn new(layout: Layout, part: u32, salt: [u8; PART_SALT_LEN]) -> Self {
        Self { v: layout.format(), part, salt }
    }

    /// Reads the JSON the store kept on a part (`PartMeta::encryption`).
    pub fn from_json(json: &str) -> Result<Self> {
        let parsed = serde_json::from_str::<Self>(json)
            .map_err(|_| SseError::internal("The part's stored encryption metadata is invalid"))?;
        if !PART_FORMATS_READ.contains(&parsed.v) {
            return Err(SseError::internal("The part's stored encryption metadata has an unsupported version"));
        }
        Ok(parsed)
    }

    /// The JSON to hand to the store (`PartMeta::encryption`).
    pub fn to_json(&self) -> Box<RawValue> {
        serde_json::value::to_raw_value(self).expect("part encryption metadata always serializes")
    }

    /// The part number the part's key was derived with (and, from format 2 on, bound into its packages). A reader
    /// checks it against the part's place in the object.
    pub fn part_number(&self) -> u32 {
        self.part
    }

    /// The part's data format: 1, 2 or 3.
    pub(crate) fn format(&self) -> u32 {
        self.v
    }

    pub(crate) fn layout(&self) -> Layout {
        Layout::of_format(self.v)
    }

    /// Bytes on disk of this part when it holds `plaintext_size` bytes; a record that says otherwise is damaged.
    pub fn stored_size(&self, plaintext_size: u64) -> u64 {
        self.layout().stored_size(plaintext_size)
    }

    pub(crate) fn salt(&self) -> &[u8; PART_SALT_LEN] {
        &self.salt
    }
}

/// SSE response header values. `None` means "do not send the header".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseResponse {
    /// `x-amz-server-side-encryption`: `AES256` (SSE-S3) or `aws:kms`.
    pub server_side_encryption: Option<&'static str>,
    /// `x-amz-server-side-encryption-aws-kms-key-id`, exactly as the client named it.
    pub kms_key_id: Option<String>,
    /// `x-amz-server-side-encryption-context`, exactly as the client sent it.
    pub context: Option<String>,
    /// `x-amz-server-side-encryption-bucket-key-enabled` (only ever `true`).
    pub bucket_key_enabled: Option<bool>,
    /// `x-amz-server-side-encryption-customer-algorithm` (`AES256`).
    pub customer_algorithm: Option<&'static str>,
    /// `x-amz-server-side-encryption-customer-key-MD5` (base64).
    pub customer_key_md5: Option<String>,
}

mod base64_array {
    use super::*;

    pub fn serialize<S: serde::Serializer, const N: usize>(bytes: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode_to_string(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>, const N: usize>(d: D) -> Result<[u8; N], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = STANDARD.decode_to_vec(text).map_err(serde::de::Error::custom)?;
        bytes.try_into().map_err(|_| serde::de::Error::custom("wrong length"))
    }
}

mod base64_tag {
    use super::*;

    pub fn serialize<S: serde::Serializer>(tag: &Option<PartListTag>, s: S) -> Result<S::Ok, S::Error> {
        match tag {
            Some(tag) => super::base64_array::serialize(tag.as_bytes(), s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<PartListTag>, D::Error> {
        Ok(Some(PartListTag::from_bytes(super::base64_array::deserialize(d)?)))
    }
}

mod base64_sealed {
    use super::*;

    pub fn serialize<S: serde::Serializer>(sealed: &SealedKey, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&sealed.to_base64())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SealedKey, D::Error> {
        let text = String::deserialize(d)?;
        SealedKey::from_base64(&text).ok_or_else(|| serde::de::Error::custom("invalid sealed key"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn value_of(raw: &RawValue) -> Value {
        serde_json::from_str(raw.get()).unwrap()
    }

    fn sealed() -> SealedKey {
        SealedKey::from_base64(&STANDARD.encode_to_string([7u8; 80])).unwrap()
    }

    #[test]
    fn object_json_shape_per_mode() {
        let kms = ObjectEncryption::new(
            Scheme::SseKms {
                key_id: "my-key".into(),
                wrapped_key: "d3JhcHBlZA==".into(),
                context: Some("eyJhIjoiYiJ9".into()),
                bucket_key_enabled: true,
            },
            sealed(),
        );
        let value = value_of(&kms.to_json());
        assert_eq!(
            value,
            json!({"v": 1, "mode": "sse-kms", "key_id": "my-key", "wrapped_key": "d3JhcHBlZA==",
                   "context": "eyJhIjoiYiJ9", "bucket_key_enabled": true, "sealed_key": STANDARD.encode_to_string([7u8; 80])})
        );
        assert_eq!(ObjectEncryption::from_json(kms.to_json().get()).unwrap(), kms);

        let s3 = ObjectEncryption::new(Scheme::SseS3 { wrapped_key: "d3JhcHBlZA==".into() }, sealed());
        assert_eq!(value_of(&s3.to_json())["mode"], "sse-s3");
        assert_eq!(ObjectEncryption::from_json(s3.to_json().get()).unwrap(), s3);

        let c = ObjectEncryption::new(Scheme::SseC { key_md5: [9; 16] }, sealed());
        assert_eq!(value_of(&c.to_json())["mode"], "sse-c");
        assert_eq!(value_of(&c.to_json())["key_md5"], STANDARD.encode_to_string([9u8; 16]));
        assert_eq!(ObjectEncryption::from_json(c.to_json().get()).unwrap(), c);

        let mut committed = s3.clone();
        committed.set_part_list(PartListTag::from_bytes([3; 32]));
        assert_eq!(value_of(&committed.to_json())["part_list"], STANDARD.encode_to_string([3u8; 32]));
        assert_eq!(ObjectEncryption::from_json(committed.to_json().get()).unwrap(), committed);
        let resealed = ObjectEncryption::new(Scheme::SseC { key_md5: [9; 16] }, sealed());
        assert_eq!(resealed.keeping_part_list_of(&committed).part_list(), committed.part_list());
    }

    #[test]
    fn unreadable_metadata_is_a_500() {
        let c = value_of(&ObjectEncryption::new(Scheme::SseC { key_md5: [9; 16] }, sealed()).to_json());
        let mut future = c.clone();
        future["v"] = json!(2);
        let mut unknown_mode = c.clone();
        unknown_mode["mode"] = json!("sse-x");
        let mut bad_seal = c.clone();
        bad_seal["sealed_key"] = json!("AAAA");
        let mut short_part_list = c.clone();
        short_part_list["part_list"] = json!("AAAA");
        let mut null_part_list = c.clone();
        null_part_list["part_list"] = json!(null);
        for value in [future, unknown_mode, bad_seal, short_part_list, null_part_list, json!("text"), json!({})] {
            let e = ObjectEncryption::from_json(&value.to_string()).unwrap_err();
            assert_eq!((e.code(), e.status()), ("InternalError", 500), "{value}");
        }
    }

    #[test]
    fn part_json_round_trips() {
        let salt = STANDARD.encode_to_string([1u8; 16]);
        for (layout, v) in [(Layout::V2, 2), (Layout::V3, 3)] {
            let part = PartEncryption::new(layout, 3, [1; 16]);
            assert_eq!(value_of(&part.to_json()), json!({"v": v, "part": 3, "salt": salt}));
            assert_eq!(PartEncryption::from_json(part.to_json().get()).unwrap(), part);
        }
        // Format 1 parts still read; formats this version does not know do not.
        let old = PartEncryption::from_json(&json!({"v": 1, "part": 3, "salt": salt}).to_string()).unwrap();
        assert_eq!((old.format(), old.part_number()), (1, 3));
        for bad in [
            json!({"v": 2, "part": 3}),
            json!({"v": 4, "part": 3, "salt": salt}),
            json!({"v": 0, "part": 3, "salt": salt}),
        ] {
            assert_eq!(PartEncryption::from_json(&bad.to_string()).unwrap_err().status(), 500, "{bad}");
        }
    }

    #[test]
    fn responses_show_only_public_values() {
        let kms = ObjectEncryption::new(
            Scheme::SseKms {
                key_id: "arn:aws:kms:us-east-1:1:key/k".into(),
                wrapped_key: "d3JhcHBlZA==".into(),
                context: None,
                bucket_key_enabled: false,
            },
            sealed(),
        );
        assert_eq!(
            kms.response(),
            SseResponse {
                server_side_encryption: Some("aws:kms"),
                kms_key_id: Some("arn:aws:kms:us-east-1:1:key/k".into()),
                ..SseResponse::default()
            }
        );
        let s3 = ObjectEncryption::new(Scheme::SseS3 { wrapped_key: "d3JhcHBlZA==".into() }, sealed());
        assert_eq!(s3.response(), SseResponse { server_side_encryption: Some("AES256"), ..SseResponse::default() });
        let c = ObjectEncryption::new(Scheme::SseC { key_md5: [9; 16] }, sealed());
        assert_eq!(
            c.response(),
            SseResponse {
                customer_algorithm: Some("AES256"),
                customer_key_md5: Some(STANDARD.encode_to_string([9u8; 16])),
                ..SseResponse::default()
            }
        );
    }

    #[test]
    fn etag_rule_per_mode() {
        assert!(SseMode::SseS3.etag_is_plaintext_md5());
        assert!(!SseMode::SseKms.etag_is_plaintext_md5());
        assert!(!SseMode::SseC.etag_is_plaintext_md5());
    }
}
