//! The load driver: N workers, each with its own MCP session, sending `tools/call`
//! back to back for a fixed time and recording every latency.

use std::time::{Duration, Instant};

use serde_json::json;

/// What one load phase measured.
#[derive(Debug, Clone)]
pub struct Sample {
    pub concurrency: usize,
    pub calls: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Sorted latencies in microseconds.
    pub latencies_us: Vec<u32>,
}

impl Sample {
    pub fn throughput(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile_us(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let idx = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.latencies_us[idx.min(self.latencies_us.len() - 1)])
    }
}

/// One MCP session used by one worker.
pub struct Session {
    http: reqwest::Client,
    url: String,
    session: Option<String>,
    body: bytes::Bytes,
}

impl Session {
    /// Initializes a session at `url`; calls will invoke `tool` with `arguments`.
    pub async fn open(
        http: reqwest::Client,
        url: &str,
        tool: &str,
        arguments: serde_json::Value,
    ) -> anyhow::Result<Self> {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "hawser-bench", "version": "1"}}});
        let resp = http
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .json(&init)
            .send()
            .await?;
        anyhow::ensure!(
            resp.status().is_success(),
            "initialize at {url}: HTTP {}",
            resp.status()
        );
        let session = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let _ = resp.bytes().await?;
        let mut s = Self {
            http,
            url: url.to_owned(),
            session,
            body: bytes::Bytes::new(),
        };
        s.post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        s.body = bytes::Bytes::from(serde_json::to_vec(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}),
        )?);
        Ok(s)
    }

    async fn post(&self, body: serde_json::Value) -> anyhow::Result<bytes::Bytes> {
        self.post_bytes(bytes::Bytes::from(serde_json::to_vec(&body)?))
            .await
    }

    async fn post_bytes(&self, body: bytes::Bytes) -> anyhow::Result<bytes::Bytes> {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        let resp = req.send().await?;
        anyhow::ensure!(resp.status().is_success(), "HTTP {}", resp.status());
        Ok(resp.bytes().await?)
    }

    /// One call; whether it returned a result.
    pub async fn call(&self) -> bool {
        match self.post_bytes(self.body.clone()).await {
            Ok(body) => memchr::memmem::find(&body, b"\"result\"").is_some(),
            Err(_) => false,
        }
    }
}

/// Runs `concurrency` workers against `url` for `duration` after `warmup`.
pub async fn run(
    http: &reqwest::Client,
    url: &str,
    tool: &str,
    arguments: serde_json::Value,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Sample> {
    let mut sessions = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        sessions.push(Session::open(http.clone(), url, tool, arguments.clone()).await?);
    }
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let workers = sessions.into_iter().map(|s| {
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(16_384);
            let mut errors = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let ok = s.call().await;
                if t0 >= measure_from {
                    if ok {
                        latencies.push(t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        })
    });
    let mut all = Vec::new();
    let mut errors = 0;
    for w in futures::future::join_all(workers).await {
        let (l, e) = w?;
        all.extend(l);
        errors += e;
    }
    all.sort_unstable();
    Ok(Sample {
        concurrency,
        calls: all.len() as u64,
        errors,
        elapsed: duration,
        latencies_us: all,
    })
}
