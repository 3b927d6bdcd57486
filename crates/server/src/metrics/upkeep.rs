//! The store's upkeep metrics, counted as it happens: objects checked by scrubs by result, the damaged objects the
//! last completed scrub found, and what garbage collection reclaimed.

use coffer_store::Reclaimed;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::jobs::Outcome;

/// The results a scrub counts, each exported from the start (at 0).
const SCRUB_RESULTS: [&str; 4] = ["verified", "unverifiable", "damaged", "failed"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// The upkeep metrics of one server and the registry they are encoded from.
#[derive(Debug)]
pub struct UpkeepMetrics {
    registry: Registry,
    scrubbed: Family<ResultLabel, Counter>,
    last_damaged: Gauge,
    reclaimed_files: Counter,
    reclaimed_bytes: Counter,
}

impl Default for UpkeepMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("coffer");
        let scrubbed = Family::<ResultLabel, Counter>::default();
        for result in SCRUB_RESULTS {
            // Created at 0, so every result is exported before the first scrub.
            drop(scrubbed.get_or_create(&ResultLabel { result }));
        }
        registry.register(
            "scrub_objects",
            "Objects checked by scrubs, by result (damaged: a read of the object fails; failed: could not be checked)",
            scrubbed.clone(),
        );
        let last_damaged = Gauge::default();
        registry.register(
            "scrub_damaged_objects",
            "Damaged objects the last completed scrub found (0 before the first)",
            last_damaged.clone(),
        );
        let reclaimed_files = Counter::default();
        registry.register(
            "store_reclaimed_files",
            "Files left by crashes that no record referenced, removed",
            reclaimed_files.clone(),
        );
        let reclaimed_bytes = Counter::default();
        registry.register_with_unit(
            "store_reclaimed",
            "Bytes freed by removing files left by crashes that no record referenced",
            Unit::Bytes,
            reclaimed_bytes.clone(),
        );
        UpkeepMetrics { registry, scrubbed, last_damaged, reclaimed_files, reclaimed_bytes }
    }
}

impl UpkeepMetrics {
    /// Counts what a scrub found of one object.
    pub(crate) fn scrubbed(&self, outcome: &Outcome) {
        let result = match outcome {
            Outcome::Verified(_) => "verified",
            Outcome::Unverifiable(_) => "unverifiable",
            Outcome::Damaged { .. } => "damaged",
            Outcome::Unchecked { .. } | Outcome::Failed(_) => "failed",
            Outcome::Changed(_) | Outcome::Unchanged | Outcome::SkippedSseC | Outcome::Skipped => return,
        };
        self.scrubbed.get_or_create(&ResultLabel { result }).inc();
    }

    /// Notes the damaged objects a scrub found when it completed.
    pub fn scrub_completed(&self, damaged: u64) {
        self.last_damaged.set(i64::try_from(damaged).unwrap_or(i64::MAX));
    }

    pub fn reclaimed(&self, reclaimed: Reclaimed) {
        self.reclaimed_files.inc_by(reclaimed.files);
        self.reclaimed_bytes.inc_by(reclaimed.bytes);
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_results_and_reclaimed_space_are_counted() {
        let metrics = UpkeepMetrics::default();
        metrics.scrubbed(&Outcome::Verified(10));
        metrics.scrubbed(&Outcome::Damaged { key: "k".into(), reason: "bad".into() });
        metrics.scrubbed(&Outcome::Damaged { key: String::new(), reason: "bad".into() });
        metrics.scrubbed(&Outcome::Skipped);
        metrics.scrub_completed(2);
        metrics.reclaimed(Reclaimed { files: 3, bytes: 4096 });
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, metrics.registry()).unwrap();
        for line in [
            "coffer_scrub_objects_total{result=\"verified\"} 1",
            "coffer_scrub_objects_total{result=\"unverifiable\"} 0",
            "coffer_scrub_objects_total{result=\"damaged\"} 2",
            "coffer_scrub_objects_total{result=\"failed\"} 0",
            "coffer_scrub_damaged_objects 2",
            "coffer_store_reclaimed_files_total 3",
            "coffer_store_reclaimed_bytes_total 4096",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
        }
    }
}
