//! The benchmark harness: load against the fixture directly and through Hawser in
//! the same run, reported as ratios, because absolute numbers depend on the machine.

pub mod identity;
pub mod load;
pub mod policy;
pub mod proc_stats;
pub mod report;

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
