//! One connection's OAuth tokens on one replica: cached in memory, shared through the
//! store, refreshed before they expire. A connection has one shared token, or (with
//! `tokens: perUser`) one per caller; each is a [`Slot`] here and a row in the store.
//!
//! Refreshing is single-flight inside a replica (the slot's mutex) and serialized
//! across replicas (the store's lock on that row, which re-reads it once held):
//! whoever comes second finds the fresh token and uses it, so a rotating refresh token
//! is presented exactly once. `invalid_grant` deletes that token only and leaves the
//! connection (or that caller) awaiting authorization instead of retrying in a loop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use hawser_crds::{EndpointAuth, OAuth2Grant, TokenOwnership};
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

/// Most callers whose tokens one replica keeps in memory per connection; beyond it,
/// those whose tokens expired are forgotten (they are re-read from the store).
const MAX_CACHED_USERS: usize = 10_000;

/// One token (the shared one, or one caller's) on this replica.
struct Slot {
    /// `""` for the shared token.
    subject: String,
    cached: ArcSwapOption<OAuthToken>,
    flight: Mutex<()>,
}

impl Slot {
    fn new(subject: &str) -> Arc<Self> {
        Arc::new(Self {
            subject: subject.to_owned(),
            cached: ArcSwapOption::empty(),
            flight: Mutex::new(()),
        })
    }
}

/// What disconnecting a caller did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnected {
    /// Whether they held a token (now deleted).
    pub held: bool,
    /// Whether the provider confirmed its revocation.
    pub revoked: bool,
}

/// A connection's token source.
pub struct ConnectionTokens {
    connection: String,
    upstream: Url,
    settings: OAuth2Settings,
    store: Arc<dyn Store>,
    http: reqwest::Client,
    endpoints: ArcSwapOption<Endpoints>,
    shared: Arc<Slot>,
    /// Per-user tokens by subject.
    users: std::sync::Mutex<HashMap<String, Arc<Slot>>>,
    /// The caller whose token Hawser's own requests borrow when a per-user connection
    /// has no shared token (discovery).
    borrowed: ArcSwapOption<String>,
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
            shared: Slot::new(""),
            users: std::sync::Mutex::new(HashMap::new()),
            borrowed: ArcSwapOption::empty(),
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
                revocation: None,
                resource: resource.unwrap_or_else(|| self.upstream.to_string()),
                // Endpoints given by hand name no issuer to check responses against.
                issuer: None,
                issuer_in_responses: false,
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

    pub fn connection(&self) -> &str {
        &self.connection
    }

    /// Whether each caller has a token of their own.
    pub fn per_user(&self) -> bool {
        self.settings.spec.tokens == TokenOwnership::PerUser
    }

    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Slot>>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The slot of `subject` (`""`: the shared token).
    fn slot(&self, subject: &str) -> Arc<Slot> {
        if subject.is_empty() {
            return self.shared.clone();
        }
        let mut users = self.users();
        if let Some(slot) = users.get(subject) {
            return slot.clone();
        }
        if users.len() >= MAX_CACHED_USERS {
            users.retain(|_, s| s.cached.load().as_deref().is_some_and(is_fresh));
        }
        let slot = Slot::new(subject);
        users.insert(subject.to_owned(), slot.clone());
        slot
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
        subject: &str,
        response: &BasicTokenResponse,
        previous_refresh: Option<&Secret>,
    ) -> OAuthToken {
        let issued = Timestamp::now();
        OAuthToken {
            connection: self.connection.clone(),
            subject: subject.to_owned(),
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

    async fn announce(&self, subject: &str) {
        let note = BusMessage::TokenChanged {
            connection: self.connection.clone(),
            subject: (!subject.is_empty()).then(|| subject.to_owned()),
        };
        if let Err(error) = self.store.publish(None, &note).await {
            tracing::warn!(connection = %self.connection, %error, "cannot announce a token change");
        }
    }

    fn awaiting(&self, subject: &str, why: &str) -> UpstreamError {
        if subject.is_empty() {
            UpstreamError::NotAuthorized(format!(
                "{why}; an operator must authorize the connection ({})",
                self.start_path
            ))
        } else {
            UpstreamError::ConsentRequired(format!(
                "{why}; connection {} needs your consent to act as you",
                self.connection
            ))
        }
    }

    /// The token slot requests for `subject` use (`None`: Hawser's own requests).
    async fn slot_for(&self, subject: Option<&str>) -> Result<Arc<Slot>, UpstreamError> {
        if !self.per_user() {
            return Ok(self.shared.clone());
        }
        match subject {
            Some("") => Err(UpstreamError::NotAuthorized(format!(
                "connection {} acts as each caller with their own upstream account: sign in to the gateway first",
                self.connection
            ))),
            Some(subject) => Ok(self.slot(subject)),
            None => self.service_slot().await,
        }
    }

    /// For Hawser's own requests on a per-user connection (discovery): the shared token
    /// if an operator authorized one, else the token of a caller who consented.
    async fn service_slot(&self) -> Result<Arc<Slot>, UpstreamError> {
        if self.shared.cached.load().is_some() {
            return Ok(self.shared.clone());
        }
        if self
            .store
            .get_token(&self.connection, "")
            .await
            .map_err(store_error)?
            .is_some()
        {
            return Ok(self.shared.clone());
        }
        if let Some(subject) = self.borrowed.load_full() {
            return Ok(self.slot(&subject));
        }
        let holders = self
            .store
            .token_holders(Some(&self.connection), None)
            .await
            .map_err(store_error)?;
        // The most recently written token is the likeliest to work.
        let Some(holder) = holders.into_iter().max_by_key(|h| h.updated_at) else {
            return Err(UpstreamError::NotAuthorized(format!(
                "no caller has connected their account to {} yet (and no operator authorized a shared token): the tools are listed once someone does",
                self.connection
            )));
        };
        self.borrowed.store(Some(Arc::new(holder.subject.clone())));
        Ok(self.slot(&holder.subject))
    }

    /// A usable token: cached, stored by another replica, or obtained now.
    async fn current(
        &self,
        slot: &Slot,
        rejected: Option<&Secret>,
    ) -> Result<Arc<OAuthToken>, UpstreamError> {
        let usable = |t: &OAuthToken| is_fresh(t) && rejected.is_none_or(|r| t.access_token != *r);
        if let Some(t) = slot.cached.load_full()
            && usable(&t)
        {
            return Ok(t);
        }
        let _flight = slot.flight.lock().await;
        if let Some(t) = slot.cached.load_full()
            && usable(&t)
        {
            return Ok(t);
        }
        // Another replica may have refreshed already.
        let stored = self
            .store
            .get_token(&self.connection, &slot.subject)
            .await
            .map_err(store_error)?;
        if let Some(t) = stored
            && usable(&t)
        {
            let t = Arc::new(t);
            slot.cached.store(Some(t.clone()));
            return Ok(t);
        }
        // A span of the request's trace (or of the connection's discovery).
        let refresh =
            crate::telemetry::span::token_refresh(&self.connection, !slot.subject.is_empty());
        let fresh = tracing::Instrument::instrument(self.renew(slot, rejected), refresh).await;
        if fresh.is_err() && !slot.subject.is_empty() {
            // A borrowed token that stopped working is not borrowed again.
            self.borrowed
                .rcu(|b| b.clone().filter(|s| s.as_str() != slot.subject));
        }
        let fresh = Arc::new(fresh?);
        slot.cached.store(Some(fresh.clone()));
        Ok(fresh)
    }

    /// Obtains a new token under the token lock.
    async fn renew(
        &self,
        slot: &Slot,
        rejected: Option<&Secret>,
    ) -> Result<OAuthToken, UpstreamError> {
        let subject = slot.subject.as_str();
        let mut lock = self
            .store
            .lock_token(&self.connection, subject)
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
                tracing::debug!(connection = %self.connection, per_user = !subject.is_empty(), "refreshing the access token");
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
                return Err(self.awaiting(
                    subject,
                    if had_token {
                        "the access token expired and there is no refresh token"
                    } else {
                        "no token yet"
                    },
                ));
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
                let row = self.to_row(subject, &response, refresh.as_ref());
                let version = lock.write(&row).await.map_err(store_error)?;
                lock.finish().await.map_err(store_error)?;
                Ok(OAuthToken { version, ..row })
            }
            Err(RequestTokenError::ServerResponse(err))
                if *err.error() == BasicErrorResponseType::InvalidGrant =>
            {
                // The grant is gone (revoked, reused, expired): stop using it, do not
                // loop. Only this token: other callers' are theirs.
                tracing::warn!(connection = %self.connection, per_user = !subject.is_empty(), "the authorization server rejected the grant (invalid_grant)");
                let _ = lock.delete().await;
                let _ = lock.finish().await;
                slot.cached.store(None);
                self.announce(subject).await;
                Err(self.awaiting(
                    subject,
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
        let slot = self.slot(&row.subject);
        let mut lock = self
            .store
            .lock_token(&self.connection, &row.subject)
            .await
            .map_err(store_error)?;
        let version = lock.write(&row).await.map_err(store_error)?;
        lock.finish().await.map_err(store_error)?;
        let subject = row.subject.clone();
        slot.cached
            .store(Some(Arc::new(OAuthToken { version, ..row })));
        self.announce(&subject).await;
        Ok(())
    }

    /// Removes `subject`'s token (disconnect): returns it, for revocation at the
    /// provider, and tells every replica.
    async fn remove(&self, subject: &str) -> Result<Option<OAuthToken>, UpstreamError> {
        let slot = self.slot(subject);
        let _flight = slot.flight.lock().await;
        let mut lock = self
            .store
            .lock_token(&self.connection, subject)
            .await
            .map_err(store_error)?;
        let held = lock.current().cloned();
        if held.is_some() {
            lock.delete().await.map_err(store_error)?;
        }
        lock.finish().await.map_err(store_error)?;
        slot.cached.store(None);
        self.forget(subject);
        self.announce(subject).await;
        Ok(held)
    }

    /// Disconnects `subject`: deletes their token on every replica and revokes it at
    /// the provider when it has a revocation endpoint (RFC 7009).
    pub async fn disconnect(&self, subject: &str) -> Result<Disconnected, UpstreamError> {
        let Some(held) = self.remove(subject).await? else {
            return Ok(Disconnected {
                held: false,
                revoked: false,
            });
        };
        let revocation = match self.endpoints().await {
            Ok(e) => e.revocation.clone(),
            Err(error) => {
                tracing::warn!(connection = %self.connection, %error, "cannot find the revocation endpoint");
                None
            }
        };
        let revoked = match revocation {
            Some(url) => self.revoke(&url, &held).await,
            None => false,
        };
        Ok(Disconnected {
            held: true,
            revoked,
        })
    }

    /// Asks the provider to revoke `token`'s grant; whether it confirmed.
    async fn revoke(&self, url: &Url, token: &OAuthToken) -> bool {
        // The refresh token: revoking it ends the whole grant at most providers.
        let (value, hint) = match &token.refresh_token {
            Some(r) => (r.expose(), "refresh_token"),
            None => (token.access_token.expose(), "access_token"),
        };
        let id = self.settings.spec.client_id.as_str();
        let mut form = vec![("token", value), ("token_type_hint", hint)];
        let mut request = self.http.post(url.clone());
        match (
            &self.settings.client_secret,
            self.settings.spec.endpoint_auth,
        ) {
            // RFC 6749 §2.3.1: both form-encoded before Basic.
            (Some(secret), EndpointAuth::Basic) => {
                let encode = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                request = request.basic_auth(encode(id), Some(encode(secret.expose())));
            }
            (Some(secret), EndpointAuth::Post) => {
                form.push(("client_id", id));
                form.push(("client_secret", secret.expose()));
            }
            (None, _) => form.push(("client_id", id)),
        }
        match request.form(&form).send().await {
            Ok(r) if r.status().is_success() => true,
            Ok(r) => {
                tracing::warn!(connection = %self.connection, status = r.status().as_u16(), "the provider refused to revoke a token");
                false
            }
            Err(error) => {
                tracing::warn!(connection = %self.connection, error = %crate::upstream::error::root_cause(&error), "cannot reach the revocation endpoint");
                false
            }
        }
    }

    /// Whether `subject` (`""`: the shared token) holds a usable token, as far as the
    /// store says (for "my connections"): `None` when there is none.
    pub async fn state_of(&self, subject: &str) -> Result<Option<bool>, UpstreamError> {
        let row = self
            .store
            .get_token(&self.connection, subject)
            .await
            .map_err(store_error)?;
        Ok(row.map(|t| is_fresh(&t) || t.refresh_token.is_some()))
    }

    /// Whether a token is held (for status).
    pub fn is_authorized(&self) -> bool {
        self.shared.cached.load().is_some()
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
    async fn token(&self, subject: Option<&str>) -> Result<Secret, UpstreamError> {
        let slot = self.slot_for(subject).await?;
        Ok(self.current(&slot, None).await?.access_token.clone())
    }

    async fn rejected(&self, token: &Secret, subject: Option<&str>) -> Result<bool, UpstreamError> {
        let slot = self.slot_for(subject).await?;
        let fresh = self.current(&slot, Some(token)).await?;
        Ok(fresh.access_token != *token)
    }

    fn forget(&self, subject: &str) {
        if let Some(slot) = self.users().remove(subject) {
            slot.cached.store(None);
        }
        self.borrowed
            .rcu(|b| b.clone().filter(|s| s.as_str() != subject));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(lifetime_ms: i64, age_ms: i64) -> OAuthToken {
        let now_ms = Timestamp::now().millis();
        OAuthToken {
            connection: "c".into(),
            subject: String::new(),
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
