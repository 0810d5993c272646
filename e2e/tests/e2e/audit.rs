//! The audit log and metrics: one row per call with its outcome, attribution and
//! redaction; rows kept while Postgres is away; /metrics that parses and moves.

use std::time::{Duration, Instant};

use hawser_e2e::harness::mcp::{McpClient, text};
use hawser_e2e::harness::stack::{Fixture, Gateway};
use hawser_e2e::harness::{TestCluster, http, pg};
use serde_json::{Value, json};

const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn config(fixture: &Fixture) -> String {
    format!(
        "clientAuth:
  type: bearer
  tokens:
    - {{ subject: alice, token: alice-audit-token }}
connections:
  - name: fx
    url: {url}
    timeouts: {{ connect: 2s, call: 1s }}
  - name: fx2
    url: {url}
",
        url = fixture.mcp_url()
    )
}

pub(crate) async fn audit_rows(db: &str) -> Vec<Value> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(db)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query_scalar::<_, Value>("SELECT row_to_json(a) FROM audit_events a ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn wait_rows(db: &str, n: usize, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let rows = audit_rows(db).await;
        if rows.len() >= n {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} audit rows after {timeout:?}",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn every_call_is_audited_with_its_outcome_connection_and_redacted_parameters() {
    let fixture = Fixture::start(&[]);
    let db = hawser_e2e::harness::test_db().await;
    let gateway = Gateway::start(
        &config(&fixture),
        &[("DATABASE_URL", &db.url), ("HAWSER_ENCRYPTION_KEYS", KEYS)],
    );
    gateway.wait_ready().await;
    let mut client = McpClient::connect_as(&gateway.mcp_url(), "alice-audit-token").await;
    client.wait_for_tool("fx2__echo").await;

    // success, on the second connection, with a secret among the arguments
    let r = client
        .call(
            "fx2__echo",
            json!({"text": "audited", "api_key": "s3cret-key-value"}),
        )
        .await;
    assert_eq!(text(r.result()), "audited");
    // the upstream reports an error
    let r = client.call("fx__flaky", json!({"failure_rate": 1.0})).await;
    assert_eq!(r.result()["isError"], true);
    // timeout (call timeout 1s)
    let r = client.call("fx__slow", json!({"ms": 5000})).await;
    assert!(r.error_message().contains("no response within"), "{r:?}");
    // cancellation by the client
    let mut canceller = McpClient::new(&gateway.mcp_url());
    canceller.session = client.session.clone();
    canceller.token = client.token.clone();
    let slow = tokio::spawn({
        let mut c = McpClient::new(&gateway.mcp_url());
        c.session = client.session.clone();
        c.token = client.token.clone();
        async move {
            c.send(json!({"jsonrpc": "2.0", "id": "cancel-me", "method": "tools/call", "params": {"name": "fx__slow", "arguments": {"ms": 10000}}})).await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    canceller
        .notify(
            "notifications/cancelled",
            json!({"requestId": "cancel-me", "reason": "changed my mind"}),
        )
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(5), slow).await;
    // denied: a tool that does not exist, and a caller without credentials
    let r = client.call("fx__nope", json!({})).await;
    assert!(r.error_message().contains("unknown tool"), "{r:?}");
    let mut stranger = McpClient::new(&gateway.mcp_url());
    assert_eq!(stranger.request("initialize", json!({})).await.status, 401);

    let rows = wait_rows(&db.url, 6, Duration::from_secs(10)).await;
    let find = |pred: &dyn Fn(&Value) -> bool, what: &str| -> Value {
        rows.iter()
            .find(|r| pred(r))
            .cloned()
            .unwrap_or_else(|| panic!("no audit row for {what}: {rows:#?}"))
    };
    let ok = find(
        &|r| r["target"] == "echo" && r["success"] == true,
        "the successful call",
    );
    assert_eq!(
        ok["connection"], "fx2",
        "attributed to the connection that served it"
    );
    assert_eq!(ok["method"], "tools/call");
    assert_eq!(ok["subject"], "alice");
    assert_eq!(ok["auth_type"], "bearer");
    assert_eq!(ok["content_blocks"], 1);
    assert!(
        ok["remote_addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1")),
        "{ok}"
    );
    assert!(
        ok["request_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{ok}"
    );
    assert!(ok["duration_ms"].as_f64().is_some_and(|d| d > 0.0), "{ok}");
    assert!(ok["response_bytes"].as_i64().is_some_and(|b| b > 0), "{ok}");
    assert_eq!(ok["params"]["arguments"]["api_key"], "[redacted]", "{ok}");
    assert_eq!(ok["params"]["arguments"]["text"], "audited");

    let failed = find(&|r| r["target"] == "flaky", "the upstream error");
    assert_eq!(
        (failed["success"].clone(), failed["error_category"].clone()),
        (json!(false), json!("upstream")),
        "{failed}"
    );
    let timed_out = find(
        &|r| r["target"] == "slow" && r["error_category"] == "timeout",
        "the timeout",
    );
    assert_eq!(timed_out["connection"], "fx");
    let cancelled = find(
        &|r| r["target"] == "slow" && r["error_category"] == "cancelled",
        "the cancellation",
    );
    assert_eq!(cancelled["success"], false);
    let denied = find(&|r| r["error_category"] == "policy", "the denied call");
    assert!(
        denied["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("fx__nope")),
        "{denied}"
    );
    find(
        &|r| r["error_category"] == "auth",
        "the unauthenticated request",
    );

    // No secret anywhere in the database.
    let dump = pg::dump(&db.url);
    assert!(
        !dump.contains("s3cret-key-value"),
        "a redacted argument reached the database"
    );
    assert!(!dump.contains("alice-audit-token"));
}

#[tokio::test]
async fn the_request_id_and_trace_reach_the_upstream() {
    let fixture = Fixture::start(&[]);
    let gateway = Gateway::in_front_of(&fixture).await;
    let mut client = McpClient::connect(&gateway.mcp_url()).await;
    client.wait_for_tool("fx__headers").await;
    let r = http()
        .post(gateway.mcp_url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", client.session.clone().unwrap_or_default())
        .header("x-request-id", "req-e2e-42")
        .header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "fx__headers", "arguments": {}}}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let body: Value = r.json().await.unwrap_or_default();
    let seen: Value = serde_json::from_str(
        body["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or("{}"),
    )
    .unwrap_or_default();
    assert_eq!(seen["x-request-id"], "req-e2e-42", "{seen}");
    let tp = seen["traceparent"].as_str().unwrap_or_default();
    assert!(
        tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-") && !tp.contains("b7ad6b7169203331"),
        "{tp}"
    );
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_move() {
    let fixture = Fixture::start(&[]);
    let gateway = Gateway::in_front_of(&fixture).await;
    let mut client = McpClient::connect(&gateway.mcp_url()).await;
    client.wait_for_tool("fx__echo").await;
    let scrape = || async {
        http()
            .get(format!("{}/metrics", gateway.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .text()
            .await
            .unwrap_or_default()
    };
    let calls = |text: &str| -> f64 {
        parse(text)
            .into_iter()
            .filter(|(name, labels, _)| {
                name == "hawser_requests_total"
                    && labels.contains("method=\"tools/call\"")
                    && labels.contains("outcome=\"ok\"")
            })
            .map(|(_, _, v)| v)
            .sum()
    };
    let before = scrape().await;
    for i in 0..3 {
        client
            .call("fx__echo", json!({"text": format!("{i}")}))
            .await;
    }
    let after = scrape().await;
    assert_eq!(calls(&after) - calls(&before), 3.0, "{after}");
    // Requests the gateway answers itself count too, under connection "".
    for method in ["initialize", "tools/list"] {
        assert!(
            parse(&after)
                .iter()
                .any(|(n, l, v)| n == "hawser_requests_total"
                    && l.contains(&format!("method=\"{method}\""))
                    && l.contains("connection=\"\"")
                    && l.contains("outcome=\"ok\"")
                    && *v >= 1.0),
            "{method} not counted:\n{after}"
        );
    }
    let series = parse(&after);
    for metric in [
        "hawser_request_duration_seconds_bucket",
        "hawser_upstream_state",
        "hawser_sessions_active",
        "hawser_build_info",
        "hawser_audit_queue_depth",
    ] {
        assert!(
            series.iter().any(|(n, _, _)| n == metric),
            "{metric} missing:\n{after}"
        );
    }
    assert!(
        series.iter().any(|(n, l, v)| n == "hawser_upstream_state"
            && l.contains("state=\"ready\"")
            && *v == 1.0),
        "{after}"
    );
}

/// Parses the Prometheus/OpenMetrics text format strictly enough to catch garbage:
/// every line is a comment, `# EOF`, or `name{labels} value`.
fn parse(text: &str) -> Vec<(String, String, f64)> {
    let mut out = Vec::new();
    assert!(
        text.trim_end().ends_with("# EOF"),
        "exposition must end with # EOF"
    );
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                assert!(rest.ends_with('}'), "bad labels: {line}");
                (n.to_owned(), rest.to_owned())
            }
            None => (series.to_owned(), String::new()),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line}"
        );
        out.push((name, labels, value));
    }
    out
}

#[tokio::test]
async fn postgres_away_for_ten_seconds_loses_no_call_and_no_audit_row() {
    let fixture = Fixture::start(&[]);
    let mut cluster = tokio::task::spawn_blocking(TestCluster::start)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let db = pg::create_database(&cluster.url("postgres"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let gateway = Gateway::start(
        &format!(
            "connections:\n  - name: fx\n    url: {}\n",
            fixture.mcp_url()
        ),
        &[("DATABASE_URL", &db.url), ("HAWSER_ENCRYPTION_KEYS", KEYS)],
    );
    gateway.wait_ready().await;
    let mut client = McpClient::connect(&gateway.mcp_url()).await;
    client.wait_for_tool("fx__echo").await;

    let run_for = Duration::from_secs(18);
    let started = Instant::now();
    let url = gateway.mcp_url();
    let session = client.session.clone();
    let caller = tokio::spawn(async move {
        let mut c = McpClient::new(&url);
        c.session = session;
        let (mut ok, mut failed) = (0u64, Vec::new());
        while started.elapsed() < run_for {
            let r = c.call("fx__echo", json!({"text": "steady"})).await;
            if r.status == 200 && r.messages.iter().any(|m| m.get("result").is_some()) {
                ok += 1;
            } else {
                failed.push(format!("{r:?}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (ok, failed)
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut cluster = tokio::task::spawn_blocking(move || {
        cluster.stop().unwrap_or_else(|e| panic!("{e}"));
        std::thread::sleep(Duration::from_secs(10));
        cluster.launch().unwrap_or_else(|e| panic!("{e}"));
        cluster
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let (ok, failed) = caller.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        failed.is_empty(),
        "{} calls failed while Postgres was away: {}",
        failed.len(),
        failed[0]
    );
    assert!(ok > 100, "too few calls: {ok}");
    // Every call has its row once Postgres is back.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = audit_rows(&db.url).await;
        let calls = rows.iter().filter(|r| r["method"] == "tools/call").count() as u64;
        if calls == ok {
            break;
        }
        assert!(calls < ok, "more audit rows ({calls}) than calls ({ok})");
        assert!(
            Instant::now() < deadline,
            "{calls} audit rows for {ok} calls"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = cluster.stop();
}

#[tokio::test]
async fn a_nul_in_a_call_or_in_client_info_neither_stops_the_audit_log_nor_fails_initialize() {
    let fixture = Fixture::start(&[]);
    let db = hawser_e2e::harness::test_db().await;
    let gateway = Gateway::start(
        &config(&fixture),
        &[("DATABASE_URL", &db.url), ("HAWSER_ENCRYPTION_KEYS", KEYS)],
    );
    gateway.wait_ready().await;

    // NUL in clientInfo: initialize works like any other.
    let mut client = McpClient::new(&gateway.mcp_url());
    client.token = Some("alice-audit-token".into());
    let r = client
        .request(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "nul\u{0}client", "version": "1"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    client.session = r.session.clone();
    client.wait_for_tool("fx__echo").await;

    // NUL in a tool name (denied: unknown) and in arguments (a real call).
    let r = client.call("fx__e\u{0}cho", json!({})).await;
    assert!(r.error_message().contains("unknown tool"), "{r:?}");
    let r = client.call("fx__echo", json!({"text": "a\u{0}b"})).await;
    assert_eq!(text(r.result()), "a\u{0}b");
    // Then 50 ordinary calls: every one is recorded.
    for i in 0..50 {
        let r = client
            .call("fx__echo", json!({"text": format!("{i}")}))
            .await;
        assert_eq!(text(r.result()), format!("{i}"));
    }
    let rows = wait_rows(&db.url, 52, Duration::from_secs(15)).await;
    let escaped: Vec<&Value> = rows.iter().filter(|r| r["escaped"] == true).collect();
    assert_eq!(
        escaped.len(),
        2,
        "the two NUL rows are marked: {escaped:#?}"
    );
    assert!(
        escaped
            .iter()
            .any(|r| r["target"] == "fx__e\\u0000cho" && r["success"] == false),
        "{escaped:#?}"
    );
    assert!(
        escaped
            .iter()
            .any(|r| r["params"]["arguments"]["text"] == "a\\u0000b"),
        "{escaped:#?}"
    );
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains("hawser_audit_events_escaped_total 2"),
        "{metrics}"
    );
    assert!(metrics.contains("hawser_audit_queue_depth 0"), "{metrics}");
}
