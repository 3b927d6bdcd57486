//! Conditional requests: `If-Match`, `If-None-Match`, `If-Modified-Since`, `If-Unmodified-Since` on reads and
//! copy sources (evaluated in RFC 9110 order, as S3 does), and `If-Match` / `If-None-Match` on writes.

use coffer_store::ObjectMeta;
use http::{HeaderMap, HeaderValue};
use s3s::dto::{ETagCondition, Timestamp};
use s3s::{s3_error, S3Error, S3Result};
use time::OffsetDateTime;

use crate::object_headers::format_http_date;

/// The four read preconditions of a request.
#[derive(Debug, Clone, Default)]
pub struct ReadConditions {
    pub if_match: Option<ETagCondition>,
    pub if_none_match: Option<ETagCondition>,
    pub if_modified_since: Option<Timestamp>,
    pub if_unmodified_since: Option<Timestamp>,
}

/// The outcome of evaluating [`ReadConditions`] against an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Proceed,
    /// 304 for GET/HEAD (a copy source answers 412 instead).
    NotModified,
    /// 412.
    PreconditionFailed,
}

impl ReadConditions {
    /// Evaluates against an object's unquoted ETag and modification time. `If-Match` takes precedence over
    /// `If-Unmodified-Since`, `If-None-Match` over `If-Modified-Since`. HTTP dates have whole seconds, so the
    /// object's time is truncated before comparing.
    pub fn evaluate(&self, etag: &str, last_modified: OffsetDateTime) -> Verdict {
        let modified = last_modified.replace_nanosecond(0).unwrap_or(last_modified);
        if let Some(condition) = &self.if_match {
            if !etag_matches(condition, etag) {
                return Verdict::PreconditionFailed;
            }
        } else if let Some(since) = &self.if_unmodified_since {
            if modified > OffsetDateTime::from(since.clone()) {
                return Verdict::PreconditionFailed;
            }
        }
        if let Some(condition) = &self.if_none_match {
            if etag_matches(condition, etag) {
                return Verdict::NotModified;
            }
        } else if let Some(since) = &self.if_modified_since {
            if modified <= OffsetDateTime::from(since.clone()) {
                return Verdict::NotModified;
            }
        }
        Verdict::Proceed
    }

    /// Answers a GET/HEAD: 304 (with ETag and Last-Modified) or 412 when the conditions do not hold.
    pub fn check_read(&self, meta: &ObjectMeta) -> S3Result<()> {
        match self.evaluate(&meta.etag, meta.last_modified) {
            Verdict::Proceed => Ok(()),
            Verdict::PreconditionFailed => Err(precondition_failed()),
            Verdict::NotModified => {
                let mut err = s3_error!(NotModified, "Not Modified");
                err.set_headers(validator_headers(meta));
                Err(err)
            }
        }
    }

    /// Answers a copy source check: any failed condition is 412.
    pub fn check_copy_source(&self, meta: &ObjectMeta) -> S3Result<()> {
        match self.evaluate(&meta.etag, meta.last_modified) {
            Verdict::Proceed => Ok(()),
            Verdict::NotModified | Verdict::PreconditionFailed => Err(precondition_failed()),
        }
    }
}

/// Conditional writes (PutObject, CompleteMultipartUpload): `If-None-Match: *` fails when the key exists,
/// `If-Match` fails when it is missing (404) or has another ETag (412).
pub fn check_write(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    existing: Option<&ObjectMeta>,
) -> S3Result<()> {
    if let Some(condition) = if_none_match {
        if existing.is_some_and(|meta| etag_matches(condition, &meta.etag)) {
            return Err(precondition_failed());
        }
    }
    if let Some(condition) = if_match {
        match existing {
            None => return Err(s3_error!(NoSuchKey, "The specified key does not exist.")),
            Some(meta) if !etag_matches(condition, &meta.etag) => return Err(precondition_failed()),
            Some(_) => {}
        }
    }
    Ok(())
}

fn etag_matches(condition: &ETagCondition, etag: &str) -> bool {
    match condition {
        ETagCondition::Any => true,
        ETagCondition::ETag(expected) => expected.value() == etag,
    }
}

fn precondition_failed() -> S3Error {
    s3_error!(PreconditionFailed, "At least one of the pre-conditions you specified did not hold")
}

/// `ETag` and `Last-Modified`, which a 304 still carries.
fn validator_headers(meta: &ObjectMeta) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{}\"", meta.etag)) {
        headers.insert(http::header::ETAG, value);
    }
    if let Some(value) = format_http_date(&meta.last_modified.into()).and_then(|date| date.parse().ok()) {
        headers.insert(http::header::LAST_MODIFIED, value);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::dto::ETag;
    use time::macros::datetime;

    const MODIFIED: OffsetDateTime = datetime!(2024-05-01 12:00:00.750 UTC);

    fn at(t: OffsetDateTime) -> Option<Timestamp> {
        Some(Timestamp::from(t))
    }

    fn etag(value: &str) -> Option<ETagCondition> {
        Some(ETagCondition::ETag(ETag::Strong(value.to_owned())))
    }

    #[test]
    fn if_match_and_unmodified_since() {
        let c = ReadConditions { if_match: etag("abc"), ..Default::default() };
        assert_eq!(c.evaluate("abc", MODIFIED), Verdict::Proceed);
        assert_eq!(c.evaluate("abd", MODIFIED), Verdict::PreconditionFailed);
        let any = ReadConditions { if_match: Some(ETagCondition::Any), ..Default::default() };
        assert_eq!(any.evaluate("x", MODIFIED), Verdict::Proceed);

        let before =
            ReadConditions { if_unmodified_since: at(datetime!(2024-05-01 11:59:59 UTC)), ..Default::default() };
        assert_eq!(before.evaluate("abc", MODIFIED), Verdict::PreconditionFailed);
        // Same second: sub-second precision is not visible over HTTP, so this is "not modified since".
        let same = ReadConditions { if_unmodified_since: at(datetime!(2024-05-01 12:00:00 UTC)), ..Default::default() };
        assert_eq!(same.evaluate("abc", MODIFIED), Verdict::Proceed);
        // If-Match wins over If-Unmodified-Since.
        let both = ReadConditions { if_match: etag("abc"), ..before };
        assert_eq!(both.evaluate("abc", MODIFIED), Verdict::Proceed);
    }

    #[test]
    fn if_none_match_and_modified_since() {
        let c = ReadConditions { if_none_match: etag("abc"), ..Default::default() };
        assert_eq!(c.evaluate("abc", MODIFIED), Verdict::NotModified);
        assert_eq!(c.evaluate("xyz", MODIFIED), Verdict::Proceed);

        let same = ReadConditions { if_modified_since: at(datetime!(2024-05-01 12:00:00 UTC)), ..Default::default() };
        assert_eq!(same.evaluate("abc", MODIFIED), Verdict::NotModified);
        let earlier =
            ReadConditions { if_modified_since: at(datetime!(2024-05-01 11:00:00 UTC)), ..Default::default() };
        assert_eq!(earlier.evaluate("abc", MODIFIED), Verdict::Proceed);
        // If-None-Match wins over If-Modified-Since (an ETag change means modified).
        let both = ReadConditions { if_none_match: etag("old"), ..same };
        assert_eq!(both.evaluate("abc", MODIFIED), Verdict::Proceed);
    }

    #[test]
    fn failed_if_match_beats_not_modified() {
        let c = ReadConditions { if_match: etag("zzz"), if_none_match: etag("abc"), ..Default::default() };
        assert_eq!(c.evaluate("abc", MODIFIED), Verdict::PreconditionFailed);
    }

    #[test]
    fn conditional_writes() {
        let meta = {
            let mut m = ObjectMeta::new("k", 1, "abc");
            m.last_modified = MODIFIED;
            m
        };
        let any = ETagCondition::Any;
        assert!(check_write(None, Some(&any), None).is_ok());
        assert_eq!(
            check_write(None, Some(&any), Some(&meta)).unwrap_err().code(),
            &s3s::S3ErrorCode::PreconditionFailed
        );
        let abc = etag("abc").unwrap();
        assert!(check_write(Some(&abc), None, Some(&meta)).is_ok());
        assert_eq!(check_write(Some(&abc), None, None).unwrap_err().code(), &s3s::S3ErrorCode::NoSuchKey);
        let other = etag("other").unwrap();
        assert_eq!(
            check_write(Some(&other), None, Some(&meta)).unwrap_err().code(),
            &s3s::S3ErrorCode::PreconditionFailed
        );
    }
}
