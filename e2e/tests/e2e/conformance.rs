//! The official MCP conformance suite, run against the fixture directly and through
//! the gateway's `/mcp/{connection}`: every active scenario passes both ways, with the
//! same checks, in both pinned lines (0.1: 2025-11-25; 0.2: 2026-07-28 scenarios).

use std::collections::BTreeMap;
use std::time::Duration;

use hawser_e2e::harness::stack::{Fixture, Gateway};
use hawser_e2e::harness::tools;

/// The 0.1 line (2025-11-25 scenarios).
const SUITE_2025: &str = "@modelcontextprotocol/conformance";
/// The 0.2 line (adds 2026-07-28 scenarios), installed under an alias.
const SUITE_2026: &str = "conformance-2026";

/// Runs the suite against `url`; returns passed/failed checks per scenario.
async fn run_suite(url: &str) -> Results {
    run(SUITE_2025, url, &[]).await
}

/// Runs `package` (one of the pinned suites) against `url` with `extra` arguments.
async fn run(package: &str, url: &str, extra: &[&str]) -> Results {
    let suite = tools::e2e_dir()
        .join("conformance/node_modules")
        .join(package)
        .join("dist/index.js");
    assert!(
        suite.exists(),
        "conformance suite not installed: run scripts/setup-test-deps"
    );
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let mut cmd = tokio::process::Command::new(tools::node());
    cmd.arg(&suite)
        .args(["server", "--url", url])
        .args(extra)
        .current_dir(dir.path())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("conformance suite against {url} timed out"))
        .unwrap_or_else(|e| panic!("cannot run the conformance suite: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut scenarios = BTreeMap::new();
    // Summary lines read "✓ tools-list: 1 passed, 0 failed" (✗ when failing).
    for line in stdout.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("✓ ").or_else(|| line.strip_prefix("✗ ")) else {
            continue;
        };
        let Some((name, counts)) = rest.split_once(": ") else {
            continue;
        };
        let nums: Vec<u32> = counts
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|s| s.parse().ok())
            .collect();
        if let [passed, failed] = nums[..] {
            scenarios.insert(name.to_owned(), (passed, failed));
        }
    }
    (scenarios, stdout)
}

/// A gateway in front of `fixture` as the connection `everything`, once it is loaded.
async fn gateway_for(fixture: &Fixture) -> Gateway {
    let gateway = Gateway::start(
        &format!(
            "connections:\n  - name: everything\n    url: {}\n",
            fixture.mcp_url()
        ),
        &[],
    );
    gateway.wait_ready().await;
    // Wait until the connection has been discovered.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !gateway
        .child
        .lines()
        .iter()
        .any(|l| l.contains("connection loaded"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "connection never loaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gateway
}

#[tokio::test]
async fn every_active_scenario_passes_through_the_gateway_as_it_does_directly() {
    let fixture = Fixture::start(&["--name", "conformance"]);
    let gateway = gateway_for(&fixture).await;
    let direct = run_suite(&fixture.mcp_url()).await;
    let proxied = run_suite(&format!("{}/everything", gateway.mcp_url())).await;
    assert_all_pass_alike(direct, proxied);
}

/// Passed and failed checks per scenario, and the suite's output.
type Results = (BTreeMap<String, (u32, u32)>, String);

/// Enough scenarios ran, every one passed directly and through the gateway, with the
/// same checks.
fn assert_all_pass_alike((direct, direct_out): Results, (proxied, proxied_out): Results) {
    assert!(
        direct.len() >= 25,
        "too few scenarios ran directly:\n{direct_out}"
    );
    let failing: Vec<_> = direct.iter().filter(|(_, (_, f))| *f > 0).collect();
    assert!(
        failing.is_empty(),
        "the fixture itself fails {failing:?}:\n{direct_out}"
    );
    let failing: Vec<_> = proxied.iter().filter(|(_, (_, f))| *f > 0).collect();
    assert!(
        failing.is_empty(),
        "through the gateway, failing: {failing:?}:\n{proxied_out}"
    );
    assert_eq!(
        proxied, direct,
        "the gateway must give the same results as the fixture"
    );
}

/// The 0.2 line against a dual-era upstream: its active suite (legacy clients of every
/// revision) passes through the gateway as directly; its 2026-07-28 requirements
/// (`--requirements 2026-07-28`) do no worse through the gateway on any scenario.
/// (The fixture itself does not implement every 2026-07-28 scenario's tools, so some
/// fail both ways.)
#[tokio::test]
async fn the_2026_07_28_line_passes_through_the_gateway_at_least_as_it_does_directly() {
    let fixture = Fixture::start(&["--name", "conformance", "--era", "dual"]);
    let gateway = gateway_for(&fixture).await;
    let through = format!("{}/everything", gateway.mcp_url());

    let (direct, direct_out) = run(SUITE_2026, &fixture.mcp_url(), &[]).await;
    let (proxied, proxied_out) = run(SUITE_2026, &through, &[]).await;
    assert!(
        direct.len() >= 25,
        "too few scenarios ran directly:\n{direct_out}"
    );
    let failing: Vec<_> = direct.iter().filter(|(_, (_, f))| *f > 0).collect();
    assert!(
        failing.is_empty(),
        "the fixture itself fails {failing:?}:\n{direct_out}"
    );
    assert_eq!(
        proxied, direct,
        "the gateway must give the same results as the fixture:\n{proxied_out}"
    );

    let modern = ["--requirements", "2026-07-28"];
    let (direct, direct_out) = run(SUITE_2026, &fixture.mcp_url(), &modern).await;
    let (proxied, proxied_out) = run(SUITE_2026, &through, &modern).await;
    assert!(
        direct.len() >= 40 && direct.keys().any(|k| k.starts_with("input-required")),
        "too few 2026-07-28 scenarios ran:\n{direct_out}"
    );
    assert_eq!(
        proxied.keys().collect::<Vec<_>>(),
        direct.keys().collect::<Vec<_>>(),
        "the same scenarios run both ways:\n{proxied_out}"
    );
    let worse: Vec<_> = direct
        .iter()
        .filter(|(name, (passed, _))| proxied.get(*name).is_none_or(|(p, _)| p < passed))
        .map(|(name, d)| (name, d, proxied.get(name)))
        .collect();
    assert!(
        worse.is_empty(),
        "scenarios that pass fewer checks through the gateway (direct, through): {worse:?}\n{proxied_out}"
    );
}
