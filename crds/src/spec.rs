//! `McpConnectionSpec`: how to reach one upstream MCP server and what to expose.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::{Duration, McpConnectionStatus, SecretValue};

/// An upstream MCP server that Hawser connects to and re-exports.
///
/// The config file and the admin API use the same fields; there secret values may
/// also be written inline.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "hawser.dev",
    version = "v1alpha1",
    kind = "McpConnection",
    namespaced,
    shortname = "mcpc",
    category = "hawser",
    status = "McpConnectionStatus",
    derive = "PartialEq",
    doc = "An upstream MCP server exposed through the Hawser gateway.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Tools", type_ = "integer", json_path = ".status.tools"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("has(self.transport) && self.transport == 'stdio' ? has(self.command) : has(self.url)")
    .message("url is required unless transport is stdio, which requires command"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpConnectionSpec {
    /// The connection's name. Only the config file's `connections:` entries carry it;
    /// the admin API takes it from the path and the CRD from `metadata.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub name: Option<String>,

    /// Endpoint of the upstream: the Streamable HTTP endpoint (e.g.
    /// `https://mcp.example.com/mcp`) or, for `transport: sse`, the SSE endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), regex(pattern = r"^https?://"))]
    pub url: Option<String>,

    /// How Hawser talks to the upstream. Default `streamableHttp`.
    #[serde(default, skip_serializing_if = "Transport::is_default")]
    pub transport: Transport,

    /// Program to run for `transport: stdio`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,

    /// Arguments for `command`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,

    /// Extra environment for `command`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,

    /// Credentials Hawser presents to the upstream. Default `{type: none}`.
    #[serde(default, skip_serializing_if = "Auth::is_none")]
    pub auth: Auth,

    /// Prefix of this connection's tools and prompts on the aggregated endpoint
    /// (`<prefix>__<name>`). Default: the connection's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"))]
    pub tool_prefix: Option<String>,

    /// Which of the upstream's tools are exposed.
    #[serde(default, skip_serializing_if = "ToolFilter::is_default")]
    pub tools: ToolFilter,

    /// Time limits for reaching the upstream and for each call.
    #[serde(default, skip_serializing_if = "Timeouts::is_default")]
    pub timeouts: Timeouts,

    /// What the upstream learns about the caller. Default `{mode: none}`.
    #[serde(default, skip_serializing_if = "CallerIdentity::is_none")]
    pub identity: CallerIdentity,

    /// Client request headers passed on to the upstream (case-insensitive names, e.g.
    /// `X-Tenant-Id`). `Authorization`, `Cookie`, `Host`, `Mcp-*` and hop-by-hop
    /// headers are never passed, whatever this says. `X-Request-Id` and `traceparent`
    /// are always set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forward_headers: Vec<String>,
}

/// How the caller's identity reaches the upstream. The client's own credential is
/// never passed through.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(tag = "mode", rename_all = "camelCase", deny_unknown_fields)]
pub enum CallerIdentity {
    /// The upstream learns nothing about the caller.
    #[default]
    None,
    /// Plain headers: for an upstream behind a trusted network path.
    #[serde(rename_all = "camelCase")]
    Headers {
        /// Header carrying the subject. Default `X-Forwarded-User`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject_header: Option<String>,
        /// Header carrying the groups, comma-separated. Default `X-Forwarded-Groups`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        groups_header: Option<String>,
    },
    /// A short-lived JWT signed by Hawser (ES256; keys at `/.well-known/jwks.json`):
    /// `iss` = Hawser, `aud` = the upstream, `sub`, `groups`, `act` naming Hawser.
    #[serde(rename_all = "camelCase")]
    Jwt {
        /// Header carrying the assertion. Default `X-Hawser-Identity`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<String>,
        /// `aud` of the assertion. Default: the connection's `url`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
        /// Lifetime of an assertion. Default `5m`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl: Option<Duration>,
    },
    /// RFC 8693 token exchange at the identity provider: the caller's access token is
    /// exchanged for one meant for this upstream (cached per caller until it expires).
    #[serde(rename_all = "camelCase")]
    Exchange {
        /// Token endpoint. Default: the one `clientAuth.oidc`'s discovery names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_url: Option<String>,
        /// Hawser's client at the provider.
        client_id: String,
        /// Its secret.
        client_secret: SecretValue,
        /// `audience` to ask for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
        /// `resource` to ask for (RFC 8707). Default: the connection's `url` when no
        /// `audience` is given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resource: Option<String>,
        /// `scope` to ask for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
        /// Header carrying the exchanged token as `Bearer …`. Default `Authorization`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<String>,
    },
}

impl CallerIdentity {
    fn is_none(&self) -> bool {
        matches!(self, Self::None)
    }
}

/// As for [`Auth`]: one object with every mode's fields, and CEL rules tying each
/// field to its mode.
impl schemars::JsonSchema for CallerIdentity {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CallerIdentity".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let secret = generator.subschema_for::<SecretValue>();
        let duration = generator.subschema_for::<Duration>();
        let text = |d: &str| serde_json::json!({"type": "string", "description": d});
        let properties = serde_json::json!({
            "mode": {"type": "string", "enum": ["none", "headers", "jwt", "exchange"],
                "description": "none | headers | jwt | exchange"},
            "subjectHeader": text("headers: header carrying the subject (default X-Forwarded-User)."),
            "groupsHeader": text("headers: header carrying the groups, comma-separated (default X-Forwarded-Groups)."),
            "header": text("jwt: header carrying the assertion (default X-Hawser-Identity); exchange: header carrying the token (default Authorization)."),
            "audience": text("jwt: aud of the assertion (default: url); exchange: audience to ask for."),
            "ttl": duration,
            "tokenUrl": text("exchange: token endpoint (default: clientAuth.oidc's)."),
            "clientId": text("exchange: Hawser's client at the provider."),
            "clientSecret": secret,
            "resource": text("exchange: resource to ask for (default: url when no audience)."),
            "scope": text("exchange: scope to ask for."),
        });
        let only = |fields: &[&str], mode: &str| {
            let has: Vec<String> = fields.iter().map(|f| format!("has(self.{f})")).collect();
            serde_json::json!({
                "rule": format!("self.mode == '{mode}' || !({})", has.join(" || ")),
                "message": format!("{} only valid with identity mode {mode}", fields.join(", ")),
            })
        };
        let validations = serde_json::json!([
            {"rule": "self.mode != 'exchange' || (has(self.clientId) && has(self.clientSecret))",
             "message": "identity mode exchange requires clientId and clientSecret"},
            only(&["subjectHeader", "groupsHeader"], "headers"),
            only(&["ttl"], "jwt"),
            only(&["tokenUrl", "clientId", "clientSecret", "resource", "scope"], "exchange"),
            {"rule": "self.mode == 'jwt' || self.mode == 'exchange' || !(has(self.header) || has(self.audience))",
             "message": "header and audience are only valid with identity modes jwt and exchange"},
        ]);
        schemars::json_schema!({
            "type": "object",
            "description": "What the upstream learns about the caller.",
            "required": ["mode"],
            "properties": properties,
            "x-kubernetes-validations": validations
        })
    }
}

/// Transport towards the upstream.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Transport {
    /// MCP Streamable HTTP (revisions 2025-03-26 and later).
    #[default]
    StreamableHttp,
    /// The legacy HTTP+SSE transport (revision 2024-11-05).
    Sse,
    /// A local process speaking MCP on stdin/stdout.
    Stdio,
}

impl Transport {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Credentials towards the upstream. Hawser never forwards the client's own
/// credential to an upstream.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The bearer token.
        token: SecretValue,
    },
    /// Static request headers, e.g. `X-API-Key`.
    Header {
        /// Header name to value.
        headers: BTreeMap<String, SecretValue>,
    },
    /// OAuth 2 (authorization_code with PKCE, or client_credentials).
    Oauth2(OAuth2Auth),
}

impl Auth {
    fn is_none(&self) -> bool {
        matches!(self, Self::None)
    }
}

/// A Kubernetes structural schema cannot express "one object shape per `type`", so the
/// CRD sees one object with every variant's fields, and CEL rules that tie each field
/// to its `type` (the API server then rejects `{type: bearer}` without a token).
impl schemars::JsonSchema for Auth {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Auth".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let secret = generator.subschema_for::<SecretValue>();
        let mut properties = serde_json::Map::new();
        properties.insert(
            "type".into(),
            serde_json::json!({
                "type": "string",
                "enum": ["none", "bearer", "header", "oauth2"],
                "description": "none | bearer | header | oauth2"
            }),
        );
        properties.insert("token".into(), serde_json::json!(secret));
        properties.insert(
            "headers".into(),
            serde_json::json!({
                "type": "object",
                "description": "Header name to value (type header).",
                "additionalProperties": secret
            }),
        );
        let oauth = generator.root_schema_for::<OAuth2Auth>();
        if let Some(oauth_props) = oauth.get("properties").and_then(|p| p.as_object()) {
            // No `default`s: the API server would add them to every `auth` object, and
            // a bearer or header auth with an OAuth field is rejected when read. The
            // serde defaults apply instead, for OAuth only.
            for (name, prop) in oauth_props {
                let mut prop = prop.clone();
                if let Some(obj) = prop.as_object_mut() {
                    obj.remove("default");
                }
                properties.insert(name.clone(), prop);
            }
        }
        let rules = [
            (
                "self.type != 'bearer' || has(self.token)",
                "auth type bearer requires token",
            ),
            (
                "self.type != 'header' || has(self.headers)",
                "auth type header requires headers",
            ),
            (
                "self.type != 'oauth2' || (has(self.grant) && has(self.clientId))",
                "auth type oauth2 requires grant and clientId",
            ),
            (
                "!has(self.tokens) || self.tokens != 'perUser' || self.grant == 'authorization_code'",
                "tokens perUser requires grant authorization_code",
            ),
            (
                "self.type == 'bearer' || !has(self.token)",
                "token is only valid with auth type bearer",
            ),
            (
                "self.type == 'header' || !has(self.headers)",
                "headers is only valid with auth type header",
            ),
            (
                "self.type == 'oauth2' || !(has(self.grant) || has(self.clientId) || has(self.clientSecret) || has(self.scopes) || has(self.tokenUrl) || has(self.authorizationUrl) || has(self.tokens))",
                "OAuth fields are only valid with auth type oauth2",
            ),
        ];
        let validations: Vec<_> = rules
            .iter()
            .map(|(rule, message)| serde_json::json!({"rule": rule, "message": message}))
            .collect();
        schemars::json_schema!({
            "type": "object",
            "description": "Credentials Hawser presents to the upstream.",
            "required": ["type"],
            "properties": properties,
            "x-kubernetes-validations": validations
        })
    }
}

/// OAuth 2 client settings for an upstream.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OAuth2Auth {
    /// The grant Hawser uses to obtain tokens.
    pub grant: OAuth2Grant,
    /// Client identifier registered with the authorization server.
    #[schemars(length(min = 1))]
    pub client_id: String,
    /// Client secret; omit for a public client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<SecretValue>,
    /// Scopes to request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Authorization endpoint; discovered from the upstream when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub authorization_url: Option<String>,
    /// Token endpoint; discovered from the upstream when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub token_url: Option<String>,
    /// How the client authenticates at the token endpoint. Default `basic`.
    #[serde(default)]
    pub endpoint_auth: EndpointAuth,
    /// Extra parameters for the authorization request and for client_credentials token
    /// requests (e.g. `audience`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_params: BTreeMap<String, String>,
    /// RFC 8707 resource indicator. Default: the connection's `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Whose tokens: `shared` (one for every caller, authorized by an operator) or
    /// `perUser` (each caller consents for their own upstream account). Default
    /// `shared`.
    #[serde(default, skip_serializing_if = "TokenOwnership::is_shared")]
    pub tokens: TokenOwnership,
}

/// Who an OAuth connection's tokens belong to.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum TokenOwnership {
    /// One token for every caller.
    #[default]
    Shared,
    /// One token per caller (subject), obtained with the caller's consent.
    PerUser,
}

impl TokenOwnership {
    pub fn is_shared(&self) -> bool {
        *self == Self::Shared
    }
}

/// OAuth 2 grant types Hawser can drive.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OAuth2Grant {
    /// An operator authorizes once in a browser; Hawser keeps and refreshes the token.
    AuthorizationCode,
    /// Machine-to-machine: Hawser fetches tokens with its client credentials.
    ClientCredentials,
}

/// Client authentication at the token endpoint.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum EndpointAuth {
    /// HTTP Basic (`client_secret_basic`).
    #[default]
    Basic,
    /// Credentials in the form body (`client_secret_post`).
    Post,
}

/// Glob lists over the upstream's tool names (`*` and `?`); `exclude` wins.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolFilter {
    /// Tools to expose. Default `["*"]`.
    #[serde(default = "ToolFilter::all")]
    #[schemars(inner(length(min = 1, max = 256)))]
    pub include: Vec<String>,
    /// Tools to hide.
    #[serde(default)]
    #[schemars(inner(length(min = 1, max = 256)))]
    pub exclude: Vec<String>,
}

impl ToolFilter {
    fn all() -> Vec<String> {
        vec!["*".to_owned()]
    }

    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for ToolFilter {
    fn default() -> Self {
        Self {
            include: Self::all(),
            exclude: Vec::new(),
        }
    }
}

/// Time limits towards the upstream.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timeouts {
    /// Connecting and initializing. Default `10s`.
    #[serde(default = "Timeouts::default_connect")]
    pub connect: Duration,
    /// One request, from sending it to its response. Default `60s`.
    #[serde(default = "Timeouts::default_call")]
    pub call: Duration,
}

impl Timeouts {
    fn default_connect() -> Duration {
        Duration::from_secs(10)
    }

    fn default_call() -> Duration {
        Duration::from_secs(60)
    }

    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Self::default_connect(),
            call: Self::default_call(),
        }
    }
}

impl McpConnectionSpec {
    /// Every secret value in the spec with its JSON pointer (`/auth/token`,
    /// `/auth/headers/X-API-Key`, `/auth/clientSecret`), in a stable order.
    ///
    /// Storage seals the values found here and blanks them in the stored spec; the
    /// operator resolves the `secretKeyRef`s found here.
    pub fn secrets(&self) -> Vec<(String, &SecretValue)> {
        match &self.auth {
            Auth::None => Vec::new(),
            Auth::Bearer { token } => vec![("/auth/token".to_owned(), token)],
            Auth::Header { headers } => headers
                .iter()
                .map(|(name, value)| (format!("/auth/headers/{}", escape_pointer(name)), value))
                .collect(),
            Auth::Oauth2(oauth) => oauth
                .client_secret
                .iter()
                .map(|v| ("/auth/clientSecret".to_owned(), v))
                .collect(),
        }
    }

    /// Mutable form of [`Self::secrets`].
    pub fn secrets_mut(&mut self) -> Vec<(String, &mut SecretValue)> {
        let mut out = match &mut self.auth {
            Auth::None => Vec::new(),
            Auth::Bearer { token } => vec![("/auth/token".to_owned(), token)],
            Auth::Header { headers } => headers
                .iter_mut()
                .map(|(name, value)| (format!("/auth/headers/{}", escape_pointer(name)), value))
                .collect(),
            Auth::Oauth2(oauth) => oauth
                .client_secret
                .iter_mut()
                .map(|v| ("/auth/clientSecret".to_owned(), v))
                .collect(),
        };
        if let CallerIdentity::Exchange { client_secret, .. } = &mut self.identity {
            out.push(("/identity/clientSecret".to_owned(), client_secret));
        }
        out
    }
}

/// RFC 6901 escaping of one pointer segment.
fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_lists_every_secret_with_its_pointer() {
        let spec: McpConnectionSpec = serde_json::from_value(serde_json::json!({
            "url": "http://x",
            "auth": {"type": "header", "headers": {"X-Key": "a", "a/b": {"env": "B"}}}
        }))
        .unwrap();
        let found: Vec<_> = spec.secrets().into_iter().map(|(p, _)| p).collect();
        assert_eq!(found, ["/auth/headers/X-Key", "/auth/headers/a~1b"]);
        let json = serde_json::to_value(&spec).unwrap();
        for pointer in found {
            assert!(
                json.pointer(&pointer).is_some(),
                "{pointer} must address the value"
            );
        }
    }

    #[test]
    fn defaults_are_omitted_when_serialized() {
        let spec: McpConnectionSpec =
            serde_json::from_value(serde_json::json!({"url": "http://x"})).unwrap();
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            serde_json::json!({"url": "http://x"})
        );
        assert_eq!(spec.timeouts.call.get().as_secs(), 60);
        assert_eq!(spec.tools.include, ["*"]);
    }
}
