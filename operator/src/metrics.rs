//! Prometheus metrics of the operator, served on `/metrics`.
//!
//! Names carry the `hawser_operator_` prefix: reconciliations, failures by reason
//! (the [`Error::metric_label`] of what failed), reconcile duration, and whether this
//! replica holds the leader lease.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::Error;

/// Label set of `reconcile_failures_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// What failed, e.g. `secret_not_found`, `invalid_spec`, `invalid_policy`, `kube`, `store`.
    pub reason: &'static str,
}

/// The operator's metrics. Cloning shares the underlying values.
#[derive(Clone)]
pub struct Metrics {
    pub reconciliations: Counter,
    pub failures: Family<FailureLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciliations: Counter::default(),
            failures: Family::default(),
            reconcile_duration: Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 15.0, 60.0]),
            leader: Gauge::default(),
        }
    }
}

impl Metrics {
    /// Registers every metric in `registry` (expected to carry the `hawser_operator` prefix).
    pub fn register(self, registry: &mut Registry) -> Self {
        registry.register(
            "reconciliations",
            "Reconciliations started (McpConnection and McpPolicy)",
            self.reconciliations.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconciliations (McpConnection and McpPolicy) that failed, by reason",
            self.failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time taken by one reconciliation (McpConnection or McpPolicy)",
            self.reconcile_duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the hawser-operator lease and runs the controller",
            self.leader.clone(),
        );
        self
    }

    /// Counts a reconciliation and measures it until the guard is dropped.
    pub fn count_and_measure(&self) -> ReconcileTimer {
        self.reconciliations.inc();
        ReconcileTimer {
            histogram: self.reconcile_duration.clone(),
            start: Instant::now(),
        }
    }

    pub fn reconcile_failure(&self, error: &Error) {
        self.failures
            .get_or_create(&FailureLabels {
                reason: error.metric_label(),
            })
            .inc();
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }
}

/// Observes the elapsed time into the duration histogram when dropped.
pub struct ReconcileTimer {
    histogram: Histogram,
    start: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

/// A registry with the operator's metrics in it.
pub fn registry() -> (Registry, Metrics) {
    let mut registry = Registry::with_prefix("hawser_operator");
    let metrics = Metrics::default().register(&mut registry);
    (registry, metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_metric() {
        let (registry, metrics) = registry();
        drop(metrics.count_and_measure());
        metrics.reconcile_failure(&Error::Incomplete("namespace"));
        metrics.set_leader(true);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for needle in [
            "hawser_operator_reconciliations_total 1",
            "hawser_operator_reconcile_failures_total{reason=\"incomplete\"} 1",
            "hawser_operator_reconcile_duration_seconds_count 1",
            "hawser_operator_leader 1",
        ] {
            assert!(text.contains(needle), "{needle} missing in:\n{text}");
        }
    }
}
