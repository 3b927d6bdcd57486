//! Mapping failures to S3 errors: store errors, request-body read errors and internal I/O errors.
//!
//! Internal details (paths, OS errors) are logged and replaced by a generic `InternalError` message.

use coffer_store::StoreError;
use s3s::{s3_error, S3Error, S3ErrorCode, StdError};
use tracing::error;

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
        other @ (StoreError::InvalidMeta(_) | StoreError::Io(_)) => internal(&other),
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
