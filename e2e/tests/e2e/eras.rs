//! Every combination of client era (legacy, 2026-07-28), upstream era and endpoint
//! (aggregated, per connection), driven by the official Python SDK: listing, calls,
//! progress, elicitation and sampling answered across the era bridge, cancellation.

use std::time::Duration;

use hawser_e2e::harness::cluster::Cluster;
use hawser_e2e::harness::stack::{Fixture, Gateway, python_script, run_python};
use serde_json::json;

const MODES: [&str; 2] = ["legacy", "2026-07-28"];

/// Runs eras.py for each client era on both endpoints of `connection`.
async fn every_client_era(
    mcp_url: &str,
    connection: &str,
    fixture: &Fixture,
) -> Vec<serde_json::Value> {
    let mut reports = Vec::new();
    for mode in MODES {
        for (url, prefix) in [
            (format!("{mcp_url}/{connection}"), "-"),
            (mcp_url.to_owned(), connection),
        ] {
            let out = run_python(
                &python_script("eras.py"),
                &[&url, mode, prefix, &fixture.base],
                Duration::from_secs(120),
            )
            .await;
            let report: serde_json::Value = serde_json::from_str(out.trim())
                .unwrap_or_else(|e| panic!("{mode} client on {url}: {e}: {out}"));
            assert_eq!(report["samplings"], 1, "{mode} on {url}: {report}");
            reports.push(report);
        }
    }
    reports
}

fn config(name: &str, fixture: &Fixture) -> String {
    format!(
        "connections:\n  - name: {name}\n    url: {}\n    timeouts: {{ connect: 2s, call: 30s }}\n",
        fixture.mcp_url()
    )
}

#[tokio::test]
async fn both_client_eras_work_through_a_legacy_upstream() {
    let fixture = Fixture::start(&[]);
    let gateway = Gateway::start(&config("old", &fixture), &[]);
    gateway.wait_ready().await;
    every_client_era(&gateway.mcp_url(), "old", &fixture).await;
    // The 2026-07-28 clients' elicitations were bridged: the upstream asked mid-call,
    // the client answered in a retry.
    let events = fixture.events().await;
    let elicited = events
        .iter()
        .filter(|e| e["kind"] == "request" && e["tool"] == "elicit")
        .count();
    assert_eq!(elicited, 4, "one elicit call per client and endpoint");
}

#[tokio::test]
async fn both_client_eras_work_through_a_2026_07_28_upstream() {
    let fixture = Fixture::start(&["--era", "modern"]);
    let gateway = Gateway::start(&config("new", &fixture), &[]);
    gateway.wait_ready().await;
    every_client_era(&gateway.mcp_url(), "new", &fixture).await;
    // The upstream spoke 2026-07-28 only: it never saw an initialize.
    let events = fixture.events().await;
    assert!(
        !events.iter().any(|e| e["kind"] == "initialize"),
        "a modern-only upstream was initialized"
    );
}

/// TCP connections the fixture has accepted so far (asked with `http`, which keeps
/// its own connection).
async fn accepted(http: &reqwest::Client, fixture: &Fixture) -> u64 {
    let url = format!("{}/fixture/connections", fixture.base);
    let body: serde_json::Value = http
        .get(&url)
        .send()
        .await
        .expect("fixture connections")
        .json()
        .await
        .expect("fixture connections JSON");
    body["accepted"].as_u64().expect("accepted count")
}

/// A 2026-07-28 upstream ends each call's SSE stream just after its answer; the
/// gateway must read that end rather than drop the stream, or the upstream
/// connection closes and a later call opens a new one (it did, for one call in four
/// to six).
#[tokio::test]
async fn calls_to_a_2026_07_28_upstream_reuse_their_connections() {
    use hawser_e2e::bench::load::{Era, Session};
    let fixture = Fixture::start(&["--era", "modern"]);
    let gateway = Gateway::start(&config("mx", &fixture), &[]);
    gateway.wait_ready().await;
    let counter = hawser_e2e::harness::http();
    for era in [Era::Modern, Era::Legacy] {
        let session = Session::open_as(
            era,
            hawser_e2e::harness::http(),
            &format!("{}/mx", gateway.mcp_url()),
            "echo",
            json!({"text": "hello"}),
        )
        .await
        .expect("session");
        // Warm up: discovery, the session and the pool's first connections.
        for n in 0..20 {
            assert!(session.call().await, "{era:?}: warm-up call {n} failed");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = accepted(&counter, &fixture).await;
        for n in 0..100 {
            assert!(session.call().await, "{era:?}: call {n} failed");
        }
        let opened = accepted(&counter, &fixture).await - before;
        // A drain still running when the next call starts makes the pool one
        // connection larger, rarely; dropping streams opened 12–15 per 100 calls.
        assert!(
            opened <= 4,
            "{era:?} client: 100 sequential calls opened {opened} upstream connections"
        );
    }
}

#[tokio::test]
async fn both_client_eras_work_across_three_replicas_and_both_upstream_eras() {
    let old = Fixture::start(&[]);
    let new = Fixture::start(&["--era", "modern"]);
    let cluster = Cluster::start(3, "").await;
    cluster
        .add_fixtures(&[("old", &old), ("new", &new)], "echo")
        .await;
    let lb = cluster.lb.mcp_url();
    every_client_era(&lb, "old", &old).await;
    every_client_era(&lb, "new", &new).await;
    // Retries of bridged calls reached replicas that did not hold the call and were
    // passed on to the one that did.
    let passed_on = cluster.log_lines_containing("retry passed on to the replica holding its call");
    assert!(
        passed_on >= 1,
        "no bridged retry crossed replicas (8 tries over 3 replicas)"
    );
}

/// A 2026-07-28 `subscriptions/listen` stream at `url` as `token`'s caller, for
/// `notifications` (e.g. `{"toolsListChanged": true}`), as SSE events.
pub(crate) async fn listen(
    url: &str,
    token: Option<&str>,
    notifications: serde_json::Value,
) -> impl futures::Stream<Item = Result<sse_stream::Sse, sse_stream::Error>> + Unpin + use<> {
    let response = listen_request(url, token, notifications, json!({})).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get("mcp-session-id").is_none(),
        "a 2026-07-28 request got a session"
    );
    sse_stream::SseStream::from_bytes_stream(response.bytes_stream())
}

/// The HTTP response to a `subscriptions/listen` request declaring `capabilities`.
pub(crate) async fn listen_request(
    url: &str,
    token: Option<&str>,
    notifications: serde_json::Value,
    capabilities: serde_json::Value,
) -> reqwest::Response {
    let body = json!({
        "jsonrpc": "2.0", "id": "sub-1", "method": "subscriptions/listen",
        "params": {
            "notifications": notifications,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": capabilities,
            },
        },
    });
    let mut request = hawser_e2e::harness::http()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "subscriptions/listen")
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("listen: {e}"))
}

/// The next JSON message of an SSE stream, if one arrives within `limit`.
pub(crate) async fn try_next_message<S>(
    events: &mut S,
    limit: Duration,
) -> Option<serde_json::Value>
where
    S: futures::Stream<Item = Result<sse_stream::Sse, sse_stream::Error>> + Unpin,
{
    use futures::StreamExt;
    let found = tokio::time::timeout(limit, async {
        while let Some(Ok(event)) = events.next().await {
            if let Some(data) = event.data
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&data)
            {
                return Some(v);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(v)) => Some(v),
        Ok(None) => panic!("the listen stream ended"),
        Err(_) => None,
    }
}

/// The next JSON message of an SSE stream, waiting at most `limit`.
pub(crate) async fn next_message<S>(events: &mut S, limit: Duration) -> serde_json::Value
where
    S: futures::Stream<Item = Result<sse_stream::Sse, sse_stream::Error>> + Unpin,
{
    try_next_message(events, limit)
        .await
        .unwrap_or_else(|| panic!("nothing arrived on the listen stream within {limit:?}"))
}

#[tokio::test]
async fn a_listen_stream_on_one_replica_hears_a_change_made_through_another() {
    const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
    let fixture = Fixture::start(&[]);
    let cluster = Cluster::start(2, "").await;
    let mut events = listen(
        &cluster.replicas[0].mcp_url(),
        None,
        json!({"toolsListChanged": true, "promptsListChanged": true}),
    )
    .await;
    let ack = next_message(&mut events, Duration::from_secs(5)).await;
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    assert_eq!(
        ack["params"]["notifications"]["toolsListChanged"], true,
        "{ack}"
    );
    assert_eq!(ack["params"]["_meta"][SUBSCRIPTION_ID], "sub-1", "{ack}");

    // A connection added through the other replica reaches this stream.
    let put = cluster
        .put_connection(1, "fx", json!({"url": fixture.mcp_url()}))
        .await;
    assert_eq!(put, 201);
    let mut heard = Vec::new();
    while !heard.contains(&"notifications/tools/list_changed".to_owned()) {
        let note = next_message(&mut events, Duration::from_secs(20)).await;
        assert_eq!(note["params"]["_meta"][SUBSCRIPTION_ID], "sub-1", "{note}");
        heard.push(note["method"].as_str().unwrap_or_default().to_owned());
    }
    // Only what was asked for: resources were not.
    assert!(
        !heard.iter().any(|m| m.contains("resources")),
        "unrequested notifications: {heard:?}"
    );
}

/// The progress notifications (token, total) on a 2026-07-28 call's answer stream.
async fn progress_of(url: String, steps: u64) -> Vec<(serde_json::Value, f64)> {
    let body = hawser_e2e::harness::http()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "progress")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "progress", "arguments": {"steps": steps, "step_ms": 100},
            "_meta": {"progressToken": "mine",
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "1"}}}}),
        )
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert!(body.contains(&format!("completed {steps} steps")), "{body}");
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d.trim()).ok())
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| {
            let total = m["params"]["total"].as_f64().unwrap_or_default();
            (m["params"]["progressToken"].clone(), total)
        })
        .collect()
}

/// Two 2026-07-28 calls of one caller to a legacy upstream share its pooled upstream
/// session; both may carry the same progress token (two processes of one service
/// account cannot agree on theirs), and each still hears its own progress, under its
/// own token.
#[tokio::test]
async fn calls_sharing_a_pooled_upstream_session_each_hear_their_own_progress() {
    let fixture = Fixture::start(&[]);
    let gateway = Gateway::start(&config("fx", &fixture), &[]);
    gateway.wait_ready().await;
    let url = format!("{}/mcp/fx", gateway.base);
    // The pooled session opened first, so that both calls find it.
    assert_eq!(progress_of(url.clone(), 1).await.len(), 1);
    let (three, six) = tokio::join!(progress_of(url.clone(), 3), progress_of(url, 6));
    for (heard, steps) in [(three, 3.0), (six, 6.0)] {
        assert_eq!(heard.len(), steps as usize, "{heard:?}");
        assert!(
            heard
                .iter()
                .all(|(token, total)| token == "mine" && *total == steps),
            "another call's progress, or another token: {heard:?}"
        );
    }
}
