//! A small raw MCP client over Streamable HTTP for protocol-level tests: every
//! header and status is visible, and SSE responses are read event by event.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

/// An HTTP response of an MCP endpoint, with its messages decoded.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub session: Option<String>,
    /// Every JSON-RPC message of the body (one for JSON, each event for SSE).
    pub messages: Vec<Value>,
    /// The body when it was not JSON (for failure messages).
    pub raw: String,
}

impl Reply {
    /// The response message (the one with a result or error).
    pub fn response(&self) -> &Value {
        self.messages
            .iter()
            .find(|m| m.get("result").is_some() || m.get("error").is_some())
            .unwrap_or_else(|| panic!("no response in {self:?}"))
    }

    pub fn result(&self) -> &Value {
        let r = self.response();
        r.get("result")
            .unwrap_or_else(|| panic!("error response: {r}"))
    }

    pub fn error_message(&self) -> String {
        self.response()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// A client bound to one endpoint and (after initialize) one session.
pub struct McpClient {
    pub url: String,
    pub session: Option<String>,
    pub token: Option<String>,
    /// Extra headers sent with every request.
    pub headers: Vec<(String, String)>,
    http: reqwest::Client,
    next_id: u64,
}

impl McpClient {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            session: None,
            token: None,
            headers: Vec::new(),
            http: super::http(),
            next_id: 1,
        }
    }

    /// Creates a client and initializes a session.
    pub async fn connect(url: &str) -> Self {
        let mut c = Self::new(url);
        c.initialize().await;
        c
    }

    /// Same, presenting a bearer token to the gateway.
    pub async fn connect_as(url: &str, token: &str) -> Self {
        let mut c = Self::new(url);
        c.token = Some(token.to_owned());
        c.initialize().await;
        c
    }

    pub async fn initialize(&mut self) -> Reply {
        self.initialize_version("2025-11-25").await
    }

    /// Initializes a session asking for protocol revision `version`.
    pub async fn initialize_version(&mut self, version: &str) -> Reply {
        let r = self
            .request(
                "initialize",
                json!({"protocolVersion": version, "capabilities": {"elicitation": {}, "sampling": {}},
                       "clientInfo": {"name": "hawser-e2e", "version": "1"}}),
            )
            .await;
        assert_eq!(r.status, 200, "initialize failed: {r:?}");
        self.session = r.session.clone();
        assert!(self.session.is_some(), "no Mcp-Session-Id in {r:?}");
        self.notify("notifications/initialized", json!({})).await;
        r
    }

    fn post(&self, body: Value) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        req
    }

    /// Sends a request and reads the whole reply.
    pub async fn request(&mut self, method: &str, params: Value) -> Reply {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await
    }

    /// Sends any message and reads the whole reply.
    pub async fn send(&self, body: Value) -> Reply {
        let resp = self
            .post(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {}: {e}", self.url));
        read_reply(resp).await
    }

    /// Calls a tool; returns the reply.
    pub async fn call(&mut self, tool: &str, arguments: Value) -> Reply {
        self.request("tools/call", json!({"name": tool, "arguments": arguments}))
            .await
    }

    pub async fn notify(&self, method: &str, params: Value) -> u16 {
        let resp = self
            .post(json!({"jsonrpc": "2.0", "method": method, "params": params}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {}: {e}", self.url));
        resp.status().as_u16()
    }

    /// Names of the listed tools.
    pub async fn tool_names(&mut self) -> Vec<String> {
        let r = self.request("tools/list", json!({})).await;
        let mut names: Vec<String> = r.result()["tools"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Waits (up to 20 s) until the listing has `tool`.
    pub async fn wait_for_tool(&mut self, tool: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !self.tool_names().await.iter().any(|n| n == tool) {
            assert!(
                std::time::Instant::now() < deadline,
                "{tool} never appeared"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Opens the GET stream; messages arrive on the returned channel.
    pub async fn listen(&self) -> tokio::sync::mpsc::UnboundedReceiver<Value> {
        self.listen_closable().await.0
    }

    /// Opens the GET stream; aborting the returned task closes it.
    pub async fn listen_closable(
        &self,
    ) -> (
        tokio::sync::mpsc::UnboundedReceiver<Value>,
        tokio::task::JoinHandle<()>,
    ) {
        let mut req = self
            .http
            .get(&self.url)
            .header("accept", "text/event-stream");
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {}: {e}", self.url));
        assert_eq!(resp.status(), 200, "GET stream refused");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut events = sse_stream::SseStream::from_bytes_stream(resp.bytes_stream());
            while let Some(Ok(event)) = events.next().await {
                if let Some(data) = event.data
                    && let Ok(v) = serde_json::from_str::<Value>(&data)
                    && tx.send(v).is_err()
                {
                    return;
                }
            }
        });
        (rx, task)
    }

    /// Ends the session (DELETE); returns the status.
    pub async fn delete(&self) -> u16 {
        let mut req = self.http.delete(&self.url);
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
    }
}

async fn read_reply(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let session = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let mut messages = Vec::new();
    let mut raw = String::new();
    if content_type.starts_with("text/event-stream") {
        let mut events = sse_stream::SseStream::from_bytes_stream(resp.bytes_stream());
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_secs(120), events.next()).await
        {
            if let Ok(e) = event
                && let Some(data) = e.data
                && let Ok(v) = serde_json::from_str(&data)
            {
                messages.push(v);
            }
        }
    } else {
        let bytes = resp.bytes().await.unwrap_or_default();
        match serde_json::from_slice(&bytes) {
            Ok(v) => messages.push(v),
            Err(_) => raw = String::from_utf8_lossy(&bytes).into_owned(),
        }
    }
    Reply {
        status,
        content_type,
        session,
        messages,
        raw,
    }
}

/// The text of the first content block of a tool result.
pub fn text(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
