//! `hawser-bench identity`: what each way of authenticating costs per call. One
//! gateway accepts a static token, an API key and an OIDC access token (checked
//! against a mock provider's keys); the static token is the baseline measured in the
//! same run, and the fixture called directly gives the context.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;

use super::{load, report};
use crate::harness::stack::{Fixture, Gateway};
use crate::oauth::{Config, MintRequest, MockOAuth};

const ADMIN: &str = "bench-admin-token-0123456789";
const STATIC: &str = "bench-static-token";

pub async fn run(warmup: Duration, duration: Duration, threads: &str) -> anyhow::Result<()> {
    let mock = MockOAuth::start(Config {
        jwt: true,
        access_ttl: Duration::from_secs(3600),
        ..Config::default()
    })
    .await?;
    let fixture = Fixture::start_with_env(&["--name", "bench"], &[("TOKIO_WORKER_THREADS", "1")]);
    let port = crate::harness::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let gateway = Gateway::start_at(
        &format!("127.0.0.1:{port}"),
        &format!(
            "publicUrl: {base}\nclientAuth:\n  oidc: {{issuer: \"{}\"}}\n  apiKeys: true\n  tokens:\n    - {{subject: bench, token: {STATIC}}}\nconnections:\n  - name: fx\n    url: {}\n",
            mock.issuer(),
            fixture.mcp_url()
        ),
        &[
            ("RUST_LOG", "warn"),
            ("HAWSER_WORKER_THREADS", threads),
            ("HAWSER_ADMIN_TOKEN", ADMIN),
        ],
        &[],
    );
    gateway.wait_ready().await;
    let plain = crate::harness::http();
    let issued: serde_json::Value = plain
        .post(format!("{base}/api/v1/apikeys"))
        .bearer_auth(ADMIN)
        .json(&json!({"subject": "bench"}))
        .send()
        .await?
        .json()
        .await?;
    let api_key = issued["key"]
        .as_str()
        .context("no API key issued")?
        .to_owned();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let jwt = mock.mint(&MintRequest {
        claims: json!({"iss": mock.issuer(), "sub": "bench", "aud": format!("{base}/mcp"),
            "exp": now + 3600, "iat": now, "groups": ["eng"], "scope": "mcp"}),
        ..MintRequest::default()
    })?;
    let pid = gateway.child.id();
    let url = gateway.mcp_url();
    println!("# identity: tools/call echo through hawser, by credential (baseline: static token)");
    let mut results = Vec::new();
    for concurrency in [1, 16] {
        let args = json!({"text": "hello"});
        let direct = load::run(
            &plain,
            &fixture.mcp_url(),
            "echo",
            args.clone(),
            concurrency,
            warmup,
            duration,
        )
        .await?;
        let mut baseline = None;
        for (label, token) in [
            ("static token", STATIC),
            ("API key", api_key.as_str()),
            ("OIDC JWT", jwt.as_str()),
        ] {
            let http = super::bearer_client(token)?;
            let (sample, cpu_us) = super::measured(
                &http,
                &url,
                "fx__echo",
                args.clone(),
                concurrency,
                warmup,
                duration,
                pid,
            )
            .await?;
            let base_cpu = *baseline.get_or_insert(cpu_us);
            println!(
                "{}  gateway CPU {cpu_us:.1}µs/call ({:+.1} vs static)",
                report::row(label, &direct, &sample),
                cpu_us - base_cpu
            );
            results.push(json!({
                "credential": label, "concurrency": concurrency,
                "gateway_rps": sample.throughput(), "direct_rps": direct.throughput(),
                "gateway_p50_us": sample.percentile_us(0.5), "gateway_cpu_us_per_call": cpu_us,
                "cpu_us_vs_static": cpu_us - base_cpu, "errors": sample.errors,
            }));
        }
    }
    println!("{}", json!({"bench": "identity", "results": results}));
    Ok(())
}
