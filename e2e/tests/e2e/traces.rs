//! Traces over OTLP: a real OTLP/HTTP receiver decodes what the gateway exports. One
//! call through two replicas is one trace whose spans carry the MCP and HTTP
//! attributes, continues the client's trace, and names the upstream span as the
//! parent the upstream was told of; with the collector away, calls go on and the
//! lost spans are counted.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use hawser_e2e::harness::cluster::Cluster;
use hawser_e2e::harness::http;
use hawser_e2e::harness::mcp::{McpClient, text};
use hawser_e2e::harness::stack::{Fixture, Gateway};
use hawser_e2e::harness::tools;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message as _;
use serde_json::{Value, json};

/// One exported span, flattened.
#[derive(Debug, Clone)]
struct Span {
    trace_id: String,
    span_id: String,
    parent_id: String,
    name: String,
    /// 2 server, 3 client (the OTLP enum).
    kind: i32,
    attributes: BTreeMap<String, String>,
    service: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn value(v: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// An OTLP/HTTP receiver: decodes `ExportTraceServiceRequest`s and keeps their spans.
struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
    endpoint: String,
    _server: tokio::task::JoinHandle<()>,
}

async fn receive(State(spans): State<Arc<Mutex<Vec<Span>>>>, body: Bytes) -> &'static str {
    let request = ExportTraceServiceRequest::decode(body)
        .unwrap_or_else(|e| panic!("not an ExportTraceServiceRequest: {e}"));
    let mut out = Vec::new();
    for rs in request.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .map(|a| value(a.value.as_ref()))
            .unwrap_or_default();
        for s in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
            out.push(Span {
                trace_id: hex(&s.trace_id),
                span_id: hex(&s.span_id),
                parent_id: hex(&s.parent_span_id),
                name: s.name,
                kind: s.kind,
                attributes: s
                    .attributes
                    .iter()
                    .map(|a| (a.key.clone(), value(a.value.as_ref())))
                    .collect(),
                service: service.clone(),
            });
        }
    }
    spans.lock().unwrap_or_else(|p| p.into_inner()).extend(out);
    ""
}

impl Receiver {
    async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(spans.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            spans,
            endpoint: format!("http://127.0.0.1:{port}"),
            _server: server,
        }
    }

    /// The spans of `trace_id`, once `done` says they are all there.
    async fn trace(&self, trace_id: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans: Vec<Span> = self
                .spans
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|s| s.trace_id == trace_id)
                .cloned()
                .collect();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "trace {trace_id} incomplete: {spans:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn all(&self) -> Vec<Span> {
        self.spans.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

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
