//! Host/Origin allow-lists (DNS-rebinding protection) and related switches.

use url::Url;

use super::env::{self, Env};
use super::file::RawSecurity;
use super::{ConfigError, Flags, invalid, net};

/// Host/Origin allow-lists and related switches.
#[derive(Debug, Clone)]
pub struct Security {
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub allow_stdio_from_api: bool,
    pub trusted_proxies: Vec<net::IpRange>,
}

impl Security {
    /// Whether a `Host` header value is allowed.
    pub fn host_allowed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let (name, port) = split_host_port(&host);
        self.allowed_hosts.iter().any(|entry| {
            if entry == "*" {
                return true;
            }
            let (e_name, e_port) = split_host_port(entry);
            e_name == name && (e_port.is_none() || e_port == port)
        })
    }

    /// Whether an `Origin` header value is allowed.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        let Ok(url) = Url::parse(origin) else {
            return false;
        };
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let port = url.port_or_known_default();
        self.allowed_origins.iter().any(|entry| {
            if entry == "*" {
                return true;
            }
            let Ok(e) = Url::parse(entry) else {
                return false;
            };
            e.scheme() == url.scheme()
                && e.host_str().map(str::to_ascii_lowercase).as_deref() == Some(host.as_str())
                // An entry without an explicit port accepts any port.
                && (e.port().is_none() || e.port_or_known_default() == port)
        })
    }
}

fn split_host_port(host: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[') {
        // [::1]:8080
        return match rest.split_once(']') {
            Some((addr, tail)) => (
                &host[..addr.len() + 2],
                tail.strip_prefix(':').filter(|p| !p.is_empty()),
            ),
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, Some(port)),
        _ => (host, None),
    }
}

/// Resolves `security:` with `HAWSER_ALLOWED_HOSTS`, `HAWSER_ALLOWED_ORIGINS`,
/// `HAWSER_ALLOW_STDIO_FROM_API` and `HAWSER_TRUSTED_PROXIES`.
pub(super) fn resolve(
    raw: RawSecurity,
    env: &dyn Env,
    flags: &Flags,
) -> Result<Security, ConfigError> {
    let allowed_hosts = env::list(env, "HAWSER_ALLOWED_HOSTS")
        .or(raw.allowed_hosts.map(|hosts| {
            hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect()
        }))
        .unwrap_or_else(|| {
            ["localhost", "127.0.0.1", "[::1]"]
                .map(String::from)
                .to_vec()
        });
    let allowed_origins = env::list(env, "HAWSER_ALLOWED_ORIGINS")
        .or(raw.allowed_origins)
        .unwrap_or_else(|| {
            [
                "http://localhost",
                "http://127.0.0.1",
                "http://[::1]",
                "https://localhost",
            ]
            .map(String::from)
            .to_vec()
        });
    for origin in &allowed_origins {
        if origin != "*" && Url::parse(origin).is_err() {
            return Err(invalid(
                "security.allowedOrigins",
                format!("{origin:?} is not an origin like https://app.example.com"),
            ));
        }
    }
    let mut trusted_proxies = Vec::new();
    for text in env::list(env, "HAWSER_TRUSTED_PROXIES")
        .or(raw.trusted_proxies)
        .unwrap_or_default()
    {
        let range = net::IpRange::parse(&text).ok_or_else(|| {
            invalid(
                "security.trustedProxies",
                format!("{text:?} is not an address or CIDR range (e.g. 10.0.0.0/8)"),
            )
        })?;
        trusted_proxies.push(range);
    }
    Ok(Security {
        allowed_hosts,
        allowed_origins,
        allow_stdio_from_api: flags.allow_stdio_from_api
            || raw.allow_stdio_from_api
            || env::boolean(env, "HAWSER_ALLOW_STDIO_FROM_API")?.unwrap_or(false),
        trusted_proxies,
    })
}
