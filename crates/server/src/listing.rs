//! Listing helpers shared by ListObjects (V1, V2) and ListMultipartUploads: page sizes, continuation tokens and
//! `encoding-type=url`.

use base64_simd::URL_SAFE_NO_PAD;
use s3s::dto::EncodingType;
use s3s::{s3_error, S3Result};

/// Default and maximum page size (S3's).
pub const MAX_PAGE: usize = 1000;

/// The page size for a `max-keys` / `max-uploads` / `max-parts` value: default and cap 1000, negative rejected.
pub fn page_size(requested: Option<i32>, parameter: &str) -> S3Result<usize> {
    match requested {
        None => Ok(MAX_PAGE),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "{parameter} must be a non-negative integer.")),
        Some(n) => Ok(usize::try_from(n).unwrap_or(MAX_PAGE).min(MAX_PAGE)),
    }
}

/// An opaque ListObjectsV2 continuation token for "continue after `key`".
pub fn continuation_token(key: &str) -> String {
    URL_SAFE_NO_PAD.encode_to_string(key.as_bytes())
}

/// The key a continuation token continues after.
pub fn parse_continuation_token(token: &str) -> S3Result<String> {
    URL_SAFE_NO_PAD
        .decode_to_vec(token.as_bytes())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "The continuation token provided is incorrect."))
}

/// How names in a listing are written: as they are, or URL-encoded (`encoding-type=url`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameEncoding {
    Plain,
    Url,
}

impl NameEncoding {
    /// Validates the request's `encoding-type`.
    pub fn from_request(encoding: Option<&EncodingType>) -> S3Result<Self> {
        match encoding.map(EncodingType::as_str) {
            None => Ok(NameEncoding::Plain),
            Some(value) if value.eq_ignore_ascii_case("url") => Ok(NameEncoding::Url),
            Some(_) => Err(s3_error!(InvalidArgument, "Invalid Encoding Method specified in Request")),
        }
    }

    /// The `EncodingType` to echo in the response (clients only decode when it is echoed).
    pub fn response_value(self) -> Option<EncodingType> {
        (self == NameEncoding::Url).then(|| EncodingType::from_static(EncodingType::URL))
    }

    pub fn apply(self, name: &str) -> String {
        match self {
            NameEncoding::Plain => name.to_owned(),
            NameEncoding::Url => url_encode(name),
        }
    }

    pub fn apply_opt(self, name: Option<&str>) -> Option<String> {
        name.map(|name| self.apply(name))
    }
}

/// Percent-encodes everything but unreserved characters and `/`. Spaces become `%20` and `+` becomes `%2B`, so
/// both `unquote` and `unquote_plus` style decoders (botocore uses the latter) recover the key.
fn url_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_is_reversible_with_plus_decoding() {
        assert_eq!(url_encode("a b+c/d%e"), "a%20b%2Bc/d%25e");
        assert_eq!(url_encode("é\n"), "%C3%A9%0A");
        assert_eq!(url_encode("plain-key_1.txt~"), "plain-key_1.txt~");
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(None, "max-keys").unwrap(), 1000);
        assert_eq!(page_size(Some(5000), "max-keys").unwrap(), 1000);
        assert_eq!(page_size(Some(0), "max-keys").unwrap(), 0);
        assert!(page_size(Some(-1), "max-keys").is_err());
    }

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let key = "dir/ü key+1";
        assert_eq!(parse_continuation_token(&continuation_token(key)).unwrap(), key);
        assert!(parse_continuation_token("***").is_err());
    }

    #[test]
    fn encoding_type_is_validated() {
        assert_eq!(NameEncoding::from_request(None).unwrap(), NameEncoding::Plain);
        let url = EncodingType::from_static(EncodingType::URL);
        assert_eq!(NameEncoding::from_request(Some(&url)).unwrap(), NameEncoding::Url);
        let bad = EncodingType::from("base64".to_owned());
        assert!(NameEncoding::from_request(Some(&bad)).is_err());
    }
}
