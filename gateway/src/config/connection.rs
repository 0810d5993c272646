//! A connection spec resolved into what the gateway runs: parsed URL, compiled tool
//! globs, resolved secrets, validated name and prefix.

use std::collections::BTreeMap;
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use hawser_crds::{Auth, McpConnectionSpec, OAuth2Auth, SecretValue, TokenOwnership, Transport};
use http::{HeaderName, HeaderValue};
use url::Url;

use crate::crypto::Secret;

pub mod caller;
pub use caller::{CallerMode, CallerPolicy};

/// Where a connection was declared. Stored in `connections.source`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The gateway's config file.
    File,
    /// The admin API.
    Api,
    /// An `McpConnection` resource, written by the operator.
    Crd,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Api => "api",
            Self::Crd => "crd",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "file" => Some(Self::File),
            "api" => Some(Self::Api),
            "crd" => Some(Self::Crd),
            _ => None,
        }
    }
}

/// A spec problem, with the field it is about (`auth.token`, `tools.include[1]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

impl SpecError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// What a resolved connection talks to.
#[derive(Clone, Debug)]
pub enum Target {
    StreamableHttp(Url),
    Sse(Url),
    Stdio {
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
    },
}

/// Credentials towards the upstream.
#[derive(Clone, Debug)]
pub enum UpstreamAuth {
    None,
    /// Static headers (bearer becomes `Authorization`), marked sensitive.
    Headers(Vec<(HeaderName, HeaderValue)>),
    OAuth2(OAuth2Settings),
}

/// OAuth 2 settings with the client secret resolved.
#[derive(Clone, Debug)]
pub struct OAuth2Settings {
    pub spec: OAuth2Auth,
    pub client_secret: Option<Secret>,
}

/// Compiled include/exclude globs; `exclude` wins.
#[derive(Clone, Debug)]
pub struct ToolFilter {
    include: GlobSet,
    exclude: GlobSet,
}

impl ToolFilter {
    pub fn allows(&self, tool: &str) -> bool {
        self.include.is_match(tool) && !self.exclude.is_match(tool)
    }
}

/// A validated connection.
#[derive(Clone, Debug)]
pub struct ConnectionConfig {
    pub name: String,
    pub source: Source,
    pub target: Target,
    pub auth: UpstreamAuth,
    pub prefix: String,
    pub tools: ToolFilter,
    pub connect_timeout: Duration,
    pub call_timeout: Duration,
    /// What the upstream learns about the caller.
    pub caller: CallerPolicy,
    /// The spec as given, secrets resolved to inline values: what storage seals and
    /// what the admin API shows (redacted).
    pub spec: McpConnectionSpec,
}

impl ConnectionConfig {
    /// Whether each caller uses an upstream OAuth token of their own.
    pub fn per_user_tokens(&self) -> bool {
        matches!(&self.auth, UpstreamAuth::OAuth2(s) if s.spec.tokens == TokenOwnership::PerUser)
    }
}

/// What the resolver may accept, beyond the spec's own rules.
#[derive(Clone, Copy, Debug, Default)]
pub struct Policy {
    /// Allow `transport: stdio` from the admin API and CRDs. Off by default: it
    /// lets whoever writes connections run programs inside the gateway.
    pub allow_stdio_from_api: bool,
}

/// Longest `timeouts.connect`: a dial that takes longer is better reported as down.
pub const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Longest `timeouts.call`: a day (a client waiting longer has gone away).
pub const MAX_CALL_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Separator between prefix and name on the aggregated endpoint.
pub const PREFIX_SEPARATOR: &str = "__";

/// Checks a connection name: a DNS label (`github`, `jira-prod`), or for resources
/// from the cluster `<namespace>/<name>`.
pub fn validate_name(name: &str, source: Source) -> Result<(), SpecError> {
    let label_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    let ok = match (source, name.split_once('/')) {
        (Source::Crd, Some((ns, n))) => label_ok(ns) && label_ok(n),
        (_, None) => label_ok(name),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(SpecError::new(
            "name",
            format!(
                "{name:?} is not a valid connection name: use lowercase letters, digits and '-', \
                 at most 63 characters, starting and ending with a letter or digit"
            ),
        ))
    }
}

fn validate_prefix(prefix: &str, field: &str) -> Result<(), SpecError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 63
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !prefix.starts_with('-')
        && !prefix.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(SpecError::new(
            field,
            format!(
                "{prefix:?} is not a valid tool prefix: use letters, digits and '-' (no '_'), at most 63 characters"
            ),
        ))
    }
}

fn compile_globs(patterns: &[String], field: &str) -> Result<GlobSet, SpecError> {
    let mut builder = GlobSetBuilder::new();
    for (i, pattern) in patterns.iter().enumerate() {
        let glob = Glob::new(pattern).map_err(|e| {
            SpecError::new(
                format!("{field}[{i}]"),
                format!("invalid glob {pattern:?}: {}", e.kind()),
            )
        })?;
        builder.add(glob);
    }
    builder
        .build()
        .map_err(|e| SpecError::new(field, format!("invalid globs: {e}")))
}

fn parse_url(raw: &str, field: &str) -> Result<Url, SpecError> {
    let url =
        Url::parse(raw).map_err(|e| SpecError::new(field, format!("invalid URL {raw:?}: {e}")))?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(SpecError::new(
                field,
                format!("unsupported scheme {other:?}: use http or https"),
            ));
        }
    }
    if url.host().is_none() {
        return Err(SpecError::new(field, "URL has no host"));
    }
    Ok(url)
}

/// Resolves secret references to values. The config file resolves `env:`; the operator
/// resolves `secretKeyRef:` before a spec reaches the store; the admin API takes inline
/// values only.
pub trait SecretResolver {
    fn resolve(&self, value: &SecretValue, field: &str) -> Result<String, SpecError>;
}

/// Accepts inline values only (admin API, stored rows).
pub struct InlineOnly;

impl SecretResolver for InlineOnly {
    fn resolve(&self, value: &SecretValue, field: &str) -> Result<String, SpecError> {
        match value {
            SecretValue::Inline(v) => Ok(v.clone()),
            SecretValue::SecretKeyRef(_) => Err(SpecError::new(
                field,
                "secretKeyRef is only valid in an McpConnection resource; send the value itself",
            )),
            SecretValue::Env(_) => Err(SpecError::new(
                field,
                "env is only valid in the config file; send the value itself",
            )),
        }
    }
}

/// Resolves a spec into a [`ConnectionConfig`]. `name` wins over `spec.name`.
pub fn resolve(
    name: &str,
    mut spec: McpConnectionSpec,
    source: Source,
    policy: Policy,
    secrets: &dyn SecretResolver,
) -> Result<ConnectionConfig, SpecError> {
    validate_name(name, source)?;
    if let Some(given) = &spec.name
        && given != name
    {
        return Err(SpecError::new(
            "name",
            format!("body names {given:?} but the path names {name:?}"),
        ));
    }
    spec.name = None;

    for (pointer, value) in spec.secrets_mut() {
        let field = pointer.trim_start_matches('/').replace('/', ".");
        let resolved = secrets.resolve(value, &field)?;
        *value = SecretValue::Inline(resolved);
    }

    let target = match spec.transport {
        Transport::StreamableHttp | Transport::Sse => {
            let raw = spec
                .url
                .as_deref()
                .ok_or_else(|| SpecError::new("url", "required unless transport is stdio"))?;
            let url = parse_url(raw, "url")?;
            if spec.command.is_some() {
                return Err(SpecError::new(
                    "command",
                    "only valid with transport: stdio",
                ));
            }
            if spec.transport == Transport::Sse {
                Target::Sse(url)
            } else {
                Target::StreamableHttp(url)
            }
        }
        Transport::Stdio => {
            if source != Source::File && !policy.allow_stdio_from_api {
                return Err(SpecError::new(
                    "transport",
                    "stdio connections are accepted only from the gateway's config file \
                     (start the gateway with --allow-stdio-from-api to accept them here)",
                ));
            }
            let command = spec
                .command
                .clone()
                .filter(|c| !c.trim().is_empty())
                .ok_or_else(|| SpecError::new("command", "required with transport: stdio"))?;
            if spec.url.is_some() {
                return Err(SpecError::new(
                    "url",
                    "not used with transport: stdio; remove it",
                ));
            }
            Target::Stdio {
                command,
                args: spec.args.clone(),
                env: spec.env.clone(),
            }
        }
    };

    let auth = resolve_auth(&spec.auth)?;
    if matches!(target, Target::Stdio { .. }) && !matches!(auth, UpstreamAuth::None) {
        return Err(SpecError::new(
            "auth",
            "stdio connections take no auth; pass credentials in env",
        ));
    }

    let prefix = match &spec.tool_prefix {
        Some(p) => {
            validate_prefix(p, "toolPrefix")?;
            p.clone()
        }
        None => {
            let base = name.rsplit('/').next().unwrap_or(name);
            validate_prefix(base, "toolPrefix")?;
            base.to_owned()
        }
    };

    let tools = ToolFilter {
        include: compile_globs(&spec.tools.include, "tools.include")?,
        exclude: compile_globs(&spec.tools.exclude, "tools.exclude")?,
    };
    for (field, value, max) in [
        (
            "timeouts.connect",
            spec.timeouts.connect,
            MAX_CONNECT_TIMEOUT,
        ),
        ("timeouts.call", spec.timeouts.call, MAX_CALL_TIMEOUT),
    ] {
        if value.get() > max {
            return Err(SpecError::new(
                field,
                format!(
                    "{value} is longer than the {} the gateway allows",
                    hawser_crds::Duration::from_secs(max.as_secs())
                ),
            ));
        }
    }

    let caller = caller::resolve(
        &spec.identity,
        &spec.forward_headers,
        match &target {
            Target::StreamableHttp(u) | Target::Sse(u) => Some(u),
            _ => None,
        },
    )?;
    if matches!(&auth, UpstreamAuth::OAuth2(s) if s.spec.tokens == TokenOwnership::PerUser)
        && !matches!(target, Target::StreamableHttp(_))
    {
        return Err(SpecError::new(
            "auth.tokens",
            "perUser needs transport streamableHttp (an SSE stream is shared by every caller)",
        ));
    }
    Ok(ConnectionConfig {
        name: name.to_owned(),
        source,
        target,
        auth,
        prefix,
        tools,
        connect_timeout: spec.timeouts.connect.get(),
        call_timeout: spec.timeouts.call.get(),
        caller,
        spec,
    })
}

fn inline(value: &SecretValue) -> &str {
    // `resolve` replaced every secret with an inline value before this runs.
    value.inline().unwrap_or_default()
}

fn sensitive_value(value: &str, field: &str) -> Result<HeaderValue, SpecError> {
    let mut v = HeaderValue::from_str(value)
        .map_err(|_| SpecError::new(field, "value is not a valid HTTP header value"))?;
    v.set_sensitive(true);
    Ok(v)
}

fn resolve_auth(auth: &Auth) -> Result<UpstreamAuth, SpecError> {
    Ok(match auth {
        Auth::None => UpstreamAuth::None,
        Auth::Bearer { token } => {
            let token = inline(token);
            if token.is_empty() {
                return Err(SpecError::new("auth.token", "must not be empty"));
            }
            let value = sensitive_value(&format!("Bearer {token}"), "auth.token")?;
            UpstreamAuth::Headers(vec![(http::header::AUTHORIZATION, value)])
        }
        Auth::Header { headers } => {
            if headers.is_empty() {
                return Err(SpecError::new(
                    "auth.headers",
                    "must name at least one header",
                ));
            }
            let mut out = Vec::with_capacity(headers.len());
            for (name, value) in headers {
                let field = format!("auth.headers.{name}");
                let header = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| SpecError::new(&field, "not a valid HTTP header name"))?;
                if is_reserved_header(&header) {
                    return Err(SpecError::new(
                        &field,
                        "this header is managed by the gateway",
                    ));
                }
                out.push((header, sensitive_value(inline(value), &field)?));
            }
            UpstreamAuth::Headers(out)
        }
        Auth::Oauth2(oauth) => {
            for (field, url) in [
                ("auth.authorizationUrl", &oauth.authorization_url),
                ("auth.tokenUrl", &oauth.token_url),
            ] {
                if let Some(url) = url {
                    parse_url(url, field)?;
                }
            }
            if oauth.authorization_url.is_some() && oauth.token_url.is_none() {
                return Err(SpecError::new(
                    "auth.tokenUrl",
                    "required with auth.authorizationUrl (give both, or neither to discover them)",
                ));
            }
            if oauth.client_id.is_empty() {
                return Err(SpecError::new("auth.clientId", "must not be empty"));
            }
            if oauth.tokens == TokenOwnership::PerUser
                && oauth.grant != hawser_crds::OAuth2Grant::AuthorizationCode
            {
                return Err(SpecError::new(
                    "auth.tokens",
                    "perUser needs grant authorization_code (each user consents in a browser)",
                ));
            }
            UpstreamAuth::OAuth2(OAuth2Settings {
                spec: oauth.clone(),
                client_secret: oauth.client_secret.as_ref().map(|s| Secret::new(inline(s))),
            })
        }
    })
}

/// Headers the gateway sets itself; a connection may not override them.
fn is_reserved_header(name: &HeaderName) -> bool {
    const RESERVED: &[&str] = &[
        "host",
        "content-length",
        "content-type",
        "accept",
        "connection",
        "transfer-encoding",
        "mcp-session-id",
        "mcp-protocol-version",
        "last-event-id",
    ];
    RESERVED.contains(&name.as_str())
}

#[cfg(test)]
mod tests;
