//! Who is calling. The front turns a request into an [`Identity`] or a typed
//! [`Rejection`] through [`Authenticator::authenticate`], and knows nothing of how:
//! OIDC access tokens ([`oidc`]), API keys ([`apikeys`]) or the config file's static
//! tokens. [`metadata`] describes Hawser as an OAuth protected resource (RFC 9728) so
//! that MCP clients can sign in by themselves.

pub mod apikeys;
pub mod metadata;
pub mod oidc;
pub mod signing;
pub mod upstream;

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, StatusCode};

use crate::config::ClientAuth;
use crate::crypto::{IdHash, Secret};
use crate::endpoint::Endpoint;
use apikeys::ApiKeys;
use metadata::Resource;
use oidc::Oidc;

/// How a caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// Client authentication is off: everyone is `anonymous`.
    None,
    /// One of the config file's static bearer tokens.
    StaticToken,
    /// An API key issued through the admin API.
    ApiKey,
    /// An access token from the OpenID Connect provider.
    Oidc,
}

impl AuthMethod {
    /// As recorded in audit rows (`auth_type`) and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::StaticToken => "bearer",
            Self::ApiKey => "apikey",
            Self::Oidc => "oidc",
        }
    }
}

/// The authenticated caller.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    pub method: AuthMethod,
    pub groups: Vec<String>,
    pub scopes: Vec<String>,
    /// The access token the caller presented (OIDC only), kept for token exchange
    /// towards upstreams; never passed through, never logged.
    pub token: Option<Secret>,
    /// The token's claims (OIDC only), for policy conditions (`caller.claims`).
    pub claims: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("subject", &self.subject)
            .field("method", &self.method)
            .field("groups", &self.groups)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The caller when client authentication is off.
    pub fn anonymous() -> Self {
        Self::named("anonymous", AuthMethod::None, Vec::new())
    }

    fn named(subject: &str, method: AuthMethod, groups: Vec<String>) -> Self {
        Self {
            subject: subject.to_owned(),
            method,
            groups,
            scopes: Vec::new(),
            token: None,
            claims: None,
        }
    }
}

/// Why a credential was refused. Labels are metric and audit values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid bearer token")]
    Invalid,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's signing algorithm is not accepted")]
    Algorithm,
    #[error("the token is signed with an unknown key")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by another issuer")]
    Issuer,
    #[error("the token was issued for another resource")]
    Audience,
    #[error("the token names no subject")]
    NoSubject,
    #[error("the API key was revoked")]
    Revoked,
    #[error("the token lacks a required scope")]
    InsufficientScope,
    #[error("the identity provider's keys are not available yet")]
    Unavailable,
}

impl Reason {
    /// A short label for metrics and audit rows.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Invalid => "invalid",
            Self::Malformed => "malformed",
            Self::Algorithm => "algorithm",
            Self::UnknownKey => "unknown_key",
            Self::Signature => "signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::NoSubject => "no_subject",
            Self::Revoked => "revoked",
            Self::InsufficientScope => "insufficient_scope",
            Self::Unavailable => "unavailable",
        }
    }
}

/// A refused request: why, and the `WWW-Authenticate` challenge that tells the client
/// where to sign in (RFC 6750 §3, RFC 9728 §5.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Rejection {
    pub reason: Reason,
    pub challenge: HeaderValue,
}

impl Rejection {
    /// 401, 403 for a token lacking scope, 503 while the provider's keys are unknown.
    pub fn status(&self) -> StatusCode {
        match self.reason {
            Reason::InsufficientScope => StatusCode::FORBIDDEN,
            Reason::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// A short label for metrics and audit rows.
    pub fn reason(&self) -> &'static str {
        self.reason.label()
    }
}

/// Turns requests into identities with whatever `clientAuth` enables.
pub struct Authenticator {
    open: bool,
    tokens: Vec<crate::config::StaticToken>,
    api_keys: Option<Arc<ApiKeys>>,
    oidc: Option<Arc<Oidc>>,
    resource: Resource,
    towards: upstream::Towards,
}

impl Authenticator {
    pub fn new(
        auth: &ClientAuth,
        public_url: Option<url::Url>,
        api_keys: Option<Arc<ApiKeys>>,
        signer: Option<Arc<signing::Signer>>,
    ) -> Self {
        let resource = Resource::new(public_url, auth.oidc.as_ref());
        let oidc = auth.oidc.clone().map(|s| Arc::new(Oidc::new(s)));
        Self {
            open: auth.is_open(),
            tokens: auth.tokens.clone(),
            api_keys: if auth.api_keys { api_keys } else { None },
            towards: upstream::Towards::new(signer, oidc.clone()),
            oidc,
            resource,
        }
    }

    /// Whether client authentication is off (every caller is `anonymous`).
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The caller's identity towards upstreams.
    pub fn towards(&self) -> &upstream::Towards {
        &self.towards
    }

    /// The OIDC validator, when `clientAuth.oidc` is set.
    pub fn oidc(&self) -> Option<&Arc<Oidc>> {
        self.oidc.as_ref()
    }

    /// Where Hawser's protected resource metadata is, and what it says.
    pub fn resource(&self) -> &Resource {
        &self.resource
    }

    /// Authenticates the caller of a request to `endpoint`.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        endpoint: &Endpoint,
    ) -> Result<Arc<Identity>, Rejection> {
        if self.open {
            return Ok(anonymous());
        }
        let reject = |reason: Reason| {
            let challenge = self.resource.challenge(headers, endpoint, &reason);
            Rejection { reason, challenge }
        };
        let token = crate::headers::bearer(headers).ok_or_else(|| reject(Reason::Missing))?;
        if let Some(keys) = &self.api_keys
            && apikeys::looks_like_key(token)
        {
            return keys.check(token).map_err(reject);
        }
        let digest = IdHash::of(token);
        // Compare with every entry, each in constant time, so timing does not tell
        // which one matched.
        let mut found = None;
        for t in &self.tokens {
            if digest.matches(&t.digest) {
                found = Some(t);
            }
        }
        if let Some(t) = found {
            return Ok(Arc::new(Identity::named(
                &t.subject,
                AuthMethod::StaticToken,
                t.groups.clone(),
            )));
        }
        match &self.oidc {
            Some(oidc) => oidc
                .verify(token, digest, |aud| {
                    self.resource.accepts(headers, endpoint, aud)
                })
                .await
                .map_err(reject),
            None => Err(reject(Reason::Invalid)),
        }
    }
}

fn anonymous() -> Arc<Identity> {
    static ANONYMOUS: std::sync::LazyLock<Arc<Identity>> =
        std::sync::LazyLock::new(|| Arc::new(Identity::anonymous()));
    ANONYMOUS.clone()
}

#[cfg(test)]
mod tests;
