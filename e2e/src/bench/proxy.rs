//! `hawser-bench proxy`: Hawser side by side with a bare HTTP hop. Every phase calls one
//! upstream directly, through nginx `proxy_pass` (upstream keep-alive, no buffering:
//! the cheapest proxy there is), and through Hawser in several settings, in the same
//! run; each Hawser row is reported as ratios to nginx (CPU per call, added p50) and to
//! the direct calls (throughput), because absolute figures move with the host.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;

use super::{load, proc_stats};
use crate::harness::nginx::Nginx;
use crate::harness::process::Child;
use crate::harness::stack::{Fixture, Gateway};
use crate::oauth::{Config, MintRequest, MockOAuth};

/// What one target of a phase is: where the calls go and whose CPU they cost.
struct Target<'a> {
    label: String,
    load: load::Load<'a>,
    http: reqwest::Client,
    /// Process whose CPU (with its children's) is charged to the calls; none for the
    /// direct calls.
    pid: Option<u32>,
}

/// One measured target.
struct Measured {
    sample: load::Sample,
    cpu_us: f64,
}

async fn measure(
    target: &Target<'_>,
    args: &serde_json::Value,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Measured> {
    let cpu = |pid: Option<u32>| pid.and_then(proc_stats::tree_cpu_seconds).unwrap_or(0.0);
    let before = cpu(target.pid);
    let sample = load::run_as(
        &target.http,
        target.load,
        args.clone(),
        concurrency,
        warmup,
        duration,
    )
    .await?;
    let spent = cpu(target.pid) - before;
    // Warm-up calls cost CPU too: divide by every call made, not just the measured ones.
    let cpu_us = spent * 1e6 / sample.all_calls.max(1) as f64;
    Ok(Measured { sample, cpu_us })
}

/// A phase: one upstream, its baselines, and the Hawser settings measured against them.
struct Phase<'a> {
    label: &'static str,
    direct: load::Load<'a>,
    nginx: load::Load<'a>,
    nginx_pid: u32,
    args: serde_json::Value,
    hawser: Vec<Target<'a>>,
    concurrencies: &'static [usize],
    /// Restarted before each measurement (an upstream that slows down as it is used).
    fresh: Option<&'a std::sync::Mutex<TypeScriptServer>>,
}

impl Phase<'_> {
    fn refresh(&self) -> anyhow::Result<()> {
        match self.fresh {
            Some(server) => server
                .lock()
                .map_err(|_| anyhow::anyhow!("upstream lock poisoned"))?
                .restart(),
            None => Ok(()),
        }
    }
}

async fn run_phase(
    phase: &Phase<'_>,
    http: &reqwest::Client,
    warmup: Duration,
    duration: Duration,
    results: &mut Vec<serde_json::Value>,
) -> anyhow::Result<()> {
    println!("## {}", phase.label);
    for &c in phase.concurrencies {
        phase.refresh()?;
        let direct = measure(
            &Target {
                label: "direct".into(),
                load: phase.direct,
                http: http.clone(),
                pid: None,
            },
            &phase.args,
            c,
            warmup,
            duration,
        )
        .await?;
        phase.refresh()?;
        let nginx = measure(
            &Target {
                label: "nginx".into(),
                load: phase.nginx,
                http: http.clone(),
                pid: Some(phase.nginx_pid),
            },
            &phase.args,
            c,
            warmup,
            duration,
        )
        .await?;
        let (d50, n50) = (
            direct.sample.percentile_us(0.5),
            nginx.sample.percentile_us(0.5),
        );
        println!(
            "c={c:<3} {:<44} {:>8.0}/s p50 {:>6.0}µs",
            "direct",
            direct.sample.throughput(),
            d50
        );
        println!(
            "c={c:<3} {:<44} {:>8.0}/s p50 {:>6.0}µs  ×{:.2} direct  added p50 {:+.0}µs  CPU {:.1}µs/call",
            "nginx proxy_pass",
            nginx.sample.throughput(),
            n50,
            nginx.sample.throughput() / direct.sample.throughput(),
            n50 - d50,
            nginx.cpu_us,
        );
        for target in &phase.hawser {
            phase.refresh()?;
            let m = measure(target, &phase.args, c, warmup, duration).await?;
            let p50 = m.sample.percentile_us(0.5);
            let cpu_ratio = m.cpu_us / nginx.cpu_us;
            let added_ratio = (p50 - d50) / (n50 - d50);
            println!(
                "c={c:<3} {:<44} {:>8.0}/s p50 {:>6.0}µs  ×{:.2} direct  added p50 {:+.0}µs (×{added_ratio:.2} nginx)  CPU {:.1}µs/call (×{cpu_ratio:.2} nginx)  errors {}",
                target.label,
                m.sample.throughput(),
                p50,
                m.sample.throughput() / direct.sample.throughput(),
                p50 - d50,
                m.cpu_us,
                m.sample.errors,
            );
            results.push(json!({
                "phase": phase.label, "target": target.label, "concurrency": c,
                "direct_rps": direct.sample.throughput(),
                "nginx_rps": nginx.sample.throughput(),
                "hawser_rps": m.sample.throughput(),
                "throughput_vs_direct": m.sample.throughput() / direct.sample.throughput(),
                "nginx_throughput_vs_direct": nginx.sample.throughput() / direct.sample.throughput(),
                "direct_p50_us": d50, "nginx_p50_us": n50, "hawser_p50_us": p50,
                "hawser_p99_us": m.sample.percentile_us(0.99),
                "added_p50_vs_nginx": added_ratio,
                "nginx_cpu_us_per_call": nginx.cpu_us, "hawser_cpu_us_per_call": m.cpu_us,
                "cpu_vs_nginx": cpu_ratio,
                "errors": direct.sample.errors + nginx.sample.errors + m.sample.errors,
            }));
        }
    }
    Ok(())
}

/// The TypeScript SDK's example Streamable HTTP server (sessions, SSE answers with
/// event ids for resumability), from the conformance suite's dependencies. It keeps
/// every session and event in memory and slows down as they pile up, so each
/// measurement gets a fresh one on the same port (Hawser re-opens its upstream
/// session when the old one is gone).
struct TypeScriptServer {
    child: Option<Child>,
    port: u16,
}

impl TypeScriptServer {
    fn start() -> anyhow::Result<Self> {
        let mut server = Self {
            child: None,
            port: crate::harness::free_port(),
        };
        server.restart()?;
        Ok(server)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    fn restart(&mut self) -> anyhow::Result<()> {
        if let Some(mut old) = self.child.take() {
            old.terminate(Duration::from_secs(3));
        }
        let script = crate::harness::tools::e2e_dir().join(
            "conformance/node_modules/@modelcontextprotocol/sdk/dist/esm/examples/server/simpleStreamableHttp.js",
        );
        anyhow::ensure!(
            script.exists(),
            "{} missing: run scripts/setup-test-deps",
            script.display()
        );
        let mut cmd = std::process::Command::new(crate::harness::tools::node());
        cmd.arg(&script)
            .env("MCP_PORT", self.port.to_string())
            .env("MCP_AUTH_PORT", crate::harness::free_port().to_string());
        self.child = Some(Child::spawn("typescript-server", &mut cmd));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "the TypeScript server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

const ADMIN: &str = "bench-admin-token-0123456789";

pub async fn run(warmup: Duration, duration: Duration) -> anyhow::Result<()> {
    let http = crate::harness::http();
    let one = [("TOKIO_WORKER_THREADS", "1")];
    let fixture = Fixture::start_with_env(&["--name", "bench"], &one);
    let modern = Fixture::start_with_env(&["--name", "bench-modern", "--era", "modern"], &one);
    let ts = std::sync::Mutex::new(TypeScriptServer::start()?);
    let ts_url = ts
        .lock()
        .map_err(|_| anyhow::anyhow!("upstream lock poisoned"))?
        .url();
    let upstream_base = |url: &str| url.trim_end_matches("/mcp").to_owned();
    let nginx_fx = Nginx::start(&[upstream_base(&fixture.mcp_url())]);
    let nginx_mx = Nginx::start(&[upstream_base(&modern.mcp_url())]);
    let nginx_ts = Nginx::start(&[upstream_base(&ts_url)]);
    let connections = format!(
        "connections:\n  - name: fx\n    url: {}\n  - name: mx\n    url: {}\n  - name: ts\n    url: {}\n",
        fixture.mcp_url(),
        modern.mcp_url(),
        ts_url
    );
    // The settings a user gets (worker threads from the CPU quota), and one thread.
    let default = Gateway::start(&connections, &[("RUST_LOG", "warn")]);
    let single = Gateway::start(
        &connections,
        &[("RUST_LOG", "warn"), ("HAWSER_WORKER_THREADS", "1")],
    );
    // Everything of this wave on: OIDC access tokens, 100 policies governing the
    // connection with a rate limit, the audit log in Postgres, traces sampled at 1 %.
    let mock = MockOAuth::start(Config {
        jwt: true,
        access_ttl: Duration::from_secs(3600),
        ..Config::default()
    })
    .await?;
    let db = crate::harness::test_db().await;
    let received = std::sync::Arc::new(super::traces::Received::default());
    let sink = super::traces::start_sink(received).await?;
    let port = crate::harness::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let featured = Gateway::start_at(
        &format!("127.0.0.1:{port}"),
        &format!(
            "publicUrl: {base}\nclientAuth:\n  oidc: {{issuer: \"{}\"}}\n{connections}{}",
            mock.issuer(),
            super::policy::policies(1, true),
        ),
        &[
            ("RUST_LOG", "warn"),
            ("HAWSER_ADMIN_TOKEN", ADMIN),
            ("DATABASE_URL", &db.url),
            (
                "HAWSER_ENCRYPTION_KEYS",
                "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            ),
            ("HAWSER_AUDIT_ENABLED", "true"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &sink),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.01"),
        ],
        &[],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let jwt = mock.mint(&MintRequest {
        claims: json!({"iss": mock.issuer(), "sub": "bench", "aud": format!("{base}/mcp"),
            "exp": now + 3600, "iat": now, "groups": ["bench"], "scope": "mcp"}),
        ..MintRequest::default()
    })?;
    let signed_in = super::bearer_client(&jwt)?;
    for g in [&default, &single, &featured] {
        g.wait_ready().await;
    }
    for (g, client) in [(&default, &http), (&single, &http), (&featured, &signed_in)] {
        for tool in ["fx__echo", "mx__echo", "ts__greet"] {
            if let Err(e) = super::wait_for_tool(client, &g.mcp_url(), tool).await {
                anyhow::bail!("{e:#}; the gateway said:\n{}", g.child.lines().join("\n"));
            }
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, usize::from);

    let urls = |g: &Gateway, name: &str| (g.mcp_url(), format!("{}/{name}", g.mcp_url()));
    let (default_all, default_fx) = urls(&default, "fx");
    let (_, single_fx) = urls(&single, "fx");
    let (_, featured_fx) = urls(&featured, "fx");
    let (_, default_mx) = urls(&default, "mx");
    let (_, single_mx) = urls(&single, "mx");
    let (_, default_ts) = urls(&default, "ts");
    let (_, single_ts) = urls(&single, "ts");
    let (nfx, nmx, nts) = (nginx_fx.mcp_url(), nginx_mx.mcp_url(), nginx_ts.mcp_url());
    let (fx_url, mx_url) = (fixture.mcp_url(), modern.mcp_url());
    use load::Era::{Legacy, Modern};
    let at = |era, url, tool| load::Load { era, url, tool };
    let target = |label: &str, load, http: &reqwest::Client, g: &Gateway| Target {
        label: label.to_owned(),
        load,
        http: http.clone(),
        pid: Some(g.child.id()),
    };
    let default_label = format!("hawser ({threads} threads, the default)");
    let phases = [
        Phase {
            label: "fixture, 2025-11-25 client",
            direct: at(Legacy, &fx_url, "echo"),
            nginx: at(Legacy, &nfx, "echo"),
            nginx_pid: nginx_fx.child.id(),
            args: json!({"text": "hello"}),
            hawser: vec![
                target(
                    &format!("{default_label} /mcp/fx"),
                    at(Legacy, &default_fx, "echo"),
                    &http,
                    &default,
                ),
                target(
                    "hawser (1 thread) /mcp/fx",
                    at(Legacy, &single_fx, "echo"),
                    &http,
                    &single,
                ),
                target(
                    "hawser (default) /mcp, prefixed",
                    at(Legacy, &default_all, "fx__echo"),
                    &http,
                    &default,
                ),
                target(
                    "hawser (default) /mcp/fx, 2026-07-28 client",
                    at(Modern, &default_fx, "echo"),
                    &http,
                    &default,
                ),
                target(
                    "hawser (default) OIDC+100 policies+limit+audit+1% traces",
                    at(Legacy, &featured_fx, "echo"),
                    &signed_in,
                    &featured,
                ),
            ],
            concurrencies: &[1, 16, 64],
            fresh: None,
        },
        Phase {
            label: "2026-07-28 fixture, 2026-07-28 client",
            direct: at(Modern, &mx_url, "echo"),
            nginx: at(Modern, &nmx, "echo"),
            nginx_pid: nginx_mx.child.id(),
            args: json!({"text": "hello"}),
            hawser: vec![
                target(
                    "hawser (default) /mcp/mx",
                    at(Modern, &default_mx, "echo"),
                    &http,
                    &default,
                ),
                target(
                    "hawser (1 thread) /mcp/mx",
                    at(Modern, &single_mx, "echo"),
                    &http,
                    &single,
                ),
            ],
            concurrencies: &[1, 16],
            fresh: None,
        },
        Phase {
            label: "TypeScript SDK server (SSE answers with event ids), 2025-11-25 client",
            direct: at(Legacy, &ts_url, "greet"),
            nginx: at(Legacy, &nts, "greet"),
            nginx_pid: nginx_ts.child.id(),
            args: json!({"name": "bench"}),
            hawser: vec![
                target(
                    "hawser (default) /mcp/ts",
                    at(Legacy, &default_ts, "greet"),
                    &http,
                    &default,
                ),
                target(
                    "hawser (1 thread) /mcp/ts",
                    at(Legacy, &single_ts, "greet"),
                    &http,
                    &single,
                ),
            ],
            concurrencies: &[1, 16],
            fresh: Some(&ts),
        },
    ];
    println!(
        "# proxy: tools/call, direct vs nginx proxy_pass vs hawser; ratios are to nginx (CPU, added p50) and to direct (throughput)"
    );
    let mut results = Vec::new();
    for phase in &phases {
        run_phase(phase, &http, warmup, duration, &mut results).await?;
    }
    let rss = proc_stats::peak_rss_mib(default.child.id()).context("reading peak RSS")?;
    println!("hawser (default) peak RSS {rss:.1} MiB");
    println!(
        "{}",
        json!({"bench": "proxy", "threads": threads, "results": results, "hawser_peak_rss_mib": rss})
    );
    Ok(())
}
