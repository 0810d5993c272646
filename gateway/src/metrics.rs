//! Prometheus metrics (the official `prometheus-client`), served at `/metrics`.

mod duration;
mod exposition;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use hawser_crds::ConnectionState;

pub use duration::{DurationHistogram, TraceLabels};
pub use exposition::Format;

/// The states `hawser_upstream_state` has a series for (a removed connection has none).
const SERVING_STATES: [ConnectionState; 5] = [
    ConnectionState::Connecting,
    ConnectionState::Ready,
    ConnectionState::Down,
    ConnectionState::AwaitingAuthorization,
    ConnectionState::Invalid,
];

/// Labels of a request to an MCP endpoint.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: Cow<'static, str>,
    /// `""` for requests answered by the gateway itself.
    pub connection: String,
    /// `ok`, or the error category (`upstream`, `timeout`, `cancelled`, `policy`, …).
    pub outcome: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub connection: String,
    pub state: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OAuthLabels {
    pub connection: String,
    pub outcome: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub state: &'static str,
}

/// What became of finished trace spans. Process-wide, because the tracing pipeline is
/// installed before the gateway's [`Metrics`] exist; every [`Metrics`] registers them.
pub struct TraceCounters {
    /// Spans that never reached the collector, by reason (`queue_full`, `export_failed`).
    pub dropped: Family<ReasonLabels, Counter>,
    /// Spans the collector accepted.
    pub exported: Counter,
}

/// The process's [`TraceCounters`].
pub fn trace_counters() -> &'static TraceCounters {
    static COUNTERS: std::sync::LazyLock<TraceCounters> = std::sync::LazyLock::new(|| {
        let dropped = Family::<ReasonLabels, Counter>::default();
        for reason in ["queue_full", "export_failed"] {
            let _ = dropped.get_or_create(&ReasonLabels { reason });
        }
        TraceCounters {
            dropped,
            exported: Counter::default(),
        }
    });
    &COUNTERS
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    /// With exemplars (the trace of a sampled request) when spans are exported.
    pub request_duration: Family<RequestLabels, DurationHistogram, fn() -> DurationHistogram>,
    pub upstream_state: Family<StateLabels, Gauge>,
    pub sessions_active: Gauge,
    pub reloads: Counter,
    pub reload_lag: Histogram,
    pub oauth_refreshes: Family<OAuthLabels, Counter>,
    pub audit_queue: Gauge,
    pub audit_batches: Counter,
    pub audit_rows: Counter,
    /// Audit events lost, by reason (`buffer_full`, `unwritable`, `shutdown`).
    pub audit_dropped: Family<ReasonLabels, Counter>,
    /// Audit events written with text escaped (NUL and the like).
    pub audit_escaped: Counter,
    /// Audit events the store refused, kept in the dead-letter table instead.
    pub audit_dead_letters: Counter,
    /// Calls refused by a rate limit, by policy.
    pub rate_limited: Family<PolicyLabels, Counter>,
    /// 1 while rate-limit buckets are unreachable and limits are per replica.
    pub rate_limit_fallback: Gauge,
    /// Requests refused by client authentication, by reason.
    pub auth_failures: Family<ReasonLabels, Counter>,
    /// Audit events that did not fit in the queue and wait on disk only.
    pub audit_spilled: Counter,
    /// 1 when events wait in a spool on disk, 0 when in memory only.
    pub audit_spool_enabled: Gauge,
    pub db_pool: Family<PoolLabels, Gauge>,
    /// 1 when the last probe of the store was answered (always 1 in memory).
    pub store_up: Gauge,
    /// The highest revision among the connections this replica holds: replicas that
    /// applied the same changes show the same value.
    pub config_revision: Gauge,
    /// Connections closed at once: their client address held too many.
    pub connections_refused: Counter,
    /// Pushes of these metrics over OTLP, by outcome (`ok`, `failed`, `rejected`).
    pub metric_exports: Family<OutcomeLabels, Counter>,
    /// When the counters started: the start of every cumulative series pushed over
    /// OTLP.
    pub created: std::time::SystemTime,
    /// Each connection's request series, found by name (see [`ConnectionSeries`]).
    request_series: ArcSwap<HashMap<String, Arc<ConnectionSeries>>>,
    /// Taken only to add a connection to `request_series`.
    adding_series: Mutex<()>,
}

/// One connection's series of `requests` and `request_duration`, by method and
/// outcome: each taken from its family once. A family finds a series by hashing all
/// its labels, the connection's name copied into them, and every request did that
/// twice. The families never drop a request series, so a handle stays the one that
/// is exported (nothing may remove or clear a series of `requests` or
/// `request_duration`: a handle kept here would no longer be exported).
struct ConnectionSeries {
    /// Indexed by [`METHODS`] (then `other`) × [`OUTCOMES`].
    slots: Vec<OnceLock<(Counter, DurationHistogram)>>,
}

impl ConnectionSeries {
    fn new() -> Self {
        Self {
            slots: (0..(METHODS.len() + 1) * OUTCOMES.len())
                .map(|_| OnceLock::new())
                .collect(),
        }
    }
}

impl Metrics {
    /// The metrics, without exemplars (the server asks for them when it exports
    /// spans: [`Self::with_exemplars`]).
    pub fn new() -> Arc<Self> {
        Self::with_exemplars(false)
    }

    /// The metrics, with or without exemplars on request durations.
    pub fn with_exemplars(exemplars: bool) -> Arc<Self> {
        let mut registry = Registry::with_prefix("hawser");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "MCP requests, by method, connection and outcome",
            requests.clone(),
        );
        let series: fn() -> DurationHistogram = if exemplars {
            duration::with_exemplars
        } else {
            duration::plain
        };
        let request_duration = Family::new_with_constructor(series);
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its last byte, by method, connection and outcome",
            request_duration.clone(),
        );
        let upstream_state = Family::<StateLabels, Gauge>::default();
        registry.register(
            "upstream_state",
            "1 for the state each connection is in on this replica",
            upstream_state.clone(),
        );
        let sessions_active = Gauge::default();
        registry.register(
            "sessions_active",
            "Client sessions held by this replica",
            sessions_active.clone(),
        );
        let reloads = Counter::default();
        registry.register(
            "connection_reloads",
            "Connection changes applied by this replica",
            reloads.clone(),
        );
        let reload_lag = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "connection_reload_lag_seconds",
            "Time from a connection change being committed to this replica serving it",
            reload_lag.clone(),
        );
        let oauth_refreshes = Family::<OAuthLabels, Counter>::default();
        registry.register(
            "oauth_token_requests",
            "Upstream OAuth token requests by outcome",
            oauth_refreshes.clone(),
        );
        let audit_queue = Gauge::default();
        registry.register(
            "audit_queue_depth",
            "Audit events waiting to be written",
            audit_queue.clone(),
        );
        let audit_batches = Counter::default();
        registry.register(
            "audit_batches",
            "Audit batches written",
            audit_batches.clone(),
        );
        let audit_rows = Counter::default();
        registry.register(
            "audit_events_written",
            "Audit events written",
            audit_rows.clone(),
        );
        let audit_dropped = Family::<ReasonLabels, Counter>::default();
        for reason in ["buffer_full", "unwritable", "shutdown", "spool"] {
            let _ = audit_dropped.get_or_create(&ReasonLabels { reason });
        }
        registry.register(
            "audit_events_dropped",
            "Audit events lost, by reason: buffer_full (no spool, and the store was away too long), unwritable (refused by the store and by its dead-letter table), shutdown (no spool, and still unwritten when the process stopped), spool (unreadable in the spool)",
            audit_dropped.clone(),
        );
        let audit_escaped = Counter::default();
        registry.register(
            "audit_events_escaped",
            "Audit events written with text the store cannot hold as sent (NUL) escaped, and marked so",
            audit_escaped.clone(),
        );
        let audit_spilled = Counter::default();
        registry.register(
            "audit_events_spilled",
            "Audit events that did not fit in the in-memory queue and wait in the spool on disk",
            audit_spilled.clone(),
        );
        let audit_spool_enabled = Gauge::default();
        registry.register(
            "audit_spool_enabled",
            "1 when audit events wait in a spool on disk until written, 0 when in memory only",
            audit_spool_enabled.clone(),
        );
        let audit_dead_letters = Counter::default();
        registry.register(
            "audit_events_dead_lettered",
            "Audit events the store refused, kept in audit_dead_letters instead of blocking the others",
            audit_dead_letters.clone(),
        );
        let traces = trace_counters();
        registry.register(
            "trace_spans_dropped",
            "Trace spans lost on the way to the OTLP collector, by reason: queue_full (the export queue, telemetry.tracing.queueSize, was full: the collector is slow or away), export_failed (the collector refused the batch or did not answer within the export timeout)",
            traces.dropped.clone(),
        );
        registry.register(
            "trace_spans_exported",
            "Trace spans the OTLP collector accepted",
            traces.exported.clone(),
        );
        let rate_limited = Family::<PolicyLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Calls refused by an McpPolicy rate limit, by policy",
            rate_limited.clone(),
        );
        let rate_limit_fallback = Gauge::default();
        registry.register(
            "rate_limit_fallback",
            "1 while the shared rate-limit buckets are unreachable and each replica limits to its share",
            rate_limit_fallback.clone(),
        );
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        for reason in ["missing", "invalid", "expired", "audience", "unknown_key"] {
            let _ = auth_failures.get_or_create(&ReasonLabels { reason });
        }
        registry.register(
            "auth_failures",
            "Requests refused by client authentication, by reason: missing, invalid, malformed, algorithm, unknown_key, signature, expired, not_yet_valid, issuer, audience, no_subject, revoked, insufficient_scope, unavailable",
            auth_failures.clone(),
        );
        let db_pool = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Postgres pool connections by state",
            db_pool.clone(),
        );
        // Up until a probe says otherwise, as the store's health starts (and the
        // in-memory store is never probed).
        let store_up = Gauge::default();
        store_up.set(1);
        registry.register(
            "store_up",
            "1 when the last probe of the store (Postgres, every second) was answered, 0 when it was not; always 1 with the in-memory store",
            store_up.clone(),
        );
        let config_revision = Gauge::default();
        registry.register(
            "config_revision",
            "Highest revision among the connections this replica has loaded (0 before the first load); replicas that applied the same connection changes show the same value",
            config_revision.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Client connections closed at once because their address held http.maxConnectionsPerClient already",
            connections_refused.clone(),
        );
        let metric_exports = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "metric_exports",
            "Pushes of these metrics to the OTLP collector (telemetry.metrics), by outcome: ok, failed (the collector was away, refused the push or did not answer within the export timeout), rejected (it refused some data points)",
            metric_exports.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "Version of this build", build);
        Arc::new(Self {
            registry,
            requests,
            request_duration,
            upstream_state,
            sessions_active,
            reloads,
            reload_lag,
            oauth_refreshes,
            audit_queue,
            audit_batches,
            audit_rows,
            audit_dropped,
            audit_escaped,
            audit_dead_letters,
            audit_spilled,
            audit_spool_enabled,
            db_pool,
            store_up,
            config_revision,
            connections_refused,
            metric_exports,
            created: std::time::SystemTime::now(),
            request_series: ArcSwap::from_pointee(HashMap::new()),
            adding_series: Mutex::new(()),
            auth_failures,
            rate_limited,
            rate_limit_fallback,
        })
    }

    /// Counts `n` lost audit events.
    pub fn audit_lost(&self, reason: &'static str, n: u64) {
        self.audit_dropped
            .get_or_create(&ReasonLabels { reason })
            .inc_by(n);
    }

    /// Counts one push of the metrics over OTLP.
    pub fn metric_export(&self, outcome: &'static str) {
        self.metric_exports
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Counts a request refused by client authentication.
    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Records one request; `trace`, of a sampled request, becomes the duration's
    /// exemplar.
    pub fn request(
        &self,
        method: &str,
        connection: &str,
        outcome: &str,
        seconds: f64,
        trace: Option<TraceLabels>,
    ) {
        let m = METHODS
            .iter()
            .position(|m| *m == method)
            .unwrap_or(METHODS.len());
        let o = OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(0);
        let series = match self.request_series.load().get(connection) {
            Some(series) => series.clone(),
            None => self.add_series(connection),
        };
        let (count, duration) = series.slots[m * OUTCOMES.len() + o].get_or_init(|| {
            let labels = RequestLabels {
                method: Cow::Borrowed(METHODS.get(m).copied().unwrap_or("other")),
                connection: connection.to_owned(),
                outcome: Cow::Borrowed(OUTCOMES[o]),
            };
            (
                self.requests.get_or_create(&labels).clone(),
                self.request_duration.get_or_create(&labels).clone(),
            )
        });
        count.inc();
        duration.observe(seconds, trace);
    }

    /// The series of a connection seen for the first time.
    fn add_series(&self, connection: &str) -> Arc<ConnectionSeries> {
        let _adding = self.adding_series.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.request_series.load_full();
        if let Some(series) = current.get(connection) {
            return series.clone();
        }
        let mut next = (*current).clone();
        let series = Arc::new(ConnectionSeries::new());
        next.insert(connection.to_owned(), series.clone());
        self.request_series.store(Arc::new(next));
        series
    }

    /// Sets the state of a connection (the old state's series drops to 0).
    pub fn set_state(&self, connection: &str, state: ConnectionState) {
        for s in SERVING_STATES {
            let labels = StateLabels {
                connection: connection.to_owned(),
                state: Cow::Borrowed(s.as_str()),
            };
            self.upstream_state
                .get_or_create(&labels)
                .set(i64::from(s == state));
        }
    }

    /// Forgets a removed connection's state series.
    pub fn remove_connection(&self, connection: &str) {
        for s in SERVING_STATES {
            self.upstream_state.remove(&StateLabels {
                connection: connection.to_owned(),
                state: Cow::Borrowed(s.as_str()),
            });
        }
    }

    /// The exposition in `format`.
    pub fn render_as(&self, format: Format) -> String {
        match format {
            Format::OpenMetrics => self.render(),
            Format::Prometheus => exposition::prometheus_text(&self.render()),
        }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Methods with a series of their own; the rest count as `other`, to bound
/// cardinality.
const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
];

/// Outcomes with a series of their own; the rest count as the first, `error`.
const OUTCOMES: &[&str] = &[
    "error",
    "ok",
    "upstream",
    "timeout",
    "cancelled",
    "policy",
    "denied",
    "rate_limited",
    "protocol",
    "auth",
];

#[cfg(test)]
mod tests {
    #[test]
    fn renders_prometheus_text_with_moving_counters() {
        let m = super::Metrics::new();
        m.request("tools/call", "gh", "ok", 0.002, None);
        m.request("tools/call", "gh", "ok", 0.004, None);
        m.request("weird/method", "gh", "nonsense", 1.0, None);
        let has = |text: &str, series: &[&str]| {
            for s in series {
                assert!(text.contains(s), "{s} missing from {text}");
            }
        };
        let text = m.render();
        has(
            &text,
            &[
                r#"hawser_requests_total{method="tools/call",connection="gh",outcome="ok"} 2"#,
                // Unknown methods and outcomes are folded.
                r#"hawser_requests_total{method="other",connection="gh",outcome="error"} 1"#,
            ],
        );
        // Each connection has its own series, also when they share a method.
        m.request("tools/call", "fs", "ok", 0.002, None);
        let text = m.render();
        has(
            &text,
            &[
                r#"hawser_requests_total{method="tools/call",connection="fs",outcome="ok"} 1"#,
                r#"hawser_requests_total{method="tools/call",connection="gh",outcome="ok"} 2"#,
            ],
        );
        assert!(text.contains("hawser_build_info"), "{text}");
        // Both gauges have a series from the start, for the alerts that compare them.
        assert!(text.contains("\nhawser_store_up 1\n"), "{text}");
        assert!(text.contains("\nhawser_config_revision 0\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    fn trace(n: u8) -> super::TraceLabels {
        super::TraceLabels {
            trace_id: format!("{n:032x}"),
            span_id: format!("{n:016x}"),
        }
    }

    #[test]
    fn a_sampled_observation_is_its_buckets_exemplar() {
        let m = super::Metrics::with_exemplars(true);
        m.request("tools/call", "gh", "ok", 0.00015, Some(trace(7)));
        // Unsampled: counted, and the exemplar stays.
        m.request("tools/call", "gh", "ok", 0.00015, None);
        let text = m.render();
        let bucket = r#"hawser_request_duration_seconds_bucket{le="0.0002",method="tools/call",connection="gh",outcome="ok"} 2 # {trace_id="00000000000000000000000000000007",span_id="0000000000000007"} 0.00015 "#;
        assert!(text.contains(bucket), "{text}");
        assert_eq!(text.matches("trace_id=").count(), 1, "{text}");
        // Without OpenMetrics the same series, no exemplar.
        let plain = m.render_as(super::Format::Prometheus);
        assert!(
            plain.contains(
                "hawser_request_duration_seconds_bucket{le=\"0.0002\",method=\"tools/call\",connection=\"gh\",outcome=\"ok\"} 2\n"
            ),
            "{plain}"
        );
        assert!(!plain.contains("trace_id"), "{plain}");
    }

    #[test]
    fn without_tracing_a_trace_is_never_kept() {
        let m = super::Metrics::with_exemplars(false);
        m.request("tools/call", "gh", "ok", 0.00015, Some(trace(7)));
        let text = m.render();
        assert!(!text.contains("trace_id"), "{text}");
        assert!(
            text.contains(r#"hawser_request_duration_seconds_count{method="tools/call",connection="gh",outcome="ok"} 1"#),
            "{text}"
        );
    }
}
