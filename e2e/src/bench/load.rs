//! The load driver: N workers, each with its own MCP session, sending `tools/call`
//! back to back for a fixed time and recording every latency.

use anyhow::Context as _;
use std::time::{Duration, Instant};

use serde_json::json;

/// What one load phase measured.
#[derive(Debug, Clone)]
pub struct Sample {
    pub concurrency: usize,
    pub calls: u64,
    pub errors: u64,
    /// Every call made, warm-up included (what CPU time is divided by).
    pub all_calls: u64,
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

/// Which protocol era the load driver speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// 2025-11-25: `initialize`, then calls in the session.
    Legacy,
    /// 2026-07-28: no session; each call carries its envelope and headers.
    Modern,
}

impl Era {
    pub fn label(self) -> &'static str {
        match self {
            Self::Legacy => "2025-11-25",
            Self::Modern => "2026-07-28",
        }
    }
}

/// One MCP session used by one worker (for 2026-07-28, just its prepared request).
pub struct Session {
    http: reqwest::Client,
    url: String,
    session: Option<String>,
    body: bytes::Bytes,
    /// Headers every call carries: `MCP-Protocol-Version` as negotiated (real clients
    /// send it, and servers may take another path without it), and for 2026-07-28 also
    /// `Mcp-Method` and `Mcp-Name`.
    headers: Vec<(&'static str, String)>,
}

impl Session {
    /// Initializes a session at `url`; calls will invoke `tool` with `arguments`.
    pub async fn open(
        http: reqwest::Client,
        url: &str,
        tool: &str,
        arguments: serde_json::Value,
    ) -> anyhow::Result<Self> {
        Self::open_as(Era::Legacy, http, url, tool, arguments).await
    }

    /// A session of `era`: a 2026-07-28 one makes no request until the first call.
    pub async fn open_as(
        era: Era,
        http: reqwest::Client,
        url: &str,
        tool: &str,
        arguments: serde_json::Value,
    ) -> anyhow::Result<Self> {
        if era == Era::Modern {
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
                "name": tool, "arguments": arguments,
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {},
                    "io.modelcontextprotocol/clientInfo": {"name": "hawser-bench", "version": "1"},
                },
            }});
            return Ok(Self {
                http,
                url: url.to_owned(),
                session: None,
                body: bytes::Bytes::from(serde_json::to_vec(&body)?),
                headers: vec![
                    ("mcp-protocol-version", "2026-07-28".to_owned()),
                    ("mcp-method", "tools/call".to_owned()),
                    ("mcp-name", tool.to_owned()),
                ],
            });
        }
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
        let answer = resp.bytes().await?;
        let version = negotiated_version(&answer)
            .with_context(|| format!("initialize at {url}: no protocolVersion in the answer"))?;
        let mut s = Self {
            http,
            url: url.to_owned(),
            session,
            body: bytes::Bytes::new(),
            headers: vec![("mcp-protocol-version", version)],
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
        for (name, value) in &self.headers {
            req = req.header(*name, value);
        }
        let resp = req.send().await?;
        anyhow::ensure!(resp.status().is_success(), "HTTP {}", resp.status());
        Ok(resp.bytes().await?)
    }

    /// One call's answer, as it came.
    pub async fn call_text(&self) -> anyhow::Result<bytes::Bytes> {
        self.post_bytes(self.body.clone()).await
    }

    /// One call; whether it returned a result.
    pub async fn call(&self) -> bool {
        match self.post_bytes(self.body.clone()).await {
            Ok(body) => memchr::memmem::find(&body, b"\"result\"").is_some(),
            Err(_) => false,
        }
    }
}

/// The protocol version an `initialize` answer (JSON, or SSE events) agreed on.
fn negotiated_version(answer: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(answer).ok()?;
    std::iter::once(text)
        .chain(text.lines().filter_map(|l| l.strip_prefix("data:")))
        .filter_map(|json| serde_json::from_str::<serde_json::Value>(json.trim()).ok())
        .find_map(|m| Some(m["result"]["protocolVersion"].as_str()?.to_owned()))
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
    let load = Load {
        era: Era::Legacy,
        url,
        tool,
    };
    run_as(http, load, arguments, concurrency, warmup, duration).await
}

/// Where one phase sends its calls, in which era.
#[derive(Debug, Clone, Copy)]
pub struct Load<'a> {
    pub era: Era,
    pub url: &'a str,
    pub tool: &'a str,
}

/// [`run`] in the given era.
pub async fn run_as(
    http: &reqwest::Client,
    load: Load<'_>,
    arguments: serde_json::Value,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Sample> {
    let mut sessions = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        sessions.push(
            Session::open_as(
                load.era,
                http.clone(),
                load.url,
                load.tool,
                arguments.clone(),
            )
            .await?,
        );
    }
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let workers = sessions.into_iter().map(|s| {
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(16_384);
            let mut errors = 0u64;
            let mut made = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let ok = s.call().await;
                made += 1;
                if t0 >= measure_from {
                    if ok {
                        latencies.push(t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors, made)
        })
    });
    let mut all = Vec::new();
    let mut errors = 0;
    let mut all_calls = 0;
    for w in futures::future::join_all(workers).await {
        let (l, e, made) = w?;
        all.extend(l);
        errors += e;
        all_calls += made;
    }
    all.sort_unstable();
    Ok(Sample {
        concurrency,
        calls: all.len() as u64,
        errors,
        all_calls,
        elapsed: duration,
        latencies_us: all,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_negotiated_version_is_read_from_json_and_from_events() {
        let json = br#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18"}}"#;
        assert_eq!(negotiated_version(json).as_deref(), Some("2025-06-18"));
        let sse = b"id: a\ndata: \n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{\"protocolVersion\":\"2025-11-25\"}}\n\n";
        assert_eq!(negotiated_version(sse).as_deref(), Some("2025-11-25"));
        assert_eq!(negotiated_version(br#"{"error":{"code":-1}}"#), None);
    }
}
