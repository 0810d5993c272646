//! Settings: the config file, overridden by the environment, overridden by flags,
//! resolved into validated types, one resolver per section.
//!
//! The environment is passed in through [`Env`] so tests give a map instead of
//! mutating the process environment; nothing else in the gateway reads it.

mod audit;
pub(crate) mod client_auth;
mod connection;
mod console;
mod env;
mod file;
mod http;
pub mod net;
mod security;
mod telemetry;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use url::Url;

pub use audit::{AuditSettings, DEFAULT_REDACTED_KEYS};
pub use client_auth::{ClientAuth, OidcSettings, StaticToken, is_loopback};
pub use connection::{
    CallerMode, CallerPolicy, ConnectionConfig, InlineOnly, OAuth2Settings, PREFIX_SEPARATOR,
    Policy, SecretResolver, Source, SpecError, Target, ToolFilter, UpstreamAuth, caller::Exchange,
    resolve, validate_name,
};
pub use console::{ConsoleOidc, ConsoleSettings};
pub use env::{Env, ProcessEnv};
pub use file::{FileError, RawConfig};
pub use http::HttpLimits;
pub use security::Security;
pub use telemetry::{
    ExportHeaders, MetricsExportSettings, OtlpProtocol, RootSampler, SamplerKind, TracingSettings,
};

use crate::crypto::{CryptoError, Keyring, Secret};
use env::FileSecrets;

/// Default listen address (all interfaces, as in a pod).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";

/// Values given on the command line; they win over the environment and the file.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub allow_stdio_from_api: bool,
}

/// Why settings could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path}: connections[{index}] ({name}): {error}")]
    Connection {
        path: PathBuf,
        index: usize,
        name: String,
        error: SpecError,
    },
    #[error("{path}: connections[{index}]: name is required")]
    MissingName { path: PathBuf, index: usize },
    #[error("{path}: connections[{index}]: duplicate connection name {name:?}")]
    DuplicateName {
        path: PathBuf,
        index: usize,
        name: String,
    },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error(transparent)]
    Keys(#[from] CryptoError),
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Everything the gateway needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config_path: Option<PathBuf>,
    pub listen: SocketAddr,
    pub database_url: Option<Secret>,
    pub keyring: Option<Keyring>,
    pub admin_token: Option<Secret>,
    pub replica_id: String,
    pub public_url: Option<Url>,
    /// Where other replicas reach this one (a 2026-07-28 retry of a call held here is
    /// passed on to it); `None` when it cannot be known.
    pub advertise_url: Option<Url>,
    pub security: Security,
    pub client_auth: ClientAuth,
    pub audit: AuditSettings,
    /// Sessions unused for this long are ended (their upstream sessions closed).
    pub session_idle_timeout: std::time::Duration,
    pub http: HttpLimits,
    pub connections: Vec<ConnectionConfig>,
    /// The config file's policies (name, spec, the connections they target).
    pub policies: Vec<(String, hawser_crds::McpPolicySpec, Vec<String>)>,
    /// Whether connections no policy targets refuse everything.
    pub policy_default_deny: bool,
    /// Traces over OTLP; `None` (no endpoint) is off.
    pub tracing: Option<TracingSettings>,
    /// The `/metrics` series pushed over OTLP too; `None` (the default) is off.
    pub metrics_export: Option<MetricsExportSettings>,
    /// The web console.
    pub console: ConsoleSettings,
}

/// Default for [`Settings::session_idle_timeout`].
pub const DEFAULT_SESSION_IDLE_TIMEOUT: std::time::Duration =
    std::time::Duration::from_secs(24 * 3600);

/// The config file's `policies:`: named, targets by name (label selectors belong to
/// McpPolicy resources, whose connections have labels).
fn policies(
    raw: Vec<hawser_crds::McpPolicySpec>,
) -> Result<Vec<(String, hawser_crds::McpPolicySpec, Vec<String>)>, ConfigError> {
    let mut out: Vec<(String, hawser_crds::McpPolicySpec, Vec<String>)> = Vec::new();
    for (i, mut spec) in raw.into_iter().enumerate() {
        let field = format!("policies[{i}]");
        let name = spec
            .name
            .take()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| invalid(&format!("{field}.name"), "required"))?;
        if out.iter().any(|(n, _, _)| *n == name) {
            return Err(invalid(
                &format!("{field}.name"),
                format!("duplicate policy name {name:?}"),
            ));
        }
        let mut targets = Vec::new();
        for (j, t) in spec.target_refs.iter().enumerate() {
            match (&t.name, &t.selector) {
                (Some(n), None) => targets.push(n.clone()),
                (_, Some(_)) => {
                    return Err(invalid(
                        &format!("{field}.targetRefs[{j}].selector"),
                        "label selectors are for McpPolicy resources; name the connection",
                    ));
                }
                (None, None) => {
                    return Err(invalid(&format!("{field}.targetRefs[{j}]"), "give name"));
                }
            }
        }
        out.push((name, spec, targets));
    }
    Ok(out)
}

/// `--listen`, else `HAWSER_LISTEN`, else `listen:`, else the default.
fn listen(flags: &Flags, env: &dyn Env, file: Option<String>) -> Result<SocketAddr, ConfigError> {
    let text = flags
        .listen
        .clone()
        .or_else(|| env.var("HAWSER_LISTEN"))
        .or(file)
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    text.parse().map_err(|_| {
        invalid(
            "listen",
            format!("{text:?} is not an address:port (e.g. 127.0.0.1:8080)"),
        )
    })
}

/// `HAWSER_ADVERTISE_URL`, else `advertiseUrl:`, else `http://<listen>` when the
/// listen address names one interface (all interfaces name no address others can use).
fn advertise_url(
    env: &dyn Env,
    file: Option<String>,
    listen: SocketAddr,
) -> Result<Option<Url>, ConfigError> {
    let (field, text) = match (env.var("HAWSER_ADVERTISE_URL"), file) {
        (Some(url), _) => ("HAWSER_ADVERTISE_URL", url),
        (None, Some(url)) => ("advertiseUrl", url),
        (None, None) if listen.ip().is_unspecified() => return Ok(None),
        (None, None) => return Ok(Url::parse(&format!("http://{listen}")).ok()),
    };
    let url =
        Url::parse(&text).map_err(|e| invalid(field, format!("{text:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(invalid(
            field,
            format!("{text:?} must be an http(s) URL with a host"),
        ));
    }
    Ok(Some(url))
}

/// `HAWSER_ADMIN_TOKEN`, else `adminToken:`; at least 16 characters.
fn admin_token(
    env: &dyn Env,
    file: Option<hawser_crds::SecretValue>,
    secrets: &FileSecrets<'_>,
) -> Result<Option<Secret>, ConfigError> {
    let (field, token) = match (env.var("HAWSER_ADMIN_TOKEN"), file) {
        (Some(token), _) => ("HAWSER_ADMIN_TOKEN", token),
        (None, Some(value)) => (
            "adminToken",
            secrets
                .resolve(&value, "adminToken")
                .map_err(|e| invalid(&e.field, e.message))?,
        ),
        (None, None) => return Ok(None),
    };
    if token.len() < 16 {
        return Err(invalid(
            field,
            "must be at least 16 characters (e.g. `openssl rand -hex 32`)",
        ));
    }
    Ok(Some(Secret::new(token)))
}

/// `HAWSER_SESSION_IDLE_TIMEOUT`, else `sessions.idleTimeout`, else 24 h; at least 1 s.
fn session_idle_timeout(
    env: &dyn Env,
    raw: file::RawSessions,
) -> Result<std::time::Duration, ConfigError> {
    let timeout = env::duration(env, "HAWSER_SESSION_IDLE_TIMEOUT")?
        .or(raw.idle_timeout.map(|d| d.get()))
        .unwrap_or(DEFAULT_SESSION_IDLE_TIMEOUT);
    if timeout < std::time::Duration::from_secs(1) {
        return Err(invalid("sessions.idleTimeout", "must be at least 1s"));
    }
    Ok(timeout)
}

/// The config file's connections, each resolved; errors name the file and entry.
fn connections(
    specs: Vec<hawser_crds::McpConnectionSpec>,
    label: &Path,
    policy: Policy,
    secrets: &FileSecrets<'_>,
) -> Result<Vec<ConnectionConfig>, ConfigError> {
    let mut connections: Vec<ConnectionConfig> = Vec::with_capacity(specs.len());
    for (index, spec) in specs.into_iter().enumerate() {
        let name = spec.name.clone().ok_or_else(|| ConfigError::MissingName {
            path: label.to_owned(),
            index,
        })?;
        if connections.iter().any(|c| c.name == name) {
            return Err(ConfigError::DuplicateName {
                path: label.to_owned(),
                index,
                name,
            });
        }
        let resolved = resolve(&name, spec, Source::File, policy, secrets).map_err(|error| {
            ConfigError::Connection {
                path: label.to_owned(),
                index,
                name: name.clone(),
                error,
            }
        })?;
        connections.push(resolved);
    }
    Ok(connections)
}

impl Settings {
    /// Builds settings from flags, the environment and the config file they name.
    pub fn load(flags: &Flags, env: &dyn Env) -> Result<Self, ConfigError> {
        let config_path = flags
            .config
            .clone()
            .or_else(|| env.var("HAWSER_CONFIG").map(PathBuf::from));
        let raw = match &config_path {
            Some(path) => file::load(path)?,
            None => RawConfig::default(),
        };
        Self::from_raw(raw, config_path, flags, env)
    }

    /// Builds settings from an already parsed file.
    pub fn from_raw(
        raw: RawConfig,
        config_path: Option<PathBuf>,
        flags: &Flags,
        env: &dyn Env,
    ) -> Result<Self, ConfigError> {
        let label = config_path
            .clone()
            .unwrap_or_else(|| PathBuf::from("(no config file)"));
        let secrets = FileSecrets(env);
        let security = security::resolve(raw.security, env, flags)?;
        let policy = Policy {
            allow_stdio_from_api: security.allow_stdio_from_api,
        };
        let replica_id = env
            .var("HAWSER_REPLICA_ID")
            .or(raw.replica_id)
            .or_else(|| env.hostname())
            .unwrap_or_else(|| "hawser".to_owned());
        let mut audit = audit::resolve(raw.audit, env)?;
        if audit.spool_dir.is_none() {
            let tmp = env.var("TMPDIR").unwrap_or_else(|| "/tmp".to_owned());
            audit.spool_dir = Some(
                PathBuf::from(tmp)
                    .join("hawser-audit-spool")
                    .join(&replica_id),
            );
        }
        let listen = listen(flags, env, raw.listen)?;
        let public_url = env
            .var("HAWSER_PUBLIC_URL")
            .or(raw.public_url)
            .map(|u| {
                Url::parse(&u).map_err(|e| invalid("publicUrl", format!("{u:?} is not a URL: {e}")))
            })
            .transpose()?;
        let client_auth = client_auth::resolve(raw.client_auth, &secrets)?;
        if let Some(oidc) = &client_auth.oidc
            && oidc.audiences.is_empty()
            && public_url.is_none()
        {
            return Err(invalid(
                "clientAuth.oidc",
                "tokens are checked against Hawser's own resource URL: set publicUrl (HAWSER_PUBLIC_URL) or clientAuth.oidc.audiences",
            ));
        }
        let console = console::resolve(raw.console, &secrets, client_auth.oidc.is_some())?;
        let telemetry = telemetry::resolve(raw.telemetry, env)?;
        Ok(Self {
            listen,
            advertise_url: advertise_url(env, raw.advertise_url, listen)?,
            database_url: env.var("DATABASE_URL").map(Secret::new),
            keyring: env
                .var("HAWSER_ENCRYPTION_KEYS")
                .map(|keys| Keyring::parse(&keys))
                .transpose()?,
            admin_token: admin_token(env, raw.admin_token, &secrets)?,
            replica_id,
            public_url,
            security,
            client_auth,
            audit,
            session_idle_timeout: session_idle_timeout(env, raw.sessions)?,
            http: http::resolve(raw.http, env)?,
            connections: connections(raw.connections, &label, policy, &secrets)?,
            policies: policies(raw.policies)?,
            policy_default_deny: raw.policy.default_action == Some(hawser_crds::Effect::Deny),
            tracing: telemetry.tracing,
            metrics_export: telemetry.metrics,
            console,
            config_path,
        })
    }

    /// Shared mode (Postgres) when `DATABASE_URL` is set; embedded otherwise.
    pub fn is_shared(&self) -> bool {
        self.database_url.is_some()
    }
}

/// Path of the example config that ships with the repository, for tests.
pub fn example_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}
