//! What Hawser knows about one HTTP request: its id, where it came from, its trace.

use std::net::SocketAddr;
use std::time::Instant;

use axum::http::{HeaderMap, HeaderValue, header};

use crate::config::net::{IpRange, client_addr};
use crate::telemetry::context::traceparent;
use crate::telemetry::span::RequestTrace;

/// One request's context, carried into audit events, logs and upstream requests.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The client's `X-Request-Id` when it is a sane token, else a new one.
    pub request_id: String,
    pub remote_addr: Option<String>,
    pub user_agent: Option<String>,
    /// How the caller authenticated (set once known).
    pub auth_type: Option<&'static str>,
    /// The authenticated caller (set once known).
    pub caller: Option<std::sync::Arc<crate::identity::Identity>>,
    /// The client's request headers, for a connection's `forwardHeaders`.
    pub client_headers: Option<std::sync::Arc<HeaderMap>>,
    /// Size of the request body (set once read).
    pub request_bytes: usize,
    /// The request's span and the trace context it continues (W3C Trace Context).
    pub trace: RequestTrace,
    pub started: Instant,
}

/// Ids unique across processes without a random number per request: a random
/// per-process prefix and a counter, hex-encoded.
struct IdSource {
    prefix: u64,
    next: std::sync::atomic::AtomicU64,
}

static IDS: std::sync::LazyLock<IdSource> = std::sync::LazyLock::new(|| IdSource {
    prefix: rand::random(),
    next: std::sync::atomic::AtomicU64::new(1),
});

/// 16 (`wide`) or 8 hex-encoded bytes, unique in this process and, with
/// overwhelming probability, across processes.
fn unique_hex(wide: bool) -> String {
    let n = IDS.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut out = String::with_capacity(32);
    if wide {
        push_hex(&mut out, IDS.prefix);
        push_hex(&mut out, n);
    } else {
        // Mix the prefix in so two processes' span ids differ too.
        push_hex(&mut out, n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ IDS.prefix);
    }
    out
}

fn push_hex(out: &mut String, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(char::from(HEX[((v >> (shift * 4)) & 0xf) as usize]));
    }
}

fn sane_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// The client's address: the peer's, or the one a trusted proxy forwarded.
pub fn client_address(
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    trusted: &[IpRange],
) -> Option<String> {
    let forwarded = headers
        .get(crate::headers::X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok());
    peer.map(|p| client_addr(p.ip(), forwarded, trusted).to_string())
}

impl RequestInfo {
    /// The request's context; `endpoint` names it in the request's span.
    pub fn new(
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        trusted: &[IpRange],
        endpoint: &dyn std::fmt::Display,
    ) -> Self {
        let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let request_id = text(crate::headers::X_REQUEST_ID)
            .filter(|id| sane_id(id))
            .map(str::to_owned)
            .unwrap_or_else(|| unique_hex(true));
        let remote_addr = client_address(headers, peer, trusted);
        let user_agent = text(header::USER_AGENT).map(|s| s.chars().take(256).collect());
        let trace = RequestTrace::new(headers, &request_id, endpoint);
        Self {
            request_id,
            remote_addr,
            user_agent,
            auth_type: None,
            caller: None,
            client_headers: None,
            request_bytes: 0,
            trace,
            started: Instant::now(),
        }
    }

    /// Starts the request's server span once its body is parsed (a trace context may
    /// be in `params._meta`), with the HTTP and MCP attributes when it is sampled.
    pub fn begin_trace(&mut self, msg: &crate::jsonrpc::Message<'_>, path: &str) {
        self.trace.begin(msg.params);
        if !self.trace.sampled() {
            return;
        }
        let trace = &self.trace;
        trace.set("http.request.method", "POST");
        trace.set("url.path", path.to_owned());
        if let Some(caller) = &self.caller {
            trace.set("enduser.id", caller.subject.clone());
        }
        if let Some(address) = &self.remote_addr {
            trace.set("client.address", address.clone());
        }
        if let Some(agent) = &self.user_agent {
            trace.set("user_agent.original", agent.clone());
        }
        trace.describe(msg.method(), msg.params);
    }

    /// Ends the server span of a GET (the listen stream opened) or a DELETE (the
    /// session ended) on an MCP endpoint, named `{method} {route}`: the HTTP
    /// attributes, the session and its caller when known, the status and outcome.
    pub fn end_http(
        &mut self,
        method: &'static str,
        route: &str,
        path: &str,
        session: Option<&super::session::ClientSession>,
        status: u16,
        outcome: &str,
    ) {
        self.trace.begin(None);
        if self.trace.sampled() {
            let trace = &self.trace;
            trace.rename(format!("{method} {route}"));
            trace.set("http.request.method", method);
            trace.set("http.route", route.to_owned());
            trace.set("url.path", path.to_owned());
            if let Some(address) = &self.remote_addr {
                trace.set("client.address", address.clone());
            }
            if let Some(agent) = &self.user_agent {
                trace.set("user_agent.original", agent.clone());
            }
            if let Some(session) = session {
                trace.set("enduser.id", session.subject.clone());
                // The handle, never the id (a bearer secret).
                trace.set("mcp.session.id", session.handle.clone());
            }
        }
        self.trace.answered(status);
        self.trace.outcome(outcome);
    }

    /// Headers for the upstream request: the request id, and the trace continued
    /// (W3C Trace Context) with `upstream` (the call's client span) as the parent.
    /// Without exported spans, the caller's trace (or a new one) continues with a new
    /// parent id, and the caller's sampling decision.
    pub fn upstream_headers(&self, upstream: &tracing::Span) -> HeaderMap {
        let mut h = HeaderMap::with_capacity(3);
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            h.insert(crate::headers::X_REQUEST_ID, v);
        }
        let parent = self.trace.parent.as_ref();
        let continued = self
            .trace
            .continued(upstream)
            .unwrap_or_else(|| match parent {
                Some(p) => traceparent(&p.trace_id, &unique_hex(false), p.flags),
                None => traceparent(&unique_hex(true), &unique_hex(false), 1),
            });
        if let Ok(v) = HeaderValue::from_str(&continued) {
            h.insert(crate::headers::TRACEPARENT, v);
        }
        if let Some(state) = parent.and_then(|p| p.state.as_deref())
            && let Ok(v) = HeaderValue::from_str(state)
        {
            h.insert(crate::headers::TRACESTATE, v);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::context::TraceParent;

    fn upstream_traceparent(info: &RequestInfo) -> String {
        info.upstream_headers(&tracing::Span::none())
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn continues_a_valid_trace_and_keeps_a_sane_request_id() {
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        h.insert("x-request-id", HeaderValue::from_static("req-123"));
        h.insert("tracestate", HeaderValue::from_static("vendor=1"));
        let info = RequestInfo::new(&h, None, &[], &"/mcp");
        let up = info.upstream_headers(&tracing::Span::none());
        let tp = upstream_traceparent(&info);
        assert_eq!(up.get("tracestate").unwrap(), "vendor=1");
        assert!(
            tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{tp}"
        );
        assert!(!tp.contains("00f067aa0ba902b7"), "a new parent id: {tp}");
        assert_eq!(up.get("x-request-id").unwrap(), "req-123");
    }

    #[test]
    fn replaces_invalid_ids_and_traces() {
        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_static("garbage"));
        h.insert(
            "x-request-id",
            HeaderValue::from_static("bad id with spaces"),
        );
        let info = RequestInfo::new(&h, None, &[], &"/mcp");
        assert_eq!(info.request_id.len(), 32);
        assert!(TraceParent::parse(&upstream_traceparent(&info), None).is_some());
    }

    #[test]
    fn a_context_in_meta_wins_over_the_header() {
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let mut info = RequestInfo::new(&h, None, &[], &"/mcp");
        let params = serde_json::value::RawValue::from_string(
            r#"{"_meta":{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"}}"#
                .into(),
        )
        .unwrap();
        info.trace.begin(Some(&params));
        let tp = upstream_traceparent(&info);
        assert!(
            tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
            "{tp}"
        );
        assert!(tp.ends_with("-00"), "the caller's decision is kept: {tp}");
    }
}
