//! The client-supplied headers an object keeps — Content-Type, Content-Encoding, Content-Disposition,
//! Content-Language, Cache-Control, Expires and `x-amz-meta-*` — taken from PutObject, CreateMultipartUpload and
//! CopyObject (REPLACE) and returned by GetObject / HeadObject.

use std::collections::BTreeMap;

use coffer_store::{ObjectMeta, UploadMeta};
use s3s::dto::{Metadata, Timestamp, TimestampFormat};
use s3s::{s3_error, S3Result};

/// S3's limit on the user metadata of one object (names and values, in bytes).
pub const MAX_USER_METADATA_BYTES: usize = 2048;

/// Content-Type stored when a client sends none (what S3 does).
pub const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// The headers stored with an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectHeaders {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    /// The `Expires` date as an HTTP date.
    pub expires: Option<String>,
    pub user_metadata: BTreeMap<String, String>,
}

/// Builds [`ObjectHeaders`] from a request DTO with the usual header fields (PutObject, CreateMultipartUpload,
/// CopyObject), moving the values out.
macro_rules! object_headers_from {
    ($input:expr) => {
        $crate::object_headers::ObjectHeaders::from_request($crate::object_headers::RequestHeaders {
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

impl ObjectHeaders {
    /// Validates and normalises request headers: `aws-chunked` (a transfer detail) is removed from
    /// Content-Encoding, a missing Content-Type becomes `binary/octet-stream`, and user metadata over 2 KiB is
    /// `MetadataTooLarge`.
    pub fn from_request(request: RequestHeaders) -> S3Result<Self> {
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

    pub fn from_meta(meta: &ObjectMeta) -> Self {
        ObjectHeaders {
            content_type: meta.content_type.clone(),
            content_encoding: meta.content_encoding.clone(),
            content_disposition: meta.content_disposition.clone(),
            content_language: meta.content_language.clone(),
            cache_control: meta.cache_control.clone(),
            expires: meta.expires.clone(),
            user_metadata: meta.user_metadata.clone(),
        }
    }

    pub fn from_upload(upload: &UploadMeta) -> Self {
        ObjectHeaders {
            content_type: upload.content_type.clone(),
            content_encoding: upload.content_encoding.clone(),
            content_disposition: upload.content_disposition.clone(),
            content_language: upload.content_language.clone(),
            cache_control: upload.cache_control.clone(),
            expires: upload.expires.clone(),
            user_metadata: upload.user_metadata.clone(),
        }
    }

    pub fn apply_to(self, meta: &mut ObjectMeta) {
        meta.content_type = self.content_type;
        meta.content_encoding = self.content_encoding;
        meta.content_disposition = self.content_disposition;
        meta.content_language = self.content_language;
        meta.cache_control = self.cache_control;
        meta.expires = self.expires;
        meta.user_metadata = self.user_metadata;
    }

    /// Upload metadata carrying these headers; the caller sets the checksum algorithm and encryption.
    pub fn into_upload(self) -> UploadMeta {
        UploadMeta {
            content_type: self.content_type,
            content_encoding: self.content_encoding,
            content_disposition: self.content_disposition,
            content_language: self.content_language,
            cache_control: self.cache_control,
            expires: self.expires,
            user_metadata: self.user_metadata,
            ..UploadMeta::default()
        }
    }

    /// The stored Expires date for a response DTO.
    pub fn expires_timestamp(&self) -> Option<Timestamp> {
        self.expires.as_deref().and_then(|date| Timestamp::parse(TimestampFormat::HttpDate, date).ok())
    }

    /// User metadata for a response DTO (`None` when empty, so no header is written).
    pub fn metadata(&self) -> Option<Metadata> {
        (!self.user_metadata.is_empty()).then(|| self.user_metadata.clone().into_iter().collect())
    }
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

fn format_http_date(timestamp: &Timestamp) -> Option<String> {
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
        let headers =
            ObjectHeaders::from_request(RequestHeaders { expires: Some(expires.clone()), ..request() }).unwrap();
        assert_eq!(headers.content_type.as_deref(), Some(DEFAULT_CONTENT_TYPE));
        assert_eq!(headers.expires.as_deref(), Some("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(headers.expires_timestamp(), Some(expires));
        assert_eq!(headers.metadata(), None);
    }

    #[test]
    fn user_metadata_is_limited_to_2_kib() {
        let fits: Metadata = [("a".to_owned(), "x".repeat(MAX_USER_METADATA_BYTES - 1))].into_iter().collect();
        assert!(ObjectHeaders::from_request(RequestHeaders { metadata: Some(fits), ..request() }).is_ok());
        let too_big: Metadata = [("ab".to_owned(), "x".repeat(MAX_USER_METADATA_BYTES - 1))].into_iter().collect();
        let err = ObjectHeaders::from_request(RequestHeaders { metadata: Some(too_big), ..request() }).unwrap_err();
        assert_eq!(err.code(), &s3s::S3ErrorCode::MetadataTooLarge);
    }
}
