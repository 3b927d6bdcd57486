//! Health endpoints for load balancers and orchestrators: `GET` and `HEAD` on `/health/live` and `/health/ready`,
//! and on MinIO's `/minio/health/live` and `/minio/health/ready`. The listener answers them before s3s and without
//! authentication, but only for requests that carry no authentication (no `Authorization` header, none of the query
//! parameters of a presigned URL, SigV4's or SigV2's): a signed request to a bucket named `health` still reaches S3.
//!
//! Live is 200 while the process serves. Ready is 200 when the data directory takes a durable write and the KMS,
//! if it is meant to be running, is healthy; otherwise 503. A KMS that is running but fails its health probe, or
//! that failed to start (state `Error`, retried in the background), makes the node unready. A KMS the operator
//! stopped, or one configured but not started, does not: plaintext is served, and SSE requests answer 503 by
//! design. The body names each check's outcome (`ok`, `off`, `failing`) but never a reason, since reasons name
//! internal hosts and paths; the reasons go to the log whenever readiness changes.
//!
//! Each check is bounded by [`CHECK_TIMEOUT`] and a result is reused for [`REUSE_FOR`]: the endpoint is open to
//! anyone, and a burst of probes must not become a burst of fsyncs and Vault calls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_kms::{KmsManager, LifecycleState};
use coffer_store::Store;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use s3s::Body;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// Longest time one check may take before it counts as failing.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a readiness result is reused.
pub const REUSE_FOR: Duration = Duration::from_secs(1);

/// What a health request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Live,
    Ready,
}

impl Probe {
    /// The probe `request` asks for, if it is an unsigned `GET` or `HEAD` of a health path.
    pub fn of<B>(request: &Request<B>) -> Option<Probe> {
        if !matches!(*request.method(), Method::GET | Method::HEAD) || is_signed(request) {
            return None;
        }
        match request.uri().path() {
            "/health/live" | "/minio/health/live" => Some(Probe::Live),
            "/health/ready" | "/minio/health/ready" => Some(Probe::Ready),
            _ => None,
        }
    }
}

/// Query parameters that make a URL presigned (SigV4, SigV2).
const PRESIGNED_QUERY_PARAMETERS: [&str; 4] = ["X-Amz-Signature", "X-Amz-Credential", "Signature", "AWSAccessKeyId"];

/// True for a request signed in its header or presigned in its query.
fn is_signed<B>(request: &Request<B>) -> bool {
    request.headers().contains_key(header::AUTHORIZATION) || is_presigned(request)
}

/// True for a request whose query holds a presigned URL's signature parameters.
pub(crate) fn is_presigned<B>(request: &Request<B>) -> bool {
    let presigned_parameter = |pair: &str| {
        let name = pair.split('=').next().unwrap_or_default();
        PRESIGNED_QUERY_PARAMETERS.iter().any(|parameter| name.eq_ignore_ascii_case(parameter))
    };
    request.uri().query().is_some_and(|query| query.split('&').any(presigned_parameter))
}

/// The outcome of one readiness check.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Check {
    Ok,
    /// Not meant to run (a stopped or unstarted KMS); does not make the node unready.
    Off,
    /// Why the check failed, for the log only.
    Failing(String),
}

impl Check {
    fn word(&self) -> &'static str {
        match self {
            Check::Ok => "ok",
            Check::Off => "off",
            Check::Failing(_) => "failing",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Readiness {
    storage: Check,
    kms: Check,
}

impl Readiness {
    fn is_ready(&self) -> bool {
        !matches!(self.storage, Check::Failing(_)) && !matches!(self.kms, Check::Failing(_))
    }

    fn document(&self) -> serde_json::Value {
        let status = if self.is_ready() { "ready" } else { "unready" };
        serde_json::json!({ "status": status, "checks": { "storage": self.storage.word(), "kms": self.kms.word() } })
    }

    /// The reasons of the failing checks, for the log.
    fn reasons(&self) -> String {
        [("storage", &self.storage), ("kms", &self.kms)]
            .into_iter()
            .filter_map(|(name, check)| match check {
                Check::Failing(reason) => Some(format!("{name}: {reason}")),
                Check::Ok | Check::Off => None,
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Answers the health endpoints of one server.
pub struct Health {
    store: Store,
    kms: Arc<KmsManager>,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    last: Option<(Instant, Readiness)>,
    /// A storage probe that outlived [`CHECK_TIMEOUT`] (a hung disk): no second one starts before it ends.
    stalled_storage_probe: Option<JoinHandle<coffer_store::Result<()>>>,
}

impl Health {
    pub fn new(store: Store, kms: Arc<KmsManager>) -> Self {
        Health { store, kms, state: tokio::sync::Mutex::new(State::default()) }
    }

    /// The answer to `probe`: a small JSON document (none for `HEAD`) with 200 or 503.
    pub async fn respond(&self, probe: Probe, method: &Method) -> Response<Body> {
        let (status, document) = match probe {
            Probe::Live => (StatusCode::OK, serde_json::json!({ "status": "live" })),
            Probe::Ready => {
                let readiness = self.readiness().await;
                let status = if readiness.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                (status, readiness.document())
            }
        };
        let body = document.to_string();
        let mut response =
            Response::new(if *method == Method::HEAD { Body::empty() } else { Body::from(body.clone()) });
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        response
    }

    async fn readiness(&self) -> Readiness {
        let mut state = self.state.lock().await;
        if let Some((checked, readiness)) = &state.last {
            if checked.elapsed() < REUSE_FOR {
                return readiness.clone();
            }
        }
        let (storage, kms) = tokio::join!(self.check_storage(&mut state.stalled_storage_probe), check_kms(&self.kms));
        let readiness = Readiness { storage, kms };
        log_change(state.last.as_ref().map(|(_, before)| before), &readiness);
        state.last = Some((Instant::now(), readiness.clone()));
        readiness
    }

    async fn check_storage(&self, stalled: &mut Option<JoinHandle<coffer_store::Result<()>>>) -> Check {
        if stalled.as_ref().is_some_and(|probe| !probe.is_finished()) {
            return Check::Failing("the storage probe of an earlier check has not finished".to_owned());
        }
        let store = self.store.clone();
        let mut probe = tokio::spawn(async move { store.check_writable().await });
        match tokio::time::timeout(CHECK_TIMEOUT, &mut probe).await {
            Ok(Ok(Ok(()))) => {
                *stalled = None;
                Check::Ok
            }
            Ok(Ok(Err(error))) => Check::Failing(format!("the data directory does not take writes: {error}")),
            Ok(Err(error)) => Check::Failing(format!("the storage probe failed: {error}")),
            Err(_) => {
                *stalled = Some(probe);
                Check::Failing(format!("the storage probe did not finish within {}s", CHECK_TIMEOUT.as_secs()))
            }
        }
    }
}

async fn check_kms(kms: &KmsManager) -> Check {
    let Ok(status) = tokio::time::timeout(CHECK_TIMEOUT, kms.status()).await else {
        return Check::Failing(format!("the KMS health probe did not finish within {}s", CHECK_TIMEOUT.as_secs()));
    };
    match status.state {
        LifecycleState::Running if status.healthy => Check::Ok,
        LifecycleState::Running | LifecycleState::Error(_) => {
            Check::Failing(status.reason.unwrap_or_else(|| "the KMS is not healthy".to_owned()))
        }
        LifecycleState::NotConfigured | LifecycleState::Configured | LifecycleState::Stopped => Check::Off,
    }
}

/// One log line when readiness changes: the reasons when it fails, a note when it recovers.
fn log_change(before: Option<&Readiness>, now: &Readiness) {
    if before == Some(now) {
        return;
    }
    if !now.is_ready() {
        warn!(reasons = %now.reasons(), "not ready");
    } else if before.is_some_and(|before| !before.is_ready()) {
        info!("ready again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, uri: &str) -> http::request::Builder {
        Request::builder().method(method).uri(uri)
    }

    #[test]
    fn unsigned_get_and_head_of_health_paths_are_probes() {
        for (uri, probe) in [
            ("/health/live", Probe::Live),
            ("/health/ready", Probe::Ready),
            ("/minio/health/live", Probe::Live),
            ("/minio/health/ready?verbose=1", Probe::Ready),
        ] {
            for method in [Method::GET, Method::HEAD] {
                assert_eq!(Probe::of(&request(method, uri).body(()).unwrap()), Some(probe), "{uri}");
            }
        }
    }

    #[test]
    fn signed_requests_other_methods_and_other_paths_go_to_s3() {
        let signed = request(Method::GET, "/health/live")
            .header(header::AUTHORIZATION, "AWS4-HMAC-SHA256 Credential=x")
            .body(())
            .unwrap();
        assert_eq!(Probe::of(&signed), None);
        let presigned = request(Method::GET, "/health/ready?X-Amz-Credential=a&X-Amz-Signature=00").body(()).unwrap();
        assert_eq!(Probe::of(&presigned), None);
        let presigned_v2 = request(Method::GET, "/health/live?AWSAccessKeyId=a&Signature=c2o%3D&Expires=1").body(());
        assert_eq!(Probe::of(&presigned_v2.unwrap()), None);
        assert_eq!(Probe::of(&request(Method::PUT, "/health/live").body(()).unwrap()), None);
        for uri in ["/health", "/health/live/x", "/health/other", "/minio/health/cluster", "/bucket/health/live"] {
            assert_eq!(Probe::of(&request(Method::GET, uri).body(()).unwrap()), None, "{uri}");
        }
    }

    #[test]
    fn a_stopped_kms_does_not_make_the_node_unready_but_a_failing_one_does() {
        let off = Readiness { storage: Check::Ok, kms: Check::Off };
        assert!(off.is_ready());
        assert_eq!(off.document()["checks"]["kms"], "off");
        let failing =
            Readiness { storage: Check::Ok, kms: Check::Failing("Vault at http://10.0.0.5 is sealed".into()) };
        assert!(!failing.is_ready());
        assert_eq!(failing.document()["status"], "unready");
        assert!(!failing.document().to_string().contains("10.0.0.5"), "reasons stay in the log");
        assert_eq!(failing.reasons(), "kms: Vault at http://10.0.0.5 is sealed");
    }
}
