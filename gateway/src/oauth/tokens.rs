//! One connection's OAuth tokens on one replica: cached in memory, shared through the
//! store, refreshed before they expire.
//!
//! Refreshing is single-flight inside a replica (a mutex) and serialized across
//! replicas (the store's token lock, which re-reads the row once held): whoever comes
//! second finds the fresh token and uses it, so a rotating refresh token is presented
//! exactly once. `invalid_grant` deletes the tokens and leaves the connection awaiting
//! authorization instead of retrying in a loop.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use hawser_crds::{EndpointAuth, OAuth2Grant};
use oauth2::basic::{BasicErrorResponseType, BasicTokenResponse};
use oauth2::{
    AuthType, ClientId, ClientSecret, RefreshToken, RequestTokenError, Scope, TokenResponse,
    TokenUrl,
};
use tokio::sync::Mutex;
use url::Url;

use super::discovery::{self, Endpoints};
use super::http;
use crate::clock::Timestamp;
use crate::config::OAuth2Settings;
use crate::crypto::Secret;
use crate::store::{BusMessage, OAuthToken, Store};
use crate::upstream::UpstreamError;
use crate::upstream::auth::TokenSource;

/// Never keep using a token closer than this to its expiry.
const MAX_MARGIN: Duration = Duration::from_secs(60);

/// How long before expiry a token is replaced: a quarter of its lifetime, at most a
/// minute. Short-lived tokens get a short margin, so they are not refreshed on every
/// call (a fixed margin longer than the lifetime would do exactly that).
fn margin(token: &OAuthToken) -> Duration {
    match (token.expires_at, token.issued_at) {
        (Some(exp), Some(iat)) if exp > iat => (exp.since(iat) / 4).min(MAX_MARGIN),
        _ => Duration::from_secs(5),
    }
}

/// Whether `token` can still be used now.
pub(crate) fn is_fresh(token: &OAuthToken) -> bool {
    match token.expires_at {
        None => true,
        Some(exp) => Timestamp::now().plus(margin(token)) < exp,
    }
}

/// A connection's token source.
pub struct ConnectionTokens {
    connection: String,
    upstream: Url,
    settings: OAuth2Settings,
    store: Arc<dyn Store>,
    http: reqwest::Client,
    endpoints: ArcSwapOption<Endpoints>,
    cached: ArcSwapOption<OAuthToken>,
    flight: Mutex<()>,
    /// Where an operator starts the authorization (for messages).
    start_path: String,
    metrics: Arc<crate::metrics::Metrics>,
}

impl ConnectionTokens {
    pub fn new(
        connection: &str,
        upstream: Url,
        settings: OAuth2Settings,
        store: Arc<dyn Store>,
        http: reqwest::Client,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self {
            connection: connection.to_owned(),
            upstream,
            settings,
            store,
            http,
            endpoints: ArcSwapOption::empty(),
            cached: ArcSwapOption::empty(),
            flight: Mutex::new(()),
            start_path: format!("POST /api/v1/connections/{connection}/oauth/start"),
            metrics,
        }
    }

    /// The token and authorization endpoints (from the spec, else discovered once).
    pub async fn endpoints(&self) -> Result<Arc<Endpoints>, UpstreamError> {
        if let Some(e) = self.endpoints.load_full() {
            return Ok(e);
        }
        let spec = &self.settings.spec;
        let resource = spec.resource.clone();
        let found = match (&spec.token_url, &spec.authorization_url) {
            (Some(token), authorization) => Endpoints {
                token: Url::parse(token)
                    .map_err(|e| UpstreamError::NotAuthorized(format!("auth.tokenUrl: {e}")))?,
                authorization: authorization.as_deref().and_then(|a| Url::parse(a).ok()),
                resource: resource.unwrap_or_else(|| self.upstream.to_string()),
            },
            (None, _) => {
                discovery::discover(&self.http, &self.upstream, resource.as_deref()).await?
            }
        };
        if spec.grant == OAuth2Grant::AuthorizationCode && found.authorization.is_none() {
            return Err(UpstreamError::NotAuthorized(
                "no authorization endpoint: set auth.authorizationUrl".into(),
            ));
        }
        let found = Arc::new(found);
        self.endpoints.store(Some(found.clone()));
        Ok(found)
    }

    pub fn settings(&self) -> &OAuth2Settings {
        &self.settings
    }

    /// An `oauth2` client for the token endpoint.
    pub(crate) fn token_client(
        &self,
        endpoints: &Endpoints,
    ) -> oauth2::Client<
        oauth2::basic::BasicErrorResponse,
        BasicTokenResponse,
        oauth2::basic::BasicTokenIntrospectionResponse,
        oauth2::StandardRevocableToken,
        oauth2::basic::BasicRevocationErrorResponse,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointSet,
    > {
        let mut client =
            oauth2::basic::BasicClient::new(ClientId::new(self.settings.spec.client_id.clone()))
                .set_token_uri(TokenUrl::from_url(endpoints.token.clone()))
                .set_auth_type(match self.settings.spec.endpoint_auth {
                    EndpointAuth::Basic => AuthType::BasicAuth,
                    EndpointAuth::Post => AuthType::RequestBody,
                });
        if let Some(secret) = &self.settings.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
        }
        client
    }

    /// Stores a token response (under the token lock the caller holds, or a fresh one).
    pub(crate) fn to_row(
        &self,
        response: &BasicTokenResponse,
        previous_refresh: Option<&Secret>,
    ) -> OAuthToken {
        let issued = Timestamp::now();
        OAuthToken {
            connection: self.connection.clone(),
            access_token: Secret::new(response.access_token().secret().clone()),
            // Providers that do not rotate keep the old refresh token valid.
            refresh_token: response
                .refresh_token()
                .map(|r| Secret::new(r.secret().clone()))
                .or_else(|| previous_refresh.cloned()),
            token_type: "Bearer".into(),
            expires_at: response.expires_in().map(|d| issued.plus(d)),
            issued_at: Some(issued),
            scope: response.scopes().map(|s| {
                s.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
            version: 0,
        }
    }

    async fn announce(&self) {
        let note = BusMessage::TokenChanged {
            connection: self.connection.clone(),
        };
        if let Err(error) = self.store.publish(None, &note).await {
            tracing::warn!(connection = %self.connection, %error, "cannot announce a token change");
        }
    }

    fn awaiting(&self, why: &str) -> UpstreamError {
        UpstreamError::NotAuthorized(format!(
            "{why}; an operator must authorize the connection ({})",
            self.start_path
        ))
    }

    /// A usable token: cached, stored by another replica, or obtained now.
    async fn current(&self, rejected: Option<&Secret>) -> Result<Arc<OAuthToken>, UpstreamError> {
        let usable = |t: &OAuthToken| is_fresh(t) && rejected.is_none_or(|r| t.access_token != *r);
        if let Some(t) = self.cached.load_full()
            && usable(&t)
        {
            return Ok(t);
        }
        let _flight = self.flight.lock().await;
        if let Some(t) = self.cached.load_full()
            && usable(&t)
        {
            return Ok(t);
        }
        // Another replica may have refreshed already.
        let stored = self
            .store
            .get_token(&self.connection)
            .await
            .map_err(store_error)?;
        if let Some(t) = stored
            && usable(&t)
        {
            let t = Arc::new(t);
            self.cached.store(Some(t.clone()));
            return Ok(t);
        }
        let fresh = Arc::new(self.renew(rejected).await?);
        self.cached.store(Some(fresh.clone()));
        Ok(fresh)
    }

    /// Obtains a new token under the token lock.
    async fn renew(&self, rejected: Option<&Secret>) -> Result<OAuthToken, UpstreamError> {
        let mut lock = self
            .store
            .lock_token(&self.connection)
            .await
            .map_err(store_error)?;
        // The row as it is now that no other replica can change it.
        if let Some(current) = lock.current()
            && is_fresh(current)
            && rejected.is_none_or(|r| current.access_token != *r)
        {
            let current = current.clone();
            lock.finish().await.map_err(store_error)?;
            return Ok(current);
        }
        let endpoints = self.endpoints().await?;
        let client = self.token_client(&endpoints);
        let adapter = http::adapter(self.http.clone());
        let refresh = lock.current().and_then(|t| t.refresh_token.clone());
        let result = match (&refresh, self.settings.spec.grant) {
            (Some(rt), _) => {
                tracing::debug!(connection = %self.connection, "refreshing the access token");
                client
                    .exchange_refresh_token(&RefreshToken::new(rt.expose().to_owned()))
                    .add_extra_param("resource", endpoints.resource.clone())
                    .request_async(&adapter)
                    .await
            }
            (None, OAuth2Grant::ClientCredentials) => {
                tracing::debug!(connection = %self.connection, "requesting a client_credentials token");
                let mut request = client.exchange_client_credentials().add_scopes(
                    self.settings
                        .spec
                        .scopes
                        .iter()
                        .map(|s| Scope::new(s.clone())),
                );
                // e.g. `audience`, which some providers require for this grant.
                for (name, value) in &self.settings.spec.extra_params {
                    request = request.add_extra_param(name.clone(), value.clone());
                }
                request
                    .add_extra_param("resource", endpoints.resource.clone())
                    .request_async(&adapter)
                    .await
            }
            (None, OAuth2Grant::AuthorizationCode) => {
                let had_token = lock.current().is_some();
                let _ = lock.finish().await;
                return Err(self.awaiting(if had_token {
                    "the access token expired and there is no refresh token"
                } else {
                    "no token yet"
                }));
            }
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(RequestTokenError::ServerResponse(e))
                if *e.error() == BasicErrorResponseType::InvalidGrant =>
            {
                "invalid_grant"
            }
            Err(_) => "error",
        };
        self.metrics
            .oauth_refreshes
            .get_or_create(&crate::metrics::OAuthLabels {
                connection: self.connection.clone(),
                outcome: std::borrow::Cow::Borrowed(outcome),
            })
            .inc();
        match result {
            Ok(response) => {
                let row = self.to_row(&response, refresh.as_ref());
                let version = lock.write(&row).await.map_err(store_error)?;
                lock.finish().await.map_err(store_error)?;
                Ok(OAuthToken { version, ..row })
            }
            Err(RequestTokenError::ServerResponse(err))
                if *err.error() == BasicErrorResponseType::InvalidGrant =>
            {
                // The grant is gone (revoked, reused, expired): stop using it, do not loop.
                tracing::warn!(connection = %self.connection, "the authorization server rejected the grant (invalid_grant)");
                let _ = lock.delete().await;
                let _ = lock.finish().await;
                self.cached.store(None);
                self.announce().await;
                Err(self.awaiting(
                    "the authorization server rejected the refresh token (invalid_grant)",
                ))
            }
            Err(e) => {
                let _ = lock.finish().await;
                Err(UpstreamError::NotAuthorized(format!(
                    "token request failed: {}",
                    describe(&e)
                )))
            }
        }
    }

    /// Stores tokens obtained from an authorization code and tells every replica.
    pub(crate) async fn store_grant(&self, row: OAuthToken) -> Result<(), UpstreamError> {
        let mut lock = self
            .store
            .lock_token(&self.connection)
            .await
            .map_err(store_error)?;
        let version = lock.write(&row).await.map_err(store_error)?;
        lock.finish().await.map_err(store_error)?;
        self.cached
            .store(Some(Arc::new(OAuthToken { version, ..row })));
        self.announce().await;
        Ok(())
    }

    /// Whether a token is held (for status).
    pub fn is_authorized(&self) -> bool {
        self.cached.load().is_some()
    }
}

fn store_error(e: crate::store::Error) -> UpstreamError {
    UpstreamError::Unavailable(format!("token store: {e}"))
}

/// A token error as a message (the provider's error code and description).
pub(crate) fn describe<E: std::error::Error>(
    e: &RequestTokenError<E, oauth2::basic::BasicErrorResponse>,
) -> String {
    match e {
        RequestTokenError::ServerResponse(r) => match r.error_description() {
            Some(d) => format!("{}: {d}", r.error()),
            None => r.error().to_string(),
        },
        RequestTokenError::Request(e) => e.to_string(),
        RequestTokenError::Parse(e, _) => format!("unreadable token response: {e}"),
        RequestTokenError::Other(e) => e.clone(),
    }
}

#[async_trait]
impl TokenSource for ConnectionTokens {
    async fn token(&self) -> Result<Secret, UpstreamError> {
        Ok(self.current(None).await?.access_token.clone())
    }

    async fn rejected(&self, token: &Secret) -> Result<bool, UpstreamError> {
        let fresh = self.current(Some(token)).await?;
        Ok(fresh.access_token != *token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(lifetime_ms: i64, age_ms: i64) -> OAuthToken {
        let now_ms = Timestamp::now().millis();
        OAuthToken {
            connection: "c".into(),
            access_token: Secret::new("a"),
            refresh_token: None,
            token_type: "Bearer".into(),
            expires_at: Some(Timestamp::from_millis(now_ms - age_ms + lifetime_ms)),
            issued_at: Some(Timestamp::from_millis(now_ms - age_ms)),
            scope: None,
            version: 1,
        }
    }

    #[test]
    fn the_margin_adapts_to_short_lifetimes() {
        // 2 s tokens are used for 1.5 s, not refreshed on every call.
        assert!(is_fresh(&token(2_000, 1_000)));
        assert!(!is_fresh(&token(2_000, 1_600)));
        // Hour-long tokens are replaced a minute before expiry.
        assert!(is_fresh(&token(3_600_000, 3_530_000)));
        assert!(!is_fresh(&token(3_600_000, 3_545_000)));
    }
}
