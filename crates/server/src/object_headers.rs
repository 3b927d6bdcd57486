//! The client-supplied headers an object keeps ([`ObjectHeaders`]: Content-Type, Content-Encoding,
//! Content-Disposition, Content-Language, Cache-Control, Expires and `x-amz-meta-*`): validated and normalised from
//! PutObject, CreateMultipartUpload and CopyObject (REPLACE) requests, and turned back into GetObject / HeadObject
//! response fields.

use std::collections::BTreeMap;

use coffer_store::ObjectHeaders;
use s3s::dto::{Metadata, Timestamp, TimestampFormat};
use s3s::{s3_error, S3Result};

/// S3's limit on the user metadata of one object (names and values, in bytes).
pub const MAX_USER_METADATA_BYTES: usize = 2048;

/// Content-Type stored when a client sends none (what S3 does).
pub const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// Builds [`ObjectHeaders`] from a request DTO with the usual header fields (PutObject, CreateMultipartUpload,
/// CopyObject), moving the values out.
macro_rules! object_headers_from {
    ($input:expr) => {
        $crate::object_headers::from_request($crate::object_headers::RequestHeaders {
            content_type: $input.content_type.take(),
            content_encoding: $input.content_encoding.take(),
            content_disposition: $input.content_disposition.take(),
            content_language: $input.content_language.take(),
            cache_control: $input.cache_control.take(),
            expires: $input.expires.take(),
            metadata: $input.metadata.take(),
        })
    };
}
pub(crate) use object_headers_from;

/// The header fields of a request DTO, as s3s parsed them.
pub struct RequestHeaders {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    pub expires: Option<Timestamp>,
    pub metadata: Option<Metadata>,
}

/// Validates and normalises request headers: `aws-chunked` (a transfer detail) is removed from Content-Encoding, a
/// missing Content-Type becomes `binary/octet-stream`, and user metadata over 2 KiB is `MetadataTooLarge`.
pub fn from_request(request: RequestHeaders) -> S3Result<ObjectHeaders> {
    let user_metadata: BTreeMap<String, String> = request.metadata.unwrap_or_default().into_iter().collect();
    let metadata_bytes: usize = user_metadata.iter().map(|(name, value)| name.len() + value.len()).sum();
    if metadata_bytes > MAX_USER_METADATA_BYTES {
        return Err(s3_error!(
            MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size ({MAX_USER_METADATA_BYTES} bytes)."
        ));
    }
    Ok(ObjectHeaders {
        content_type: Some(request.content_type.unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned())),
        content_encoding: request.content_encoding.as_deref().and_then(without_aws_chunked),
        content_disposition: request.content_disposition,
        content_language: request.content_language,
        cache_control: request.cache_control,
        expires: request.expires.as_ref().and_then(format_http_date),
        user_metadata,
    })
}

/// The stored Expires date for a response DTO.
pub fn expires_timestamp(headers: &ObjectHeaders) -> Option<Timestamp> {
    headers.expires.as_deref().and_then(|date| Timestamp::parse(TimestampFormat::HttpDate, date).ok())
}

/// User metadata for a response DTO (`None` when empty, so no header is written).
pub fn user_metadata(headers: &ObjectHeaders) -> Option<Metadata> {
    (!headers.user_metadata.is_empty()).then(|| headers.user_metadata.clone().into_iter().collect())
}

/// Content-Encoding without the `aws-chunked` token; `None` if nothing else remains.
fn without_aws_chunked(encoding: &str) -> Option<String> {
    let kept: Vec<&str> = encoding
        .split(',')
        .map(str::trim)
        .filter(|token| !token.is_empty() && !token.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(","))
}

/// `timestamp` as an HTTP date (`Last-Modified`, `Expires`).
pub(crate) fn format_http_date(timestamp: &Timestamp) -> Option<String> {
    let mut out = Vec::new();
    timestamp.format(TimestampFormat::HttpDate, &mut out).ok()?;
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> RequestHeaders {
        RequestHeaders {
            content_type: None,
            content_encoding: None,
            content_disposition: None,
            content_language: None,
            cache_control: None,
            expires: None,
            metadata: None,
        }
    }

    #[test]
    fn aws_chunked_is_not_stored() {
        assert_eq!(without_aws_chunked("aws-chunked"), None);
        assert_eq!(without_aws_chunked("aws-chunked,gzip").as_deref(), Some("gzip"));
        assert_eq!(without_aws_chunked("gzip, aws-chunked").as_deref(), Some("gzip"));
        assert_eq!(without_aws_chunked("br").as_deref(), Some("br"));
    }

    #[test]
    fn defaults_and_expires_round_trip() {
        let expires = Timestamp::parse(TimestampFormat::HttpDate, "Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let headers = from_request(RequestHeaders { expires: Some(expires.clone()), ..request() }).unwrap();
        assert_eq!(headers.content_type.as_deref(), Some(DEFAULT_CONTENT_TYPE));
        assert_eq!(headers.expires.as_deref(), Some("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(expires_timestamp(&headers), Some(expires));
        assert_eq!(user_metadata(&headers), None);
    }

    #[test]
    fn user_metadata_is_limited_to_2_kib() {
        let fits: Metadata = [("a".to_owned(), "x".repeat(MAX_USER_METADATA_BYTES - 1))].into_iter().collect();
        assert!(from_request(RequestHeaders { metadata: Some(fits), ..request() }).is_ok());
        let too_big: Metadata = [("ab".to_owned(), "x".repeat(MAX_USER_METADATA_BYTES - 1))].into_iter().collect();
        let err = from_request(RequestHeaders { metadata: Some(too_big), ..request() }).unwrap_err();
        assert_eq!(err.code(), &s3s::S3ErrorCode::MetadataTooLarge);
    }
}
