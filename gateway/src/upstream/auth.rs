//! Credentials Hawser presents to an upstream. The client's own credential is never
//! among them: upstream requests are built from scratch (MCP forbids token passthrough).

use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderMap, HeaderValue};

use super::UpstreamError;
use crate::config::{ConnectionConfig, UpstreamAuth};
use crate::crypto::Secret;

/// Supplies OAuth access tokens for one connection. `subject` is the caller a request
/// is made for (`None`: Hawser's own requests, such as discovery); a connection with
/// shared tokens ignores it.
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// A current access token, refreshed first when it is about to expire.
    async fn token(&self, subject: Option<&str>) -> Result<Secret, UpstreamError>;
    /// The upstream rejected `token`: refresh once. `Ok(true)` when a retry with new
    /// credentials is worthwhile; an error says why there are none.
    async fn rejected(&self, token: &Secret, subject: Option<&str>) -> Result<bool, UpstreamError>;
    /// Another replica changed the token of `subject`: forget this replica's copy.
    fn forget(&self, _subject: &str) {}
}

/// What goes on every request to the upstream.
#[derive(Clone, Default)]
pub enum Credentials {
    #[default]
    None,
    /// Static headers (bearer token, API keys), already marked sensitive.
    Static(HeaderMap),
    /// OAuth 2 bearer tokens from a token source.
    OAuth(Arc<dyn TokenSource>),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Static(h) => f
                .debug_tuple("Static")
                .field(&h.keys().collect::<Vec<_>>())
                .finish(),
            Self::OAuth(_) => f.write_str("OAuth"),
        }
    }
}

impl Credentials {
    /// Headers for the next request made for `subject`.
    pub async fn headers(&self, subject: Option<&str>) -> Result<HeaderMap, UpstreamError> {
        match self {
            Self::None => Ok(HeaderMap::new()),
            Self::Static(h) => Ok(h.clone()),
            Self::OAuth(source) => {
                let token = source.token(subject).await?;
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                    .map_err(|_| {
                        UpstreamError::NotAuthorized(
                            "access token is not a valid header value".into(),
                        )
                    })?;
                value.set_sensitive(true);
                let mut h = HeaderMap::new();
                h.insert(http::header::AUTHORIZATION, value);
                Ok(h)
            }
        }
    }

    /// After a 401/403: whether retrying with fresh credentials is worthwhile, or why
    /// there are none.
    pub async fn rejected(
        &self,
        sent: &HeaderMap,
        subject: Option<&str>,
    ) -> Result<bool, UpstreamError> {
        let Self::OAuth(source) = self else {
            return Ok(false);
        };
        let token = crate::headers::bearer(sent).map(Secret::new);
        match token {
            Some(t) => source.rejected(&t, subject).await,
            None => Ok(false),
        }
    }

    /// Another replica changed the token of `subject`.
    pub fn forget(&self, subject: &str) {
        if let Self::OAuth(source) = self {
            source.forget(subject);
        }
    }
}

/// Builds the credentials of a connection (static headers here; OAuth token sources
/// are plugged in by the OAuth module).
pub trait CredentialsFactory: Send + Sync {
    fn credentials(&self, config: &ConnectionConfig) -> Result<Credentials, UpstreamError>;
}

/// Static credentials only.
pub struct StaticCredentials;

impl CredentialsFactory for StaticCredentials {
    fn credentials(&self, config: &ConnectionConfig) -> Result<Credentials, UpstreamError> {
        match &config.auth {
            UpstreamAuth::None => Ok(Credentials::None),
            UpstreamAuth::Headers(headers) => {
                let mut map = http::HeaderMap::new();
                for (k, v) in headers {
                    map.append(k.clone(), v.clone());
                }
                Ok(Credentials::Static(map))
            }
            UpstreamAuth::OAuth2(_) => Err(UpstreamError::NotAuthorized(
                "OAuth connections need the gateway's OAuth support".into(),
            )),
        }
    }
}
