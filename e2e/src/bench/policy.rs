//! `hawser-bench policy`: what policy evaluation and rate limiting cost per call. Three
//! gateways in front of one fixture, measured in the same run: no policies (the
//! baseline); 100 policies of 20 rules of which one governs the called connection
//! (with conditions on the arguments); and all 100 governing it (the worst case), with
//! a rate limit too high to refuse anything.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::json;

use super::{load, report};
use crate::harness::stack::{Fixture, Gateway};

const TOKEN: &str = "bench-policy-token";

/// 100 policies of 20 rules; the first `on_fx` target `fx`, the rest other names.
pub fn policies(on_fx: usize, limit: bool) -> String {
    let mut out = String::from("policies:\n");
    for p in 0..100 {
        let target = if p < on_fx {
            "fx".to_owned()
        } else {
            format!("conn-{p}")
        };
        let _ = writeln!(
            out,
            "  - name: p{p}\n    targetRefs: [{{name: {target}}}]\n    rules:"
        );
        for r in 0..18 {
            let _ = writeln!(
                out,
                "      - {{groups: [\"team-{p}-{r}\"], tools: [\"*\"]}}"
            );
        }
        let _ = writeln!(
            out,
            "      - {{groups: [bench], tools: [echo], when: \"args.text == 'hello'\"}}"
        );
        let _ = writeln!(
            out,
            "      - {{tools: [\"echo\"], effect: deny, when: \"args.text == 'forbidden-{p}'\"}}"
        );
        if limit && p == 0 {
            let _ = writeln!(
                out,
                "    rateLimits: [{{by: [subject], tools: [echo], requests: 100000000, per: 1s}}]"
            );
        }
    }
    out
}

fn gateway(fixture: &Fixture, extra: &str, threads: &str) -> Gateway {
    Gateway::start(
        &format!(
            "clientAuth:\n  tokens: [{{subject: bench, token: {TOKEN}, groups: [bench]}}]\nconnections:\n  - name: fx\n    url: {}\n{extra}",
            fixture.mcp_url()
        ),
        &[("RUST_LOG", "warn"), ("HAWSER_WORKER_THREADS", threads)],
    )
}

pub async fn run(warmup: Duration, duration: Duration, threads: &str) -> anyhow::Result<()> {
    // The harness client installs the TLS crypto provider reqwest needs.
    let plain = crate::harness::http();
    let fixture = Fixture::start_with_env(&["--name", "bench"], &[("TOKIO_WORKER_THREADS", "1")]);
    let gateways = [
        ("no policies", gateway(&fixture, "", threads)),
        (
            "100 policies, 1 on fx",
            gateway(&fixture, &policies(1, false), threads),
        ),
        (
            "100 policies on fx + limit",
            gateway(&fixture, &policies(100, true), threads),
        ),
    ];
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {TOKEN}").parse()?,
    );
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(256)
        .build()?;
    for (_, g) in &gateways {
        g.wait_ready().await;
    }
    println!("# policy: tools/call echo by caller of group bench (baseline: no policies)");
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
        for (label, g) in &gateways {
            let pid = g.child.id();
            let (sample, cpu_us) = super::measured(
                &http,
                &g.mcp_url(),
                "fx__echo",
                args.clone(),
                concurrency,
                warmup,
                duration,
                pid,
            )
            .await?;
            let base = *baseline.get_or_insert(cpu_us);
            println!(
                "{}  gateway CPU {cpu_us:.1}µs/call ({:+.1} vs no policies)",
                report::row(label, &direct, &sample),
                cpu_us - base
            );
            results.push(json!({
                "setup": label, "concurrency": concurrency,
                "gateway_rps": sample.throughput(), "gateway_p50_us": sample.percentile_us(0.5),
                "gateway_cpu_us_per_call": cpu_us, "cpu_us_vs_baseline": cpu_us - base,
                "errors": sample.errors,
            }));
        }
    }
    println!("{}", json!({"bench": "policy", "results": results}));
    Ok(())
}
