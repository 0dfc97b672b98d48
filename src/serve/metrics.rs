//! The service's metrics, served at `GET /steward/v1/metrics` in
//! Prometheus's text format.
//!
//! Written with `prometheus-client` (the Prometheus project's own Rust
//! client; Apache-2.0 OR MIT). Series, all prefixed `steward_serve_`:
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `operations_running` | `kind` | manifests and deep checks now running (`manifest`, `deep-check`, `deep-check-repair`) |
//! | `operations_finished_total` | `kind`, `outcome` | ended operations: `completed`, `cancelled` (the client went away), `failed` (the grid could not be reached), `shutdown` |
//! | `objects_total` | `kind`, `result` | objects written into streams: for a manifest `listed` or `error` (a directory that could not be listed); for a deep check `healthy`, `unhealthy`, `unrecoverable`, `failed` (the check itself failed), `unchecked` |
//! | `repairs_total` | `result` | repair decisions: `repair-attempted`, `repair-successful`, `repair-failed`, `repair-unneeded`, `not-repairable`, `skipped` |
//! | `request_duration_seconds` | `endpoint` | time to the response head (a stream's first byte) |
//! | `responses_total` | `endpoint`, `code` | responses by status code, so errors by code and endpoint |
//! | `proxied_bytes_total` | `direction` | body bytes passed through to the gateway (`to-gateway`) and back (`from-gateway`) |
//!
//! Endpoints: `stream-manifest`, `stream-deep-check`, `proxy` (everything
//! passed to the gateway), `metrics`, `healthz`, and `rejected` (refused
//! before routing: a bad token, oversized headers).

use crate::unit::Unit;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

type Labels = Vec<(&'static str, String)>;

/// Every series of the service.
pub struct Metrics {
    registry: Registry,
    running: Family<Labels, Gauge>,
    finished: Family<Labels, Counter>,
    objects: Family<Labels, Counter>,
    repairs: Family<Labels, Counter>,
    latency: Family<Labels, Histogram, fn() -> Histogram>,
    responses: Family<Labels, Counter>,
    proxied: Family<Labels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 9 minutes.
    Histogram::new(exponential_buckets(0.001, 4.0, 11))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("steward_serve");
        let running = Family::<Labels, Gauge>::default();
        let finished = Family::<Labels, Counter>::default();
        let objects = Family::<Labels, Counter>::default();
        let repairs = Family::<Labels, Counter>::default();
        let latency =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let responses = Family::<Labels, Counter>::default();
        let proxied = Family::<Labels, Counter>::default();
        registry.register(
            "operations_running",
            "Manifests and deep checks now running",
            running.clone(),
        );
        registry.register(
            "operations_finished",
            "Operations that ended, by outcome",
            finished.clone(),
        );
        registry.register(
            "objects",
            "Objects written into streams, by result",
            objects.clone(),
        );
        registry.register("repairs", "Repair decisions, by result", repairs.clone());
        registry.register(
            "request_duration_seconds",
            "Time from a request to its response head",
            latency.clone(),
        );
        registry.register(
            "responses",
            "Responses by endpoint and status code",
            responses.clone(),
        );
        registry.register(
            "proxied_bytes",
            "Body bytes passed between clients and the gateway",
            proxied.clone(),
        );
        Metrics {
            registry,
            running,
            finished,
            objects,
            repairs,
            latency,
            responses,
            proxied,
        }
    }

    pub fn operation_started(&self, kind: &'static str) {
        self.running
            .get_or_create(&vec![("kind", kind.into())])
            .inc();
    }

    pub fn operation_finished(&self, kind: &'static str, outcome: &'static str) {
        self.running
            .get_or_create(&vec![("kind", kind.into())])
            .dec();
        self.finished
            .get_or_create(&vec![("kind", kind.into()), ("outcome", outcome.into())])
            .inc();
    }

    /// Count one unit of an operation's output.
    pub fn count_object(&self, kind: &'static str, unit: &Unit, repair: bool) {
        let Some(result) = result_of(kind == "manifest", unit) else {
            return;
        };
        self.objects
            .get_or_create(&vec![("kind", kind.into()), ("result", result.into())])
            .inc();
        if repair {
            use crate::stage::tally::{RepairTally, Tally};
            let mut t = RepairTally::default();
            t.count(unit);
            for (k, n) in [
                ("repair-attempted", t.repair_attempted),
                ("repair-successful", t.repair_successful),
                ("repair-failed", t.repair_failed),
                ("not-repairable", t.not_repairable),
                ("would-repair", t.would_repair),
                ("skipped", t.skipped),
                ("not-checked", t.not_checked),
            ] {
                if n > 0 {
                    self.repairs
                        .get_or_create(&vec![("result", k.to_string())])
                        .inc_by(n);
                }
            }
        }
    }

    pub fn response(&self, endpoint: &'static str, code: u16, to_head: Duration) {
        self.latency
            .get_or_create(&vec![("endpoint", endpoint.into())])
            .observe(to_head.as_secs_f64());
        self.responses
            .get_or_create(&vec![
                ("endpoint", endpoint.into()),
                ("code", code.to_string()),
            ])
            .inc();
    }

    pub fn proxied(&self, direction: &'static str, bytes: u64) {
        self.proxied
            .get_or_create(&vec![("direction", direction.into())])
            .inc_by(bytes);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// The result label of one unit: for a manifest `listed` or `error` (a
/// directory that could not be listed); for a deep check the check stage's
/// own health labels. `None` for the stats unit.
pub fn result_of(manifest: bool, unit: &Unit) -> Option<&'static str> {
    let Unit::Object(o) = unit else { return None };
    if manifest {
        return Some(if o.error.is_some() { "error" } else { "listed" });
    }
    use crate::stage::check::{unit_health, Health};
    Some(match unit_health(o) {
        Health::Healthy => "healthy",
        Health::Unhealthy => "unhealthy",
        Health::Unrecoverable => "unrecoverable",
        Health::Failed => "failed",
        Health::Unchecked => "unchecked",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_render_in_prometheus_text() {
        let m = Metrics::new();
        m.operation_started("manifest");
        m.operation_finished("manifest", "completed");
        m.response("proxy", 502, Duration::from_millis(3));
        m.proxied("to-gateway", 1234);
        let text = m.render();
        assert!(
            text.contains("steward_serve_operations_running{kind=\"manifest\"} 0"),
            "{text}"
        );
        assert!(text.contains(
            "steward_serve_operations_finished_total{kind=\"manifest\",outcome=\"completed\"} 1"
        ));
        assert!(text.contains("steward_serve_responses_total{endpoint=\"proxy\",code=\"502\"} 1"));
        assert!(text.contains("steward_serve_proxied_bytes_total{direction=\"to-gateway\"} 1234"));
        assert!(text.contains("steward_serve_request_duration_seconds_bucket"));
        assert!(text.ends_with("# EOF\n"));
    }
}
