//! Mapping failures to S3 errors: store errors, request-body read errors and internal I/O errors, and AWS's message
//! for the errors s3s raises with a code only.
//!
//! Internal details (paths, OS errors) are logged and replaced by a generic `InternalError` message.

use coffer_store::{StoreError, NULL_VERSION};
use s3s::{s3_error, S3Error, S3ErrorCode, StdError};
use tracing::error;

use crate::object_headers::format_http_date;

/// The S3 error for a store failure.
pub fn store_error(err: StoreError) -> S3Error {
    match err {
        StoreError::NoSuchBucket => s3_error!(NoSuchBucket, "The specified bucket does not exist."),
        StoreError::NoSuchKey => s3_error!(NoSuchKey, "The specified key does not exist."),
        StoreError::NoSuchUpload => s3_error!(
            NoSuchUpload,
            "The specified multipart upload does not exist. The upload ID might be invalid, or the multipart \
             upload might have been aborted or completed."
        ),
        StoreError::BucketAlreadyOwnedByYou => s3_error!(
            BucketAlreadyOwnedByYou,
            "Your previous request to create the named bucket succeeded and you already own it."
        ),
        StoreError::BucketNotEmpty => s3_error!(BucketNotEmpty, "The bucket you tried to delete is not empty."),
        StoreError::InvalidBucketName(reason) => S3Error::with_message(
            S3ErrorCode::InvalidBucketName,
            format!("The specified bucket is not valid: {reason}"),
        ),
        StoreError::KeyTooLong => s3_error!(KeyTooLongError, "Your key is too long."),
        StoreError::InvalidKey => s3_error!(InvalidArgument, "The object key must not be empty."),
        StoreError::InvalidPart(number) => s3_error!(
            InvalidPart,
            "One or more of the specified parts could not be found (part {number}). The part may not have been \
             uploaded, or the specified entity tag may not have matched the part's entity tag."
        ),
        StoreError::Changed => s3_error!(
            OperationAborted,
            "A conflicting conditional operation is currently in progress against this resource. Please try again."
        ),
        StoreError::NoSuchVersion => {
            s3_error!(NoSuchVersion, "The specified version does not exist.")
        }
        StoreError::DeleteMarker { version_id, last_modified } => {
            delete_marker_error(version_id.as_deref(), last_modified)
        }
        StoreError::NotImplemented(what) => S3Error::with_message(
            S3ErrorCode::NotImplemented,
            format!("{what} is not implemented by this server's metadata engine (--metadata directory)."),
        ),
        StoreError::Io(err) => io_error(&err),
        other @ StoreError::InvalidMeta(_) => internal(&other),
    }
}

/// GET or HEAD of a version that is a delete marker: 405 with the marker's headers, as S3 answers.
fn delete_marker_error(version_id: Option<&str>, last_modified: time::OffsetDateTime) -> S3Error {
    let mut err = s3_error!(MethodNotAllowed, "The specified method is not allowed against this resource.");
    let mut headers = http::HeaderMap::new();
    headers.insert("x-amz-delete-marker", http::HeaderValue::from_static("true"));
    if let Ok(value) = http::HeaderValue::from_str(version_id.unwrap_or(NULL_VERSION)) {
        headers.insert("x-amz-version-id", value);
    }
    if let Some(value) = format_http_date(&last_modified.into()).and_then(|date| date.parse().ok()) {
        headers.insert(http::header::LAST_MODIFIED, value);
    }
    err.set_headers(headers);
    err
}

/// The S3 error for a failed read or write of the data directory: 507 `XCofferStorageFull` when the disk (or the
/// user's quota) is full — a code clients do not retry, since retrying cannot help until space is freed — else an
/// `InternalError`. Nothing was committed either way: data is staged and fsynced before its record replaces the old.
pub fn io_error(err: &std::io::Error) -> S3Error {
    match err.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            error!(error = %err, "the data directory is full: writes fail until space is freed");
            custom_error(
                "XCofferStorageFull",
                http::StatusCode::INSUFFICIENT_STORAGE,
                "The server's storage is full; nothing was stored. Try again once space has been freed.",
            )
        }
        _ => internal(err),
    }
}

/// An `InternalError` for a failure that is the server's fault; the cause is logged, not returned.
pub fn internal(cause: &dyn std::fmt::Display) -> S3Error {
    error!(error = %cause, "internal error");
    s3_error!(InternalError, "We encountered an internal error. Please try again.")
}

/// The S3 error for a request body that could not be read to its end.
///
/// s3s's body wrappers report signature problems only through their error messages (the error types are
/// private), so those two cases are recognised by text; anything else means the client stopped sending.
pub fn body_error(err: &StdError) -> S3Error {
    let text = err.to_string();
    if text.contains("Sha256Mismatch") {
        custom_error(
            "XAmzContentSHA256Mismatch",
            http::StatusCode::BAD_REQUEST,
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )
    } else if text.contains("SignatureMismatch") {
        s3_error!(SignatureDoesNotMatch, "The chunk signature does not match the data that was sent.")
    } else if text.contains("FormatError") || text.contains("TooLarge") || text.contains("TooMany") {
        s3_error!(IncompleteBody, "The aws-chunked request body is malformed.")
    } else {
        s3_error!(
            IncompleteBody,
            "You did not provide the number of bytes specified by the Content-Length HTTP header."
        )
    }
}

/// A `Custom` S3 error code with an explicit status (for codes s3s does not know).
pub fn custom_error(code: &'static str, status: http::StatusCode, message: impl Into<String>) -> S3Error {
    let mut err = S3Error::with_message(S3ErrorCode::Custom(code.into()), message.into());
    err.set_status_code(status);
    err
}

/// AWS's message for an error code that s3s raises without one (signature checks, request parsing), so that no
/// error answer reaches a client with an empty `Message`.
fn default_message(code: &str) -> Option<&'static str> {
    Some(match code {
        "AccessDenied" => "Access Denied",
        "SignatureDoesNotMatch" => {
            "The request signature we calculated does not match the signature you provided. Check your key and \
             signing method."
        }
        "InvalidAccessKeyId" => "The AWS access key Id you provided does not exist in our records.",
        "RequestTimeTooSkewed" => "The difference between the request time and the current time is too large.",
        "MalformedXML" => "The XML you provided was not well-formed or did not validate against our published schema.",
        "MissingContentLength" => "You must provide the Content-Length HTTP header.",
        "IncompleteBody" => "You did not provide the number of bytes specified by the Content-Length HTTP header.",
        "MaxMessageLengthExceeded" => "Your request was too big.",
        "InvalidURI" => "Couldn't parse the specified URI.",
        "InvalidBucketName" => "The specified bucket is not valid.",
        "KeyTooLongError" => "Your key is too long.",
        "MethodNotAllowed" => "The specified method is not allowed against this resource.",
        "NotImplemented" => "A header you provided implies functionality that is not implemented.",
        "InvalidArgument" => "Invalid Argument",
        "InvalidRequest" => "Invalid Request",
        "InternalError" => "We encountered an internal error. Please try again.",
        _ => return None,
    })
}

/// An S3 error body (`<Error><Code>…</Code>…</Error>`) with AWS's message added when it has none; `None` when it
/// has one, or its code has no known message.
pub fn with_default_message(xml: &str) -> Option<String> {
    if xml.contains("<Message>") {
        return None;
    }
    let (before, after) = xml.split_once("<Code>")?;
    let (code, rest) = after.split_once("</Code>")?;
    let message = default_message(code)?;
    Some(format!("{before}<Code>{code}</Code><Message>{message}</Message>{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_a_507_that_clients_do_not_retry() {
        for kind in [std::io::ErrorKind::StorageFull, std::io::ErrorKind::QuotaExceeded] {
            let err = store_error(StoreError::Io(std::io::Error::from(kind)));
            assert_eq!(err.code(), &S3ErrorCode::Custom("XCofferStorageFull".into()));
            assert_eq!(err.status_code(), Some(http::StatusCode::INSUFFICIENT_STORAGE));
        }
        let other = store_error(StoreError::Io(std::io::Error::other("boom")));
        assert_eq!(other.code(), &S3ErrorCode::InternalError);
        assert!(!other.message().unwrap_or_default().contains("boom"), "causes are logged, not returned");
    }

    #[test]
    fn errors_without_a_message_get_aws_s_message() {
        let bare = r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>SignatureDoesNotMatch</Code></Error>"#;
        let patched = with_default_message(bare).unwrap();
        assert_eq!(
            patched,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SignatureDoesNotMatch</Code><Message>The \
             request signature we calculated does not match the signature you provided. Check your key and signing \
             method.</Message></Error>"
        );
        let with_message = "<Error><Code>AccessDenied</Code><Message>Signature is required</Message></Error>";
        assert_eq!(with_default_message(with_message), None);
        assert_eq!(with_default_message("<Error><Code>SomethingNew</Code></Error>"), None);
        assert_eq!(with_default_message("not xml"), None);
    }
}
