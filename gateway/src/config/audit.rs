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
    /// Where events wait until the store has them (shared mode). `None`: a
    /// directory under the system's temporary directory, per replica.
    pub spool_dir: Option<std::path::PathBuf>,
    /// Most the spool may hold on disk.
    pub spool_max_bytes: u64,
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
            spool_dir: None,
            spool_max_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// Resolves `audit:` with `HAWSER_AUDIT_ENABLED` and `HAWSER_AUDIT_RETENTION`.
pub(super) fn resolve(
    raw: super::file::RawAudit,
    env: &dyn super::Env,
) -> Result<AuditSettings, super::ConfigError> {
    let mut audit = AuditSettings::default();
    if let Some(enabled) = super::env::boolean(env, "HAWSER_AUDIT_ENABLED")?.or(raw.enabled) {
        audit.enabled = enabled;
    }
    if let Some(retention) =
        super::env::duration(env, "HAWSER_AUDIT_RETENTION")?.or(raw.retention.map(|r| r.get()))
    {
        audit.retention = retention;
    }
    if let Some(n) = raw.buffer_size {
        if n == 0 {
            return Err(super::invalid("audit.bufferSize", "must be at least 1"));
        }
        audit.buffer = n;
    }
    if let Some(keys) = raw.redact_keys {
        audit.redact = keys;
    }
    audit.spool_dir = env
        .var("HAWSER_AUDIT_SPOOL_DIR")
        .or(raw.spool_dir)
        .map(std::path::PathBuf::from);
    if let Some(n) = raw.spool_max_bytes {
        audit.spool_max_bytes = n;
    }
    Ok(audit)
}
