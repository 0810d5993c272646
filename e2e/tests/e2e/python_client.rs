//! The aggregated endpoint driven by the official MCP Python SDK.

use std::process::Stdio;
use std::time::Duration;

use hawser_e2e::harness::stack::{Fixture, Gateway, python_script, run_python};
use hawser_e2e::harness::tools;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn config(fixture: &Fixture, name: &str) -> String {
    format!(
        "connections:\n  - name: {name}\n    url: {}\n    timeouts: {{ connect: 2s, call: 30s }}\n",
        fixture.mcp_url()
    )
}

#[tokio::test]
async fn python_sdk_lists_calls_streams_progress_elicits_and_cancels() {
    let fixture = Fixture::start(&[]);
    let gateway = Gateway::start(&config(&fixture, "fx"), &[]);
    gateway.wait_ready().await;
    let out = run_python(
        &python_script("aggregated.py"),
        &[&gateway.mcp_url(), &fixture.base, "fx"],
        Duration::from_secs(120),
    )
    .await;
    let report: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(
        report["upstream_cancel_events"].as_u64() >= Some(1),
        "{report}"
    );
}

#[tokio::test]
async fn an_upstream_killed_and_restarted_fails_clearly_then_recovers() {
    let mut fixture = Fixture::start(&[]);
    let gateway = Gateway::start(&config(&fixture, "flappy"), &[]);
    gateway.wait_ready().await;

    let mut child = tokio::process::Command::new(tools::python())
        .arg(python_script("restart.py"))
        .args([&gateway.mcp_url(), "flappy"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start restart.py: {e}"));
    let mut stdin = child.stdin.take().unwrap_or_else(|| panic!("stdin"));
    let mut lines = BufReader::new(child.stdout.take().unwrap_or_else(|| panic!("stdout"))).lines();
    let mut report = String::new();
    let run = async {
        while let Some(line) = lines.next_line().await.unwrap_or(None) {
            match line.as_str() {
                "KILL" => {
                    fixture.kill();
                    stdin
                        .write_all(b"KILLED\n")
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                }
                "RESTART" => {
                    fixture.restart();
                    stdin
                        .write_all(b"RESTARTED\n")
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                }
                other => report = other.to_owned(),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .unwrap_or_else(|_| panic!("restart.py timed out"));
    let status = child.wait().await.unwrap_or_else(|e| panic!("{e}"));
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut e, &mut stderr).await;
    }
    assert!(status.success(), "restart.py failed: {stderr}\n{report}");
    let report: serde_json::Value =
        serde_json::from_str(&report).unwrap_or_else(|e| panic!("{e}: {report}"));
    let down = report["down_error"].as_str().unwrap_or_default();
    assert!(
        down.contains("flappy"),
        "error while down must name the connection: {down}"
    );
}
