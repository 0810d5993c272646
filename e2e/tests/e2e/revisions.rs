//! Every protocol revision a client may negotiate works end to end, against upstreams
//! that hold the version header to what the session negotiated.

use hawser_e2e::harness::mcp::{McpClient, text};
use hawser_e2e::harness::stack::{Fixture, Gateway, PythonServer};
use serde_json::json;

const REVISIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];

/// Initializes at `version` on both endpoints and calls `echo` through each.
async fn call_at_every_revision(gateway: &Gateway, connection: &str) {
    for version in REVISIONS {
        for (url, tool) in [
            (
                format!("{}/{connection}", gateway.mcp_url()),
                "echo".to_owned(),
            ),
            (gateway.mcp_url(), format!("{connection}__echo")),
        ] {
            let mut client = McpClient::new(&url);
            let init = client.initialize_version(version).await;
            assert_eq!(
                init.result()["protocolVersion"],
                version,
                "{url} negotiates what the client asked for"
            );
            let r = client.call(&tool, json!({"text": version})).await;
            assert_eq!(
                text(r.result()),
                version,
                "{url} at {version}: {:?}",
                r.messages
            );
        }
    }
}

#[tokio::test]
async fn older_revisions_call_tools_on_a_strict_rmcp_upstream() {
    let fixture = Fixture::start(&[]);
    let gateway = Gateway::in_front_of(&fixture).await;
    McpClient::connect(&gateway.mcp_url())
        .await
        .wait_for_tool("fx__echo")
        .await;
    call_at_every_revision(&gateway, "fx").await;

    // Each upstream session was opened with the header saying what the body says.
    let events = fixture.events().await;
    let inits: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == "initialize")
        .collect();
    for version in REVISIONS {
        assert!(
            inits.iter().any(|e| e["protocolVersion"] == version),
            "no upstream session at {version}: {inits:#?}"
        );
    }
    for e in inits {
        assert_eq!(
            e["headers"]["mcp-protocol-version"], e["protocolVersion"],
            "{e}"
        );
    }
}

#[tokio::test]
async fn older_revisions_call_tools_on_a_strict_python_sdk_upstream() {
    let upstream = PythonServer::start("strict_server.py", &[]);
    let gateway = Gateway::start(
        &format!(
            "connections:\n  - name: py\n    url: {}\n",
            upstream.mcp_url()
        ),
        &[],
    );
    gateway.wait_ready().await;
    McpClient::connect(&gateway.mcp_url())
        .await
        .wait_for_tool("py__echo")
        .await;
    call_at_every_revision(&gateway, "py").await;
}
