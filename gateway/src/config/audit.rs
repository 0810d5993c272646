//! Settings of the audit log.

use std::time::Duration;

/// Keys whose values are never stored: matched case-insensitively, ignoring `-` and
/// `_`, anywhere in the key (`apiKey`, `X-Api-Key`, `access_token`, `client_secret`).
pub const DEFAULT_REDACTED_KEYS: &[&str] = &[
    "password",
    "token",
    "secret",
    "authorization",
    "api_key",
    "cookie",
];

/// Audit settings.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub enabled: bool,
    /// Events kept in memory while the store is away.
    pub buffer: usize,
    /// Events older than this are deleted.
    pub retention: Duration,
    pub redact: Vec<String>,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            buffer: 100_000,
            retention: Duration::from_secs(30 * 24 * 3600),
            redact: DEFAULT_REDACTED_KEYS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}
