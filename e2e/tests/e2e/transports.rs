//! Streamable HTTP, legacy SSE and stdio upstreams behind one aggregated endpoint.

use hawser_e2e::harness::mcp::{McpClient, text};
use hawser_e2e::harness::stack::{Fixture, Gateway};
use hawser_e2e::harness::tools;
use serde_json::json;

#[tokio::test]
async fn streamable_http_legacy_sse_and_stdio_upstreams_serve_side_by_side() {
    let http = Fixture::start(&["--name", "http-fixture"]);
    let legacy = Fixture::start(&["--transport", "sse", "--name", "sse-fixture"]);
    let fixture_bin = tools::binary("hawser-fixture");
    let config = format!(
        "connections:
  - name: http
    url: {http}
  - name: legacy
    transport: sse
    url: {legacy}/sse
  - name: local
    transport: stdio
    command: {bin}
    args: [\"--transport\", \"stdio\", \"--name\", \"stdio-fixture\"]
",
        http = http.mcp_url(),
        legacy = legacy.base,
        bin = fixture_bin.display(),
    );
    let gateway = Gateway::start(&config, &[]);
    gateway.wait_ready().await;
    let mut client = McpClient::connect(&gateway.mcp_url()).await;

    // Each connection's tools appear once discovered.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let names = client.tool_names().await;
        if ["http__echo", "legacy__echo", "local__echo"]
            .iter()
            .all(|n| names.iter().any(|x| x == n))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tools missing: {names:?}\n{}",
            gateway.child.lines().join("\n")
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    for prefix in ["http", "legacy", "local"] {
        let r = client
            .call(
                &format!("{prefix}__echo"),
                json!({"text": format!("via {prefix}")}),
            )
            .await;
        assert_eq!(text(r.result()), format!("via {prefix}"), "{prefix}: {r:?}");
    }
    // Each call reached its own upstream.
    for (prefix, server) in [
        ("http", "http-fixture"),
        ("legacy", "sse-fixture"),
        ("local", "stdio-fixture"),
    ] {
        let r = client.call(&format!("{prefix}__whoami"), json!({})).await;
        let who: serde_json::Value = serde_json::from_str(&text(r.result())).unwrap_or_default();
        assert_eq!(who["server"], server, "{prefix}: {who}");
    }

    // Progress over a multiplexed stdio channel comes back with the client's own token.
    let r = client
        .request(
            "tools/call",
            json!({"name": "local__progress", "arguments": {"steps": 3, "step_ms": 50}, "_meta": {"progressToken": "my-token"}}),
        )
        .await;
    let progress: Vec<_> = r
        .messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{r:?}");
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "my-token"),
        "{progress:?}"
    );
    assert_eq!(text(r.result()), "completed 3 steps");

    // Concurrent calls on the shared stdio channel each get their own answer.
    let futures: Vec<_> = (0..20)
        .map(|i| {
            let url = gateway.mcp_url();
            let session = client.session.clone();
            async move {
                let mut c = McpClient::new(&url);
                c.session = session;
                let r = c
                    .call("local__fixed_response", json!({"key": format!("k{i}")}))
                    .await;
                (i, text(r.result()))
            }
        })
        .collect();
    for (i, got) in futures::future::join_all(futures).await {
        use sha2::Digest as _;
        let want: String = sha2::Sha256::digest(format!("k{i}").as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, want, "call {i} got someone else's answer");
    }
}

#[tokio::test]
async fn a_stdio_server_gets_its_own_env_not_the_gateways_secrets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env_file = dir.path().join("env.txt");
    let config = format!(
        "connections:
  - name: local
    transport: stdio
    command: /bin/sh
    args: [\"-c\", \"env > {file}; exec {bin} --transport stdio\"]
    env: {{ SERVER_SETTING: from-the-spec }}
",
        file = env_file.display(),
        bin = tools::binary("hawser-fixture").display(),
    );
    let gateway = Gateway::start(
        &config,
        &[
            ("HAWSER_ADMIN_TOKEN", "admin-token-that-must-not-leak"),
            (
                "HAWSER_ENCRYPTION_KEYS",
                "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            ),
            ("GATEWAY_ONLY_SETTING", "x"),
        ],
    );
    gateway.wait_ready().await;
    let mut client = McpClient::connect(&gateway.mcp_url()).await;
    client.wait_for_tool("local__echo").await;
    let env = std::fs::read_to_string(&env_file).expect("the server wrote its env");
    let names: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
    assert!(env.contains("SERVER_SETTING=from-the-spec"), "{env}");
    assert!(names.contains(&"PATH"), "{names:?}");
    for leaked in [
        "HAWSER_ADMIN_TOKEN",
        "HAWSER_ENCRYPTION_KEYS",
        "GATEWAY_ONLY_SETTING",
        "RUST_LOG",
    ] {
        assert!(
            !names.contains(&leaked),
            "{leaked} reached the server: {names:?}"
        );
    }
}
