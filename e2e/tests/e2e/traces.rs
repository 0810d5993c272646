//! Traces and metrics over OTLP: a real OTLP receiver ([`receiver`]) decodes what the
//! gateway exports. One call through two replicas is one trace whose spans carry the
//! MCP and HTTP attributes, continues the client's trace, and names the upstream span
//! as the parent the upstream was told of; a session's GET stream and DELETE are
//! server spans too; with the collector away, calls go on and the lost spans are
//! counted; an upstream token refreshed during a call, and the wait for the client's
//! answer to an upstream's elicitation, are spans under the upstream call. Metrics pushed over OTLP are the series `/metrics` shows; gRPC works, with
//! TLS against a CA of the test's own.

mod receiver;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use hawser_e2e::harness::cluster::Cluster;
use hawser_e2e::harness::http;
use hawser_e2e::harness::mcp::{McpClient, text};
use hawser_e2e::harness::stack::{Fixture, Gateway};
use hawser_e2e::harness::tools;
use hawser_e2e::oauth::{self, ClientConfig, MockOAuth, ResourceServer};
use receiver::{Push, Receiver, Span, Tls};
use serde_json::{Value, json};

const CLIENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";
const TOKEN: &str = "trace-test-secret-token";

fn named<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name:?} in {spans:#?}"))
}

/// The fixture's record of the call of `tool` carrying `trace_id`.
async fn upstream_saw(fixture: &Fixture, trace_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = fixture.events().await.into_iter().find(|e| {
            e["kind"] == "request"
                && e["headers"]["traceparent"]
                    .as_str()
                    .is_some_and(|tp| tp.contains(trace_id))
        });
        if let Some(event) = found {
            return event;
        }
        assert!(
            Instant::now() < deadline,
            "the upstream saw no call of trace {trace_id}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn one_call_through_two_replicas_is_one_trace_the_upstream_continues() {
    let collector = Receiver::start().await;
    let legacy = Fixture::start(&[]);
    let modern = Fixture::start(&["--name", "modern", "--era", "modern"]);
    let config = format!(
        "clientAuth:\n  tokens: [{{subject: alice, token: {TOKEN}}}]\npolicies:\n  - {{name: open, targetRefs: [{{name: fx}}], rules: [{{}}]}}\nconnections:\n  - name: fx\n    url: {}\n  - name: mx\n    url: {}\n",
        legacy.mcp_url(),
        modern.mcp_url()
    );
    let cluster = Cluster::start_with_env(
        2,
        &config,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint),
            ("OTEL_SERVICE_NAME", "hawser-e2e"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let mut client = McpClient::connect_as(&cluster.lb.mcp_url(), TOKEN).await;
    client.wait_for_tool("fx__headers").await;
    client.wait_for_tool("mx__headers").await;
    let session = client.session.clone().unwrap_or_default();

    // A legacy call with the client's context in the traceparent header.
    let reply = http()
        .post(cluster.lb.mcp_url())
        .bearer_auth(TOKEN)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .json(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "fx__headers", "arguments": {}}}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reply.status(), 200);
    let body: Value = reply.json().await.unwrap_or_default();
    assert!(
        text(&body["result"]).contains("traceparent"),
        "the call failed: {body}"
    );

    let spans = collector
        .trace(CLIENT_TRACE, |s| {
            s.iter().any(|s| s.name == "tools/call fx__headers")
                && s.iter().any(|s| s.kind == 3)
                && s.iter().any(|s| s.name == "policy decision")
        })
        .await;
    let server = named(&spans, "tools/call fx__headers");
    assert_eq!(server.kind, 2, "a server span");
    assert_eq!(
        server.parent_id, CLIENT_SPAN,
        "the client's span is the parent"
    );
    assert_eq!(server.service, "hawser-e2e");
    let a = &server.attributes;
    assert_eq!(a["mcp.method.name"], "tools/call");
    assert_eq!(a["gen_ai.tool.name"], "fx__headers");
    assert_eq!(a["gen_ai.operation.name"], "execute_tool");
    assert_eq!(a["mcp.protocol.version"], "2025-11-25");
    assert_eq!(a["http.request.method"], "POST");
    assert_eq!(a["http.response.status_code"], "200");
    assert_eq!(a["url.path"], "/mcp");
    assert_eq!(a["enduser.id"], "alice");
    assert_eq!(a["hawser.connection"], "fx");
    assert_eq!(a["hawser.outcome"], "ok");
    assert!(!a.contains_key("error.type"), "{a:?}");
    // The session's handle: short, and never the session id itself.
    let handle = &a["mcp.session.id"];
    assert!(!handle.is_empty() && *handle != session, "{handle}");
    let upstream = spans
        .iter()
        .find(|s| s.kind == 3)
        .unwrap_or_else(|| panic!("no client span: {spans:#?}"));
    assert_eq!(
        upstream.name, "tools/call headers",
        "named as the upstream knows it"
    );
    assert_eq!(upstream.parent_id, server.span_id);
    assert_eq!(upstream.attributes["server.address"], "127.0.0.1");
    assert_eq!(upstream.attributes["hawser.connection"], "fx");
    assert_eq!(upstream.attributes["hawser.outcome"], "ok");
    // A policy governs fx: its decision is a span of the request.
    let policy = named(&spans, "policy decision");
    assert_eq!(policy.parent_id, server.span_id);
    assert_eq!(policy.attributes["hawser.policy.decision"], "allow");
    assert_eq!(policy.attributes["hawser.policy.item"], "headers");

    // The call's duration on /metrics links to its trace: an OpenMetrics exemplar
    // naming the server span, on the replica that served it.
    let exemplar = format!(
        "# {{trace_id=\"{CLIENT_TRACE}\",span_id=\"{}\"}} ",
        server.span_id
    );
    let mut linked = Vec::new();
    for replica in &cluster.replicas {
        let (content_type, text) = scrape(replica, Some("application/openmetrics-text")).await;
        assert!(
            content_type.starts_with("application/openmetrics-text; version=1.0.0"),
            "{content_type}"
        );
        linked.extend(
            text.lines()
                .filter(|l| {
                    l.starts_with("hawser_request_duration_seconds_bucket{")
                        && l.contains(r#"method="tools/call",connection="fx",outcome="ok""#)
                        && l.contains(&exemplar)
                })
                .map(str::to_owned),
        );
        // A scraper that does not ask for OpenMetrics gets Prometheus text, which
        // has no exemplars.
        let (content_type, text) = scrape(replica, None).await;
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        assert!(!text.contains("trace_id"), "{text}");
        promtool_parses(&text);
    }
    assert_eq!(
        linked.len(),
        1,
        "one bucket holds the call's exemplar: {linked:?}"
    );

    // The upstream was told of the upstream span as its parent.
    let seen = upstream_saw(&legacy, CLIENT_TRACE).await;
    assert_eq!(
        seen["headers"]["traceparent"],
        format!("00-{CLIENT_TRACE}-{}-01", upstream.span_id),
        "{seen}"
    );

    // A 2026-07-28 call with its context in `_meta` (SEP-414), to a 2026-07-28
    // upstream: the context goes on in the header and in `_meta`.
    let modern_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let meta_parent = "00f067aa0ba902b7";
    let reply = http()
        .post(cluster.lb.mcp_url())
        .bearer_auth(TOKEN)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "mx__headers")
        .json(&json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
        "params": {"name": "mx__headers", "arguments": {}, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "traceparent": format!("00-{modern_trace}-{meta_parent}-01"),
        }}}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reply.status(), 200);
    let spans = collector
        .trace(modern_trace, |s| {
            s.iter().any(|s| s.name == "tools/call mx__headers") && s.iter().any(|s| s.kind == 3)
        })
        .await;
    let server = named(&spans, "tools/call mx__headers");
    assert_eq!(server.parent_id, meta_parent, "the parent from _meta");
    assert_eq!(server.attributes["mcp.protocol.version"], "2026-07-28");
    let upstream = spans
        .iter()
        .find(|s| s.kind == 3)
        .unwrap_or_else(|| panic!("no client span: {spans:#?}"));
    let expected = format!("00-{modern_trace}-{}-01", upstream.span_id);
    let seen = upstream_saw(&modern, modern_trace).await;
    assert_eq!(seen["headers"]["traceparent"], expected, "{seen}");
    assert_eq!(seen["metaTraceparent"], expected, "{seen}");

    // The session's GET stream and its DELETE are server spans of their own, in the
    // client's trace.
    let legacy_call = collector.trace(CLIENT_TRACE, |_| true).await;
    let handle = named(&legacy_call, "tools/call fx__headers").attributes["mcp.session.id"].clone();
    let listen_trace = "5bf92f3577b34da6a3ce929d0e0e4737";
    let stream = http()
        .get(cluster.lb.mcp_url())
        .bearer_auth(TOKEN)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("traceparent", format!("00-{listen_trace}-{CLIENT_SPAN}-01"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stream.status(), 200);
    drop(stream);
    let get = collector.trace(listen_trace, |s| !s.is_empty()).await;
    let get = named(&get, "GET /mcp");
    assert_eq!((get.kind, get.parent_id.as_str()), (2, CLIENT_SPAN));
    let a = &get.attributes;
    assert_eq!(a["http.request.method"], "GET");
    assert_eq!(a["http.route"], "/mcp");
    assert_eq!(a["url.path"], "/mcp");
    assert_eq!(a["http.response.status_code"], "200");
    assert_eq!(a["hawser.outcome"], "ok");
    assert_eq!(a["enduser.id"], "alice");
    assert_eq!(a["mcp.session.id"], handle);
    assert!(!a.contains_key("error.type"), "{a:?}");
    let delete = |trace: &'static str| {
        http()
            .delete(cluster.lb.mcp_url())
            .bearer_auth(TOKEN)
            .header("mcp-session-id", &session)
            .header("traceparent", format!("00-{trace}-{CLIENT_SPAN}-01"))
            .send()
    };
    let delete_trace = "6bf92f3577b34da6a3ce929d0e0e4738";
    let ended = delete(delete_trace).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ended.status(), 204);
    let spans = collector.trace(delete_trace, |s| !s.is_empty()).await;
    let ended = named(&spans, "DELETE /mcp");
    assert_eq!((ended.kind, ended.parent_id.as_str()), (2, CLIENT_SPAN));
    assert_eq!(ended.attributes["http.request.method"], "DELETE");
    assert_eq!(ended.attributes["http.response.status_code"], "204");
    assert_eq!(ended.attributes["hawser.outcome"], "ok");
    assert_eq!(ended.attributes["mcp.session.id"], handle);
    // Ending it again: the session is gone, and the span says why it failed.
    let again_trace = "7bf92f3577b34da6a3ce929d0e0e4739";
    let again = delete(again_trace).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.status(), 404);
    let spans = collector.trace(again_trace, |s| !s.is_empty()).await;
    let again = named(&spans, "DELETE /mcp");
    assert_eq!(again.attributes["http.response.status_code"], "404");
    assert_ne!(again.attributes["hawser.outcome"], "ok");
    assert_eq!(
        again.attributes.get("error.type"),
        Some(&again.attributes["hawser.outcome"])
    );

    // Nothing secret in any span: neither the client's token nor the session id.
    for s in collector.all() {
        for (k, v) in &s.attributes {
            assert!(
                !v.contains(TOKEN) && !v.contains(&session),
                "{k}={v} in {}",
                s.name
            );
        }
    }
}

/// A gateway's /metrics: the content type and the text.
async fn scrape(gateway: &Gateway, accept: Option<&str>) -> (String, String) {
    let mut request = http().get(format!("{}/metrics", gateway.base));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let reply = request.send().await.unwrap_or_else(|e| panic!("{e}"));
    let content_type = reply
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (content_type, reply.text().await.unwrap_or_default())
}

/// Panics unless Prometheus's text parser (`promtool check metrics`) takes `text`.
fn promtool_parses(text: &str) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(tools::promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run promtool: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("promtool: {e}"));
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `hawser_trace_spans_dropped_total{reason}` of a gateway.
async fn dropped(gateway: &Gateway, reason: &str) -> f64 {
    let text = http()
        .get(format!("{}/metrics", gateway.base))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default();
    let series = format!("hawser_trace_spans_dropped_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn with_the_collector_away_calls_succeed_and_lost_spans_are_counted() {
    // A collector that takes connections and never answers: exports wait out their
    // timeout while the queue (4 spans) fills.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let endpoint = format!(
        "http://127.0.0.1:{}",
        silent.local_addr().map(|a| a.port()).unwrap_or(0)
    );
    let fixture = Fixture::start(&[]);
    let gateway = Gateway::start(
        &format!(
            "connections:\n  - name: fx\n    url: {}\ntelemetry:\n  tracing:\n    endpoint: {endpoint}\n    queueSize: 4\n    batchSize: 2\n    exportInterval: 100ms\n    exportTimeout: 1s\n",
            fixture.mcp_url()
        ),
        &[],
    );
    gateway.wait_ready().await;
    let mut client = McpClient::connect(&gateway.mcp_url()).await;
    client.wait_for_tool("fx__echo").await;
    for i in 0..40 {
        let reply = client
            .call("fx__echo", json!({"text": format!("call {i}")}))
            .await;
        assert_eq!(text(reply.result()), format!("call {i}"));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while dropped(&gateway, "export_failed").await == 0.0 {
        assert!(Instant::now() < deadline, "no failed export counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        dropped(&gateway, "queue_full").await > 0.0,
        "80 spans and a queue of 4 behind a silent collector: some must not fit"
    );
    drop(silent);
}

/// A series of a Prometheus text exposition: the metric as OTLP names it (a
/// histogram's samples are one metric) and its labels (a bucket's `le` is a bound).
fn series_of(text: &str) -> BTreeSet<(String, BTreeMap<String, String>)> {
    let histograms: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" histogram"))
        .collect();
    let mut out = BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let mut name = &line[..name_end];
        let mut labels = BTreeMap::new();
        if line[name_end..].starts_with('{') {
            let end = line.rfind('}').unwrap_or(line.len());
            // Hawser's label values hold no quote or comma.
            for pair in line[name_end + 1..end].split(',').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                labels.insert(k.to_owned(), v.trim_matches('"').to_owned());
            }
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix)
                && histograms.contains(base)
            {
                name = base;
                labels.remove("le");
            }
        }
        out.insert((name.to_owned(), labels));
    }
    out
}

fn pushed_series(push: &Push) -> BTreeSet<(String, BTreeMap<String, String>)> {
    push.points
        .iter()
        .map(|p| (p.metric.clone(), p.labels.clone()))
        .collect()
}

async fn metrics_text(gateway: &Gateway) -> String {
    http()
        .get(format!("{}/metrics", gateway.base))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default()
}

const OK_CALLS: [(&str, &str); 3] = [
    ("method", "tools/call"),
    ("connection", "fx"),
    ("outcome", "ok"),
];

#[tokio::test]
async fn metrics_pushed_over_otlp_are_the_series_of_the_metrics_endpoint() {
    let collector = Receiver::start().await;
    let fixture = Fixture::start(&[]);
    let gateway = Gateway::start(
        &format!(
            "connections:\n  - name: fx\n    url: {}\n",
            fixture.mcp_url()
        ),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint),
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
            ("OTEL_SERVICE_NAME", "hawser-metrics"),
            ("HAWSER_REPLICA_ID", "replica-a"),
            // A collector's credential, sent with every push.
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Bearer%20collector-key",
            ),
        ],
    );
    gateway.wait_ready().await;
    let mut client = McpClient::connect(&gateway.mcp_url()).await;
    client.wait_for_tool("fx__echo").await;
    for i in 0..3 {
        let reply = client
            .call("fx__echo", json!({"text": format!("{i}")}))
            .await;
        assert_eq!(text(reply.result()), i.to_string());
    }
    // The calls reach the collector, counted as /metrics counts them.
    let push = collector
        .push(None, |p| {
            p.point("hawser_requests_total", &OK_CALLS)
                .is_some_and(|p| p.value == 3.0)
        })
        .await;
    assert_eq!(push.resource["service.name"], "hawser-metrics");
    assert_eq!(push.resource["service.instance.id"], "replica-a");
    assert_eq!(push.authorization.as_deref(), Some("Bearer collector-key"));
    let calls = push.point("hawser_requests_total", &OK_CALLS);
    assert!(
        calls.is_some_and(|p| p.kind == "sum" && p.monotonic),
        "{calls:?}"
    );
    let durations = push
        .point("hawser_request_duration_seconds", &OK_CALLS)
        .unwrap_or_else(|| panic!("no durations: {push:#?}"));
    assert_eq!(durations.kind, "histogram");
    assert_eq!(durations.value, 3.0);
    assert_eq!(durations.buckets.iter().sum::<u64>(), 3);
    assert_eq!(durations.buckets.len(), durations.bounds.len() + 1);

    // Every series a scrape shows is pushed, and nothing else: a later push holds
    // all of an earlier scrape, and a later scrape all of that push.
    let before = series_of(&metrics_text(&gateway).await);
    let push = collector.push(Some(Instant::now()), |_| true).await;
    let after = series_of(&metrics_text(&gateway).await);
    let pushed = pushed_series(&push);
    let missing: Vec<_> = before.difference(&pushed).collect();
    assert!(missing.is_empty(), "scraped, not pushed: {missing:#?}");
    let extra: Vec<_> = pushed.difference(&after).collect();
    assert!(extra.is_empty(), "pushed, not scraped: {extra:#?}");
    for name in [
        "hawser_build_info",
        "hawser_upstream_state",
        "hawser_metric_exports_total",
        "hawser_connection_reload_lag_seconds",
    ] {
        assert!(pushed.iter().any(|(n, _)| n == name), "{name} not pushed");
    }
    // The histogram's bounds are the scrape's `le` values.
    let scraped = metrics_text(&gateway).await;
    let bounds: Vec<f64> = scraped
        .lines()
        .filter(|l| {
            l.starts_with("hawser_request_duration_seconds_bucket{")
                && l.contains(r#"method="tools/call",connection="fx",outcome="ok""#)
        })
        .filter_map(|l| l.split("le=\"").nth(1)?.split('"').next()?.parse().ok())
        .filter(|b: &f64| b.is_finite())
        .collect();
    assert_eq!(durations.bounds, bounds);
}

#[tokio::test]
async fn with_the_metrics_collector_away_calls_succeed_and_failed_pushes_are_counted() {
    // A port nobody listens on: every push is refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let endpoint = format!(
        "http://127.0.0.1:{}",
        closed.local_addr().map(|a| a.port()).unwrap_or(0)
    );
    drop(closed);
    let fixture = Fixture::start(&[]);
    let gateway = Gateway::start(
        &format!(
            "connections:\n  - name: fx\n    url: {}\ntelemetry:\n  metrics:\n    endpoint: {endpoint}\n    exportInterval: 100ms\n",
            fixture.mcp_url()
        ),
        &[],
    );
    gateway.wait_ready().await;
    let mut client = McpClient::connect(&gateway.mcp_url()).await;
    client.wait_for_tool("fx__echo").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 0;
    while pushes(&gateway, "failed").await < 3.0 {
        assert!(Instant::now() < deadline, "no failed push counted");
        let reply = client
            .call("fx__echo", json!({"text": format!("call {i}")}))
            .await;
        assert_eq!(text(reply.result()), format!("call {i}"));
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pushes(&gateway, "ok").await, 0.0);
}

/// `hawser_metric_exports_total{outcome}` of a gateway.
async fn pushes(gateway: &Gateway, outcome: &str) -> f64 {
    let series = format!("hawser_metric_exports_total{{outcome=\"{outcome}\"}} ");
    metrics_text(gateway)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// One call, exported over `protocol` by a gateway naming itself `service`: its
/// trace and the metrics counting it arrive.
async fn a_call_reaches(collector: &Receiver, protocol: &str, service: &str, env: &[(&str, &str)]) {
    let fixture = Fixture::start(&[]);
    let mut vars = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_SERVICE_NAME", service),
        ("OTEL_METRICS_EXPORTER", "otlp"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    vars.extend_from_slice(env);
    vars.push(("OTEL_EXPORTER_OTLP_HEADERS", "authorization=collector-key"));
    let gateway = Gateway::start(
        &format!(
            "connections:\n  - name: fx\n    url: {}\n",
            fixture.mcp_url()
        ),
        &vars,
    );
    gateway.wait_ready().await;
    let mut client = McpClient::connect(&gateway.mcp_url()).await;
    client.wait_for_tool("fx__echo").await;
    let reply = client.call("fx__echo", json!({"text": protocol})).await;
    assert_eq!(text(reply.result()), protocol);
    let spans = collector
        .spans_where(
            |s| s.name == "tools/call fx__echo" && s.service == service,
            |s| !s.is_empty(),
        )
        .await;
    assert_eq!(spans[0].kind, 2);
    assert_eq!(spans[0].attributes["hawser.outcome"], "ok");
    collector
        .push(None, |p| {
            p.resource.get("service.name").map(String::as_str) == Some(service)
                && p.authorization.as_deref() == Some("collector-key")
                && p.point("hawser_requests_total", &OK_CALLS)
                    .is_some_and(|p| p.value == 1.0)
        })
        .await;
}

#[tokio::test]
async fn over_grpc_traces_and_metrics_reach_the_collector() {
    let collector = Receiver::start_tonic(None).await;
    a_call_reaches(&collector, "grpc", "hawser-grpc", &[]).await;
}

/// A CA and a certificate it signed for `localhost`, made with `openssl`.
fn test_ca(dir: &std::path::Path) -> Tls {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("run openssl: {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "1", "-subj", "/CN=hawser test CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    ca.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
    ca.extend(["-addext", "keyUsage=critical,keyCertSign"]);
    run(&ca);
    let mut csr = vec!["req", "-subj", "/CN=localhost"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    run(&csr);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    run(&[
        "x509",
        "-req",
        "-days",
        "1",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    Tls {
        cert: read("server.pem"),
        key: read("server.key"),
    }
}

#[tokio::test]
async fn over_tls_the_collector_is_checked_against_the_given_ca() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let collector = Receiver::start_tonic(Some(test_ca(dir.path()))).await;
    assert!(collector.endpoint.starts_with("https://"));
    let ca = dir.path().join("ca.pem");
    let ca = ca.to_str().unwrap_or_default();
    let trusting = [("OTEL_EXPORTER_OTLP_CERTIFICATE", ca)];
    a_call_reaches(&collector, "grpc", "hawser-grpc-tls", &trusting).await;
    a_call_reaches(&collector, "http/protobuf", "hawser-http-tls", &trusting).await;
    // Without the CA the collector is not trusted: nothing is pushed.
    for protocol in ["grpc", "http/protobuf"] {
        let gateway = Gateway::start(
            "connections: []\n",
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint.as_str()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("OTEL_METRICS_EXPORTER", "otlp"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "100"),
            ],
        );
        gateway.wait_ready().await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while pushes(&gateway, "failed").await == 0.0 {
            assert!(
                Instant::now() < deadline,
                "{protocol}: an untrusted collector took a push"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(pushes(&gateway, "ok").await, 0.0, "{protocol}");
    }
}

// The mock provider runs in this process and must answer while a fixture starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_refreshed_during_a_call_is_a_span_of_its_upstream_call() {
    let collector = Receiver::start().await;
    // The mock provider's access tokens live 2 s.
    let mock = MockOAuth::start(oauth::Config {
        clients: vec![ClientConfig::confidential("hawser", "hawser-client-secret")],
        resource_servers: vec![ResourceServer {
            id: "fixture".into(),
            secret: "fixture-rs-secret".into(),
        }],
        ..oauth::Config::default()
    })
    .await
    .unwrap_or_else(|e| panic!("mock OAuth: {e}"));
    let protected = Fixture::start(&[
        "--oauth-introspect",
        mock.base_url(),
        "--oauth-client",
        "fixture:fixture-rs-secret",
    ]);
    let gateway = Gateway::start(
        &format!(
            "connections:\n  - name: m2m\n    url: {}\n    auth: {{type: oauth2, grant: client_credentials, clientId: hawser, clientSecret: hawser-client-secret, scopes: [mcp]}}\n",
            protected.mcp_url()
        ),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    gateway.wait_ready().await;
    let mut client = McpClient::connect(&gateway.mcp_url()).await;
    client.wait_for_tool("m2m__echo").await;
    // Calls some time apart soon find the token due, and refresh it on their way.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (upstream, refresh) = loop {
        let reply = client.call("m2m__echo", json!({"text": "refresh"})).await;
        assert_eq!(text(reply.result()), "refresh");
        tokio::time::sleep(Duration::from_millis(700)).await;
        let spans = collector.all();
        let in_a_call = spans.iter().find_map(|refresh| {
            if refresh.name != "oauth token refresh" {
                return None;
            }
            let upstream = spans
                .iter()
                .find(|s| s.span_id == refresh.parent_id && s.kind == 3)?;
            spans
                .iter()
                .any(|s| s.span_id == upstream.parent_id && s.name == "tools/call m2m__echo")
                .then(|| (upstream.clone(), refresh.clone()))
        });
        if let Some(found) = in_a_call {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no token refresh inside a call: {:#?}",
            collector.all()
        );
    };
    assert_eq!(refresh.trace_id, upstream.trace_id);
    assert_eq!(refresh.attributes["hawser.connection"], "m2m");
    assert_eq!(refresh.attributes["hawser.oauth.per_user"], "false");
    // No credential in any span.
    for s in collector.all() {
        for (k, v) in &s.attributes {
            assert!(!v.contains("hawser-client-secret"), "{k}={v} in {}", s.name);
        }
    }
}

#[tokio::test]
async fn the_wait_for_the_clients_answer_is_a_span_of_the_upstream_call() {
    use futures::StreamExt as _;

    let collector = Receiver::start().await;
    let fixture = Fixture::start(&[]);
    let gateway = Gateway::start(
        &format!(
            "connections:\n  - name: fx\n    url: {}\n",
            fixture.mcp_url()
        ),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    gateway.wait_ready().await;
    // The client declares elicitation; the fixture's `elicit` asks it for a name.
    let mut client = McpClient::connect(&gateway.mcp_url()).await;
    client.wait_for_tool("fx__elicit").await;
    let session = client.session.clone().unwrap_or_default();
    let trace = "8bf92f3577b34da6a3ce929d0e0e473a";
    let call = http()
        .post(gateway.mcp_url())
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .header("traceparent", format!("00-{trace}-{CLIENT_SPAN}-01"))
        .json(&json!({"jsonrpc": "2.0", "id": 41, "method": "tools/call",
            "params": {"name": "fx__elicit", "arguments": {"message": "who?"}}}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(call.status(), 200);
    let mut events = sse_stream::SseStream::from_bytes_stream(call.bytes_stream());
    let mut answered = false;
    let result = loop {
        let event = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .unwrap_or_else(|_| panic!("no answer to the call"))
            .unwrap_or_else(|| panic!("the stream ended early"))
            .unwrap_or_else(|e| panic!("{e}"));
        let Some(message) = event
            .data
            .and_then(|d| serde_json::from_str::<Value>(&d).ok())
        else {
            continue;
        };
        if message["method"] == "elicitation/create" {
            // Answered a while later, so the wait is a span of some length.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let reply = client
                .send(json!({"jsonrpc": "2.0", "id": message["id"],
                    "result": {"action": "accept", "content": {"name": "Ada"}}}))
                .await;
            assert!(reply.status < 300, "{reply:?}");
            answered = true;
        } else if message["id"] == 41 {
            break message;
        }
    };
    assert!(answered, "the upstream's request never reached the client");
    assert!(text(&result["result"]).contains("Ada"), "{result}");

    let spans = collector
        .trace(trace, |s| {
            s.iter().any(|s| s.name == "wait elicitation/create")
                && s.iter().any(|s| s.name == "tools/call fx__elicit")
                && s.iter().any(|s| s.kind == 3)
        })
        .await;
    let server = named(&spans, "tools/call fx__elicit");
    let upstream = spans
        .iter()
        .find(|s| s.kind == 3)
        .unwrap_or_else(|| panic!("no client span: {spans:#?}"));
    assert_eq!(upstream.parent_id, server.span_id);
    let wait = named(&spans, "wait elicitation/create");
    assert_eq!(wait.parent_id, upstream.span_id, "the upstream call asked");
    assert_eq!(wait.attributes["mcp.method.name"], "elicitation/create");
    assert_eq!(wait.attributes["hawser.outcome"], "ok");
    // The answer's content is the user's, not the trace's.
    for s in &spans {
        for (k, v) in &s.attributes {
            assert!(!v.contains("Ada"), "{k}={v} in {}", s.name);
        }
    }
}
