//! Limits of the HTTP server towards clients: what a slow or hostile client may hold.

use std::time::Duration;

use super::env::Env;
use super::file::RawHttp;
use super::{ConfigError, invalid};

/// How much time, memory and how many connections one client gets.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Largest POST body on the MCP endpoints.
    pub max_request_bytes: usize,
    /// Time to send a request's headers, from when the connection waits for one
    /// (so also how long an idle keep-alive connection stays open).
    pub header_read_timeout: Duration,
    /// Time to send a request's body once its headers arrived.
    pub body_read_timeout: Duration,
    /// Open connections per client address; 0 is no cap.
    pub max_connections_per_client: usize,
    /// Failed authentications per client address and minute, on one replica, before
    /// further failures are answered 429; 0 is no cap.
    pub max_auth_failures_per_minute: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_request_bytes: 16 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            max_connections_per_client: 512,
            max_auth_failures_per_minute: 120,
        }
    }
}

/// Resolves `http:` with `HAWSER_MAX_REQUEST_BYTES`.
pub(super) fn resolve(raw: RawHttp, env: &dyn Env) -> Result<HttpLimits, ConfigError> {
    let mut limits = HttpLimits::default();
    let from_env = env
        .var("HAWSER_MAX_REQUEST_BYTES")
        .map(|v| {
            v.parse::<usize>().map_err(|_| {
                invalid(
                    "HAWSER_MAX_REQUEST_BYTES",
                    format!("{v:?} is not a number of bytes"),
                )
            })
        })
        .transpose()?;
    if let Some(n) = from_env.or(raw.max_request_bytes) {
        if n < 1024 {
            return Err(invalid("http.maxRequestBytes", "must be at least 1024"));
        }
        limits.max_request_bytes = n;
    }
    if let Some(d) = raw.header_read_timeout {
        limits.header_read_timeout = at_most("http.headerReadTimeout", d, MAX_HEADER_READ)?;
    }
    if let Some(d) = raw.body_read_timeout {
        limits.body_read_timeout = at_most("http.bodyReadTimeout", d, MAX_BODY_READ)?;
    }
    if let Some(n) = raw.max_connections_per_client {
        limits.max_connections_per_client = n;
    }
    if let Some(n) = raw.max_auth_failures_per_minute {
        limits.max_auth_failures_per_minute = n;
    }
    Ok(limits)
}

/// Longest `http.headerReadTimeout`: a client that needs longer to send its headers
/// is not a client.
const MAX_HEADER_READ: hawser_crds::Duration = hawser_crds::Duration::from_secs(600);
/// Longest `http.bodyReadTimeout`.
const MAX_BODY_READ: hawser_crds::Duration = hawser_crds::Duration::from_secs(3600);

fn at_most(
    field: &str,
    value: hawser_crds::Duration,
    max: hawser_crds::Duration,
) -> Result<Duration, ConfigError> {
    if value > max {
        return Err(invalid(
            field,
            format!("{value} is too long (at most {max})"),
        ));
    }
    Ok(value.get())
}
