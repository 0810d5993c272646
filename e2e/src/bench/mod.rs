//! The benchmark harness: load against the fixture directly and through Hawser in
//! the same run, reported as ratios, because absolute numbers depend on the machine.

pub mod identity;
pub mod load;
pub mod metrics_push;
pub mod policy;
pub mod proc_stats;
pub mod proxy;
pub mod report;
pub mod traces;

/// An HTTP client that sends `Authorization: Bearer <token>` with every request and
/// keeps enough idle connections for the load phases.
pub fn bearer_client(token: &str) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse()?,
    );
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(256)
        .build()?)
}

/// Waits until `tool` answers at `url` (the gateway has discovered its upstream).
pub async fn wait_for_tool(http: &reqwest::Client, url: &str, tool: &str) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let s = load::Session::open(
            http.clone(),
            url,
            tool,
            serde_json::json!({"text": "hello"}),
        )
        .await?;
        if s.call().await {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            let answer = match s.call_text().await {
                Ok(body) => String::from_utf8_lossy(&body).into_owned(),
                Err(e) => format!("{e:#}"),
            };
            anyhow::bail!("{tool} not available at {url}: {answer}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Runs `tool` at `url` like [`load::run`] and also returns the CPU time process `pid`
/// spent per call (warm-up calls included in the count, as their CPU is).
#[allow(clippy::too_many_arguments)]
pub async fn measured(
    http: &reqwest::Client,
    url: &str,
    tool: &str,
    arguments: serde_json::Value,
    concurrency: usize,
    warmup: std::time::Duration,
    duration: std::time::Duration,
    pid: u32,
) -> anyhow::Result<(load::Sample, f64)> {
    use anyhow::Context as _;
    let before = proc_stats::cpu_seconds(pid).context("reading the gateway's CPU time")?;
    let sample = load::run(http, url, tool, arguments, concurrency, warmup, duration).await?;
    let after = proc_stats::cpu_seconds(pid).context("reading the gateway's CPU time")?;
    let calls = sample.calls as f64 * (1.0 + warmup.as_secs_f64() / duration.as_secs_f64());
    Ok((sample, (after - before) * 1e6 / calls))
}
