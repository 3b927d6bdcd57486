//! Prometheus metrics at `GET /metrics` (and `HEAD`), in the Prometheus text format (0.0.4). The listener answers
//! it before s3s, like the health endpoints, for requests that carry no S3 authentication: a bearer token is not
//! S3 authentication, and a signed or presigned request to a bucket named `metrics` still reaches S3.
//!
//! Who may read it is [`MetricsAccess`]: anyone, holders of a bearer token kept in a file ([`MetricsToken`], read
//! again on SIGHUP), or nobody (404). What it serves: the S3 request metrics ([`RequestMetrics`], counted as
//! requests finish), the store's upkeep ([`UpkeepMetrics`]: scrubs, reclaimed space) and the metrics read at scrape
//! time ([`scraped`]: KMS, keys, jobs). docs/operations.md lists every metric.

mod requests;
mod scraped;
mod upkeep;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use coffer_admin_api::ObjectAdmin;
use coffer_kms::KmsManager;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use prometheus_client::encoding::prometheus_text;
use s3s::Body;
use subtle::ConstantTimeEq;
use tracing::warn;
use zeroize::Zeroizing;

pub use self::requests::RequestMetrics;
use self::scraped::Scraped;
pub use self::upkeep::UpkeepMetrics;
use crate::config::MetricsAccess;
use crate::health::is_presigned;

/// The path metrics are served at.
pub const METRICS_PATH: &str = "/metrics";

/// The metrics of one server and who may read them.
pub struct Metrics {
    access: Access,
    requests: Arc<RequestMetrics>,
    upkeep: Arc<UpkeepMetrics>,
    scraped: Scraped,
}

enum Access {
    Off,
    Public,
    Token(Arc<MetricsToken>),
}

impl Metrics {
    /// Metrics served as `access` says (its token file is read now): `upkeep`'s, and scraped metrics from `kms` and
    /// `jobs`.
    pub fn new(
        access: &MetricsAccess,
        kms: Arc<KmsManager>,
        jobs: Option<Arc<dyn ObjectAdmin>>,
        upkeep: Arc<UpkeepMetrics>,
    ) -> Result<Self, MetricsTokenError> {
        let access = match access {
            MetricsAccess::Off => Access::Off,
            MetricsAccess::Public => Access::Public,
            MetricsAccess::TokenFile(path) => Access::Token(Arc::new(MetricsToken::load(path)?)),
        };
        Ok(Metrics { access, requests: Arc::default(), upkeep, scraped: Scraped::new(kms, jobs) })
    }

    /// Where finished requests are counted.
    pub fn requests(&self) -> &Arc<RequestMetrics> {
        &self.requests
    }

    /// The token scrapes must present, if any (for SIGHUP to reload).
    pub fn token(&self) -> Option<Arc<MetricsToken>> {
        match &self.access {
            Access::Token(token) => Some(Arc::clone(token)),
            Access::Off | Access::Public => None,
        }
    }

    /// True for a `GET` or `HEAD` of [`METRICS_PATH`] without S3 authentication (a bearer token is allowed).
    pub fn is_scrape<B>(request: &Request<B>) -> bool {
        matches!(*request.method(), Method::GET | Method::HEAD)
            && request.uri().path() == METRICS_PATH
            && !is_presigned(request)
            && request.headers().get(header::AUTHORIZATION).is_none_or(|value| bearer_token(value).is_some())
    }

    /// The answer to a scrape: the metrics (no body for `HEAD`), 401 without the right token, 404 when off.
    pub async fn respond<B>(&self, request: &Request<B>) -> Response<Body> {
        let refusal = match &self.access {
            Access::Off => Some((StatusCode::NOT_FOUND, "metrics are turned off (--metrics=false)\n")),
            Access::Token(token) if !token.admits(request.headers().get(header::AUTHORIZATION)) => {
                Some((StatusCode::UNAUTHORIZED, "a bearer token is required: Authorization: Bearer TOKEN\n"))
            }
            Access::Token(_) | Access::Public => None,
        };
        let (status, content_type, text) = match refusal {
            Some((status, message)) => (status, "text/plain; charset=utf-8", message.to_owned()),
            None => match self.encode().await {
                Ok(text) => (StatusCode::OK, prometheus_text::CONTENT_TYPE, text),
                Err(error) => {
                    warn!(%error, "cannot encode the metrics");
                    (StatusCode::INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", String::new())
                }
            },
        };
        let length = text.len();
        let mut response =
            Response::new(if *request.method() == Method::HEAD { Body::empty() } else { Body::from(text) });
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"coffer metrics\""));
        }
        response
    }

    async fn encode(&self) -> Result<String, std::fmt::Error> {
        let scraped = self.scraped.registry().await;
        let mut text = String::new();
        prometheus_text::encode(&mut text, self.requests.registry())?;
        prometheus_text::encode(&mut text, self.upkeep.registry())?;
        prometheus_text::encode(&mut text, &scraped)?;
        Ok(text)
    }
}

/// The token of `Authorization: Bearer TOKEN`.
fn bearer_token(value: &HeaderValue) -> Option<&[u8]> {
    let value = value.as_bytes();
    let scheme = value.get(..7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then(|| value[7..].trim_ascii())
}

/// The bearer token `/metrics` requires, read from a file (surrounding whitespace ignored).
pub struct MetricsToken {
    path: PathBuf,
    token: RwLock<Zeroizing<Vec<u8>>>,
}

/// The metrics token file cannot be used. Names the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum MetricsTokenError {
    #[error("cannot read the metrics token file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the metrics token file {path} holds no token")]
    Empty { path: PathBuf },
}

impl MetricsToken {
    pub fn load(path: &Path) -> Result<Self, MetricsTokenError> {
        Ok(MetricsToken { path: path.to_owned(), token: RwLock::new(read_token(path)?) })
    }

    /// Reads the file again; on an error the token in force stays.
    pub fn reload(&self) -> Result<(), MetricsTokenError> {
        let token = read_token(&self.path)?;
        *self.token.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = token;
        Ok(())
    }

    /// Whether `authorization` presents the token (compared in constant time).
    fn admits(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(presented) = authorization.and_then(bearer_token) else {
            return false;
        };
        let token = self.token.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        bool::from(token.as_slice().ct_eq(presented))
    }
}

fn read_token(path: &Path) -> Result<Zeroizing<Vec<u8>>, MetricsTokenError> {
    let bytes = Zeroizing::new(
        std::fs::read(path).map_err(|source| MetricsTokenError::Read { path: path.to_owned(), source })?,
    );
    let token = bytes.trim_ascii();
    if token.is_empty() {
        return Err(MetricsTokenError::Empty { path: path.to_owned() });
    }
    Ok(Zeroizing::new(token.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(uri: &str, authorization: Option<&str>) -> Request<()> {
        let mut request = Request::builder().method(Method::GET).uri(uri);
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        request.body(()).unwrap()
    }

    #[test]
    fn unsigned_and_bearer_requests_of_the_path_are_scrapes_and_s3_requests_are_not() {
        assert!(Metrics::is_scrape(&get("/metrics", None)));
        assert!(Metrics::is_scrape(&get("/metrics", Some("Bearer abc"))));
        assert!(Metrics::is_scrape(&get("/metrics", Some("bearer abc"))));
        assert!(!Metrics::is_scrape(&get("/metrics", Some("AWS4-HMAC-SHA256 Credential=x"))));
        assert!(!Metrics::is_scrape(&get("/metrics?X-Amz-Signature=00&X-Amz-Credential=a", None)));
        assert!(!Metrics::is_scrape(&get("/metrics/", None)));
        assert!(!Metrics::is_scrape(&get("/bucket/metrics", None)));
        let put = Request::builder().method(Method::PUT).uri("/metrics").body(()).unwrap();
        assert!(!Metrics::is_scrape(&put));
    }

    #[test]
    fn the_token_is_read_trimmed_reloaded_and_compared_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret-token\n").unwrap();
        let token = MetricsToken::load(&path).unwrap();
        let header = |value: &str| Some(HeaderValue::from_str(value).unwrap());
        assert!(token.admits(header("Bearer s3cret-token").as_ref()));
        assert!(!token.admits(header("Bearer s3cret").as_ref()));
        assert!(!token.admits(header("Bearer s3cret-token-and-more").as_ref()));
        assert!(!token.admits(header("Basic s3cret-token").as_ref()));
        assert!(!token.admits(None));

        std::fs::write(&path, "new-token").unwrap();
        token.reload().unwrap();
        assert!(token.admits(header("Bearer new-token").as_ref()));
        std::fs::write(&path, " \n").unwrap();
        let error = token.reload().unwrap_err();
        assert!(matches!(error, MetricsTokenError::Empty { .. }), "{error}");
        assert!(token.admits(header("Bearer new-token").as_ref()), "a refused reload keeps the token");
    }
}
