//! SSE request headers in, validated decisions out: every S3 rule about which encryption a request asks for and
//! whether it may touch an object lives here, and nowhere else.
//!
//! - Writes (PutObject, CreateMultipartUpload, CopyObject destination): [`SseHeaders::for_write`] with the bucket's
//!   default encryption ([`BucketEncryption`]) gives a [`WriteEncryption`].
//! - Reads (GetObject, HeadObject): [`SseHeaders::for_read`] gives the customer key if one was sent, and
//!   [`authorize_read`] checks it against the object.
//! - UploadPart / UploadPartCopy destination: [`CustomerKeyHeaders::parse`] and [`authorize_upload_part`].
//! - Copy sources: the `x-amz-copy-source-server-side-encryption-customer-*` trio through
//!   [`CustomerKeyHeaders::parse`] and [`authorize_read`].
//!
//! Values arrive as plain strings from the server; nothing here knows HTTP or s3s types.

use std::collections::BTreeMap;
use std::fmt;

use base64_simd::STANDARD;
use md5::{Digest as _, Md5};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::error::{Result, SseError};
use crate::keys::KEY_LEN;
use crate::metadata::ObjectEncryption;

const AES256: &str = "AES256";
const AWS_KMS: &str = "aws:kms";
/// Encryption-context keys with this prefix are Coffer's own (the bucket binding); clients may not set them.
pub(crate) const RESERVED_CONTEXT_PREFIX: &str = "coffer:";

/// How the request reached the server: SSE-C keys may only travel over TLS, from loopback, or where the operator
/// explicitly allowed plain HTTP (`--allow-insecure-sse-c`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transport {
    pub tls: bool,
    pub client_is_loopback: bool,
    pub allow_insecure_sse_c: bool,
}

impl Transport {
    fn permits_customer_keys(&self) -> bool {
        self.tls || self.client_is_loopback || self.allow_insecure_sse_c
    }
}

/// The SSE-C header trio: `x-amz-server-side-encryption-customer-{algorithm,key,key-MD5}`, or its
/// `x-amz-copy-source-…` twin for a copy source.
#[derive(Clone, Default)]
pub struct CustomerKeyHeaders {
    pub algorithm: Option<String>,
    /// The base64 key as sent: a secret, zeroized on drop.
    pub key: Option<Zeroizing<String>>,
    pub key_md5: Option<String>,
}

impl fmt::Debug for CustomerKeyHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustomerKeyHeaders")
            .field("algorithm", &self.algorithm)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("key_md5", &self.key_md5)
            .finish()
    }
}

/// The raw SSE request headers of a PUT, CreateMultipartUpload, CopyObject (destination), GET or HEAD.
#[derive(Clone, Debug, Default)]
pub struct SseHeaders {
    /// `x-amz-server-side-encryption`
    pub server_side_encryption: Option<String>,
    /// `x-amz-server-side-encryption-aws-kms-key-id`
    pub kms_key_id: Option<String>,
    /// `x-amz-server-side-encryption-context`
    pub context: Option<String>,
    /// `x-amz-server-side-encryption-bucket-key-enabled`
    pub bucket_key_enabled: Option<bool>,
    pub customer: CustomerKeyHeaders,
}

/// A validated SSE-C key. Zeroized on drop; `Debug` shows only its MD5.
#[derive(Clone)]
pub struct CustomerKey {
    key: Zeroizing<[u8; KEY_LEN]>,
    md5: [u8; 16],
}

impl CustomerKey {
    pub(crate) fn key(&self) -> &[u8; KEY_LEN] {
        &self.key
    }

    pub(crate) fn md5(&self) -> &[u8; 16] {
        &self.md5
    }

    fn matches(&self, md5: &[u8; 16]) -> bool {
        bool::from(self.md5.ct_eq(md5))
    }
}

impl fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CustomerKey(md5={})", STANDARD.encode_to_string(self.md5))
    }
}

/// A client's `x-amz-server-side-encryption-context`: the header as sent (echoed back) and its pairs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsContext {
    header: String,
    pairs: BTreeMap<String, String>,
}

impl KmsContext {
    /// Parses base64 of a JSON object of string pairs.
    pub(crate) fn parse(header: &str) -> Result<Self> {
        let json = STANDARD
            .decode_to_vec(header)
            .map_err(|_| SseError::invalid_argument("The encryption context is not valid base64"))?;
        let pairs: BTreeMap<String, String> = serde_json::from_slice(&json).map_err(|_| {
            SseError::invalid_argument("The encryption context must be base64 of a JSON object of string pairs")
        })?;
        if pairs.keys().any(|k| k.starts_with(RESERVED_CONTEXT_PREFIX)) {
            return Err(SseError::invalid_argument(format!(
                "Encryption context keys starting with '{RESERVED_CONTEXT_PREFIX}' are reserved"
            )));
        }
        Ok(Self { header: header.to_owned(), pairs })
    }

    pub fn header(&self) -> &str {
        &self.header
    }

    pub fn pairs(&self) -> &BTreeMap<String, String> {
        &self.pairs
    }
}

/// An SSE-KMS request: which key, which context, whether the client asked for a bucket key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsRequest {
    /// The key as the client (or the bucket default) named it; `None`: the server's default KMS key.
    pub key_id: Option<String>,
    pub context: Option<KmsContext>,
    pub bucket_key_enabled: bool,
}

/// How a new object (or upload) is to be encrypted.
#[derive(Clone, Debug)]
pub enum WriteEncryption {
    None,
    SseS3,
    SseKms(KmsRequest),
    SseC(CustomerKey),
}

/// A bucket's default encryption (PutBucketEncryption), stored opaquely by the store as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketEncryption {
    v: u32,
    sse_algorithm: BucketAlgorithm,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kms_master_key_id: Option<String>,
    #[serde(default)]
    bucket_key_enabled: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum BucketAlgorithm {
    #[serde(rename = "AES256")]
    Aes256,
    #[serde(rename = "aws:kms")]
    AwsKms,
}

impl BucketEncryption {
    /// Validates one PutBucketEncryption rule: `SSEAlgorithm`, `KMSMasterKeyID`, `BucketKeyEnabled`.
    pub fn from_rule(
        sse_algorithm: &str,
        kms_master_key_id: Option<&str>,
        bucket_key_enabled: Option<bool>,
    ) -> Result<Self> {
        let sse_algorithm = match sse_algorithm {
            AES256 => BucketAlgorithm::Aes256,
            AWS_KMS => BucketAlgorithm::AwsKms,
            _ => return Err(SseError::invalid_argument("The SSEAlgorithm must be AES256 or aws:kms")),
        };
        if let Some(id) = kms_master_key_id {
            if sse_algorithm != BucketAlgorithm::AwsKms {
                return Err(SseError::invalid_argument(
                    "KMSMasterKeyID is only applicable when the SSEAlgorithm is aws:kms",
                ));
            }
            validate_key_id(id)?;
        }
        Ok(Self {
            v: 1,
            sse_algorithm,
            kms_master_key_id: kms_master_key_id.map(str::to_owned),
            bucket_key_enabled: bucket_key_enabled.unwrap_or(false),
        })
    }

    /// Reads the JSON the store kept for the bucket.
    pub fn from_json(json: &str) -> Result<Self> {
        serde_json::from_str::<Self>(json)
            .ok()
            .filter(|config| config.v == 1)
            .ok_or_else(|| SseError::internal("The bucket's stored encryption configuration is invalid"))
    }

    /// The JSON to hand to the store.
    pub fn to_json(&self) -> Box<RawValue> {
        serde_json::value::to_raw_value(self).expect("a bucket encryption configuration always serializes")
    }

    /// `AES256` or `aws:kms`, for GetBucketEncryption.
    pub fn sse_algorithm(&self) -> &'static str {
        match self.sse_algorithm {
            BucketAlgorithm::Aes256 => AES256,
            BucketAlgorithm::AwsKms => AWS_KMS,
        }
    }

    pub fn kms_master_key_id(&self) -> Option<&str> {
        self.kms_master_key_id.as_deref()
    }

    pub fn bucket_key_enabled(&self) -> bool {
        self.bucket_key_enabled
    }

    fn apply(&self) -> WriteEncryption {
        match self.sse_algorithm {
            BucketAlgorithm::Aes256 => WriteEncryption::SseS3,
            BucketAlgorithm::AwsKms => WriteEncryption::SseKms(KmsRequest {
                key_id: self.kms_master_key_id.clone(),
                context: None,
                bucket_key_enabled: self.bucket_key_enabled,
            }),
        }
    }
}

fn validate_key_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(SseError::invalid_argument("The KMS key id must not be empty"));
    }
    Ok(())
}

/// The id to ask the KMS for: a key ARN (`arn:aws:kms:REGION:ACCOUNT:key/ID`) names key `ID`; anything else is the
/// id itself. Responses still echo the id exactly as the client named it.
pub(crate) fn kms_lookup_id(named: &str) -> &str {
    match named.strip_prefix("arn:") {
        Some(rest) if rest.starts_with("aws:kms:") => rest.split_once(":key/").map_or(named, |(_, id)| id),
        _ => named,
    }
}

impl SseHeaders {
    /// The encryption of a new object or upload: request headers override the bucket default.
    pub fn for_write(
        &self,
        bucket_default: Option<&BucketEncryption>,
        transport: &Transport,
    ) -> Result<WriteEncryption> {
        let customer = self.customer.parse(transport)?;
        let kms_headers = self.kms_key_id.is_some() || self.context.is_some();
        if customer.is_some() && (self.server_side_encryption.is_some() || kms_headers) {
            return Err(SseError::invalid_argument(
                "Server Side Encryption with Customer provided key is incompatible with the encryption method specified",
            ));
        }
        match self.server_side_encryption.as_deref() {
            Some(AWS_KMS) => Ok(WriteEncryption::SseKms(self.kms_request(bucket_default)?)),
            Some(_) | None if kms_headers => Err(SseError::invalid_argument(
                "Server Side Encryption with KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms",
            )),
            Some(AES256) => Ok(WriteEncryption::SseS3),
            Some(_) => Err(SseError::invalid_argument("The encryption method specified is not supported")),
            None => Ok(match (customer, bucket_default) {
                (Some(key), _) => WriteEncryption::SseC(key),
                (None, Some(default)) => default.apply(),
                (None, None) => WriteEncryption::None,
            }),
        }
    }

    fn kms_request(&self, bucket_default: Option<&BucketEncryption>) -> Result<KmsRequest> {
        if let Some(id) = &self.kms_key_id {
            validate_key_id(id)?;
        }
        let default_bucket_key =
            bucket_default.is_some_and(|d| d.sse_algorithm == BucketAlgorithm::AwsKms && d.bucket_key_enabled);
        Ok(KmsRequest {
            key_id: self.kms_key_id.clone(),
            context: self.context.as_deref().map(KmsContext::parse).transpose()?,
            bucket_key_enabled: self.bucket_key_enabled.unwrap_or(default_bucket_key),
        })
    }

    /// The customer key of a GET or HEAD, if the client sent one; SSE-S3/SSE-KMS headers are refused on reads.
    pub fn for_read(&self, transport: &Transport) -> Result<Option<CustomerKey>> {
        if self.server_side_encryption.is_some() {
            return Err(SseError::invalid_argument(
                "The x-amz-server-side-encryption header is not supported for this operation",
            ));
        }
        if self.kms_key_id.is_some() || self.context.is_some() || self.bucket_key_enabled.is_some() {
            return Err(SseError::invalid_argument("SSE-KMS request headers are not supported for this operation"));
        }
        self.customer.parse(transport)
    }
}

impl CustomerKeyHeaders {
    /// The validated customer key, `None` when none of the three headers is present.
    pub fn parse(&self, transport: &Transport) -> Result<Option<CustomerKey>> {
        if self.algorithm.is_none() && self.key.is_none() && self.key_md5.is_none() {
            return Ok(None);
        }
        if !transport.permits_customer_keys() {
            return Err(SseError::invalid_request(
                "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection.",
            ));
        }
        match self.algorithm.as_deref() {
            Some(AES256) => {}
            Some(_) => {
                return Err(SseError::invalid_argument(
                    "The encryption algorithm specified is not valid: customer-provided keys require AES256",
                ));
            }
            None => {
                return Err(SseError::invalid_argument(
                    "Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm.",
                ));
            }
        }
        let encoded = self.key.as_deref().ok_or_else(|| {
            SseError::invalid_argument(
                "Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key.",
            )
        })?;
        let invalid_key = || SseError::invalid_argument("The secret key was invalid for the specified algorithm.");
        let decoded = Zeroizing::new(STANDARD.decode_to_vec(encoded).map_err(|_| invalid_key())?);
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if decoded.len() != KEY_LEN {
            return Err(invalid_key());
        }
        key.copy_from_slice(&decoded);
        let provided_md5 = self.key_md5.as_deref().ok_or_else(|| {
            SseError::invalid_argument(
                "Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key.",
            )
        })?;
        let md5: [u8; 16] = Md5::digest(key.as_ref()).into();
        let provided = STANDARD.decode_to_vec(provided_md5).unwrap_or_default();
        if !bool::from(md5.as_slice().ct_eq(&provided)) {
            return Err(SseError::invalid_argument(
                "The calculated MD5 hash of the key did not match the hash that was provided.",
            ));
        }
        Ok(Some(CustomerKey { key, md5 }))
    }
}

/// May a GET, HEAD or copy source with this customer key (if any) read the stored object?
pub fn authorize_read(stored: Option<&ObjectEncryption>, key: Option<&CustomerKey>) -> Result<()> {
    match (stored.and_then(ObjectEncryption::customer_key_md5), key) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(SseError::invalid_request("The encryption parameters are not applicable to this object.")),
        (Some(_), None) => Err(SseError::invalid_request(
            "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.",
        )),
        (Some(md5), Some(key)) if key.matches(md5) => Ok(()),
        (Some(_), Some(_)) => Err(SseError::access_denied(
            "The SSE-C key provided does not match the key the object was encrypted with.",
        )),
    }
}

/// May an UploadPart (or UploadPartCopy destination) with this customer key (if any) add a part to the upload?
pub fn authorize_upload_part(upload: Option<&ObjectEncryption>, key: Option<&CustomerKey>) -> Result<()> {
    match (upload.and_then(ObjectEncryption::customer_key_md5), key) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(SseError::invalid_request(
            "The encryption parameters are not applicable to this upload: it was not initiated with a customer-provided key.",
        )),
        (Some(_), None) => Err(SseError::invalid_request(
            "The multipart upload initiate requested encryption. Subsequent part requests must include the appropriate encryption parameters.",
        )),
        (Some(md5), Some(key)) if key.matches(md5) => Ok(()),
        (Some(_), Some(_)) => Err(SseError::invalid_request(
            "The provided encryption parameters did not match the ones used originally.",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SealedKey;
    use crate::metadata::Scheme;

    const KEY: [u8; 32] = [0x24; 32];
    const LOCAL: Transport = Transport { tls: false, client_is_loopback: true, allow_insecure_sse_c: false };

    fn b64(bytes: &[u8]) -> String {
        STANDARD.encode_to_string(bytes)
    }

    fn md5_b64(bytes: &[u8]) -> String {
        b64(&Md5::digest(bytes))
    }

    fn trio(key: &[u8]) -> CustomerKeyHeaders {
        CustomerKeyHeaders {
            algorithm: Some("AES256".into()),
            key: Some(Zeroizing::new(b64(key))),
            key_md5: Some(md5_b64(key)),
        }
    }

    fn sse(value: &str) -> SseHeaders {
        SseHeaders { server_side_encryption: Some(value.into()), ..SseHeaders::default() }
    }

    fn customer(key: &[u8]) -> SseHeaders {
        SseHeaders { customer: trio(key), ..SseHeaders::default() }
    }

    fn write(headers: &SseHeaders) -> Result<WriteEncryption> {
        headers.for_write(None, &LOCAL)
    }

    fn assert_error(result: Result<impl fmt::Debug>, code: &str, status: u16) -> SseError {
        let e = result.expect_err("expected an error");
        assert_eq!((e.code(), e.status()), (code, status), "{e:?}");
        e
    }

    fn stored_sse_c(key: &[u8]) -> ObjectEncryption {
        let sealed = SealedKey::from_base64(&b64(&[0u8; 80])).unwrap();
        ObjectEncryption::new(Scheme::SseC { key_md5: Md5::digest(key).into() }, sealed)
    }

    fn stored_sse_s3() -> ObjectEncryption {
        let sealed = SealedKey::from_base64(&b64(&[0u8; 80])).unwrap();
        ObjectEncryption::new(Scheme::SseS3 { wrapped_key: "AA==".into() }, sealed)
    }

    #[test]
    fn no_headers_no_default_is_plaintext() {
        assert!(matches!(write(&SseHeaders::default()).unwrap(), WriteEncryption::None));
    }

    #[test]
    fn sse_s3_and_sse_kms() {
        assert!(matches!(write(&sse("AES256")).unwrap(), WriteEncryption::SseS3));
        let WriteEncryption::SseKms(kms) = write(&sse("aws:kms")).unwrap() else { panic!() };
        assert_eq!(kms, KmsRequest { key_id: None, context: None, bucket_key_enabled: false });

        let context = b64(br#"{"department":"finance","project":"x"}"#);
        let headers = SseHeaders {
            kms_key_id: Some("my-key".into()),
            context: Some(context.clone()),
            bucket_key_enabled: Some(true),
            ..sse("aws:kms")
        };
        let WriteEncryption::SseKms(kms) = write(&headers).unwrap() else { panic!() };
        assert_eq!(kms.key_id.as_deref(), Some("my-key"));
        assert!(kms.bucket_key_enabled);
        let ctx = kms.context.unwrap();
        assert_eq!(ctx.header(), context);
        assert_eq!(ctx.pairs().get("department").map(String::as_str), Some("finance"));
    }

    #[test]
    fn unknown_sse_values_are_refused() {
        for value in ["aes:kms", "aws:kms:dsse", "aes256", "", "AES256 "] {
            let e = assert_error(write(&sse(value)), "InvalidArgument", 400);
            assert_eq!(e.message(), "The encryption method specified is not supported");
        }
    }

    #[test]
    fn kms_headers_need_aws_kms() {
        let key_only = SseHeaders { kms_key_id: Some("k".into()), ..SseHeaders::default() };
        let context_only = SseHeaders { context: Some(b64(b"{}")), ..SseHeaders::default() };
        let with_aes = SseHeaders { kms_key_id: Some("k".into()), ..sse("AES256") };
        for headers in [key_only, context_only, with_aes] {
            let e = assert_error(write(&headers), "InvalidArgument", 400);
            assert!(e.message().contains("requires HTTP header x-amz-server-side-encryption : aws:kms"));
        }
        let empty_id = SseHeaders { kms_key_id: Some(String::new()), ..sse("aws:kms") };
        assert_error(write(&empty_id), "InvalidArgument", 400);
    }

    #[test]
    fn bad_contexts_are_refused() {
        for context in [
            "%%%".to_owned(),
            b64(b"not json"),
            b64(br#"["a"]"#),
            b64(br#"{"a":1}"#),
            b64(br#"{"coffer:bucket":"other"}"#),
        ] {
            let headers = SseHeaders { context: Some(context), ..sse("aws:kms") };
            assert_error(write(&headers), "InvalidArgument", 400);
        }
    }

    #[test]
    fn sse_c_parses_and_keeps_the_md5() {
        let WriteEncryption::SseC(key) = write(&customer(&KEY)).unwrap() else { panic!() };
        assert_eq!(key.key(), &KEY);
        assert_eq!(key.md5(), &<[u8; 16]>::from(Md5::digest(KEY)));
    }

    #[test]
    fn sse_c_errors() {
        let cases: Vec<(CustomerKeyHeaders, &str)> = vec![
            (CustomerKeyHeaders { algorithm: Some("AES128".into()), ..trio(&KEY) }, "algorithm"),
            (CustomerKeyHeaders { algorithm: None, ..trio(&KEY) }, "algorithm"),
            (CustomerKeyHeaders { key: None, ..trio(&KEY) }, "secret key"),
            (CustomerKeyHeaders { key: Some(Zeroizing::new("not base64!".into())), ..trio(&KEY) }, "secret key"),
            (trio(&[1u8; 16]), "secret key"),
            (trio(&[1u8; 33]), "secret key"),
            (CustomerKeyHeaders { key_md5: None, ..trio(&KEY) }, "MD5"),
            (CustomerKeyHeaders { key_md5: Some(md5_b64(b"other")), ..trio(&KEY) }, "MD5"),
            (CustomerKeyHeaders { key_md5: Some("???".into()), ..trio(&KEY) }, "MD5"),
            (CustomerKeyHeaders { key_md5: Some(b64(&[0u8; 15])), ..trio(&KEY) }, "MD5"),
        ];
        for (headers, topic) in cases {
            let e = assert_error(headers.parse(&LOCAL), "InvalidArgument", 400);
            assert!(e.message().contains(topic), "{topic}: {}", e.message());
            assert!(!e.message().contains(&b64(&KEY)), "the key leaked into the error");
        }
        let mismatch = CustomerKeyHeaders { key_md5: Some(md5_b64(b"other")), ..trio(&KEY) };
        assert_eq!(
            mismatch.parse(&LOCAL).unwrap_err().message(),
            "The calculated MD5 hash of the key did not match the hash that was provided."
        );
    }

    #[test]
    fn sse_c_cannot_be_combined_with_sse_s3_or_kms() {
        let combos = [
            SseHeaders { customer: trio(&KEY), ..sse("AES256") },
            SseHeaders { customer: trio(&KEY), ..sse("aws:kms") },
            SseHeaders { customer: trio(&KEY), kms_key_id: Some("k".into()), ..SseHeaders::default() },
        ];
        for headers in combos {
            let e = assert_error(write(&headers), "InvalidArgument", 400);
            assert!(e.message().contains("incompatible"));
        }
    }

    #[test]
    fn sse_c_over_plain_http_needs_loopback_tls_or_opt_in() {
        let remote = Transport { tls: false, client_is_loopback: false, allow_insecure_sse_c: false };
        let e = assert_error(trio(&KEY).parse(&remote), "InvalidRequest", 400);
        assert!(e.message().contains("secure connection"));
        // Even malformed SSE-C headers are refused for the transport first: the key already travelled in clear.
        assert_error(
            CustomerKeyHeaders { algorithm: Some("x".into()), ..CustomerKeyHeaders::default() }.parse(&remote),
            "InvalidRequest",
            400,
        );
        for ok in [
            Transport { tls: true, ..remote },
            Transport { client_is_loopback: true, ..remote },
            Transport { allow_insecure_sse_c: true, ..remote },
        ] {
            assert!(trio(&KEY).parse(&ok).unwrap().is_some());
        }
        // Requests without SSE-C are not affected.
        assert!(sse("AES256").for_write(None, &remote).is_ok());
    }

    #[test]
    fn bucket_default_applies_without_headers_and_headers_override_it() {
        let s3_default = BucketEncryption::from_rule("AES256", None, None).unwrap();
        let kms_default = BucketEncryption::from_rule("aws:kms", Some("bucket-key"), Some(true)).unwrap();
        assert!(matches!(SseHeaders::default().for_write(Some(&s3_default), &LOCAL).unwrap(), WriteEncryption::SseS3));
        let WriteEncryption::SseKms(kms) = SseHeaders::default().for_write(Some(&kms_default), &LOCAL).unwrap() else {
            panic!()
        };
        assert_eq!(kms, KmsRequest { key_id: Some("bucket-key".into()), context: None, bucket_key_enabled: true });
        // Headers win: SSE-C over an SSE-KMS default, SSE-S3 over SSE-KMS, SSE-KMS with its own key over SSE-S3.
        assert!(matches!(customer(&KEY).for_write(Some(&kms_default), &LOCAL).unwrap(), WriteEncryption::SseC(_)));
        assert!(matches!(sse("AES256").for_write(Some(&kms_default), &LOCAL).unwrap(), WriteEncryption::SseS3));
        let own = SseHeaders { kms_key_id: Some("mine".into()), ..sse("aws:kms") };
        let WriteEncryption::SseKms(kms) = own.for_write(Some(&s3_default), &LOCAL).unwrap() else { panic!() };
        assert_eq!(kms.key_id.as_deref(), Some("mine"));
        assert!(!kms.bucket_key_enabled);
        // An explicit aws:kms request inherits the bucket-key setting of a KMS default.
        let WriteEncryption::SseKms(kms) = sse("aws:kms").for_write(Some(&kms_default), &LOCAL).unwrap() else {
            panic!()
        };
        assert!(kms.bucket_key_enabled);
        assert_eq!(kms.key_id, None);
    }

    #[test]
    fn bucket_encryption_rules() {
        let kms = BucketEncryption::from_rule("aws:kms", Some("k1"), Some(true)).unwrap();
        assert_eq!(kms.sse_algorithm(), "aws:kms");
        assert_eq!(kms.kms_master_key_id(), Some("k1"));
        assert!(kms.bucket_key_enabled());
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(kms.to_json().get()).unwrap(),
            serde_json::json!({"v": 1, "sse_algorithm": "aws:kms", "kms_master_key_id": "k1", "bucket_key_enabled": true})
        );
        assert_eq!(BucketEncryption::from_json(kms.to_json().get()).unwrap(), kms);
        let s3 = BucketEncryption::from_rule("AES256", None, None).unwrap();
        assert_eq!(s3.sse_algorithm(), "AES256");
        assert_eq!(BucketEncryption::from_json(s3.to_json().get()).unwrap(), s3);

        assert_error(BucketEncryption::from_rule("aes:kms", None, None), "InvalidArgument", 400);
        assert_error(BucketEncryption::from_rule("AES256", Some("k1"), None), "InvalidArgument", 400);
        assert_error(BucketEncryption::from_rule("aws:kms", Some(""), None), "InvalidArgument", 400);
        assert_error(BucketEncryption::from_json(r#"{"v": 9, "sse_algorithm": "AES256"}"#), "InternalError", 500);
    }

    #[test]
    fn reads_refuse_sse_s3_and_kms_headers() {
        assert_error(sse("AES256").for_read(&LOCAL), "InvalidArgument", 400);
        assert_error(sse("aws:kms").for_read(&LOCAL), "InvalidArgument", 400);
        let key_id = SseHeaders { kms_key_id: Some("k".into()), ..SseHeaders::default() };
        assert_error(key_id.for_read(&LOCAL), "InvalidArgument", 400);
        assert!(SseHeaders::default().for_read(&LOCAL).unwrap().is_none());
        assert!(customer(&KEY).for_read(&LOCAL).unwrap().is_some());
        let remote = Transport::default();
        assert_error(customer(&KEY).for_read(&remote), "InvalidRequest", 400);
    }

    #[test]
    fn read_authorization() {
        let right = trio(&KEY).parse(&LOCAL).unwrap().unwrap();
        let wrong = trio(&[0x25; 32]).parse(&LOCAL).unwrap().unwrap();
        let sse_c = stored_sse_c(&KEY);
        let sse_s3 = stored_sse_s3();

        assert!(authorize_read(None, None).is_ok());
        assert!(authorize_read(Some(&sse_s3), None).is_ok());
        assert!(authorize_read(Some(&sse_c), Some(&right)).is_ok());
        let e = assert_error(authorize_read(Some(&sse_c), None), "InvalidRequest", 400);
        assert!(e.message().contains("correct parameters must be provided"));
        assert_error(authorize_read(Some(&sse_c), Some(&wrong)), "AccessDenied", 403);
        for not_sse_c in [None, Some(&sse_s3)] {
            let e = assert_error(authorize_read(not_sse_c, Some(&right)), "InvalidRequest", 400);
            assert_eq!(e.message(), "The encryption parameters are not applicable to this object.");
        }
    }

    #[test]
    fn upload_part_authorization() {
        let right = trio(&KEY).parse(&LOCAL).unwrap().unwrap();
        let wrong = trio(&[0x25; 32]).parse(&LOCAL).unwrap().unwrap();
        let upload = stored_sse_c(&KEY);
        assert!(authorize_upload_part(Some(&upload), Some(&right)).is_ok());
        assert!(authorize_upload_part(Some(&stored_sse_s3()), None).is_ok());
        assert!(authorize_upload_part(None, None).is_ok());
        assert_error(authorize_upload_part(Some(&upload), None), "InvalidRequest", 400);
        assert_error(authorize_upload_part(Some(&upload), Some(&wrong)), "InvalidRequest", 400);
        assert_error(authorize_upload_part(None, Some(&right)), "InvalidRequest", 400);
        assert_error(authorize_upload_part(Some(&stored_sse_s3()), Some(&right)), "InvalidRequest", 400);
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let headers = customer(&KEY);
        let key = write(&headers).unwrap();
        for printed in [format!("{headers:?}"), format!("{key:?}")] {
            assert!(!printed.contains(&b64(&KEY)), "{printed}");
            assert!(!printed.contains("36, 36"), "{printed}");
        }
        assert!(format!("{headers:?}").contains("<redacted>"));
    }

    #[test]
    fn key_arns_are_looked_up_by_id() {
        assert_eq!(kms_lookup_id("arn:aws:kms:us-east-1:123456789012:key/my-key"), "my-key");
        assert_eq!(kms_lookup_id("my-key"), "my-key");
        assert_eq!(kms_lookup_id("arn:aws:kms:us-east-1:1:alias/x"), "arn:aws:kms:us-east-1:1:alias/x");
        assert_eq!(kms_lookup_id("arn:aws:s3:::bucket/key/x"), "arn:aws:s3:::bucket/key/x");
    }
}
