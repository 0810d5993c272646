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
    let body = json!({
        "jsonrpc": "2.0", "id": "sub-1", "method": "subscriptions/listen",
        "params": {
            "notifications": notifications,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
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
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("listen: {e}"));
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get("mcp-session-id").is_none(),
        "a 2026-07-28 request got a session"
    );
    sse_stream::SseStream::from_bytes_stream(response.bytes_stream())
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
