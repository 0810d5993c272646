//! `hawser-bench tracing`: what exporting traces costs per call. Three gateways in
//! front of one fixture, measured in the same run: tracing off (the baseline), on
//! with 1 % of traces sampled, and on with every trace sampled; both export to a
//! local OTLP/HTTP sink that answers 200 to everything.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use serde_json::json;

use super::{load, report};
use crate::harness::stack::{Fixture, Gateway};

/// What the sink received.
#[derive(Default)]
pub struct Received {
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

/// A tiny OTLP/HTTP receiver; returns its base URL.
pub async fn start_sink(received: Arc<Received>) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let app = Router::new()
        .route("/v1/traces", post(sink))
        .with_state(received);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://127.0.0.1:{port}"))
}

/// A counter of a gateway's `/metrics` (summed over its label sets).
async fn counter(http: &reqwest::Client, gateway: &Gateway, name: &str) -> f64 {
    let Ok(r) = http.get(format!("{}/metrics", gateway.base)).send().await else {
        return f64::NAN;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub async fn run(warmup: Duration, duration: Duration, threads: &str) -> anyhow::Result<()> {
    let http = crate::harness::http();
    let received = Arc::new(Received::default());
    let endpoint = start_sink(received.clone()).await?;
    let fixture = Fixture::start_with_env(&["--name", "bench"], &[("TOKIO_WORKER_THREADS", "1")]);
    let config = format!(
        "connections:\n  - name: fx\n    url: {}\n",
        fixture.mcp_url()
    );
    let start = |env: &[(&str, &str)]| {
        let mut all = vec![("RUST_LOG", "warn"), ("HAWSER_WORKER_THREADS", threads)];
        all.extend_from_slice(env);
        Gateway::start(&config, &all)
    };
    let gateways = [
        ("tracing off", start(&[])),
        (
            "on, 1% sampled",
            start(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.01"),
            ]),
        ),
        (
            "on, 100% sampled",
            start(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]),
        ),
    ];
    for (_, g) in &gateways {
        g.wait_ready().await;
        super::wait_for_tool(&http, &g.mcp_url(), "fx__echo").await?;
    }
    println!(
        "# tracing: tools/call echo through hawser, OTLP/HTTP to a local sink (baseline: tracing off)"
    );
    let mut results = Vec::new();
    for concurrency in [1, 16] {
        let args = json!({"text": "hello"});
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
        let mut baseline = None;
        for (label, g) in &gateways {
            let (sample, cpu_us) = super::measured(
                &http,
                &g.mcp_url(),
                "fx__echo",
                args.clone(),
                concurrency,
                warmup,
                duration,
                g.child.id(),
            )
            .await?;
            let base = *baseline.get_or_insert(cpu_us);
            println!(
                "{}  gateway CPU {cpu_us:.1}µs/call ({:+.1} vs off)",
                report::row(label, &direct, &sample),
                cpu_us - base
            );
            results.push(json!({
                "setup": label, "concurrency": concurrency,
                "gateway_rps": sample.throughput(), "gateway_p50_us": sample.percentile_us(0.5),
                "gateway_p99_us": sample.percentile_us(0.99),
                "gateway_cpu_us_per_call": cpu_us, "cpu_us_vs_off": cpu_us - base,
                "errors": sample.errors,
            }));
        }
    }
    // Let the last batches go out before counting.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut exported = Vec::new();
    for (label, g) in &gateways[1..] {
        let sent = counter(&http, g, "hawser_trace_spans_exported_total").await;
        let lost = counter(&http, g, "hawser_trace_spans_dropped_total").await;
        println!("{label}: {sent} spans exported, {lost} dropped");
        exported.push(json!({"setup": label, "exported": sent, "dropped": lost}));
    }
    println!(
        "sink: {} export requests, {} bytes",
        received.requests.load(Ordering::Relaxed),
        received.bytes.load(Ordering::Relaxed)
    );
    println!(
        "{}",
        json!({"bench": "tracing", "results": results, "spans": exported,
               "sink_requests": received.requests.load(Ordering::Relaxed),
               "sink_bytes": received.bytes.load(Ordering::Relaxed)})
    );
    Ok(())
}
