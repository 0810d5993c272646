//! The provider's state and rules, independent of HTTP framing. Tokens are
//! stored only as SHA-256 hashes; every state change of one request happens
//! under one lock, so single-use rules hold under concurrency and the token
//! log is in processing order.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use axum::http::{HeaderMap, StatusCode};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;

use super::{
    AuthMethod, ClientConfig, Config,
    params::{Credentials, Params, credentials, is_form},
};
use crate::fixture::util::{now_ms, secrets_equal, sha256_hex};

pub(crate) use super::error::OAuthError;

/// One `/token` request, as listed by `GET /control/log`. Tokens appear
/// only as lowercase hex SHA-256.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenLogEntry {
    /// 1, 2, … in processing order (keeps growing across resets).
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub ts: u64,
    pub grant_type: Option<String>,
    /// The authenticated client, or the one claimed when authentication failed.
    pub client_id: Option<String>,
    /// SHA-256 of the `refresh_token` parameter, if one was sent.
    pub refresh_token_sha256: Option<String>,
    /// SHA-256 of the refresh token issued by this request, if any.
    pub issued_refresh_sha256: Option<String>,
    /// SHA-256 of the access token issued by this request, if any.
    pub access_sha256: Option<String>,
    /// `ok` or the OAuth error code.
    pub outcome: String,
    /// A used code or refresh token was presented again (its family is revoked).
    pub reuse_detected: bool,
    /// The token family (one per authorization) the request touched.
    pub family: Option<u64>,
}

#[derive(Debug, Clone)]
struct CodeRecord {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    scope: Vec<String>,
    resource: Option<String>,
    sub: String,
    expires_ms: u64,
    used: bool,
    /// Set once tokens were issued from the code.
    family: Option<u64>,
}

/// Every token descending from one authorization (or one client_credentials grant).
#[derive(Debug, Clone)]
struct Family {
    client_id: String,
    sub: String,
    scope: Vec<String>,
    resource: Option<String>,
    revoked: bool,
}

#[derive(Debug, Clone)]
struct AccessRecord {
    family: u64,
    scope: Vec<String>,
    issued_ms: u64,
    expires_ms: u64,
    revoked: bool,
}

#[derive(Debug, Clone)]
struct RefreshRecord {
    family: u64,
    issued_ms: u64,
    expires_ms: u64,
    used: bool,
}

#[derive(Debug, Default)]
struct Inner {
    codes: HashMap<String, CodeRecord>,
    access: HashMap<String, AccessRecord>,
    refresh: HashMap<String, RefreshRecord>,
    families: HashMap<u64, Family>,
    next_family: u64,
    log: Vec<TokenLogEntry>,
    last_seq: u64,
    deny_next: bool,
}

impl Inner {
    fn new_family(&mut self, family: Family) -> u64 {
        self.next_family += 1;
        self.families.insert(self.next_family, family);
        self.next_family
    }

    fn revoke_family(&mut self, id: u64) {
        if let Some(family) = self.families.get_mut(&id) {
            family.revoked = true;
        }
    }

    #[cfg(test)]
    fn family_revoked(&self, id: u64) -> bool {
        self.families.get(&id).is_none_or(|family| family.revoked)
    }

    fn push_log(&mut self, mut entry: TokenLogEntry, outcome: &Result<Issued, OAuthError>) {
        self.last_seq += 1;
        entry.seq = self.last_seq;
        entry.ts = now_ms();
        entry.outcome = match outcome {
            Ok(_) => "ok".to_owned(),
            Err(error) => error.code.to_owned(),
        };
        self.log.push(entry);
    }
}

/// Tokens issued by one successful token request.
struct Issued {
    access: String,
    refresh: Option<String>,
    scope: Vec<String>,
}

/// What `/authorize` answers.
pub(crate) enum AuthorizeOutcome {
    /// 302 to this URL (a code or an error for the client).
    Redirect(String),
    /// The client or redirect URI is unusable: answer 400, do not redirect.
    Rejected(OAuthError),
}

/// The mock authorization server.
pub(crate) struct Provider {
    config: Config,
    issuer: String,
    inner: Mutex<Inner>,
}

impl Provider {
    pub(crate) fn new(config: Config, issuer: String) -> Self {
        Self {
            config,
            issuer,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The issuer's path without a trailing slash (`""` for none).
    pub(crate) fn issuer_path(&self) -> String {
        Url::parse(&self.issuer)
            .map(|url| url.path().trim_end_matches('/').to_owned())
            .unwrap_or_default()
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    fn client(&self, id: &str) -> Option<&ClientConfig> {
        self.config.clients.iter().find(|client| client.id == id)
    }

    /// RFC 8414 metadata (`oidc`: the OpenID Connect discovery variant).
    pub(crate) fn metadata(&self, oidc: bool) -> Value {
        let mut metadata = json!({
            "issuer": self.issuer,
            "authorization_endpoint": self.endpoint("/authorize"),
            "token_endpoint": self.endpoint("/token"),
            "introspection_endpoint": self.endpoint("/introspect"),
            "revocation_endpoint": self.endpoint("/revoke"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "authorization_response_iss_parameter_supported": true,
        });
        if !self.config.scopes.is_empty() {
            metadata["scopes_supported"] = json!(self.config.scopes);
        }
        if oidc {
            metadata["subject_types_supported"] = json!(["public"]);
        }
        metadata
    }

    pub(crate) fn token_log(&self) -> Vec<TokenLogEntry> {
        self.lock().log.clone()
    }

    pub(crate) fn deny_next(&self) {
        self.lock().deny_next = true;
    }

    pub(crate) fn revoke_all(&self) {
        for family in self.lock().families.values_mut() {
            family.revoked = true;
        }
    }

    /// Forgets every code, token, log entry and pending switch; sequence
    /// numbers keep growing.
    pub(crate) fn reset(&self) {
        let mut inner = self.lock();
        *inner = Inner {
            last_seq: inner.last_seq,
            next_family: inner.next_family,
            ..Inner::default()
        };
    }

    // ---- /authorize -------------------------------------------------------

    pub(crate) fn authorize(&self, query: &str) -> AuthorizeOutcome {
        let params = Params::parse(query.as_bytes());
        if params.is_duplicated("client_id") || params.is_duplicated("redirect_uri") {
            return AuthorizeOutcome::Rejected(OAuthError::invalid_request(
                "client_id and redirect_uri must be sent once",
            ));
        }
        let Some(client_id) = params.get("client_id") else {
            return AuthorizeOutcome::Rejected(OAuthError::invalid_request("missing client_id"));
        };
        let Some(client) = self.client(client_id) else {
            return AuthorizeOutcome::Rejected(OAuthError::invalid_request("unknown client_id"));
        };
        let Some(redirect_uri) = params.get("redirect_uri") else {
            return AuthorizeOutcome::Rejected(OAuthError::invalid_request("missing redirect_uri"));
        };
        if let Err(reason) = check_redirect_uri(redirect_uri) {
            return AuthorizeOutcome::Rejected(OAuthError::invalid_request(format!(
                "redirect_uri {reason}"
            )));
        }
        if !self.config.redirect_uris.is_empty()
            && !self
                .config
                .redirect_uris
                .iter()
                .any(|uri| uri == redirect_uri)
        {
            return AuthorizeOutcome::Rejected(OAuthError::invalid_request(
                "redirect_uri is not registered",
            ));
        }
        let state = params.get("state");
        let outcome = self.authorize_checked(client, redirect_uri, &params);
        let pairs: Vec<(&str, &str)> = match &outcome {
            Ok(code) => vec![("code", code.as_str())],
            Err(error) => {
                tracing::info!(client = %client.id, error = error.code, "authorization refused");
                vec![
                    ("error", error.code),
                    ("error_description", error.description.as_str()),
                ]
            }
        };
        match self.redirect_url(redirect_uri, &pairs, state) {
            Some(url) => AuthorizeOutcome::Redirect(url),
            None => {
                AuthorizeOutcome::Rejected(OAuthError::invalid_request("redirect_uri is not a URL"))
            }
        }
    }

    fn authorize_checked(
        &self,
        client: &ClientConfig,
        redirect_uri: &str,
        params: &Params,
    ) -> Result<String, OAuthError> {
        params.reject_duplicates()?;
        match params.get("response_type") {
            Some("code") => {}
            Some(other) => {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "unsupported_response_type",
                    format!("response_type {other} is not supported; use code"),
                ));
            }
            None => return Err(OAuthError::invalid_request("missing response_type")),
        }
        let challenge = params
            .get("code_challenge")
            .ok_or_else(|| OAuthError::invalid_request("code_challenge is required (PKCE S256)"))?;
        match params.get("code_challenge_method") {
            Some("S256") => {}
            Some(other) => {
                return Err(OAuthError::invalid_request(format!(
                    "code_challenge_method {other} is not supported; use S256"
                )));
            }
            None => {
                return Err(OAuthError::invalid_request(
                    "code_challenge_method is required and must be S256",
                ));
            }
        }
        if !is_s256_challenge(challenge) {
            return Err(OAuthError::invalid_request(
                "code_challenge must be the base64url (no padding) SHA-256 of the verifier",
            ));
        }
        let scope = self.grant_scope(params.get("scope"))?;
        let resource = self.requested_resource(params.get("resource"))?;
        let sub = params
            .get("login_hint")
            .unwrap_or(&self.config.default_subject)
            .to_owned();
        let mut inner = self.lock();
        if std::mem::take(&mut inner.deny_next) {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "access_denied",
                "the resource owner denied the request",
            ));
        }
        let code = random_token("mac_");
        inner.codes.insert(
            sha256_hex(&code),
            CodeRecord {
                client_id: client.id.clone(),
                redirect_uri: redirect_uri.to_owned(),
                challenge: challenge.to_owned(),
                scope,
                resource,
                sub,
                expires_ms: now_ms().saturating_add(millis(self.config.code_ttl)),
                used: false,
                family: None,
            },
        );
        tracing::info!(client = %client.id, "authorization code issued");
        Ok(code)
    }

    /// `redirect_uri` with `pairs`, `state` and `iss` (RFC 9207) appended.
    fn redirect_url(
        &self,
        redirect_uri: &str,
        pairs: &[(&str, &str)],
        state: Option<&str>,
    ) -> Option<String> {
        let mut url = Url::parse(redirect_uri).ok()?;
        {
            let mut query = url.query_pairs_mut();
            for (name, value) in pairs {
                query.append_pair(name, value);
            }
            if let Some(state) = state {
                query.append_pair("state", state);
            }
            query.append_pair("iss", &self.issuer);
        }
        Some(url.into())
    }

    // ---- /token -----------------------------------------------------------

    /// Handles a token request; the JSON body of a successful answer.
    pub(crate) fn token(&self, headers: &HeaderMap, body: &[u8]) -> Result<Value, OAuthError> {
        let params = Params::parse(body);
        let mut entry = TokenLogEntry {
            grant_type: params.get("grant_type").map(str::to_owned),
            client_id: params.get("client_id").map(str::to_owned),
            refresh_token_sha256: params.get("refresh_token").map(sha256_hex),
            ..TokenLogEntry::default()
        };
        let client = self.token_client(headers, &params, &mut entry);
        let mut inner = self.lock();
        let result = client.and_then(|client| self.grant(&mut inner, client, &params, &mut entry));
        if let Ok(issued) = &result {
            entry.access_sha256 = Some(sha256_hex(&issued.access));
            entry.issued_refresh_sha256 = issued.refresh.as_ref().map(sha256_hex);
        }
        tracing::info!(
            grant_type = entry.grant_type.as_deref(),
            client = entry.client_id.as_deref(),
            family = entry.family,
            outcome = result.as_ref().map_or_else(|e| e.code, |_| "ok"),
            reuse_detected = entry.reuse_detected,
            "token request"
        );
        inner.push_log(entry, &result);
        drop(inner);
        result.map(|issued| self.token_response(&issued))
    }

    /// Checks the framing and authenticates the client of a token request.
    fn token_client(
        &self,
        headers: &HeaderMap,
        params: &Params,
        entry: &mut TokenLogEntry,
    ) -> Result<&ClientConfig, OAuthError> {
        if !is_form(headers) {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let credentials = credentials(headers, params)?;
        entry.client_id = credentials.claimed_id().map(str::to_owned);
        let client = self.authenticate_client(&credentials)?;
        params.reject_duplicates()?;
        Ok(client)
    }

    fn authenticate_client(&self, credentials: &Credentials) -> Result<&ClientConfig, OAuthError> {
        match credentials {
            Credentials::Secret { id, secret, method } => {
                let client = self
                    .client(id)
                    .ok_or_else(|| OAuthError::invalid_client("unknown client"))?;
                let Some(expected) = &client.secret else {
                    return Err(OAuthError::invalid_client(
                        "a public client must not authenticate with a secret",
                    ));
                };
                if !client.auth_methods.contains(method) {
                    return Err(OAuthError::invalid_client(format!(
                        "the client is not registered for {}",
                        method.as_str()
                    )));
                }
                if !secrets_equal(secret.as_bytes(), expected.as_bytes()) {
                    return Err(OAuthError::invalid_client("wrong client secret"));
                }
                Ok(client)
            }
            Credentials::Public { id } => {
                let client = self
                    .client(id)
                    .ok_or_else(|| OAuthError::invalid_client("unknown client"))?;
                if client.is_confidential() || !client.auth_methods.contains(&AuthMethod::None) {
                    return Err(OAuthError::invalid_client("client authentication required"));
                }
                Ok(client)
            }
            Credentials::Anonymous => {
                Err(OAuthError::invalid_client("client authentication required"))
            }
        }
    }

    fn grant(
        &self,
        inner: &mut Inner,
        client: &ClientConfig,
        params: &Params,
        entry: &mut TokenLogEntry,
    ) -> Result<Issued, OAuthError> {
        match params.get("grant_type") {
            Some("authorization_code") => self.exchange_code(inner, client, params, entry),
            Some("refresh_token") => self.refresh(inner, client, params, entry),
            Some("client_credentials") => self.client_credentials(inner, client, params, entry),
            Some(other) => Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("grant_type {other} is not supported"),
            )),
            None => Err(OAuthError::invalid_request("missing grant_type")),
        }
    }

    fn exchange_code(
        &self,
        inner: &mut Inner,
        client: &ClientConfig,
        params: &Params,
        entry: &mut TokenLogEntry,
    ) -> Result<Issued, OAuthError> {
        let code = params.require("code")?;
        let redirect_uri = params.require("redirect_uri")?;
        let verifier = params.require("code_verifier")?;
        let key = sha256_hex(code);
        let Some(record) = inner.codes.get_mut(&key) else {
            return Err(OAuthError::invalid_grant("unknown authorization code"));
        };
        if record.client_id != client.id {
            return Err(OAuthError::invalid_grant(
                "the code was issued to another client",
            ));
        }
        if record.used {
            entry.reuse_detected = true;
            let family = record.family;
            if let Some(family) = family {
                entry.family = Some(family);
                inner.revoke_family(family);
                tracing::warn!(family, client = %client.id, "authorization code reused; its tokens are revoked");
            }
            return Err(OAuthError::invalid_grant(
                "authorization code already used; tokens issued from it are revoked",
            ));
        }
        // Single use: any attempt by its client consumes the code.
        record.used = true;
        let record = record.clone();
        if now_ms() >= record.expires_ms {
            return Err(OAuthError::invalid_grant("authorization code expired"));
        }
        if redirect_uri != record.redirect_uri {
            return Err(OAuthError::invalid_grant(
                "redirect_uri differs from the authorization request",
            ));
        }
        if !is_valid_verifier(verifier) {
            return Err(OAuthError::invalid_grant(
                "code_verifier must be 43-128 characters of [A-Za-z0-9-._~]",
            ));
        }
        if !secrets_equal(s256(verifier).as_bytes(), record.challenge.as_bytes()) {
            return Err(OAuthError::invalid_grant("PKCE verification failed"));
        }
        self.token_resource(params.get("resource"), record.resource.as_deref(), true)?;
        let family = inner.new_family(Family {
            client_id: client.id.clone(),
            sub: record.sub.clone(),
            scope: record.scope.clone(),
            resource: record.resource.clone(),
            revoked: false,
        });
        if let Some(stored) = inner.codes.get_mut(&key) {
            stored.family = Some(family);
        }
        entry.family = Some(family);
        Ok(self.issue(inner, family, record.scope, true))
    }

    fn refresh(
        &self,
        inner: &mut Inner,
        client: &ClientConfig,
        params: &Params,
        entry: &mut TokenLogEntry,
    ) -> Result<Issued, OAuthError> {
        let token = params.require("refresh_token")?;
        let key = sha256_hex(token);
        let Some(record) = inner.refresh.get(&key).cloned() else {
            return Err(OAuthError::invalid_grant("unknown refresh token"));
        };
        entry.family = Some(record.family);
        let Some(family) = inner.families.get(&record.family).cloned() else {
            return Err(OAuthError::invalid_grant("unknown refresh token"));
        };
        if family.client_id != client.id {
            return Err(OAuthError::invalid_grant(
                "the refresh token was issued to another client",
            ));
        }
        if record.used {
            entry.reuse_detected = true;
            inner.revoke_family(record.family);
            tracing::warn!(family = record.family, client = %client.id, "refresh token reuse detected; token family revoked");
            return Err(OAuthError::invalid_grant(
                "refresh token already used; every token of this grant is revoked",
            ));
        }
        if family.revoked {
            return Err(OAuthError::invalid_grant("refresh token revoked"));
        }
        if now_ms() >= record.expires_ms {
            return Err(OAuthError::invalid_grant("refresh token expired"));
        }
        self.token_resource(params.get("resource"), family.resource.as_deref(), false)?;
        let requested = split_scope(params.get("scope"));
        let scope = if requested.is_empty() {
            family.scope.clone()
        } else {
            if let Some(extra) = requested.iter().find(|s| !family.scope.contains(s)) {
                return Err(OAuthError::invalid_scope(format!(
                    "scope {extra} was not granted"
                )));
            }
            requested
        };
        if let Some(stored) = inner.refresh.get_mut(&key) {
            stored.used = true;
        }
        Ok(self.issue(inner, record.family, scope, true))
    }

    fn client_credentials(
        &self,
        inner: &mut Inner,
        client: &ClientConfig,
        params: &Params,
        entry: &mut TokenLogEntry,
    ) -> Result<Issued, OAuthError> {
        if !client.is_confidential() {
            return Err(OAuthError::unauthorized_client(
                "client_credentials needs a confidential client",
            ));
        }
        let scope = self.grant_scope(params.get("scope"))?;
        let resource = self.requested_resource(params.get("resource"))?;
        let family = inner.new_family(Family {
            client_id: client.id.clone(),
            sub: client.id.clone(),
            scope: scope.clone(),
            resource,
            revoked: false,
        });
        entry.family = Some(family);
        Ok(self.issue(inner, family, scope, false))
    }

    fn issue(&self, inner: &mut Inner, family: u64, scope: Vec<String>, refresh: bool) -> Issued {
        let now = now_ms();
        let access = random_token("mat_");
        inner.access.insert(
            sha256_hex(&access),
            AccessRecord {
                family,
                scope: scope.clone(),
                issued_ms: now,
                expires_ms: now.saturating_add(millis(self.config.access_ttl)),
                revoked: false,
            },
        );
        let refresh = refresh.then(|| {
            let token = random_token("mrt_");
            inner.refresh.insert(
                sha256_hex(&token),
                RefreshRecord {
                    family,
                    issued_ms: now,
                    expires_ms: now.saturating_add(millis(self.config.refresh_ttl)),
                    used: false,
                },
            );
            token
        });
        Issued {
            access,
            refresh,
            scope,
        }
    }

    fn token_response(&self, issued: &Issued) -> Value {
        let mut body = json!({
            "access_token": issued.access,
            "token_type": "Bearer",
            "expires_in": self.config.access_ttl.as_secs(),
        });
        if let Some(refresh) = &issued.refresh {
            body["refresh_token"] = json!(refresh);
        }
        if !issued.scope.is_empty() {
            body["scope"] = json!(issued.scope.join(" "));
        }
        body
    }

    /// The scopes a request without a prior grant gets.
    fn grant_scope(&self, requested: Option<&str>) -> Result<Vec<String>, OAuthError> {
        let requested = split_scope(requested);
        if requested.is_empty() {
            return Ok(self.config.scopes.clone());
        }
        if !self.config.scopes.is_empty()
            && let Some(unknown) = requested.iter().find(|s| !self.config.scopes.contains(s))
        {
            return Err(OAuthError::invalid_scope(format!(
                "unknown scope {unknown}"
            )));
        }
        Ok(requested)
    }

    /// `resource` of an authorization or client_credentials request.
    fn requested_resource(&self, requested: Option<&str>) -> Result<Option<String>, OAuthError> {
        if let Some(resource) = requested {
            check_resource_uri(resource)?;
        }
        if let Some(required) = &self.config.require_resource
            && requested != Some(required.as_str())
        {
            return Err(OAuthError::invalid_target(format!(
                "resource must be {required}"
            )));
        }
        Ok(requested.map(str::to_owned))
    }

    /// `resource` of a code exchange or refresh, against the authorized one.
    fn token_resource(
        &self,
        requested: Option<&str>,
        authorized: Option<&str>,
        must_repeat: bool,
    ) -> Result<(), OAuthError> {
        if let Some(required) = &self.config.require_resource
            && requested != Some(required.as_str())
        {
            return Err(OAuthError::invalid_target(format!(
                "resource must be {required}"
            )));
        }
        match (requested, authorized) {
            (Some(requested), Some(authorized)) if requested == authorized => Ok(()),
            (Some(_), Some(_)) => Err(OAuthError::invalid_target(
                "resource differs from the authorized one",
            )),
            (Some(_), None) => Err(OAuthError::invalid_target(
                "no resource was authorized for this grant",
            )),
            (None, Some(_)) if must_repeat => Err(OAuthError::invalid_target(
                "send the authorized resource again at the token endpoint (RFC 8707)",
            )),
            (None, _) => Ok(()),
        }
    }

    // ---- /introspect and /revoke ---------------------------------------------

    /// RFC 7662 introspection; callers authenticate as a confidential client
    /// or a configured resource server.
    pub(crate) fn introspect(&self, headers: &HeaderMap, body: &[u8]) -> Result<Value, OAuthError> {
        if !is_form(headers) {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let params = Params::parse(body);
        let credentials = credentials(headers, &params)?;
        self.authenticate_introspector(&credentials)?;
        params.reject_duplicates()?;
        let key = sha256_hex(params.require("token")?);
        let now = now_ms();
        let inner = self.lock();
        let active =
            |family: &Family, scope: &[String], issued_ms: u64, expires_ms: u64, kind: &str| {
                let mut answer = json!({
                    "active": true,
                    "scope": scope.join(" "),
                    "client_id": family.client_id,
                    "sub": family.sub,
                    "exp": expires_ms / 1000,
                    "iat": issued_ms / 1000,
                    "token_type": kind,
                    "iss": self.issuer,
                });
                if let Some(resource) = &family.resource {
                    answer["aud"] = json!(resource);
                }
                answer
            };
        if let Some(access) = inner.access.get(&key)
            && let Some(family) = inner.families.get(&access.family)
            && !access.revoked
            && !family.revoked
            && now < access.expires_ms
        {
            return Ok(active(
                family,
                &access.scope,
                access.issued_ms,
                access.expires_ms,
                "Bearer",
            ));
        }
        if let Some(refresh) = inner.refresh.get(&key)
            && let Some(family) = inner.families.get(&refresh.family)
            && !refresh.used
            && !family.revoked
            && now < refresh.expires_ms
        {
            return Ok(active(
                family,
                &family.scope,
                refresh.issued_ms,
                refresh.expires_ms,
                "refresh_token",
            ));
        }
        Ok(json!({ "active": false }))
    }

    fn authenticate_introspector(&self, credentials: &Credentials) -> Result<(), OAuthError> {
        let Credentials::Secret { id, secret, .. } = credentials else {
            return Err(OAuthError::invalid_client(
                "introspection requires client authentication",
            ));
        };
        let secret = secret.as_bytes();
        let client_ok = self
            .client(id)
            .and_then(|client| client.secret.as_ref())
            .is_some_and(|expected| secrets_equal(secret, expected.as_bytes()));
        let server_ok = self
            .config
            .resource_servers
            .iter()
            .any(|rs| rs.id == *id && secrets_equal(secret, rs.secret.as_bytes()));
        if client_ok || server_ok {
            Ok(())
        } else {
            Err(OAuthError::invalid_client("unknown caller or wrong secret"))
        }
    }

    /// RFC 7009 revocation: an access token alone, or a refresh token with
    /// its whole family. Unknown tokens are not an error.
    pub(crate) fn revoke(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), OAuthError> {
        if !is_form(headers) {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let params = Params::parse(body);
        let credentials = credentials(headers, &params)?;
        let client = self.authenticate_client(&credentials)?;
        params.reject_duplicates()?;
        let key = sha256_hex(params.require("token")?);
        let mut inner = self.lock();
        let family = inner
            .access
            .get(&key)
            .map(|access| (access.family, false))
            .or_else(|| {
                inner
                    .refresh
                    .get(&key)
                    .map(|refresh| (refresh.family, true))
            });
        let Some((family, is_refresh)) = family else {
            return Ok(());
        };
        let owner = inner.families.get(&family).map(|f| f.client_id.clone());
        if owner.as_deref() != Some(client.id.as_str()) {
            return Err(OAuthError::unauthorized_client(
                "the token was issued to another client",
            ));
        }
        if is_refresh {
            inner.revoke_family(family);
        } else if let Some(access) = inner.access.get_mut(&key) {
            access.revoked = true;
        }
        tracing::info!(family, client = %client.id, refresh = is_refresh, "token revoked");
        Ok(())
    }

    /// Whether any token of `family` is still usable (for tests).
    #[cfg(test)]
    pub(crate) fn family_active(&self, family: u64) -> bool {
        !self.lock().family_revoked(family)
    }
}

/// Why a redirect URI is unusable: it must be an absolute http(s) URL
/// without a fragment (RFC 6749 §3.1.2).
pub(crate) fn check_redirect_uri(uri: &str) -> Result<(), &'static str> {
    let url = Url::parse(uri).map_err(|_| "is not an absolute URL")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL");
    }
    if url.fragment().is_some() {
        return Err("must not contain a fragment");
    }
    Ok(())
}

/// An RFC 8707 resource indicator: an absolute URI without a fragment.
pub(crate) fn check_resource_uri(uri: &str) -> Result<(), OAuthError> {
    let url = Url::parse(uri)
        .map_err(|_| OAuthError::invalid_target("resource must be an absolute URI"))?;
    if url.fragment().is_some() {
        return Err(OAuthError::invalid_target(
            "resource must not contain a fragment",
        ));
    }
    Ok(())
}

/// Space-separated scope tokens, deduplicated in order.
fn split_scope(scope: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for token in scope.unwrap_or_default().split(' ') {
        if !token.is_empty() && !out.iter().any(|s| s == token) {
            out.push(token.to_owned());
        }
    }
    out
}

/// base64url (no padding) SHA-256 of the verifier (RFC 7636 §4.2).
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// An opaque token: `prefix` + 256 random bits, base64url.
fn random_token(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::rng().random();
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, header};

    #[test]
    fn pkce_s256_matches_rfc7636_example() {
        // RFC 7636 Appendix B.
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(is_s256_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!is_s256_challenge("plain-verifier"));
        assert!(is_valid_verifier(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        ));
        assert!(!is_valid_verifier("short"));
        assert!(!is_valid_verifier(&"a b".repeat(20)));
    }

    #[test]
    fn scopes_split_and_dedupe() {
        assert_eq!(split_scope(Some("a  b a")), vec!["a", "b"]);
        assert!(split_scope(None).is_empty());
    }

    #[test]
    fn redirect_and_resource_checks() {
        assert!(check_redirect_uri("http://127.0.0.1:1/cb?x=1").is_ok());
        assert!(check_redirect_uri("http://127.0.0.1:1/cb#frag").is_err());
        assert!(check_redirect_uri("/relative").is_err());
        assert!(check_redirect_uri("javascript:alert(1)").is_err());
        assert!(check_resource_uri("http://127.0.0.1:1/mcp").is_ok());
        assert!(check_resource_uri("mcp").is_err());
    }

    #[test]
    fn tokens_are_random_and_prefixed() {
        let a = random_token("mat_");
        let b = random_token("mat_");
        assert_ne!(a, b);
        assert!(a.starts_with("mat_"));
        assert_eq!(a.len(), 4 + 43);
    }

    #[test]
    fn reset_keeps_sequences() {
        let provider = Provider::new(
            Config {
                clients: vec![ClientConfig::confidential("c", "s")],
                ..Config::default()
            },
            "http://127.0.0.1:1".to_owned(),
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let body = b"grant_type=client_credentials&client_id=c&client_secret=s";
        assert!(provider.token(&headers, body).is_ok());
        assert!(provider.family_active(1));
        provider.revoke_all();
        assert!(!provider.family_active(1));
        provider.reset();
        assert!(provider.token_log().is_empty());
        assert!(provider.token(&headers, body).is_ok());
        let log = provider.token_log();
        assert_eq!(log[0].seq, 2);
        assert_eq!(log[0].family, Some(2));
        assert_eq!(log[0].outcome, "ok");
    }
}
