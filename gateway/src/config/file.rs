//! The YAML config file: its raw shape and the parser that reports errors with the
//! field path and the line/column they are at.

use std::path::{Path, PathBuf};

use hawser_crds::{McpConnectionSpec, McpPolicySpec, SecretValue};
use serde::Deserialize;

/// The config file as written (camelCase, unknown fields rejected).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawConfig {
    /// Address to listen on (`HAWSER_LISTEN`, `--listen`).
    pub listen: Option<String>,
    /// External base URL, used for OAuth redirect URIs (`HAWSER_PUBLIC_URL`).
    pub public_url: Option<String>,
    /// The URL other replicas reach this one at (`HAWSER_ADVERTISE_URL`).
    pub advertise_url: Option<String>,
    /// This replica's name (`HAWSER_REPLICA_ID`; default: hostname).
    pub replica_id: Option<String>,
    /// Bearer token for the admin API (`HAWSER_ADMIN_TOKEN`).
    pub admin_token: Option<SecretValue>,
    /// DNS-rebinding protection for the MCP endpoints.
    #[serde(default)]
    pub security: RawSecurity,
    /// How MCP clients authenticate to Hawser.
    #[serde(default)]
    pub client_auth: RawClientAuth,
    /// The audit log.
    #[serde(default)]
    pub audit: RawAudit,
    /// Client sessions.
    #[serde(default)]
    pub sessions: RawSessions,
    /// Limits of the HTTP server towards clients.
    #[serde(default)]
    pub http: RawHttp,
    /// Upstream MCP servers.
    #[serde(default)]
    pub connections: Vec<McpConnectionSpec>,
    /// Access policies (the McpPolicy schema, with `name`).
    #[serde(default)]
    pub policies: Vec<McpPolicySpec>,
    /// Policy settings.
    #[serde(default)]
    pub policy: RawPolicySettings,
    /// Traces exported over OTLP.
    #[serde(default)]
    pub telemetry: super::telemetry::RawTelemetry,
    /// The web console at `/ui/`.
    #[serde(default)]
    pub console: super::console::RawConsole,
}

/// HTTP server limits, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawHttp {
    /// Largest POST body on `/mcp` (bytes; default 16 MiB; `HAWSER_MAX_REQUEST_BYTES`).
    pub max_request_bytes: Option<usize>,
    /// Time a client has to send a request's headers, counted from when the
    /// connection is waiting for one: it also closes keep-alive connections idle this
    /// long (default 30s).
    pub header_read_timeout: Option<hawser_crds::Duration>,
    /// Time a client has to send a request's body once its headers arrived (default 30s).
    pub body_read_timeout: Option<hawser_crds::Duration>,
    /// Open connections one client address may hold (default 512; 0 = no cap).
    pub max_connections_per_client: Option<usize>,
    /// Failed authentications one client address may make per minute on a replica
    /// before its requests without valid credentials get 429 (default 120; 0 = no cap).
    pub max_auth_failures_per_minute: Option<u32>,
}

/// Client session settings, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawSessions {
    /// End sessions unused for this long (default 24h; `HAWSER_SESSION_IDLE_TIMEOUT`).
    pub idle_timeout: Option<hawser_crds::Duration>,
}

/// Audit log settings, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawAudit {
    /// Record calls (default true; `HAWSER_AUDIT_ENABLED`).
    pub enabled: Option<bool>,
    /// Delete events older than this (default 30d; `HAWSER_AUDIT_RETENTION`).
    pub retention: Option<hawser_crds::Duration>,
    /// Events kept in memory while the store is away (default 100000).
    pub buffer_size: Option<usize>,
    /// Parameter keys whose values are redacted (replaces the default list).
    pub redact_keys: Option<Vec<String>>,
    /// Directory where events wait until the store has them (shared mode;
    /// `HAWSER_AUDIT_SPOOL_DIR`; default under the temporary directory, per replica).
    pub spool_dir: Option<String>,
    /// Most the spool may hold on disk, in bytes (default 1 GiB).
    pub spool_max_bytes: Option<u64>,
}

/// Host/Origin allow-lists for `/mcp`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawSecurity {
    /// Accepted `Host` values (`name` or `name:port`; `*` accepts any).
    /// Default: loopback names (`HAWSER_ALLOWED_HOSTS`).
    pub allowed_hosts: Option<Vec<String>>,
    /// Accepted `Origin` values (`scheme://host[:port]`; `*` accepts any). Requests
    /// without `Origin` (non-browser clients) are not affected. Default: loopback
    /// origins (`HAWSER_ALLOWED_ORIGINS`).
    pub allowed_origins: Option<Vec<String>>,
    /// Accept `transport: stdio` connections from the admin API and CRDs.
    #[serde(default)]
    pub allow_stdio_from_api: bool,
    /// Peers whose `X-Forwarded-For` is believed (CIDRs or addresses); others' is
    /// ignored (`HAWSER_TRUSTED_PROXIES`).
    pub trusted_proxies: Option<Vec<String>>,
}

/// `policy:`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawPolicySettings {
    /// What a connection no policy targets allows: `allow` (default) or `deny`.
    pub default_action: Option<hawser_crds::Effect>,
}

/// Client authentication, as written: any combination of `oidc`, `apiKeys` and
/// `tokens`; nothing at all means every client is `anonymous`. The older forms
/// `{type: none}` and `{type: bearer, tokens: [...]}` keep working.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawClientAuth {
    /// The older form's `none` or `bearer`.
    #[serde(rename = "type")]
    pub kind: Option<RawClientAuthType>,
    /// JWT access tokens from an OpenID Connect provider.
    pub oidc: Option<RawOidc>,
    /// API keys issued through the admin API (`POST /api/v1/apikeys`).
    #[serde(default)]
    pub api_keys: bool,
    /// Static bearer tokens, one per subject.
    #[serde(default)]
    pub tokens: Vec<RawClientToken>,
}

/// The older form's `type:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RawClientAuthType {
    None,
    Bearer,
}

/// `clientAuth.oidc`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawOidc {
    /// The provider's issuer URL (discovery at `{issuer}/.well-known/openid-configuration`).
    pub issuer: String,
    /// Accepted `aud` values (default: `publicUrl` + the endpoint's path).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Where the signing keys are (default: discovery's `jwks_uri`).
    pub jwks_uri: Option<String>,
    /// Accepted signature algorithms (default RS256, ES256, EdDSA).
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// Allowed clock difference for `exp` and `nbf` (default 60s).
    pub clock_skew: Option<hawser_crds::Duration>,
    /// Claim naming the caller (default `sub`).
    pub subject_claim: Option<String>,
    /// Claim listing the caller's groups (default `groups`).
    pub groups_claim: Option<String>,
    /// Scopes every token must carry.
    #[serde(default)]
    pub scopes_required: Vec<String>,
    /// Scopes the protected resource metadata and challenges name, when the
    /// provider wants them spelled otherwise than tokens carry them (Entra ID:
    /// `api://…/mcp.access` for `mcp.access`). Default: `scopesRequired`.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// Authorization servers the protected resource metadata names (default: the issuer).
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    /// Shortest time between two JWKS fetches for an unknown key id (default 30s).
    pub jwks_refresh_interval: Option<hawser_crds::Duration>,
}

/// One accepted client token.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawClientToken {
    /// Who presents this token (recorded in sessions and audit rows).
    pub subject: String,
    /// The token itself (use `{env: VAR}` to keep it out of the file), or
    pub token: Option<SecretValue>,
    /// its lowercase hex SHA-256.
    pub sha256: Option<String>,
    /// Groups of the subject (for policies and identity towards upstreams).
    #[serde(default)]
    pub groups: Vec<String>,
}

/// A config file that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {field}: {message}")]
    Parse {
        path: PathBuf,
        /// Dotted path of the offending field (`connections[0].timeouts.call`).
        field: String,
        /// The parser's message, with line, column and a snippet of the file.
        message: String,
    },
}

/// Reads and parses the file at `path`.
pub fn load(path: &Path) -> Result<RawConfig, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// Parses config text; `path` only labels errors.
pub fn parse(text: &str, path: &Path) -> Result<RawConfig, FileError> {
    if text.trim().is_empty() {
        return Ok(RawConfig::default());
    }
    let mut field = String::new();
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            field = e.path().to_string();
            e.into_inner()
        })
    });
    result.map_err(|e| FileError::Parse {
        path: path.to_owned(),
        field: if field.is_empty() || field == "." {
            "(document)".to_owned()
        } else {
            field
        },
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> (String, String) {
        match parse(text, Path::new("hawser.yaml")) {
            Err(FileError::Parse { field, message, .. }) => (field, message),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn unknown_field_is_named_with_its_position() {
        let (field, message) =
            parse_err("connections:\n  - name: a\n    url: http://x\n    toolz: {}\n");
        assert_eq!(field, "connections[0].toolz");
        assert!(message.contains("unknown field `toolz`"), "{message}");
        assert!(message.contains("line 4"), "{message}");
    }

    #[test]
    fn bad_duration_is_named_with_its_position() {
        let (field, message) = parse_err(
            "connections:\n  - name: a\n    url: http://x\n    timeouts: { call: 10 seconds }\n",
        );
        assert_eq!(field, "connections[0].timeouts.call");
        assert!(
            message.contains("invalid duration \"10 seconds\""),
            "{message}"
        );
        assert!(message.contains("line 4"), "{message}");
    }

    #[test]
    fn unknown_top_level_field_is_rejected() {
        let (field, message) = parse_err("listne: 127.0.0.1:8080\n");
        assert_eq!(field, "listne");
        assert!(message.contains("unknown field"), "{message}");
    }

    #[test]
    fn empty_file_is_the_default() {
        let raw = parse("", Path::new("x")).unwrap();
        assert!(raw.connections.is_empty());
    }
}
