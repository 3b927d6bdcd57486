//! Presigned-URL rules s3s does not enforce: a query-string SigV4 request's `X-Amz-Expires` must be a whole number of
//! seconds from 1 to 604,800 (seven days), as in AWS; anything else is 400 `AuthorizationQueryParametersError`. The
//! listener applies [`check_expires`] before s3s authenticates the request, where AWS checks it too.

use http::StatusCode;
use s3s::{S3Error, S3Result};

use crate::errors::custom_error;

/// The longest validity a presigned URL may ask for: seven days, in seconds.
pub const MAX_EXPIRES_SECONDS: u64 = 604_800;

/// Checks every `X-Amz-Expires` of a presigned SigV4 URL (one that carries `X-Amz-Signature`, as s3s recognises
/// them); other requests pass.
pub fn check_expires(query: Option<&str>) -> S3Result<()> {
    let Some(query) = query else { return Ok(()) };
    let params = || query.split('&').map(|pair| pair.split_once('=').unwrap_or((pair, "")));
    if !params().any(|(name, _)| name == "X-Amz-Signature") {
        return Ok(());
    }
    params().filter(|(name, _)| *name == "X-Amz-Expires").try_for_each(|(_, value)| expires_in_range(value))
}

fn expires_in_range(value: &str) -> S3Result<()> {
    let (negative, digits) = value.strip_prefix('-').map_or((false, value), |digits| (true, digits));
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refused("X-Amz-Expires should be a number"));
    }
    if negative {
        return Err(refused("X-Amz-Expires must be non-negative"));
    }
    match digits.parse::<u64>() {
        Ok(0) => Err(refused("X-Amz-Expires must be at least 1 second")),
        Ok(seconds) if seconds <= MAX_EXPIRES_SECONDS => Ok(()),
        _ => Err(refused(&format!(
            "X-Amz-Expires must be less than a week (in seconds); that is, the given X-Amz-Expires must be less than \
             {MAX_EXPIRES_SECONDS} seconds"
        ))),
    }
}

fn refused(message: &str) -> S3Error {
    custom_error("AuthorizationQueryParametersError", StatusCode::BAD_REQUEST, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presigned(expires: &str) -> String {
        format!(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=k%2F20250101%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20250101T000000Z&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host&X-Amz-Signature=ab"
        )
    }

    #[test]
    fn one_second_to_seven_days_pass() {
        for ok in ["1", "3600", "604800", "0604800"] {
            assert!(check_expires(Some(&presigned(ok))).is_ok(), "{ok}");
        }
    }

    #[test]
    fn anything_else_is_authorization_query_parameters_error() {
        for (bad, message) in [
            ("604801", "less than a week"),
            ("99999999999999999999999", "less than a week"),
            ("0", "at least 1 second"),
            ("-5", "non-negative"),
            ("", "should be a number"),
            ("1h", "should be a number"),
        ] {
            let err = check_expires(Some(&presigned(bad))).unwrap_err();
            assert_eq!(err.code().as_str(), "AuthorizationQueryParametersError", "{bad}");
            assert_eq!(err.status_code(), Some(StatusCode::BAD_REQUEST));
            assert!(err.message().is_some_and(|m| m.contains(message)), "{bad}: {:?}", err.message());
        }
    }

    #[test]
    fn requests_that_are_not_presigned_sigv4_pass() {
        assert!(check_expires(None).is_ok());
        assert!(check_expires(Some("list-type=2&X-Amz-Expires=999999999")).is_ok());
        assert!(check_expires(Some("AWSAccessKeyId=k&Expires=99999999999&Signature=x")).is_ok());
    }
}
