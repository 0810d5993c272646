//! `/token`: client authentication and the authorization_code, refresh_token
//! and client_credentials grants (token exchange is in `exchange.rs`).

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::{
    AuthMethod, ClientConfig,
    exchange::TOKEN_EXCHANGE,
    params::{Credentials, Params, credentials, is_form},
    provider::{
        AccessRecord, Family, Fetched, Inner, Issued, OAuthError, Provider, RefreshRecord,
        TokenLogEntry, check_resource_uri, is_valid_verifier, millis, random_token, s256,
        split_scope,
    },
};
use crate::fixture::util::{now_ms, secrets_equal, sha256_hex};

impl Provider {
    /// Handles a token request; the JSON body of a successful answer.
    /// `fetched` is the client ID metadata document fetched for the form's
    /// `client_id`, if one was needed.
    pub(crate) fn token(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        fetched: &Fetched,
    ) -> Result<Value, OAuthError> {
        let params = Params::parse(body);
        let mut entry = TokenLogEntry {
            grant_type: params.get("grant_type").map(str::to_owned),
            client_id: params.get("client_id").map(str::to_owned),
            refresh_token_sha256: params.get("refresh_token").map(sha256_hex),
            subject_token_sha256: params.get("subject_token").map(sha256_hex),
            ..TokenLogEntry::default()
        };
        let client = self.form_client(headers, &params, fetched, &mut entry.client_id);
        let mut inner = self.lock();
        let result = client.and_then(|client| self.grant(&mut inner, &client, &params, &mut entry));
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

    /// Checks the framing and authenticates the client of a `/token` or
    /// `/revoke` request (one rule set, so both are equally strict).
    /// `claimed_id` becomes the client id the caller claims, for the logs.
    pub(super) fn form_client(
        &self,
        headers: &HeaderMap,
        params: &Params,
        fetched: &Fetched,
        claimed_id: &mut Option<String>,
    ) -> Result<ClientConfig, OAuthError> {
        if !is_form(headers) {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let credentials = credentials(headers, params)?;
        *claimed_id = credentials.claimed_id().map(str::to_owned);
        let client = self.authenticate_client(&credentials, fetched)?;
        params.reject_duplicates()?;
        Ok(client)
    }

    /// A configured or registered client, or the one the fetched metadata
    /// document describes.
    fn resolve_client(&self, id: &str, fetched: &Fetched) -> Result<ClientConfig, OAuthError> {
        if let Some(client) = self.client(id) {
            return Ok(client);
        }
        match fetched {
            Some(Ok(client)) if client.id == id => Ok(client.clone()),
            Some(Err(error)) => Err(error.clone()),
            _ => Err(OAuthError::invalid_client("unknown client")),
        }
    }

    pub(super) fn authenticate_client(
        &self,
        credentials: &Credentials,
        fetched: &Fetched,
    ) -> Result<ClientConfig, OAuthError> {
        match credentials {
            Credentials::Secret { id, secret, method } => {
                let client = self.resolve_client(id, fetched)?;
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
                let client = self.resolve_client(id, fetched)?;
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
        let grant_type = params.get("grant_type");
        if let Some(
            grant_type @ ("authorization_code" | "refresh_token" | "client_credentials"
            | TOKEN_EXCHANGE),
        ) = grant_type
            && !client.allows_grant(grant_type)
        {
            return Err(OAuthError::unauthorized_client(format!(
                "the client is not registered for grant_type {grant_type}"
            )));
        }
        match grant_type {
            Some("authorization_code") => self.exchange_code(inner, client, params, entry),
            Some("refresh_token") => self.refresh(inner, client, params, entry),
            Some("client_credentials") => self.client_credentials(inner, client, params, entry),
            Some(TOKEN_EXCHANGE) => self.token_exchange(inner, client, params, entry),
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
            act: None,
            revoked: false,
        });
        if let Some(stored) = inner.codes.get_mut(&key) {
            stored.family = Some(family);
        }
        entry.family = Some(family);
        let openid = record.scope.iter().any(|s| s == "openid");
        let mut issued = self.issue(inner, family, record.scope.clone(), true)?;
        if openid {
            issued.id_token = Some(self.id_token(&client.id, &record)?);
        }
        Ok(issued)
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
        self.issue(inner, record.family, scope, true)
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
            act: None,
            revoked: false,
        });
        entry.family = Some(family);
        self.issue(inner, family, scope, false)
    }

    /// Issues (and stores the hashes of) an access token, and a refresh
    /// token if `refresh`, for `family`.
    pub(super) fn issue(
        &self,
        inner: &mut Inner,
        family: u64,
        scope: Vec<String>,
        refresh: bool,
    ) -> Result<Issued, OAuthError> {
        let now = now_ms();
        let expires_ms = now.saturating_add(millis(self.config.access_ttl));
        let access = if self.config.jwt {
            let record = inner
                .families
                .get(&family)
                .ok_or_else(|| OAuthError::server_error("unknown token family"))?;
            self.access_jwt(record, &scope, now, expires_ms)?
        } else {
            random_token("mat_")
        };
        inner.access.insert(
            sha256_hex(&access),
            AccessRecord {
                family,
                scope: scope.clone(),
                issued_ms: now,
                expires_ms,
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
        Ok(Issued {
            access,
            refresh,
            scope,
            issued_token_type: None,
            id_token: None,
        })
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
        if let Some(id_token) = &issued.id_token {
            body["id_token"] = json!(id_token);
        }
        if let Some(kind) = issued.issued_token_type {
            body["issued_token_type"] = json!(kind);
        }
        if !issued.scope.is_empty() {
            body["scope"] = json!(issued.scope.join(" "));
        }
        body
    }

    /// The scopes a request without a prior grant gets.
    pub(super) fn grant_scope(&self, requested: Option<&str>) -> Result<Vec<String>, OAuthError> {
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
    pub(super) fn requested_resource(
        &self,
        requested: Option<&str>,
    ) -> Result<Option<String>, OAuthError> {
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
}
