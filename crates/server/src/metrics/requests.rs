//! The S3 request metrics, counted as requests finish ([`crate::request_record`]): requests by operation and
//! status, their duration, and the bytes of request and response bodies.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Upper bounds of the duration buckets, in seconds: a small cached GET to a multi-GiB upload.
const DURATION_BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationStatus {
    operation: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: String,
}

type DurationFamily = Family<OperationLabel, Histogram, fn() -> Histogram>;

/// The request metrics of one server and the registry they are encoded from.
#[derive(Debug)]
pub struct RequestMetrics {
    registry: Registry,
    requests: Family<OperationStatus, Counter>,
    duration: DurationFamily,
    request_bytes: Family<OperationLabel, Counter>,
    response_bytes: Family<OperationLabel, Counter>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("coffer_s3");
        let requests = Family::default();
        registry.register("requests", "S3 requests by operation and HTTP status", requests.clone());
        let duration: DurationFamily = Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS));
        registry.register_with_unit(
            "request_duration",
            "Time from the request's arrival to the end of its response body, by operation",
            Unit::Seconds,
            duration.clone(),
        );
        let request_bytes = Family::default();
        registry.register_with_unit(
            "request_body",
            "Bytes of request bodies as sent (aws-chunked framing included), by operation",
            Unit::Bytes,
            request_bytes.clone(),
        );
        let response_bytes = Family::default();
        registry.register_with_unit(
            "response_body",
            "Bytes of response bodies sent, by operation",
            Unit::Bytes,
            response_bytes.clone(),
        );
        RequestMetrics { registry, requests, duration, request_bytes, response_bytes }
    }
}

impl RequestMetrics {
    /// Counts one finished request.
    pub fn record(&self, operation: &str, status: u16, elapsed: Duration, received: u64, sent: u64) {
        let label = OperationLabel { operation: operation.to_owned() };
        self.requests.get_or_create(&OperationStatus { operation: label.operation.clone(), status }).inc();
        self.duration.get_or_create(&label).observe(elapsed.as_secs_f64());
        self.request_bytes.get_or_create(&label).inc_by(received);
        self.response_bytes.get_or_create(&label).inc_by(sent);
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_requests_are_counted_by_operation_and_status() {
        let metrics = RequestMetrics::default();
        metrics.record("PutObject", 200, Duration::from_millis(3), 10, 0);
        metrics.record("PutObject", 200, Duration::from_millis(30), 5, 0);
        metrics.record("GetObject", 404, Duration::from_millis(1), 0, 200);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, metrics.registry()).unwrap();
        for line in [
            "coffer_s3_requests_total{operation=\"PutObject\",status=\"200\"} 2",
            "coffer_s3_requests_total{operation=\"GetObject\",status=\"404\"} 1",
            "coffer_s3_request_duration_seconds_bucket{operation=\"PutObject\",le=\"0.005\"} 1",
            "coffer_s3_request_duration_seconds_count{operation=\"PutObject\"} 2",
            "coffer_s3_request_body_bytes_total{operation=\"PutObject\"} 15",
            "coffer_s3_response_body_bytes_total{operation=\"GetObject\"} 200",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
        }
    }
}
