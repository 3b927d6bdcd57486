//! S3 body integrity: Content-MD5 and the `x-amz-checksum-*` algorithms (CRC32, CRC32C, CRC64NVME, SHA1, SHA256).
//!
//! A request declares what it expects ([`DeclaredIntegrity`]: a Content-MD5 header, one checksum header, a
//! checksum trailer of an aws-chunked body, or just an algorithm to compute); [`BodyDigests`] computes MD5 (the
//! ETag) and that checksum while the body streams; [`DeclaredIntegrity::verify`] compares them afterwards. s3s
//! parses these headers but verifies none of them. The hashers are s3s's own.
//!
//! Object data (PutObject, UploadPart) is checked as it streams into the store; DeleteObjects' body, which s3s reads
//! whole, through [`crate::body_taps`].

use base64_simd::STANDARD as BASE64;
use coffer_store::{Checksum, ChecksumKind};
use crc_fast::CrcAlgorithm;
use http::HeaderMap;
use s3s::crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme, Md5, Sha1, Sha256};
use s3s::dto::ChecksumType;
use s3s::{s3_error, S3Result, TrailingHeaders};

use crate::errors::custom_error;

/// The checksum algorithms S3 defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl ChecksumAlgorithm {
    pub const ALL: [ChecksumAlgorithm; 5] = [Self::Crc32, Self::Crc32c, Self::Crc64Nvme, Self::Sha1, Self::Sha256];

    /// The name used in `x-amz-checksum-algorithm` and in stored metadata, e.g. `CRC32`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Crc32 => "CRC32",
            Self::Crc32c => "CRC32C",
            Self::Crc64Nvme => "CRC64NVME",
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
        }
    }

    /// Parses an algorithm name, ignoring case.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|algorithm| algorithm.name().eq_ignore_ascii_case(name))
    }

    /// The header (or trailer) carrying a value of this algorithm, e.g. `x-amz-checksum-crc32`.
    pub fn header_name(self) -> &'static str {
        match self {
            Self::Crc32 => "x-amz-checksum-crc32",
            Self::Crc32c => "x-amz-checksum-crc32c",
            Self::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Self::Sha1 => "x-amz-checksum-sha1",
            Self::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// Whether this is a CRC (which can be combined across parts into a full-object checksum).
    fn is_crc(self) -> bool {
        matches!(self, Self::Crc32 | Self::Crc32c | Self::Crc64Nvme)
    }

    fn digest_len(self) -> usize {
        match self {
            Self::Crc32 | Self::Crc32c => 4,
            Self::Crc64Nvme => 8,
            Self::Sha1 => 20,
            Self::Sha256 => 32,
        }
    }

    /// A streaming hasher for this algorithm.
    pub fn hasher(self) -> ChecksumHasher {
        match self {
            Self::Crc32 => ChecksumHasher::Crc32(Crc32::new()),
            Self::Crc32c => ChecksumHasher::Crc32c(Crc32c::new()),
            Self::Crc64Nvme => ChecksumHasher::Crc64Nvme(Crc64Nvme::new()),
            Self::Sha1 => ChecksumHasher::Sha1(Sha1::new()),
            Self::Sha256 => ChecksumHasher::Sha256(Sha256::new()),
        }
    }

    /// Decodes a base64 checksum value and checks its length. `None` if malformed.
    pub fn decode(self, value: &str) -> Option<Vec<u8>> {
        BASE64.decode_to_vec(value.trim()).ok().filter(|bytes| bytes.len() == self.digest_len())
    }

    fn invalid_value(self) -> s3s::S3Error {
        s3_error!(InvalidRequest, "Value for {} header is invalid.", self.header_name())
    }
}

/// Incremental checksum computation for one algorithm.
pub enum ChecksumHasher {
    Crc32(Crc32),
    Crc32c(Crc32c),
    Crc64Nvme(Crc64Nvme),
    Sha1(Sha1),
    Sha256(Sha256),
}

impl ChecksumHasher {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Crc32(h) => h.update(data),
            Self::Crc32c(h) => h.update(data),
            Self::Crc64Nvme(h) => h.update(data),
            Self::Sha1(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
        }
    }

    pub fn finish(self) -> ChecksumValue {
        let (algorithm, bytes) = match self {
            Self::Crc32(h) => (ChecksumAlgorithm::Crc32, h.finalize().to_vec()),
            Self::Crc32c(h) => (ChecksumAlgorithm::Crc32c, h.finalize().to_vec()),
            Self::Crc64Nvme(h) => (ChecksumAlgorithm::Crc64Nvme, h.finalize().to_vec()),
            Self::Sha1(h) => (ChecksumAlgorithm::Sha1, h.finalize().to_vec()),
            Self::Sha256(h) => (ChecksumAlgorithm::Sha256, h.finalize().to_vec()),
        };
        ChecksumValue { algorithm, bytes }
    }
}

/// A computed checksum of a whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksumValue {
    pub algorithm: ChecksumAlgorithm,
    pub bytes: Vec<u8>,
}

impl ChecksumValue {
    pub fn base64(&self) -> String {
        BASE64.encode_to_string(&self.bytes)
    }

    /// The full-object form kept in object and part metadata.
    pub fn to_stored(&self) -> Checksum {
        Checksum { algorithm: self.algorithm.name().to_owned(), value: self.base64(), kind: ChecksumKind::FullObject }
    }

    /// Reads back a full-object checksum from part metadata; `None` for a composite value or unknown algorithm.
    pub fn from_stored(stored: &Checksum) -> Option<Self> {
        if stored.kind != ChecksumKind::FullObject {
            return None;
        }
        let algorithm = ChecksumAlgorithm::from_name(&stored.algorithm)?;
        Some(ChecksumValue { algorithm, bytes: algorithm.decode(&stored.value)? })
    }
}

/// The checksum a multipart upload's object gets: the algorithm every part is checksummed with, and how the
/// object's checksum is made from the parts' (`x-amz-checksum-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultipartChecksum {
    pub algorithm: ChecksumAlgorithm,
    pub kind: ChecksumKind,
}

impl MultipartChecksum {
    /// CreateMultipartUpload's `x-amz-checksum-algorithm` and `x-amz-checksum-type`, allowed as in S3: CRC32 and
    /// CRC32C either type (composite by default), CRC64NVME only full-object, SHA-1 and SHA-256 only composite.
    pub fn from_request(algorithm: Option<&str>, kind: Option<&str>) -> S3Result<Option<Self>> {
        let kind = kind
            .map(|kind| match kind.to_ascii_uppercase().as_str() {
                "COMPOSITE" => Ok(ChecksumKind::Composite),
                "FULL_OBJECT" => Ok(ChecksumKind::FullObject),
                _ => Err(s3_error!(InvalidRequest, "Value for x-amz-checksum-type header is invalid.")),
            })
            .transpose()?;
        let Some(algorithm) = algorithm else {
            return match kind {
                None => Ok(None),
                Some(_) => Err(s3_error!(
                    InvalidRequest,
                    "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header."
                )),
            };
        };
        let algorithm = ChecksumAlgorithm::from_name(algorithm)
            .ok_or_else(|| s3_error!(InvalidRequest, "Checksum algorithm provided is unsupported."))?;
        let full_object_only = algorithm == ChecksumAlgorithm::Crc64Nvme;
        let kind = kind.unwrap_or(if full_object_only { ChecksumKind::FullObject } else { ChecksumKind::Composite });
        let allowed = match kind {
            ChecksumKind::Composite => !full_object_only,
            ChecksumKind::FullObject => algorithm.is_crc(),
        };
        if !allowed {
            return Err(s3_error!(
                InvalidRequest,
                "The {} checksum type cannot be used with the {} checksum algorithm.",
                kind_name(kind),
                algorithm.name().to_lowercase()
            ));
        }
        Ok(Some(MultipartChecksum { algorithm, kind }))
    }

    /// The object's checksum from its parts' checksums (each of this algorithm) and plaintext sizes, in object
    /// order: for a composite checksum the checksum of the concatenated part checksums, suffixed `-N`; for a
    /// full-object one the CRC of the whole object, combined from the parts' CRCs without reading the data.
    pub fn of_parts(self, parts: &[(ChecksumValue, u64)]) -> Checksum {
        let value = match self.kind {
            ChecksumKind::Composite => {
                let mut hasher = self.algorithm.hasher();
                for (part, _) in parts {
                    hasher.update(&part.bytes);
                }
                format!("{}-{}", hasher.finish().base64(), parts.len())
            }
            ChecksumKind::FullObject => full_object_crc(self.algorithm, parts).base64(),
        };
        Checksum { algorithm: self.algorithm.name().to_owned(), value, kind: self.kind }
    }
}

/// `COMPOSITE` or `FULL_OBJECT`, as S3 names a checksum type.
pub fn kind_name(kind: ChecksumKind) -> &'static str {
    match kind {
        ChecksumKind::Composite => ChecksumType::COMPOSITE,
        ChecksumKind::FullObject => ChecksumType::FULL_OBJECT,
    }
}

/// The `x-amz-checksum-type` of a stored checksum.
pub fn checksum_type(kind: ChecksumKind) -> ChecksumType {
    ChecksumType::from_static(kind_name(kind))
}

/// The CRC of the concatenation of parts from each part's CRC and length (`crc_fast::checksum_combine`).
fn full_object_crc(algorithm: ChecksumAlgorithm, parts: &[(ChecksumValue, u64)]) -> ChecksumValue {
    let crc = match algorithm {
        ChecksumAlgorithm::Crc32 => CrcAlgorithm::Crc32IsoHdlc,
        ChecksumAlgorithm::Crc32c => CrcAlgorithm::Crc32Iscsi,
        ChecksumAlgorithm::Crc64Nvme => CrcAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha1 | ChecksumAlgorithm::Sha256 => unreachable!("full-object checksums are CRCs"),
    };
    let as_integer = |bytes: &[u8]| bytes.iter().fold(0u64, |value, &byte| value << 8 | u64::from(byte));
    let combined = parts.iter().fold(crc_fast::checksum(crc, b""), |combined, (part, len)| {
        crc_fast::checksum_combine(crc, combined, as_integer(&part.bytes), *len)
    });
    let len = algorithm.digest_len();
    ChecksumValue { algorithm, bytes: combined.to_be_bytes()[8 - len..].to_vec() }
}

/// The five `x-amz-checksum-*` fields that S3 DTOs carry, one per algorithm.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChecksumFields {
    pub crc32: Option<String>,
    pub crc32c: Option<String>,
    pub crc64nvme: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
}

impl ChecksumFields {
    /// The stored checksum in the field of its algorithm.
    pub fn from_stored(stored: Option<&Checksum>) -> Self {
        let mut fields = ChecksumFields::default();
        if let Some(stored) = stored {
            if let Some(algorithm) = ChecksumAlgorithm::from_name(&stored.algorithm) {
                *fields.slot(algorithm) = Some(stored.value.clone());
            }
        }
        fields
    }

    /// The values as sent in the request headers, for operations whose s3s input does not carry them
    /// (DeleteObjects).
    pub fn from_headers(headers: &HeaderMap) -> S3Result<Self> {
        let mut fields = ChecksumFields::default();
        for algorithm in ChecksumAlgorithm::ALL {
            if let Some(value) = headers.get(algorithm.header_name()) {
                *fields.slot(algorithm) = Some(value.to_str().map_err(|_| algorithm.invalid_value())?.to_owned());
            }
        }
        Ok(fields)
    }

    fn slot(&mut self, algorithm: ChecksumAlgorithm) -> &mut Option<String> {
        match algorithm {
            ChecksumAlgorithm::Crc32 => &mut self.crc32,
            ChecksumAlgorithm::Crc32c => &mut self.crc32c,
            ChecksumAlgorithm::Crc64Nvme => &mut self.crc64nvme,
            ChecksumAlgorithm::Sha1 => &mut self.sha1,
            ChecksumAlgorithm::Sha256 => &mut self.sha256,
        }
    }

    /// The one value present, if any. More than one is an error, as in S3.
    pub fn single(&self) -> S3Result<Option<(ChecksumAlgorithm, &str)>> {
        let present: Vec<(ChecksumAlgorithm, &str)> = [
            (ChecksumAlgorithm::Crc32, &self.crc32),
            (ChecksumAlgorithm::Crc32c, &self.crc32c),
            (ChecksumAlgorithm::Crc64Nvme, &self.crc64nvme),
            (ChecksumAlgorithm::Sha1, &self.sha1),
            (ChecksumAlgorithm::Sha256, &self.sha256),
        ]
        .into_iter()
        .filter_map(|(algorithm, value)| value.as_deref().map(|value| (algorithm, value)))
        .collect();
        match present.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            _ => Err(s3_error!(
                InvalidRequest,
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
            )),
        }
    }
}

/// Moves the five checksum fields of a DTO into a [`ChecksumFields`].
macro_rules! take_checksum_fields {
    ($dto:expr) => {
        $crate::checksum::ChecksumFields {
            crc32: $dto.checksum_crc32.take(),
            crc32c: $dto.checksum_crc32c.take(),
            crc64nvme: $dto.checksum_crc64nvme.take(),
            sha1: $dto.checksum_sha1.take(),
            sha256: $dto.checksum_sha256.take(),
        }
    };
}

/// Sets the five checksum fields of a DTO from a [`ChecksumFields`].
macro_rules! set_checksum_fields {
    ($dto:expr, $fields:expr) => {{
        let fields: $crate::checksum::ChecksumFields = $fields;
        $dto.checksum_crc32 = fields.crc32;
        $dto.checksum_crc32c = fields.crc32c;
        $dto.checksum_crc64nvme = fields.crc64nvme;
        $dto.checksum_sha1 = fields.sha1;
        $dto.checksum_sha256 = fields.sha256;
    }};
}
pub(crate) use {set_checksum_fields, take_checksum_fields};

/// Where the expected checksum value comes from.
enum Expected {
    /// The client only named the algorithm: compute and store it.
    Nothing,
    /// A header value, already decoded.
    Value(Vec<u8>),
    /// A trailer of the aws-chunked body, readable once the body has been consumed.
    Trailer(TrailingHeaders),
}

/// What a request declares about its body.
pub struct DeclaredIntegrity {
    content_md5: Option<[u8; 16]>,
    checksum: Option<(ChecksumAlgorithm, Expected)>,
}

/// The checksum-related parts of a request that carries a body. Content-MD5 is read from `headers`: s3s takes an
/// empty one for none, where S3 answers `InvalidDigest`.
pub struct IntegrityHeaders<'a> {
    pub checksums: &'a ChecksumFields,
    /// `x-amz-checksum-algorithm` as s3s parsed it.
    pub algorithm: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub trailing: Option<TrailingHeaders>,
}

impl DeclaredIntegrity {
    /// Reads the declarations. `fallback` is computed when the request names no algorithm (a multipart upload's
    /// algorithm, so that every part has a checksum for the composite).
    pub fn from_request(request: IntegrityHeaders<'_>, fallback: Option<ChecksumAlgorithm>) -> S3Result<Self> {
        let content_md5 = request.headers.get("content-md5").map(parse_content_md5).transpose()?;
        let named = match request.algorithm {
            Some(name) => Some(ChecksumAlgorithm::from_name(name).ok_or_else(|| {
                s3_error!(InvalidRequest, "Checksum algorithm provided is unsupported. Please try again with any of the valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]")
            })?),
            None => None,
        };
        let checksum = match request.checksums.single()? {
            Some((algorithm, value)) => {
                let bytes = algorithm.decode(value).ok_or_else(|| algorithm.invalid_value())?;
                Some((algorithm, Expected::Value(bytes)))
            }
            None => match trailer_algorithm(request.headers)? {
                Some(algorithm) => {
                    let trailing = request.trailing.ok_or_else(|| {
                        s3_error!(InvalidRequest, "x-amz-trailer is only supported with an aws-chunked streaming body.")
                    })?;
                    Some((algorithm, Expected::Trailer(trailing)))
                }
                None => named.or(fallback).map(|algorithm| (algorithm, Expected::Nothing)),
            },
        };
        if let (Some(named), Some((algorithm, _))) = (named, &checksum) {
            if named != *algorithm {
                return Err(s3_error!(
                    InvalidRequest,
                    "Value for x-amz-checksum-algorithm does not match the checksum that was sent."
                ));
            }
        }
        Ok(DeclaredIntegrity { content_md5, checksum })
    }

    /// Declares nothing: used when copying data the server already verified.
    pub fn compute(algorithm: Option<ChecksumAlgorithm>) -> Self {
        DeclaredIntegrity { content_md5: None, checksum: algorithm.map(|algorithm| (algorithm, Expected::Nothing)) }
    }

    /// The checksum algorithm that will be computed, if any.
    pub fn algorithm(&self) -> Option<ChecksumAlgorithm> {
        self.checksum.as_ref().map(|(algorithm, _)| *algorithm)
    }

    /// Whether the request sent a value to check the body against (not just an algorithm to compute).
    pub fn expects_a_value(&self) -> bool {
        self.content_md5.is_some() || matches!(self.checksum, Some((_, Expected::Value(_) | Expected::Trailer(_))))
    }

    /// Fresh digests for the body. MD5 is computed when the caller needs it for the ETag (`etag_md5`) or the
    /// request sent Content-MD5: SSE-KMS and SSE-C ETags are not MD5s, and skipping it saves a pass over the data.
    pub fn digests(&self, etag_md5: bool) -> BodyDigests {
        BodyDigests {
            md5: (etag_md5 || self.content_md5.is_some()).then(Md5::new),
            checksum: self.algorithm().map(ChecksumAlgorithm::hasher),
        }
    }

    /// Compares the computed digests with the declarations: `BadDigest` on a mismatch.
    pub fn verify(self, computed: &ComputedDigests) -> S3Result<()> {
        if let Some(expected) = self.content_md5 {
            if Some(expected) != computed.md5 {
                return Err(s3_error!(BadDigest, "The Content-MD5 you specified did not match what we received."));
            }
        }
        let (Some((algorithm, expected)), Some(actual)) = (self.checksum, computed.checksum.as_ref()) else {
            return Ok(());
        };
        let expected = match expected {
            Expected::Nothing => return Ok(()),
            Expected::Value(bytes) => bytes,
            Expected::Trailer(trailing) => read_trailer(algorithm, &trailing)?,
        };
        if expected != actual.bytes {
            return Err(s3_error!(
                BadDigest,
                "The {} you specified did not match the calculated checksum.",
                algorithm.name()
            ));
        }
        Ok(())
    }
}

fn parse_content_md5(value: &http::HeaderValue) -> S3Result<[u8; 16]> {
    value
        .to_str()
        .ok()
        .and_then(|value| BASE64.decode_to_vec(value.trim()).ok())
        .and_then(|bytes| <[u8; 16]>::try_from(bytes).ok())
        .ok_or_else(|| s3_error!(InvalidDigest, "The Content-MD5 you specified is not valid."))
}

/// The checksum algorithm named by `x-amz-trailer`, if it names one.
fn trailer_algorithm(headers: &HeaderMap) -> S3Result<Option<ChecksumAlgorithm>> {
    let Some(trailer) = headers.get("x-amz-trailer") else {
        return Ok(None);
    };
    let trailer = trailer.to_str().map_err(|_| s3_error!(InvalidRequest, "Invalid x-amz-trailer header."))?;
    Ok(trailer
        .split(',')
        .map(str::trim)
        .find_map(|name| ChecksumAlgorithm::ALL.into_iter().find(|a| a.header_name().eq_ignore_ascii_case(name))))
}

fn read_trailer(algorithm: ChecksumAlgorithm, trailing: &TrailingHeaders) -> S3Result<Vec<u8>> {
    let malformed = || {
        custom_error(
            "MalformedTrailerError",
            http::StatusCode::BAD_REQUEST,
            format!("The request declared the trailer {} but did not send it.", algorithm.header_name()),
        )
    };
    let value = trailing
        .read(|headers| headers.get(algorithm.header_name()).map(|value| value.to_str().map(str::to_owned)))
        .flatten()
        .ok_or_else(malformed)?
        .map_err(|_| algorithm.invalid_value())?;
    algorithm.decode(&value).ok_or_else(|| algorithm.invalid_value())
}

/// MD5 (when needed) and the declared checksum, computed while the body streams.
pub struct BodyDigests {
    md5: Option<Md5>,
    checksum: Option<ChecksumHasher>,
}

/// The result of [`BodyDigests`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputedDigests {
    /// `None` when MD5 was not needed (see [`DeclaredIntegrity::digests`]).
    pub md5: Option<[u8; 16]>,
    pub checksum: Option<ChecksumValue>,
}

impl BodyDigests {
    pub fn update(&mut self, data: &[u8]) {
        if let Some(md5) = &mut self.md5 {
            md5.update(data);
        }
        if let Some(checksum) = &mut self.checksum {
            checksum.update(data);
        }
    }

    pub fn finish(self) -> ComputedDigests {
        ComputedDigests { md5: self.md5.map(Md5::finalize), checksum: self.checksum.map(ChecksumHasher::finish) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(algorithm: ChecksumAlgorithm, data: &[u8]) -> ChecksumValue {
        let mut hasher = algorithm.hasher();
        hasher.update(data);
        hasher.finish()
    }

    #[test]
    fn known_values() {
        // Reference values from AWS's documentation and the standard check inputs.
        assert_eq!(digest(ChecksumAlgorithm::Crc32, b"123456789").bytes, 0xCBF4_3926u32.to_be_bytes());
        assert_eq!(digest(ChecksumAlgorithm::Crc32c, b"123456789").bytes, 0xE306_9283u32.to_be_bytes());
        assert_eq!(digest(ChecksumAlgorithm::Crc64Nvme, b"123456789").bytes, 0xAE8B_1486_0A79_9888u64.to_be_bytes());
        assert_eq!(digest(ChecksumAlgorithm::Sha256, b"").base64(), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
        assert_eq!(digest(ChecksumAlgorithm::Sha1, b"").base64(), "2jmj7l5rSw0yVb/vlWAYkK/YBwk=");
    }

    #[test]
    fn names_and_headers_round_trip() {
        for algorithm in ChecksumAlgorithm::ALL {
            assert_eq!(ChecksumAlgorithm::from_name(&algorithm.name().to_lowercase()), Some(algorithm));
            assert!(algorithm.header_name().ends_with(&algorithm.name().to_lowercase()));
        }
        assert_eq!(ChecksumAlgorithm::from_name("md5"), None);
    }

    #[test]
    fn decode_checks_length() {
        assert!(ChecksumAlgorithm::Crc32.decode("AAAAAA==").is_some());
        assert!(ChecksumAlgorithm::Crc32.decode("AAAAAAAAAAA=").is_none());
        assert!(ChecksumAlgorithm::Crc32.decode("not base64!").is_none());
    }

    fn sized_digests(algorithm: ChecksumAlgorithm, parts: &[&[u8]]) -> Vec<(ChecksumValue, u64)> {
        parts.iter().map(|part| (digest(algorithm, part), part.len() as u64)).collect()
    }

    #[test]
    fn composite_is_checksum_of_part_checksums() {
        let parts = sized_digests(ChecksumAlgorithm::Crc32, &[b"hello ", b"world"]);
        let mut concatenated = parts[0].0.bytes.clone();
        concatenated.extend_from_slice(&parts[1].0.bytes);
        let expected = format!("{}-2", digest(ChecksumAlgorithm::Crc32, &concatenated).base64());
        let composite =
            MultipartChecksum { algorithm: ChecksumAlgorithm::Crc32, kind: ChecksumKind::Composite }.of_parts(&parts);
        assert_eq!(composite.value, expected);
        assert_eq!(composite.kind, ChecksumKind::Composite);
    }

    #[test]
    fn full_object_crcs_combine_to_the_crc_of_the_whole_object() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let splits: [&[usize]; 5] = [&[100_000], &[0, 1, 99_999], &[65_536, 34_464], &[7, 0, 50_000, 49_993], &[1; 0]];
        for algorithm in [ChecksumAlgorithm::Crc32, ChecksumAlgorithm::Crc32c, ChecksumAlgorithm::Crc64Nvme] {
            for sizes in splits {
                let mut rest = &data[..sizes.iter().sum::<usize>()];
                let parts: Vec<&[u8]> = sizes
                    .iter()
                    .map(|&size| {
                        let (part, tail) = rest.split_at(size);
                        rest = tail;
                        part
                    })
                    .collect();
                let whole: Vec<u8> = parts.concat();
                let full = MultipartChecksum { algorithm, kind: ChecksumKind::FullObject }
                    .of_parts(&sized_digests(algorithm, &parts));
                assert_eq!(full.value, digest(algorithm, &whole).base64(), "{algorithm:?} {sizes:?}");
                assert_eq!(full.kind, ChecksumKind::FullObject);
            }
        }
    }

    #[test]
    fn multipart_checksum_types_allowed_per_algorithm() {
        let full = |algorithm| Ok(Some(MultipartChecksum { algorithm, kind: ChecksumKind::FullObject }));
        let composite = |algorithm| Ok(Some(MultipartChecksum { algorithm, kind: ChecksumKind::Composite }));
        let parse = |algorithm, kind| MultipartChecksum::from_request(algorithm, kind).map_err(|e| e.to_string());
        assert_eq!(parse(None, None), Ok(None));
        assert_eq!(parse(Some("crc32"), None), composite(ChecksumAlgorithm::Crc32));
        assert_eq!(parse(Some("CRC32C"), Some("full_object")), full(ChecksumAlgorithm::Crc32c));
        assert_eq!(parse(Some("CRC64NVME"), None), full(ChecksumAlgorithm::Crc64Nvme));
        assert_eq!(parse(Some("SHA256"), Some("COMPOSITE")), composite(ChecksumAlgorithm::Sha256));
        for (algorithm, kind) in [
            (Some("CRC64NVME"), Some("COMPOSITE")),
            (Some("SHA1"), Some("FULL_OBJECT")),
            (Some("SHA256"), Some("FULL_OBJECT")),
            (None, Some("FULL_OBJECT")),
            (Some("CRC32"), Some("PARTIAL")),
            (Some("MD5"), None),
        ] {
            assert!(parse(algorithm, kind).is_err(), "{algorithm:?} {kind:?}");
        }
    }

    fn declared(fields: &ChecksumFields, md5: Option<&str>, algorithm: Option<&str>) -> S3Result<DeclaredIntegrity> {
        let mut headers = HeaderMap::new();
        if let Some(md5) = md5 {
            headers.insert("content-md5", md5.parse().unwrap());
        }
        DeclaredIntegrity::from_request(
            IntegrityHeaders { checksums: fields, algorithm, headers: &headers, trailing: None },
            None,
        )
    }

    fn computed_for(declared: &DeclaredIntegrity, data: &[u8]) -> ComputedDigests {
        let mut digests = declared.digests(false);
        digests.update(data);
        digests.finish()
    }

    #[test]
    fn header_checksum_is_verified() {
        let good = digest(ChecksumAlgorithm::Sha256, b"data").base64();
        let fields = ChecksumFields { sha256: Some(good), ..ChecksumFields::default() };
        let ok = declared(&fields, None, None).unwrap();
        let computed = computed_for(&ok, b"data");
        ok.verify(&computed).unwrap();

        let bad = declared(&fields, None, None).unwrap();
        let computed = computed_for(&bad, b"datA");
        let err = bad.verify(&computed).unwrap_err();
        assert_eq!(err.code(), &s3s::S3ErrorCode::BadDigest);
    }

    #[test]
    fn malformed_declarations_are_rejected() {
        let two = ChecksumFields {
            crc32: Some("AAAAAA==".into()),
            crc32c: Some("AAAAAA==".into()),
            ..ChecksumFields::default()
        };
        assert_eq!(declared(&two, None, None).err().unwrap().code(), &s3s::S3ErrorCode::InvalidRequest);
        let short = ChecksumFields { crc32: Some("AAA=".into()), ..ChecksumFields::default() };
        assert_eq!(declared(&short, None, None).err().unwrap().code(), &s3s::S3ErrorCode::InvalidRequest);
        let none = ChecksumFields::default();
        assert_eq!(declared(&none, Some("abc"), None).err().unwrap().code(), &s3s::S3ErrorCode::InvalidDigest);
        assert_eq!(declared(&none, Some(""), None).err().unwrap().code(), &s3s::S3ErrorCode::InvalidDigest);
        let crc = ChecksumFields { crc32: Some("AAAAAA==".into()), ..ChecksumFields::default() };
        assert_eq!(declared(&crc, None, Some("SHA256")).err().unwrap().code(), &s3s::S3ErrorCode::InvalidRequest);
    }

    #[test]
    fn content_md5_mismatch_is_bad_digest() {
        let none = ChecksumFields::default();
        let md5 = BASE64.encode_to_string(Md5::checksum(b"data"));
        let ok = declared(&none, Some(&md5), None).unwrap();
        let computed = computed_for(&ok, b"data");
        ok.verify(&computed).unwrap();
        let bad = declared(&none, Some(&md5), None).unwrap();
        let computed = computed_for(&bad, b"other");
        assert_eq!(bad.verify(&computed).unwrap_err().code(), &s3s::S3ErrorCode::BadDigest);
    }
}
