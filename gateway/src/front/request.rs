//! What Hawser knows about one HTTP request: its id, where it came from, its trace.

use std::net::SocketAddr;
use std::time::Instant;

use axum::http::{HeaderMap, HeaderValue, header};

use crate::config::net::{IpRange, client_addr};

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
    /// W3C trace id (32 hex) and flags of the request, continued upstream.
    trace_id: String,
    trace_flags: String,
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

/// `(trace-id, flags)` of a valid W3C `traceparent` header.
fn parse_traceparent(value: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = value.trim().split('-').collect();
    let [version, trace, parent, flags] = parts[..] else {
        return None;
    };
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let valid = version == "00"
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace != "00000000000000000000000000000000"
        && parent != "0000000000000000";
    valid.then(|| (trace.to_ascii_lowercase(), flags.to_ascii_lowercase()))
}

/// The client's address: the peer's, or the one a trusted proxy forwarded.
pub fn client_address(
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    trusted: &[IpRange],
) -> Option<String> {
    let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    peer.map(|p| client_addr(p.ip(), forwarded, trusted).to_string())
}

impl RequestInfo {
    pub fn new(headers: &HeaderMap, peer: Option<SocketAddr>, trusted: &[IpRange]) -> Self {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let request_id = text("x-request-id")
            .filter(|id| sane_id(id))
            .map(str::to_owned)
            .unwrap_or_else(|| unique_hex(true));
        let remote_addr = client_address(headers, peer, trusted);
        let user_agent = text(header::USER_AGENT.as_str()).map(|s| s.chars().take(256).collect());
        let (trace_id, trace_flags) = text("traceparent")
            .and_then(parse_traceparent)
            .unwrap_or_else(|| (unique_hex(true), "01".to_owned()));
        Self {
            request_id,
            remote_addr,
            user_agent,
            auth_type: None,
            caller: None,
            client_headers: None,
            request_bytes: 0,
            trace_id,
            trace_flags,
            started: Instant::now(),
        }
    }

    /// Headers for the upstream request: the request id, and the trace continued with
    /// a new parent id (W3C Trace Context).
    pub fn upstream_headers(&self) -> HeaderMap {
        let mut h = HeaderMap::with_capacity(2);
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            h.insert("x-request-id", v);
        }
        let mut traceparent = String::with_capacity(55);
        traceparent.push_str("00-");
        traceparent.push_str(&self.trace_id);
        traceparent.push('-');
        traceparent.push_str(&unique_hex(false));
        traceparent.push('-');
        traceparent.push_str(&self.trace_flags);
        if let Ok(v) = HeaderValue::from_str(&traceparent) {
            h.insert("traceparent", v);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_a_valid_trace_and_keeps_a_sane_request_id() {
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        h.insert("x-request-id", HeaderValue::from_static("req-123"));
        let info = RequestInfo::new(&h, None, &[]);
        let up = info.upstream_headers();
        let tp = up
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
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
        let info = RequestInfo::new(&h, None, &[]);
        assert_eq!(info.request_id.len(), 32);
        assert!(
            parse_traceparent(
                info.upstream_headers()
                    .get("traceparent")
                    .unwrap()
                    .to_str()
                    .unwrap()
            )
            .is_some()
        );
    }
}
