//! `hawser-bench metrics-push`: what pushing the metrics over OTLP costs. Two idle
//! gateways with the same connections and series, measured over the same window:
//! one without the push (the baseline) and one pushing to a local OTLP/HTTP sink
//! far more often than the default (every 25 ms instead of 60 s), so the CPU of one
//! push stands out of the baseline's; the cost at the default interval follows.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use serde_json::json;

use super::proc_stats;
use crate::harness::stack::{Fixture, Gateway};

/// Connections behind each gateway: each adds its state, request and latency series.
const CONNECTIONS: usize = 20;
/// The push interval measured (the default is 60 s).
const INTERVAL_MS: u64 = 25;
const DEFAULT_INTERVAL_S: f64 = 60.0;

#[derive(Default)]
struct Received {
    requests: AtomicU64,
    bytes: AtomicU64,
}

async fn sink(State(received): State<Arc<Received>>, body: Bytes) -> &'static str {
    received.requests.fetch_add(1, Ordering::Relaxed);
    received
        .bytes
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    ""
}

async fn start_sink(received: Arc<Received>) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let app = Router::new()
        .route("/v1/metrics", post(sink))
        .with_state(received);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://127.0.0.1:{port}"))
}

/// `hawser_metric_exports_total{outcome="ok"}` and the size of the exposition.
async fn scrape(http: &reqwest::Client, gateway: &Gateway) -> (f64, usize, usize) {
    let Ok(r) = http.get(format!("{}/metrics", gateway.base)).send().await else {
        return (f64::NAN, 0, 0);
    };
    let text = r.text().await.unwrap_or_default();
    let pushes = text
        .lines()
        .find_map(|l| l.strip_prefix(r#"hawser_metric_exports_total{outcome="ok"} "#))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    (pushes, text.len(), samples)
}

pub async fn run(warmup: Duration, duration: Duration, threads: &str) -> anyhow::Result<()> {
    let http = crate::harness::http();
    let received = Arc::new(Received::default());
    let endpoint = start_sink(received.clone()).await?;
    let fixture = Fixture::start_with_env(&["--name", "bench"], &[("TOKIO_WORKER_THREADS", "1")]);
    let mut config = String::from("connections:\n");
    for i in 0..CONNECTIONS {
        config.push_str(&format!(
            "  - name: c{i:02}\n    url: {}\n",
            fixture.mcp_url()
        ));
    }
    let interval = INTERVAL_MS.to_string();
    let start = |env: &[(&str, &str)]| {
        let mut all = vec![("RUST_LOG", "warn"), ("HAWSER_WORKER_THREADS", threads)];
        all.extend_from_slice(env);
        Gateway::start(&config, &all)
    };
    let off = start(&[]);
    let on = start(&[
        (
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            &format!("{endpoint}/v1/metrics"),
        ),
        ("OTEL_METRIC_EXPORT_INTERVAL", &interval),
    ]);
    // One call per connection on each gateway: every connection has its request and
    // latency series, as in a gateway that serves traffic.
    for g in [&off, &on] {
        g.wait_ready().await;
        let last = format!("c{:02}__echo", CONNECTIONS - 1);
        super::wait_for_tool(&http, &g.mcp_url(), &last).await?;
        for i in 0..CONNECTIONS {
            super::load::run(
                &http,
                &g.mcp_url(),
                &format!("c{i:02}__echo"),
                json!({"text": "hello"}),
                1,
                Duration::ZERO,
                Duration::from_millis(50),
            )
            .await?;
        }
    }
    tokio::time::sleep(warmup).await;
    let (pushes_before, bytes, samples) = scrape(&http, &on).await;
    let requests_before = received.requests.load(Ordering::Relaxed);
    let bytes_before = received.bytes.load(Ordering::Relaxed);
    let cpu = |g: &Gateway| proc_stats::cpu_seconds(g.child.id()).unwrap_or(f64::NAN);
    let (off_before, on_before) = (cpu(&off), cpu(&on));
    tokio::time::sleep(duration).await;
    let (off_cpu, on_cpu) = (cpu(&off) - off_before, cpu(&on) - on_before);
    let (pushes_after, _, _) = scrape(&http, &on).await;
    let pushes = pushes_after - pushes_before;
    let sent = received.requests.load(Ordering::Relaxed) - requests_before;
    let sent_bytes = received.bytes.load(Ordering::Relaxed) - bytes_before;
    let per_push_us = (on_cpu - off_cpu) * 1e6 / pushes;
    let share = per_push_us / 1e6 / DEFAULT_INTERVAL_S;
    println!(
        "# metrics-push: {CONNECTIONS} connections, /metrics {bytes} bytes in {samples} samples; idle, {:.0} s",
        duration.as_secs_f64()
    );
    println!("push off: gateway CPU {:.3} s", off_cpu);
    println!(
        "push every {INTERVAL_MS} ms: gateway CPU {:.3} s, {pushes} pushes ({sent} received, {} bytes each)",
        on_cpu,
        sent_bytes.checked_div(sent).unwrap_or(0)
    );
    println!(
        "per push: {per_push_us:.0} µs of CPU; at the default 60 s interval: {:.5} % of one core",
        share * 100.0
    );
    println!(
        "{}",
        json!({"bench": "metrics-push", "connections": CONNECTIONS, "exposition_bytes": bytes,
               "samples": samples, "seconds": duration.as_secs_f64(),
               "cpu_off_s": off_cpu, "cpu_on_s": on_cpu, "pushes": pushes,
               "received": sent, "bytes_per_push": sent_bytes.checked_div(sent).unwrap_or(0),
               "cpu_us_per_push": per_push_us, "core_share_at_60s": share})
    );
    Ok(())
}
