//! Settings: the config file, overridden by the environment, overridden by flags,
//! resolved into validated types.
//!
//! The environment is passed in through [`Env`] so tests give a map instead of
//! mutating the process environment.

mod audit;
mod connection;
mod file;
pub mod net;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hawser_crds::SecretValue;
use url::Url;

pub use audit::{AuditSettings, DEFAULT_REDACTED_KEYS};
pub use connection::{
    ConnectionConfig, InlineOnly, OAuth2Settings, PREFIX_SEPARATOR, Policy, SecretResolver, Source,
    SpecError, Target, ToolFilter, UpstreamAuth, resolve, validate_name,
};
pub use file::{FileError, RawConfig};

use crate::crypto::{CryptoError, IdHash, Keyring, Secret};

/// Default listen address (all interfaces, as in a pod).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";

/// Where settings read environment variables from.
pub trait Env {
    fn var(&self, key: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

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

/// How MCP clients prove who they are.
#[derive(Clone)]
pub enum ClientAuth {
    /// Every client is the subject `anonymous`.
    None,
    /// Bearer tokens (subject, SHA-256 of the token).
    Bearer(Vec<(String, IdHash)>),
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Bearer(tokens) => {
                let subjects: Vec<&str> = tokens.iter().map(|(s, _)| s.as_str()).collect();
                f.debug_tuple("Bearer").field(&subjects).finish()
            }
        }
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
    pub security: Security,
    pub client_auth: ClientAuth,
    pub audit: AuditSettings,
    /// Sessions unused for this long are ended (their upstream sessions closed).
    pub session_idle_timeout: std::time::Duration,
    pub connections: Vec<ConnectionConfig>,
}

/// Default for [`Settings::session_idle_timeout`].
pub const DEFAULT_SESSION_IDLE_TIMEOUT: std::time::Duration =
    std::time::Duration::from_secs(24 * 3600);

/// A boolean environment variable: `true`/`1` or `false`/`0`; anything else is an
/// error rather than silently off.
fn env_bool(env: &dyn Env, var: &str) -> Result<Option<bool>, ConfigError> {
    match env.var(var).as_deref() {
        None => Ok(None),
        Some("true" | "1") => Ok(Some(true)),
        Some("false" | "0") => Ok(Some(false)),
        Some(other) => Err(invalid(var, format!("{other:?}: use true or false"))),
    }
}

/// Resolves `env:` secrets from the environment; inline values pass through.
struct FileSecrets<'a>(&'a dyn Env);

impl SecretResolver for FileSecrets<'_> {
    fn resolve(&self, value: &SecretValue, field: &str) -> Result<String, SpecError> {
        match value {
            SecretValue::Inline(v) => Ok(v.clone()),
            SecretValue::Env(var) => self.0.var(var).ok_or_else(|| SpecError {
                field: field.to_owned(),
                message: format!("environment variable {var} is not set"),
            }),
            SecretValue::SecretKeyRef(_) => Err(SpecError {
                field: field.to_owned(),
                message: "secretKeyRef is only valid in an McpConnection resource; use env: VAR in the config file".to_owned(),
            }),
        }
    }
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

        let listen_text = flags
            .listen
            .clone()
            .or_else(|| env.var("HAWSER_LISTEN"))
            .or(raw.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            invalid(
                "listen",
                format!("{listen_text:?} is not an address:port (e.g. 127.0.0.1:8080)"),
            )
        })?;

        let database_url = env.var("DATABASE_URL").map(Secret::new);
        let keyring = env
            .var("HAWSER_ENCRYPTION_KEYS")
            .map(|keys| Keyring::parse(&keys))
            .transpose()?;

        let admin_token_field = if env.var("HAWSER_ADMIN_TOKEN").is_some() {
            "HAWSER_ADMIN_TOKEN"
        } else {
            "adminToken"
        };
        let admin_token = match (env.var("HAWSER_ADMIN_TOKEN"), raw.admin_token) {
            (Some(token), _) => Some(Secret::new(token)),
            (None, Some(value)) => Some(Secret::new(
                secrets
                    .resolve(&value, "adminToken")
                    .map_err(|e| invalid(&e.field, e.message))?,
            )),
            (None, None) => None,
        };
        if admin_token.as_ref().is_some_and(|t| t.expose().len() < 16) {
            return Err(invalid(
                admin_token_field,
                "must be at least 16 characters (e.g. `openssl rand -hex 32`)",
            ));
        }

        let replica_id = env
            .var("HAWSER_REPLICA_ID")
            .or(raw.replica_id)
            .or_else(hostname)
            .unwrap_or_else(|| "hawser".to_owned());

        let public_url = env
            .var("HAWSER_PUBLIC_URL")
            .or(raw.public_url)
            .map(|u| {
                Url::parse(&u).map_err(|e| invalid("publicUrl", format!("{u:?} is not a URL: {e}")))
            })
            .transpose()?;

        let list = |var: &str| {
            env.var(var).map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
            })
        };
        let security = Security {
            allowed_hosts: list("HAWSER_ALLOWED_HOSTS")
                .or(raw.security.allowed_hosts.map(|hosts| {
                    hosts
                        .iter()
                        .map(|h| h.trim().to_ascii_lowercase())
                        .collect()
                }))
                .unwrap_or_else(|| {
                    ["localhost", "127.0.0.1", "[::1]"]
                        .map(String::from)
                        .to_vec()
                }),
            allowed_origins: list("HAWSER_ALLOWED_ORIGINS")
                .or(raw.security.allowed_origins)
                .unwrap_or_else(|| {
                    [
                        "http://localhost",
                        "http://127.0.0.1",
                        "http://[::1]",
                        "https://localhost",
                    ]
                    .map(String::from)
                    .to_vec()
                }),
            allow_stdio_from_api: flags.allow_stdio_from_api
                || raw.security.allow_stdio_from_api
                || env_bool(env, "HAWSER_ALLOW_STDIO_FROM_API")?.unwrap_or(false),
            trusted_proxies: Vec::new(),
        };
        let mut security = security;
        for text in list("HAWSER_TRUSTED_PROXIES")
            .or(raw.security.trusted_proxies)
            .unwrap_or_default()
        {
            let range = net::IpRange::parse(&text).ok_or_else(|| {
                invalid(
                    "security.trustedProxies",
                    format!("{text:?} is not an address or CIDR range (e.g. 10.0.0.0/8)"),
                )
            })?;
            security.trusted_proxies.push(range);
        }

        let mut audit = AuditSettings::default();
        if let Some(enabled) = raw.audit.enabled {
            audit.enabled = enabled;
        }
        if let Some(enabled) = env_bool(env, "HAWSER_AUDIT_ENABLED")? {
            audit.enabled = enabled;
        }
        if let Some(r) = raw.audit.retention {
            audit.retention = r.get();
        }
        if let Some(v) = env.var("HAWSER_AUDIT_RETENTION") {
            audit.retention = hawser_crds::Duration::parse(&v)
                .map_err(|e| invalid("HAWSER_AUDIT_RETENTION", e.to_string()))?
                .get();
        }
        let mut session_idle_timeout = raw
            .sessions
            .idle_timeout
            .map_or(DEFAULT_SESSION_IDLE_TIMEOUT, |d| d.get());
        if let Some(v) = env.var("HAWSER_SESSION_IDLE_TIMEOUT") {
            session_idle_timeout = hawser_crds::Duration::parse(&v)
                .map_err(|e| invalid("HAWSER_SESSION_IDLE_TIMEOUT", e.to_string()))?
                .get();
        }
        if session_idle_timeout < std::time::Duration::from_secs(1) {
            return Err(invalid("sessions.idleTimeout", "must be at least 1s"));
        }
        if let Some(n) = raw.audit.buffer_size {
            if n == 0 {
                return Err(invalid("audit.bufferSize", "must be at least 1"));
            }
            audit.buffer = n;
        }
        if let Some(keys) = raw.audit.redact_keys {
            audit.redact = keys;
        }
        for origin in &security.allowed_origins {
            if origin != "*" && Url::parse(origin).is_err() {
                return Err(invalid(
                    "security.allowedOrigins",
                    format!("{origin:?} is not an origin like https://app.example.com"),
                ));
            }
        }

        let client_auth = match raw.client_auth {
            file::RawClientAuth::None => ClientAuth::None,
            file::RawClientAuth::Bearer { tokens } => {
                let mut out = Vec::with_capacity(tokens.len());
                for (i, t) in tokens.into_iter().enumerate() {
                    let field = format!("clientAuth.tokens[{i}]");
                    let digest = match (t.token, t.sha256) {
                        (Some(token), None) => {
                            let token = secrets
                                .resolve(&token, &format!("{field}.token"))
                                .map_err(|e| invalid(&e.field, e.message))?;
                            IdHash::of(&token)
                        }
                        (None, Some(hex)) => IdHash::from_hex(&hex).ok_or_else(|| {
                            invalid(&format!("{field}.sha256"), "expected 64 hex digits")
                        })?,
                        _ => return Err(invalid(&field, "give exactly one of token and sha256")),
                    };
                    if t.subject.is_empty() {
                        return Err(invalid(&format!("{field}.subject"), "must not be empty"));
                    }
                    out.push((t.subject, digest));
                }
                if out.is_empty() {
                    return Err(invalid(
                        "clientAuth.tokens",
                        "bearer client auth needs at least one token",
                    ));
                }
                ClientAuth::Bearer(out)
            }
        };

        let policy = Policy {
            allow_stdio_from_api: security.allow_stdio_from_api,
        };
        let mut connections: Vec<ConnectionConfig> = Vec::with_capacity(raw.connections.len());
        for (index, spec) in raw.connections.into_iter().enumerate() {
            let name = spec.name.clone().ok_or_else(|| ConfigError::MissingName {
                path: label.clone(),
                index,
            })?;
            if connections.iter().any(|c| c.name == name) {
                return Err(ConfigError::DuplicateName {
                    path: label.clone(),
                    index,
                    name,
                });
            }
            let resolved =
                resolve(&name, spec, Source::File, policy, &secrets).map_err(|error| {
                    ConfigError::Connection {
                        path: label.clone(),
                        index,
                        name: name.clone(),
                        error,
                    }
                })?;
            connections.push(resolved);
        }

        Ok(Self {
            config_path,
            listen,
            database_url,
            keyring,
            admin_token,
            replica_id,
            public_url,
            security,
            client_auth,
            audit,
            session_idle_timeout,
            connections,
        })
    }

    /// Shared mode (Postgres) when `DATABASE_URL` is set; embedded otherwise.
    pub fn is_shared(&self) -> bool {
        self.database_url.is_some()
    }
}

fn hostname() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Path of the example config that ships with the repository, for tests.
pub fn example_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn from_yaml(
        yaml: &str,
        flags: &Flags,
        env: &BTreeMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        let raw = file::parse(yaml, Path::new("test.yaml"))?;
        Settings::from_raw(raw, Some("test.yaml".into()), flags, env)
    }

    #[test]
    fn flags_override_env_override_file() {
        let yaml = "listen: 127.0.0.1:1000\n";
        let s = from_yaml(yaml, &Flags::default(), &env(&[])).unwrap();
        assert_eq!(s.listen.port(), 1000);
        let e = env(&[("HAWSER_LISTEN", "127.0.0.1:2000")]);
        assert_eq!(
            from_yaml(yaml, &Flags::default(), &e)
                .unwrap()
                .listen
                .port(),
            2000
        );
        let flags = Flags {
            listen: Some("127.0.0.1:3000".into()),
            ..Flags::default()
        };
        assert_eq!(from_yaml(yaml, &flags, &e).unwrap().listen.port(), 3000);
        assert_eq!(
            from_yaml("", &Flags::default(), &env(&[]))
                .unwrap()
                .listen
                .to_string(),
            DEFAULT_LISTEN
        );
    }

    #[test]
    fn connection_errors_name_file_index_and_field() {
        let yaml = "connections:\n  - name: ok\n    url: http://x\n  - name: bad\n    url: nope\n";
        let e = from_yaml(yaml, &Flags::default(), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("test.yaml: connections[1] (bad): url:"),
            "{e}"
        );
        let dup = "connections:\n  - name: a\n    url: http://x\n  - name: a\n    url: http://y\n";
        let e = from_yaml(dup, &Flags::default(), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("duplicate connection name \"a\""), "{e}");
    }

    #[test]
    fn env_secrets_resolve_from_the_environment() {
        let yaml = "connections:\n  - name: gh\n    url: http://x\n    auth: {type: bearer, token: {env: GH_TOKEN}}\n";
        let e = from_yaml(yaml, &Flags::default(), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("auth.token: environment variable GH_TOKEN is not set"),
            "{e}"
        );
        let s = from_yaml(yaml, &Flags::default(), &env(&[("GH_TOKEN", "abc")])).unwrap();
        let UpstreamAuth::Headers(h) = &s.connections[0].auth else {
            panic!()
        };
        assert_eq!(h[0].1, "Bearer abc");
    }

    #[test]
    fn host_and_origin_allow_lists() {
        let s = from_yaml("", &Flags::default(), &env(&[]))
            .unwrap()
            .security;
        assert!(s.host_allowed("localhost:8080"));
        assert!(s.host_allowed("127.0.0.1"));
        assert!(s.host_allowed("[::1]:9000"));
        assert!(!s.host_allowed("evil.example.com"));
        assert!(!s.host_allowed("evil.example.com:8080"));
        assert!(s.origin_allowed("http://localhost:3000"));
        assert!(!s.origin_allowed("http://evil.example.com"));
        let s = from_yaml(
            "security: {allowedHosts: [\"hawser.example.com:443\"]}",
            &Flags::default(),
            &env(&[]),
        )
        .unwrap()
        .security;
        assert!(s.host_allowed("HAWSER.example.com:443"));
        assert!(!s.host_allowed("hawser.example.com:80"));
        let s = from_yaml(
            "",
            &Flags::default(),
            &env(&[("HAWSER_ALLOWED_HOSTS", "*")]),
        )
        .unwrap()
        .security;
        assert!(s.host_allowed("anything"));
    }

    #[test]
    fn client_tokens_are_kept_as_digests() {
        let yaml =
            "clientAuth:\n  type: bearer\n  tokens:\n    - {subject: alice, token: a-token}\n";
        let s = from_yaml(yaml, &Flags::default(), &env(&[])).unwrap();
        assert!(!format!("{:?}", s.client_auth).contains("a-token"));
        let ClientAuth::Bearer(tokens) = s.client_auth else {
            panic!()
        };
        assert_eq!(tokens[0].1, IdHash::of("a-token"));
    }

    #[test]
    fn short_admin_tokens_and_bad_keys_are_rejected() {
        let e = from_yaml(
            "",
            &Flags::default(),
            &env(&[("HAWSER_ADMIN_TOKEN", "short")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("at least 16"), "{e}");
        let e = from_yaml(
            "",
            &Flags::default(),
            &env(&[("HAWSER_ENCRYPTION_KEYS", "k1:xx")]),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("HAWSER_ENCRYPTION_KEYS"), "{e}");
    }

    #[test]
    fn file_values_are_named_as_written_and_booleans_are_strict() {
        let e = from_yaml("adminToken: short\n", &Flags::default(), &env(&[])).unwrap_err();
        assert!(e.to_string().starts_with("adminToken"), "{e}");
        let s = from_yaml(
            "security: {allowedHosts: [MCP.Example.COM]}\n",
            &Flags::default(),
            &env(&[]),
        )
        .unwrap();
        assert!(s.security.host_allowed("mcp.example.com"));
        let e = from_yaml(
            "",
            &Flags::default(),
            &env(&[("HAWSER_ALLOW_STDIO_FROM_API", "yes")]),
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("HAWSER_ALLOW_STDIO_FROM_API"),
            "{e}"
        );
        let s = from_yaml(
            "",
            &Flags::default(),
            &env(&[("HAWSER_ALLOW_STDIO_FROM_API", "1")]),
        )
        .unwrap();
        assert!(s.security.allow_stdio_from_api);
    }

    #[test]
    fn the_shipped_examples_load() {
        let dir = example_path("");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let raw = file::load(&path).unwrap_or_else(|e| panic!("{e}"));
                let vars = env(&[("FIXTURE_TOKEN", "example-token")]);
                Settings::from_raw(raw, Some(path.clone()), &Flags::default(), &vars)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                checked += 1;
            }
        }
        assert!(checked > 0, "no examples found in {}", dir.display());
    }
}
