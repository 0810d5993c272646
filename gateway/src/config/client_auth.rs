//! How MCP clients prove who they are: OIDC access tokens, API keys, static tokens.

use std::time::Duration;

use url::Url;

use super::env::FileSecrets;
use super::file::{RawClientAuth, RawClientAuthType, RawOidc};
use super::{ConfigError, SecretResolver, invalid};
use crate::crypto::IdHash;

/// How MCP clients prove who they are. Nothing enabled: everyone is `anonymous`.
#[derive(Clone, Default)]
pub struct ClientAuth {
    /// The config file's static bearer tokens.
    pub tokens: Vec<StaticToken>,
    /// JWT access tokens from an OpenID Connect provider.
    pub oidc: Option<OidcSettings>,
    /// API keys issued through the admin API.
    pub api_keys: bool,
}

impl ClientAuth {
    /// Whether every caller is let in as `anonymous`.
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty() && self.oidc.is_none() && !self.api_keys
    }
}

/// One static bearer token: who presents it, and its SHA-256.
#[derive(Clone)]
pub struct StaticToken {
    pub subject: String,
    pub digest: IdHash,
    pub groups: Vec<String>,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let subjects: Vec<&str> = self.tokens.iter().map(|t| t.subject.as_str()).collect();
        f.debug_struct("ClientAuth")
            .field("tokens", &subjects)
            .field("oidc", &self.oidc)
            .field("api_keys", &self.api_keys)
            .finish()
    }
}

/// `clientAuth.oidc`, checked.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub issuer: Url,
    /// Accepted `aud` values; empty means the endpoint's own resource URL.
    pub audiences: Vec<String>,
    pub jwks_uri: Option<Url>,
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    pub clock_skew: Duration,
    pub subject_claim: String,
    pub groups_claim: String,
    pub scopes_required: Vec<String>,
    /// What clients are told to ask for (metadata, challenges).
    pub scopes_supported: Vec<String>,
    pub authorization_servers: Vec<String>,
    pub jwks_refresh_interval: Duration,
}

/// Algorithms accepted unless `algorithms:` says otherwise.
pub const DEFAULT_ALGORITHMS: [jsonwebtoken::Algorithm; 3] = [
    jsonwebtoken::Algorithm::RS256,
    jsonwebtoken::Algorithm::ES256,
    jsonwebtoken::Algorithm::EdDSA,
];

/// Whether `url` may be fetched without TLS: only on a loopback host.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn https_url(text: &str, field: &str) -> Result<Url, ConfigError> {
    let url =
        Url::parse(text).map_err(|e| invalid(field, format!("{text:?} is not a URL: {e}")))?;
    if url.scheme() != "https" && !(url.scheme() == "http" && is_loopback(&url)) {
        return Err(invalid(
            field,
            format!("{text:?} must be https (http only on a loopback host)"),
        ));
    }
    Ok(url)
}

fn algorithm(name: &str, field: &str) -> Result<jsonwebtoken::Algorithm, ConfigError> {
    use jsonwebtoken::Algorithm as A;
    Ok(match name {
        "RS256" => A::RS256,
        "RS384" => A::RS384,
        "RS512" => A::RS512,
        "PS256" => A::PS256,
        "PS384" => A::PS384,
        "PS512" => A::PS512,
        "ES256" => A::ES256,
        "ES384" => A::ES384,
        "EdDSA" => A::EdDSA,
        "none" | "HS256" | "HS384" | "HS512" => {
            return Err(invalid(
                field,
                format!(
                    "{name} is never accepted: a provider's tokens are checked with its public keys"
                ),
            ));
        }
        other => {
            return Err(invalid(
                field,
                format!(
                    "unknown algorithm {other:?} (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"
                ),
            ));
        }
    })
}

fn oidc(raw: RawOidc) -> Result<OidcSettings, ConfigError> {
    let issuer = https_url(raw.issuer.trim_end_matches('/'), "clientAuth.oidc.issuer")?;
    let jwks_uri = raw
        .jwks_uri
        .as_deref()
        .map(|u| https_url(u, "clientAuth.oidc.jwksUri"))
        .transpose()?;
    let algorithms = if raw.algorithms.is_empty() {
        DEFAULT_ALGORITHMS.to_vec()
    } else {
        raw.algorithms
            .iter()
            .enumerate()
            .map(|(i, a)| algorithm(a, &format!("clientAuth.oidc.algorithms[{i}]")))
            .collect::<Result<_, _>>()?
    };
    for (i, a) in raw.audiences.iter().enumerate() {
        if a.trim().is_empty() {
            return Err(invalid(
                &format!("clientAuth.oidc.audiences[{i}]"),
                "must not be empty",
            ));
        }
    }
    let claim = |value: Option<String>, default: &str, field: &str| match value {
        Some(c) if c.trim().is_empty() => Err(invalid(field, "must not be empty")),
        Some(c) => Ok(c),
        None => Ok(default.to_owned()),
    };
    let clock_skew = raw.clock_skew.map_or(Duration::from_secs(60), |d| d.get());
    if clock_skew > Duration::from_secs(600) {
        return Err(invalid(
            "clientAuth.oidc.clockSkew",
            "at most 10m: a larger skew keeps expired tokens alive",
        ));
    }
    let authorization_servers = if raw.authorization_servers.is_empty() {
        vec![issuer.as_str().trim_end_matches('/').to_owned()]
    } else {
        raw.authorization_servers
    };
    Ok(OidcSettings {
        audiences: raw.audiences,
        jwks_uri,
        algorithms,
        clock_skew,
        subject_claim: claim(raw.subject_claim, "sub", "clientAuth.oidc.subjectClaim")?,
        groups_claim: claim(raw.groups_claim, "groups", "clientAuth.oidc.groupsClaim")?,
        scopes_supported: if raw.scopes_supported.is_empty() {
            raw.scopes_required.clone()
        } else {
            raw.scopes_supported
        },
        scopes_required: raw.scopes_required,
        authorization_servers,
        jwks_refresh_interval: raw
            .jwks_refresh_interval
            .map_or(Duration::from_secs(30), |d| d.get()),
        issuer,
    })
}

/// Resolves `clientAuth:`; `env:` tokens come from the environment.
pub(super) fn resolve(
    raw: RawClientAuth,
    secrets: &FileSecrets<'_>,
) -> Result<ClientAuth, ConfigError> {
    match raw.kind {
        Some(RawClientAuthType::None)
            if raw.oidc.is_some() || raw.api_keys || !raw.tokens.is_empty() =>
        {
            return Err(invalid(
                "clientAuth.type",
                "`none` lets everyone in: drop it to use oidc, apiKeys or tokens",
            ));
        }
        Some(RawClientAuthType::Bearer) if raw.tokens.is_empty() => {
            return Err(invalid(
                "clientAuth.tokens",
                "bearer client auth needs at least one token",
            ));
        }
        _ => {}
    }
    let mut tokens = Vec::with_capacity(raw.tokens.len());
    for (i, t) in raw.tokens.into_iter().enumerate() {
        let field = format!("clientAuth.tokens[{i}]");
        let digest = match (t.token, t.sha256) {
            (Some(token), None) => {
                let token = secrets
                    .resolve(&token, &format!("{field}.token"))
                    .map_err(|e| invalid(&e.field, e.message))?;
                IdHash::of(&token)
            }
            (None, Some(hex)) => IdHash::from_hex(&hex)
                .ok_or_else(|| invalid(&format!("{field}.sha256"), "expected 64 hex digits"))?,
            _ => return Err(invalid(&field, "give exactly one of token and sha256")),
        };
        if t.subject.is_empty() {
            return Err(invalid(&format!("{field}.subject"), "must not be empty"));
        }
        tokens.push(StaticToken {
            subject: t.subject,
            digest,
            groups: t.groups,
        });
    }
    Ok(ClientAuth {
        tokens,
        oidc: raw.oidc.map(oidc).transpose()?,
        api_keys: raw.api_keys,
    })
}
