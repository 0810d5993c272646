//! `hawser-bench`: runs the benchmarks and prints what docs/performance.md quotes.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde_json::json;

use crate::bench::{load, proc_stats, wait_for_tool};
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
    /// tools/call directly, through nginx proxy_pass and through Hawser (several
    /// settings, both eras, three upstreams), reported as ratios to nginx and direct.
    Proxy,
    /// Three replicas behind nginx vs one: throughput, reload latency, and the
    /// Postgres queries made per tools/call.
    Replicas,
    /// Throughput with the audit log on vs off (shared mode, Postgres).
    Audit {
        /// Rounds, each one phase with the audit log off and one with it on, in the
        /// order off-on, then on-off, and so on: a machine that speeds up or slows
        /// down during the run favours neither side.
        #[arg(long, default_value = "8")]
        rounds: usize,
    },
    /// What a static token, an API key and an OIDC access token cost per call.
    Identity,
    /// What policy evaluation and rate limiting cost per call.
    Policy,
    /// What exporting traces costs per call: off, 1 % and 100 % sampled.
    Tracing,
    /// What pushing the metrics over OTLP costs: CPU per push, and at the default
    /// interval (use `--seconds 20` or more: the cost is small).
    MetricsPush,
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
        /// Speak 2026-07-28 (no session; envelope and headers on every call).
        #[arg(long)]
        modern: bool,
        /// The tool's arguments, as JSON.
        #[arg(long, default_value = r#"{"text": "hello"}"#)]
        arguments: String,
        /// A bearer token sent with every request (a static token, an API key or a
        /// JWT), for profiling the identity and policy checks.
        #[arg(long)]
        bearer: Option<String>,
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
        Bench::Proxy => crate::bench::proxy::run(warmup, duration).await,
        Bench::Replicas => replicas(warmup, duration).await,
        Bench::Audit { rounds } => audit(warmup, duration, rounds).await,
        Bench::Identity => crate::bench::identity::run(warmup, duration, &gateway_threads()).await,
        Bench::Policy => crate::bench::policy::run(warmup, duration, &gateway_threads()).await,
        Bench::Tracing => crate::bench::traces::run(warmup, duration, &gateway_threads()).await,
        Bench::MetricsPush => {
            crate::bench::metrics_push::run(warmup, duration, &gateway_threads()).await
        }
        Bench::Drive {
            url,
            tool,
            calls,
            concurrency,
            modern,
            arguments,
            bearer,
        } => {
            let arguments = serde_json::from_str(&arguments).context("--arguments")?;
            // The harness client also installs the TLS crypto provider reqwest needs.
            let plain = crate::harness::http();
            let http = match bearer {
                Some(token) => crate::bench::bearer_client(&token)?,
                None => plain,
            };
            drive(&http, &url, &tool, arguments, calls, concurrency, modern).await
        }
    }
}

async fn drive(
    http: &reqwest::Client,
    url: &str,
    tool: &str,
    arguments: serde_json::Value,
    calls: u64,
    concurrency: usize,
    modern: bool,
) -> anyhow::Result<()> {
    let era = if modern {
        load::Era::Modern
    } else {
        load::Era::Legacy
    };
    let mut sessions = Vec::new();
    for _ in 0..concurrency {
        sessions
            .push(load::Session::open_as(era, http.clone(), url, tool, arguments.clone()).await?);
    }
    let started = std::time::Instant::now();
    let workers = sessions.into_iter().map(|s| {
        tokio::spawn(async move {
            let mut ok = 0u64;
            let mut latencies = Vec::with_capacity(calls as usize);
            for _ in 0..calls {
                let sent = std::time::Instant::now();
                if s.call().await {
                    ok += 1;
                }
                latencies.push(sent.elapsed());
            }
            (ok, latencies)
        })
    });
    let (mut ok, mut latencies) = (0, Vec::new());
    for w in futures::future::join_all(workers).await {
        let (n, l) = w?;
        ok += n;
        latencies.extend(l);
    }
    latencies.sort_unstable();
    let p50 = latencies
        .get(latencies.len() / 2)
        .copied()
        .unwrap_or_default();
    println!(
        "{ok} calls succeeded in {:?} (p50 {} µs)",
        started.elapsed(),
        p50.as_micros()
    );
    Ok(())
}

/// Worker threads for the gateway under test (`HAWSER_BENCH_GATEWAY_THREADS`, default 1:
/// the gateway shares two cores with the fixture and the load driver).
fn gateway_threads() -> String {
    crate::harness::env_var("HAWSER_BENCH_GATEWAY_THREADS").unwrap_or_else(|| "1".into())
}

/// Queries Postgres ran so far, from pg_stat_statements (or transactions when the
/// extension is not loaded).
async fn pg_queries(db: &str) -> anyhow::Result<(i64, &'static str)> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(db).await?;
    let statements = sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&mut conn)
        .await
        .is_ok()
        && sqlx::query("SELECT 1 FROM pg_stat_statements LIMIT 1")
            .execute(&mut conn)
            .await
            .is_ok();
    if statements {
        let n: Option<i64> = sqlx::query_scalar(
            "SELECT sum(calls)::bigint FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
             WHERE d.datname = current_database() AND query NOT ILIKE '%pg_stat_statements%'",
        )
        .fetch_one(&mut conn)
        .await?;
        Ok((n.unwrap_or(0), "statements (pg_stat_statements)"))
    } else {
        let n: i64 = sqlx::query_scalar(
            "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&mut conn)
        .await?;
        Ok((n, "transactions (pg_stat_database)"))
    }
}

async fn replicas(warmup: Duration, duration: Duration) -> anyhow::Result<()> {
    use crate::harness::cluster::Cluster;
    use crate::harness::nginx::Nginx;

    let http = crate::harness::http();
    let fixture = Fixture::start_with_env(&["--name", "bench"], &[("TOKIO_WORKER_THREADS", "1")]);
    let threads = gateway_threads();
    let cluster = Cluster::start_with_env(
        3,
        "",
        &[("RUST_LOG", "warn"), ("HAWSER_WORKER_THREADS", &threads)],
    )
    .await;
    anyhow::ensure!(
        cluster
            .put_connection(0, "fx", json!({"url": fixture.mcp_url()}))
            .await
            == 201,
        "cannot create the connection"
    );
    cluster
        .wait_all("connection loaded", Duration::from_secs(30), |n| {
            n.iter().any(|t| t == "fx__echo")
        })
        .await;
    let single = Nginx::start(&[cluster.replicas[0].base.clone()]);
    let args = json!({"text": "hello"});

    println!(
        "# replicas: tools/call echo through nginx (round robin), 1 replica vs 3 replicas, c=64"
    );
    let one = load::run(
        &http,
        &single.mcp_url(),
        "fx__echo",
        args.clone(),
        64,
        warmup,
        duration,
    )
    .await?;
    reset_statements(&cluster.db.url).await;
    let (queries_before, what) = pg_queries(&cluster.db.url).await?;
    let three = load::run(
        &http,
        &cluster.lb.mcp_url(),
        "fx__echo",
        args.clone(),
        64,
        warmup,
        duration,
    )
    .await?;
    let (queries_after, _) = pg_queries(&cluster.db.url).await?;
    let total_calls = three.calls + three.errors;
    let calls_with_warmup =
        total_calls as f64 * (1.0 + warmup.as_secs_f64() / duration.as_secs_f64());
    println!(
        "1 replica  {:>8.0}/s p50 {:>7.0}µs p99 {:>7.0}µs errors {}",
        one.throughput(),
        one.percentile_us(0.5),
        one.percentile_us(0.99),
        one.errors
    );
    println!(
        "3 replicas {:>8.0}/s p50 {:>7.0}µs p99 {:>7.0}µs errors {}  (×{:.2} of 1 replica)",
        three.throughput(),
        three.percentile_us(0.5),
        three.percentile_us(0.99),
        three.errors,
        three.throughput() / one.throughput()
    );
    let queries = queries_after - queries_before;
    println!(
        "Postgres during the 3-replica phase: {queries} {what} for ~{calls_with_warmup:.0} calls ({:.4} per call)",
        queries as f64 / calls_with_warmup
    );
    for (calls, query) in top_statements(&cluster.db.url).await {
        println!("  {calls:>6}  {query}");
    }

    // The same through 3 replicas with 2026-07-28 clients: no session, so nothing to
    // look up or record per client; a call must cost no statement either.
    reset_statements(&cluster.db.url).await;
    let (modern_before, _) = pg_queries(&cluster.db.url).await?;
    let modern = load::run_as(
        &http,
        load::Load {
            era: load::Era::Modern,
            url: &cluster.lb.mcp_url(),
            tool: "fx__echo",
        },
        args.clone(),
        64,
        warmup,
        duration,
    )
    .await?;
    let (modern_after, _) = pg_queries(&cluster.db.url).await?;
    let modern_calls = (modern.calls + modern.errors) as f64
        * (1.0 + warmup.as_secs_f64() / duration.as_secs_f64());
    println!(
        "3 replicas, 2026-07-28 clients {:>8.0}/s p50 {:>7.0}µs errors {}; Postgres: {} {what} for ~{modern_calls:.0} calls",
        modern.throughput(),
        modern.percentile_us(0.5),
        modern.errors,
        modern_after - modern_before,
    );

    // Reload: an admin PUT on replica 1, until every replica serves the change.
    println!(
        "# reload: admin PUT on replica 1 until all 3 replicas list the change (includes re-dialling the upstream)"
    );
    let mut latencies = Vec::new();
    for i in 0..30 {
        let hide = i % 2 == 0;
        let spec = if hide {
            json!({"url": fixture.mcp_url(), "tools": {"exclude": ["echo"]}})
        } else {
            json!({"url": fixture.mcp_url()})
        };
        let started = std::time::Instant::now();
        anyhow::ensure!(
            cluster.put_connection(0, "fx", spec).await == 200,
            "PUT failed"
        );
        cluster
            .wait_all("reload", Duration::from_secs(10), |n| {
                n.iter().any(|t| t == "fx__echo") != hide
            })
            .await;
        latencies.push(started.elapsed().as_micros() as f64 / 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let p = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "reload visible on all replicas: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} changes",
        p(0.5),
        p(0.99),
        p(1.0),
        latencies.len()
    );
    let reload = (p(0.5), p(0.99), p(1.0));

    // Policy reload: a policy hiding echo written on replica 1 and deleted again, until
    // every replica's lists say so (no upstream is dialled: this is the policy path).
    println!("# policy reload: admin PUT/DELETE on replica 1 until all 3 replicas' lists change");
    let admin = crate::harness::http();
    let url = format!("{}/api/v1/policies/hide-echo", cluster.replicas[0].base);
    let mut policy_latencies = Vec::new();
    for i in 0..30 {
        let hide = i % 2 == 0;
        let started = std::time::Instant::now();
        let request = if hide {
            admin.put(&url).json(&json!({"targetRefs": [{"name": "fx"}],
                "rules": [{}, {"tools": ["echo"], "effect": "deny"}]}))
        } else {
            admin.delete(&url)
        };
        let status = request
            .bearer_auth(crate::harness::cluster::ADMIN_TOKEN)
            .send()
            .await?
            .status();
        anyhow::ensure!(status.is_success(), "policy write failed: {status}");
        cluster
            .wait_all("policy reload", Duration::from_secs(10), |n| {
                n.iter().any(|t| t == "fx__echo") != hide
            })
            .await;
        policy_latencies.push(started.elapsed().as_micros() as f64 / 1000.0);
    }
    policy_latencies.sort_by(f64::total_cmp);
    let q = |x: f64| policy_latencies[((policy_latencies.len() as f64 - 1.0) * x).round() as usize];
    println!(
        "policy change visible on all replicas: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} changes",
        q(0.5),
        q(0.99),
        q(1.0),
        policy_latencies.len()
    );
    println!(
        "{}",
        json!({"bench": "replicas", "one_rps": one.throughput(), "three_rps": three.throughput(),
               "pg_queries": queries, "pg_counter": what, "calls": calls_with_warmup,
               "reload_p50_ms": reload.0, "reload_p99_ms": reload.1, "reload_max_ms": reload.2,
               "policy_reload_p50_ms": q(0.5), "policy_reload_p99_ms": q(0.99),
               "policy_reload_max_ms": q(1.0)})
    );
    Ok(())
}

/// The most frequent statements (first 90 characters), to show what the store did.
async fn top_statements(db: &str) -> Vec<(i64, String)> {
    use sqlx::Connection as _;
    let Ok(mut conn) = sqlx::PgConnection::connect(db).await else {
        return Vec::new();
    };
    sqlx::query_as::<_, (i64, String)>(
        "SELECT calls, regexp_replace(left(query, 90), '\\s+', ' ', 'g') FROM pg_stat_statements s
         JOIN pg_database d ON d.oid = s.dbid
         WHERE d.datname = current_database() AND query NOT ILIKE '%pg_stat_statements%'
         ORDER BY calls DESC LIMIT 8",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap_or_default()
}

async fn reset_statements(db: &str) {
    use sqlx::Connection as _;
    if let Ok(mut conn) = sqlx::PgConnection::connect(db).await {
        let _ = sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&mut conn)
            .await;
        let _ = sqlx::query("SELECT pg_stat_statements_reset()")
            .execute(&mut conn)
            .await;
    }
}

async fn audit(warmup: Duration, duration: Duration, rounds: usize) -> anyhow::Result<()> {
    let http = crate::harness::http();
    let fixture = Fixture::start_with_env(&["--name", "bench"], &[("TOKIO_WORKER_THREADS", "1")]);
    let db = crate::harness::test_db().await;
    let keys = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let config = format!(
        "connections:\n  - name: fx\n    url: {}\n",
        fixture.mcp_url()
    );
    let threads = gateway_threads();
    let start = |audit: &'static str| {
        Gateway::start(
            &config,
            &[
                ("RUST_LOG", "warn"),
                ("HAWSER_WORKER_THREADS", &threads),
                ("DATABASE_URL", &db.url),
                ("HAWSER_ENCRYPTION_KEYS", keys),
                ("HAWSER_AUDIT_ENABLED", audit),
            ],
        )
    };
    let off = start("false");
    let on = start("true");
    off.wait_ready().await;
    on.wait_ready().await;
    wait_for_tool(&http, &off.mcp_url(), "fx__echo").await?;
    wait_for_tool(&http, &on.mcp_url(), "fx__echo").await?;
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&db.url).await?;
    // PostgreSQL's CPU time: its processes on this machine, found from a backend's
    // parent (none when the database is elsewhere).
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await?;
    let postmaster = u32::try_from(backend).ok().and_then(proc_stats::parent);
    let pg_cpu = || {
        postmaster
            .and_then(proc_stats::tree_cpu_seconds)
            .unwrap_or_default()
    };
    let args = json!({"text": "hello"});
    println!(
        "# audit: tools/call echo at c=64 through a gateway in shared mode, audit off vs on, \
         {rounds} rounds alternating which goes first"
    );
    struct Phase {
        throughput: f64,
        p50: f64,
        /// Gateway and PostgreSQL CPU per call, µs.
        gateway: f64,
        postgres: f64,
        /// The whole machine's busy CPU per call, µs: the gateway, PostgreSQL, the
        /// upstream, this load driver and the kernel's threads (writeback among them).
        machine: f64,
        /// CPU taken by the hypervisor per call, µs (time this machine did not get).
        steal: f64,
    }
    let machine = || proc_stats::machine_seconds().unwrap_or_default();
    let phase = async |g: &Gateway| -> anyhow::Result<Phase> {
        let (g0, p0, m0) = (
            proc_stats::cpu_seconds(g.child.id()).unwrap_or_default(),
            pg_cpu(),
            machine(),
        );
        let s = load::run(
            &http,
            &g.mcp_url(),
            "fx__echo",
            args.clone(),
            64,
            warmup,
            duration,
        )
        .await?;
        let (g1, p1, m1) = (
            proc_stats::cpu_seconds(g.child.id()).unwrap_or_default(),
            pg_cpu(),
            machine(),
        );
        let calls = s.calls as f64 * (1.0 + warmup.as_secs_f64() / duration.as_secs_f64());
        Ok(Phase {
            throughput: s.throughput(),
            p50: s.percentile_us(0.5),
            gateway: (g1 - g0) * 1e6 / calls,
            postgres: (p1 - p0) * 1e6 / calls,
            machine: (m1.0 - m0.0) * 1e6 / calls,
            steal: (m1.1 - m0.1) * 1e6 / calls,
        })
    };
    let mut ratios = Vec::new();
    let mut cpu_ratios = Vec::new();
    let mut machine_ratios = Vec::new();
    for round in 0..rounds {
        let (a, b) = if round % 2 == 0 {
            let a = phase(&off).await?;
            (a, phase(&on).await?)
        } else {
            let b = phase(&on).await?;
            (phase(&off).await?, b)
        };
        let ratio = b.throughput / a.throughput;
        let cpu_ratio = (b.gateway + b.postgres) / (a.gateway + a.postgres);
        let machine_ratio = b.machine / a.machine;
        println!(
            "round {} ({}): audit off {:>6.0}/s p50 {:>5.0}µs CPU/call {:.0}+{:.0}µs of {:.0}µs (steal {:.0}) | audit on {:>6.0}/s p50 {:>5.0}µs CPU/call {:.0}+{:.0}µs of {:.0}µs (steal {:.0}) | throughput ×{ratio:.3}, CPU ×{cpu_ratio:.3}, machine ×{machine_ratio:.3}",
            round + 1,
            if round % 2 == 0 {
                "off first"
            } else {
                "on first"
            },
            a.throughput,
            a.p50,
            a.gateway,
            a.postgres,
            a.machine,
            a.steal,
            b.throughput,
            b.p50,
            b.gateway,
            b.postgres,
            b.machine,
            b.steal,
        );
        ratios.push(ratio);
        cpu_ratios.push(cpu_ratio);
        machine_ratios.push(machine_ratio);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(&mut conn)
        .await?;
    let mean = ratios.iter().sum::<f64>() / ratios.len().max(1) as f64;
    let (mid, cpu_mid) = (median(&ratios), median(&cpu_ratios));
    let machine_mid = median(&machine_ratios);
    println!(
        "audit on/off throughput: median ×{mid:.3} ({:.1}% cost), mean ×{mean:.3} ({:.1}%); \
         gateway + PostgreSQL CPU per call: median ×{cpu_mid:.3}; machine CPU per call: \
         median ×{machine_mid:.3}; {rows} audit rows written",
        (1.0 - mid) * 100.0,
        (1.0 - mean) * 100.0,
    );
    println!(
        "{}",
        json!({"bench": "audit", "ratios": ratios, "median_ratio": mid, "mean_ratio": mean,
               "cpu_ratios": cpu_ratios, "median_cpu_ratio": cpu_mid,
               "machine_ratios": machine_ratios, "median_machine_ratio": machine_mid,
               "audit_rows": rows})
    );
    Ok(())
}

/// The median of `values` (the mean of the middle two for an even count); 0 for none.
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn the_median_takes_the_middle_value_or_the_mean_of_the_middle_two() {
        assert_eq!(median(&[0.9, 0.7, 1.1]), 0.9);
        assert_eq!(median(&[1.0, 0.25, 0.75, 0.5]), 0.625);
        assert_eq!(median(&[]), 0.0);
    }
}
