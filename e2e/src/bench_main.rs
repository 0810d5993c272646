//! `hawser-bench`: runs the benchmarks and prints what docs/performance.md quotes.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde_json::json;

use crate::bench::{load, proc_stats, report};
use crate::harness::stack::{Fixture, Gateway};

/// Benchmarks Hawser against a baseline measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "hawser-bench")]
struct Cli {
    #[command(subcommand)]
    bench: Option<Bench>,
    /// Measured time per phase.
    #[arg(long, default_value = "5", global = true)]
    seconds: u64,
    /// Warm-up time per phase (not measured).
    #[arg(long, default_value = "1", global = true)]
    warmup: u64,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// tools/call at concurrency 1, 16 and 64, directly and through one gateway.
    Proxy,
    /// Sends a fixed number of calls to a running endpoint (for profiling).
    Drive {
        /// MCP endpoint URL.
        #[arg(long)]
        url: String,
        /// Tool to call.
        #[arg(long, default_value = "echo")]
        tool: String,
        /// Calls per worker.
        #[arg(long, default_value = "1000")]
        calls: u64,
        /// Workers, each with its own session.
        #[arg(long, default_value = "1")]
        concurrency: usize,
    },
}

/// Entry point of the `hawser-bench` binary.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let warmup = Duration::from_secs(cli.warmup);
    let duration = Duration::from_secs(cli.seconds);
    match cli.bench.unwrap_or(Bench::Proxy) {
        Bench::Proxy => proxy(warmup, duration).await,
        Bench::Drive {
            url,
            tool,
            calls,
            concurrency,
        } => drive(&url, &tool, calls, concurrency).await,
    }
}

async fn drive(url: &str, tool: &str, calls: u64, concurrency: usize) -> anyhow::Result<()> {
    let http = crate::harness::http();
    let mut sessions = Vec::new();
    for _ in 0..concurrency {
        sessions
            .push(load::Session::open(http.clone(), url, tool, json!({"text": "hello"})).await?);
    }
    let started = std::time::Instant::now();
    let workers = sessions.into_iter().map(|s| {
        tokio::spawn(async move {
            let mut ok = 0u64;
            for _ in 0..calls {
                if s.call().await {
                    ok += 1;
                }
            }
            ok
        })
    });
    let mut ok = 0;
    for w in futures::future::join_all(workers).await {
        ok += w?;
    }
    println!("{ok} calls succeeded in {:?}", started.elapsed());
    Ok(())
}

async fn proxy(warmup: Duration, duration: Duration) -> anyhow::Result<()> {
    let http = crate::harness::http();
    // One worker thread each: three busy processes share two cores, and the fixture
    // itself is fastest single-threaded (it is the baseline, so it runs at its best).
    let fixture = Fixture::start_with_env(&["--name", "bench"], &[("TOKIO_WORKER_THREADS", "1")]);
    let gateway = Gateway::start(
        &format!(
            "connections:\n  - name: fx\n    url: {}\n",
            fixture.mcp_url()
        ),
        &[
            ("RUST_LOG", "warn"),
            ("HAWSER_WORKER_THREADS", &gateway_threads()),
        ],
    );
    gateway.wait_ready().await;
    wait_for_tool(&http, &gateway.mcp_url(), "fx__echo").await?;
    let pid = gateway.child.id();
    let args = json!({"text": "hello"});
    println!("# proxy: tools/call echo, direct vs through hawser (/mcp, names prefixed)");
    let mut results = Vec::new();
    for concurrency in [1, 16, 64] {
        let direct = load::run(
            &http,
            &fixture.mcp_url(),
            "echo",
            args.clone(),
            concurrency,
            warmup,
            duration,
        )
        .await?;
        let (user_before, sys_before) =
            proc_stats::cpu_split(pid).context("reading gateway CPU time")?;
        let proxied = load::run(
            &http,
            &gateway.mcp_url(),
            "fx__echo",
            args.clone(),
            concurrency,
            warmup,
            duration,
        )
        .await?;
        let (user_after, sys_after) =
            proc_stats::cpu_split(pid).context("reading gateway CPU time")?;
        // The warm-up calls used CPU too: spread it over every call made.
        let total_calls =
            proxied.calls as f64 * (1.0 + warmup.as_secs_f64() / duration.as_secs_f64());
        let user_us = (user_after - user_before) * 1e6 / total_calls;
        let sys_us = (sys_after - sys_before) * 1e6 / total_calls;
        let cpu_us_per_call = user_us + sys_us;
        println!(
            "{}  gateway CPU {cpu_us_per_call:.1}µs/call (user {user_us:.1}, kernel {sys_us:.1})",
            report::row("echo", &direct, &proxied)
        );
        results.push(json!({
            "concurrency": concurrency,
            "direct_rps": direct.throughput(), "gateway_rps": proxied.throughput(),
            "ratio": proxied.throughput() / direct.throughput(),
            "direct_p50_us": direct.percentile_us(0.5), "gateway_p50_us": proxied.percentile_us(0.5),
            "direct_p99_us": direct.percentile_us(0.99), "gateway_p99_us": proxied.percentile_us(0.99),
            "added_p50_us": proxied.percentile_us(0.5) - direct.percentile_us(0.5),
            "gateway_cpu_us_per_call": cpu_us_per_call,
            "gateway_user_us_per_call": user_us,
            "gateway_kernel_us_per_call": sys_us,
            "errors": direct.errors + proxied.errors,
        }));
    }
    let rss = proc_stats::peak_rss_mib(pid).unwrap_or(f64::NAN);
    println!("gateway peak RSS {rss:.1} MiB");
    println!(
        "{}",
        json!({"bench": "proxy", "results": results, "gateway_peak_rss_mib": rss})
    );
    Ok(())
}

async fn wait_for_tool(http: &reqwest::Client, url: &str, tool: &str) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = load::Session::open(http.clone(), url, tool, json!({"text": "probe"})).await?;
        if s.call().await {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{tool} not available at {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Worker threads for the gateway under test (`HAWSER_BENCH_GATEWAY_THREADS`, default 1:
/// the gateway shares two cores with the fixture and the load driver).
fn gateway_threads() -> String {
    std::env::var("HAWSER_BENCH_GATEWAY_THREADS").unwrap_or_else(|_| "1".into())
}
