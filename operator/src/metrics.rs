//! Prometheus metrics of the operator (served on `/metrics`).

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub namespace: String,
    pub cluster: String,
}

pub struct Metrics {
    pub reconciles: Counter,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub pushes: Family<OutcomeLabels, Counter>,
    pub delivery_latency: Histogram,
    pub coworker_revision: Family<ClusterLabels, Gauge>,
    pub coworkers: Family<ClusterLabels, Gauge>,
    pub leader: Gauge,
    registry: Mutex<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("origin_operator");
        let reconciles = Counter::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_duration =
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]);
        let pushes = Family::<OutcomeLabels, Counter>::default();
        let delivery_latency = Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]);
        let coworker_revision = Family::<ClusterLabels, Gauge>::default();
        let coworkers = Family::<ClusterLabels, Gauge>::default();
        let leader = Gauge::default();
        registry.register("reconciles", "Reconcile passes", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Failed reconcile passes by error",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconcile passes",
            reconcile_duration.clone(),
        );
        registry.register(
            "coworker_pushes",
            "Coworker document pushes by outcome",
            pushes.clone(),
        );
        registry.register(
            "coworker_delivery_seconds",
            "Time from a new coworker revision to a pod's acknowledgement",
            delivery_latency.clone(),
        );
        registry.register(
            "coworker_revision",
            "Current coworker revision",
            coworker_revision.clone(),
        );
        registry.register(
            "coworkers",
            "Origins in the coworker list",
            coworkers.clone(),
        );
        registry.register("leader", "1 while this replica leads", leader.clone());
        Self {
            reconciles,
            reconcile_errors,
            reconcile_duration,
            pushes,
            delivery_latency,
            coworker_revision,
            coworkers,
            leader,
            registry: Mutex::new(registry),
        }
    }

    pub fn observe_reconcile(&self, d: Duration) {
        self.reconciles.inc();
        self.reconcile_duration.observe(d.as_secs_f64());
    }

    pub fn error(&self, label: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                error: label.into(),
            })
            .inc();
    }

    pub fn push(&self, outcome: &str) {
        self.pushes
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if prometheus_client::encoding::text::encode(&mut out, &reg).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counters() {
        let m = Metrics::new();
        m.observe_reconcile(Duration::from_millis(3));
        m.error("kube");
        m.push("applied");
        let text = m.encode();
        assert!(
            text.contains("origin_operator_reconciles_total 1"),
            "{text}"
        );
        assert!(
            text.contains(r#"origin_operator_reconcile_errors_total{error="kube"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"origin_operator_coworker_pushes_total{outcome="applied"} 1"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
