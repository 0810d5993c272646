//! What can go wrong talking to an upstream, and how each failure is shown to clients.

use std::time::Duration;

use crate::jsonrpc::code;

/// A failure towards an upstream. `Display` is safe to show to clients: it names the
/// host, never credentials.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot reach {host}: {reason}")]
    Connect { host: String, reason: String },
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("upstream answered HTTP {status}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Http { status: u16, detail: Option<String> },
    /// The upstream no longer knows the session (HTTP 404): open a new one and retry.
    #[error("upstream session expired")]
    SessionExpired,
    /// The upstream rejected the credentials (HTTP 401/403).
    #[error("upstream rejected the credentials (HTTP {status})")]
    Unauthorized {
        status: u16,
        www_authenticate: Option<String>,
    },
    /// No usable credentials yet (OAuth connection awaiting authorization).
    #[error("{0}")]
    NotAuthorized(String),
    /// The caller holds no usable upstream token of their own on a connection with
    /// per-user tokens: they must consent (the front hands them a link).
    #[error("{0}")]
    ConsentRequired(String),
    #[error("upstream sent an invalid message: {0}")]
    Protocol(String),
    #[error("upstream closed the stream before answering")]
    Closed,
    #[error("{0}")]
    Unavailable(String),
}

impl UpstreamError {
    /// The JSON-RPC error code clients receive.
    pub fn jsonrpc_code(&self) -> i64 {
        match self {
            Self::Timeout(_) => code::REQUEST_TIMEOUT,
            Self::Unauthorized { .. } | Self::NotAuthorized(_) => code::UPSTREAM_UNAUTHORIZED,
            Self::ConsentRequired(_) => code::URL_ELICITATION_REQUIRED,
            _ => code::UPSTREAM_UNAVAILABLE,
        }
    }

    /// Category for audit rows and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Unauthorized { .. } | Self::NotAuthorized(_) => "auth",
            Self::ConsentRequired(_) => "consent",
            Self::Protocol(_) => "protocol",
            _ => "upstream",
        }
    }

    /// Whether retrying the same request on a fresh connection may succeed without
    /// risk of running it twice (nothing reached the upstream).
    pub fn nothing_sent(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::SessionExpired)
    }

    pub(crate) fn from_reqwest(e: &reqwest::Error, host: &str, timeout: Duration) -> Self {
        if e.is_timeout() {
            return Self::Timeout(timeout);
        }
        if e.is_connect() {
            return Self::Connect {
                host: host.to_owned(),
                reason: root_cause(e),
            };
        }
        Self::Unavailable(format!("request to {host} failed: {}", root_cause(e)))
    }
}

/// The innermost error message (HTTP clients' outer messages are generic).
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    // Never include a URL: it may carry credentials in its query string.
    let text = cur.to_string();
    if text.contains("://") {
        "connection failed".to_owned()
    } else {
        text
    }
}
