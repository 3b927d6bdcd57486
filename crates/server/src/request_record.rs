//! What the listener records of each S3 request: one log line and the request metrics, written when the response
//! body is done (sent, or dropped because the client went away), so they carry the bytes that really went each way
//! and the whole duration.
//!
//! The operation and the access key are known only inside s3s. s3s's access check ([`crate::authz::AccessCheck`])
//! notes both in the request's [`RequestIdentity`] (put there by the listener) before deciding, and the admin API's
//! route notes them in [`crate::service::build_service`]. A request refused before s3s knew its
//! operation — a bad signature, an unknown access key — is recorded as operation `unknown`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::info;

use crate::body_taps::{BodyBytes, Observer};
use crate::metrics::RequestMetrics;

/// The operation of a request s3s did not get as far as naming.
pub const UNKNOWN_OPERATION: &str = "unknown";
/// The operation recorded for admin API requests.
pub const ADMIN_OPERATION: &str = "AdminApi";

/// Which operation a request is and who signed it, noted once s3s knows. Clones share it.
#[derive(Clone, Debug, Default)]
pub struct RequestIdentity(Arc<OnceLock<Identity>>);

#[derive(Debug)]
struct Identity {
    operation: String,
    access_key: Option<String>,
}

impl RequestIdentity {
    /// Notes the request's identity; the first note stands.
    pub fn note(&self, operation: &str, access_key: Option<&str>) {
        let _ = self.0.set(Identity { operation: operation.to_owned(), access_key: access_key.map(str::to_owned) });
    }

    fn operation(&self) -> &str {
        self.0.get().map_or(UNKNOWN_OPERATION, |identity| &identity.operation)
    }

    fn access_key(&self) -> Option<&str> {
        self.0.get().and_then(|identity| identity.access_key.as_deref())
    }
}

/// Milliseconds to a tenth, as request lines show them: short in text, and a number in JSON.
pub fn rounded_ms(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 10_000.0).round() / 10.0
}

/// What is known of a request when its response head is ready.
#[derive(Debug)]
pub struct RequestRecord {
    pub id: String,
    pub peer: SocketAddr,
    pub method: http::Method,
    /// Without the query string: presigned URLs carry their signature there.
    pub path: String,
    pub status: u16,
    pub started: Instant,
    pub identity: RequestIdentity,
    pub received: BodyBytes,
    pub metrics: Arc<RequestMetrics>,
}

impl RequestRecord {
    /// `body`, counting the bytes sent; the record is logged and counted when the body is dropped.
    pub fn follow(self, body: s3s::Body) -> s3s::Body {
        crate::body_taps::tapped(body, Sending(Arc::new(Sent { record: self, bytes: AtomicU64::new(0) })))
    }
}

/// The observer of a response body; the last clone to go writes the record.
#[derive(Clone, Debug)]
struct Sending(Arc<Sent>);

#[derive(Debug)]
struct Sent {
    record: RequestRecord,
    bytes: AtomicU64,
}

impl Observer for Sending {
    fn observe(&self, chunk: &Bytes) {
        self.0.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
}

impl Drop for Sent {
    fn drop(&mut self) {
        let record = &self.record;
        let elapsed = record.started.elapsed();
        let operation = record.identity.operation();
        let (received, sent) = (record.received.get(), self.bytes.load(Ordering::Relaxed));
        record.metrics.record(operation, record.status, elapsed, received, sent);
        let ms = rounded_ms(elapsed);
        info!(target: "coffer_server::request", request_id = %record.id, peer = %record.peer,
              method = %record.method, path = %record.path, operation = %operation,
              access_key = record.identity.access_key().map(tracing::field::display),
              status = record.status, request_bytes = received, response_bytes = sent, ms, "request");
    }
}
