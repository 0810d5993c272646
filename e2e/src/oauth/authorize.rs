//! `/authorize`: auto-approving authorization endpoint (code + PKCE S256).

use axum::http::StatusCode;
use url::Url;

use super::{
    ClientConfig,
    params::Params,
    provider::{
        AuthorizeOutcome, CodeRecord, Fetched, OAuthError, Provider, check_redirect_uri,
        is_s256_challenge, millis, random_token,
    },
};
use crate::fixture::util::{now_ms, sha256_hex};

/// `invalid_client` answered with 400 and no redirect.
fn rejected_client(description: &str) -> OAuthError {
    OAuthError::new(StatusCode::BAD_REQUEST, "invalid_client", description)
}

impl Provider {
    /// Handles an authorization request; `fetched` is the client ID metadata
    /// document fetched for its `client_id`, if one was needed.
    pub(crate) fn authorize(&self, query: &str, fetched: &Fetched) -> AuthorizeOutcome {
        let params = Params::parse(query.as_bytes());
        if params.is_duplicated("client_id") || params.is_duplicated("redirect_uri") {
            return AuthorizeOutcome::Rejected(OAuthError::invalid_request(
                "client_id and redirect_uri must be sent once",
            ));
        }
        let Some(client_id) = params.get("client_id") else {
            return AuthorizeOutcome::Rejected(OAuthError::invalid_request("missing client_id"));
        };
        let (client, from_document) = match (self.client(client_id), fetched) {
            (Some(client), _) => (client, false),
            (None, Some(Ok(client))) if client.id == client_id => (client.clone(), true),
            (None, Some(Err(error))) => {
                return AuthorizeOutcome::Rejected(rejected_client(&error.description));
            }
            (None, _) => {
                return AuthorizeOutcome::Rejected(OAuthError::invalid_request(
                    "unknown client_id",
                ));
            }
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
        if !client.redirect_uris.is_empty()
            && !client.redirect_uris.iter().any(|uri| uri == redirect_uri)
        {
            return AuthorizeOutcome::Rejected(if from_document {
                rejected_client("redirect_uri is not listed in the client metadata document")
            } else {
                OAuthError::invalid_request("redirect_uri is not registered for this client")
            });
        }
        let state = params.get("state");
        let outcome = self.authorize_checked(&client, redirect_uri, &params);
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
        if !client.allows_grant("authorization_code") {
            return Err(OAuthError::unauthorized_client(
                "the client is not registered for the authorization_code grant",
            ));
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
                nonce: params.get("nonce").map(str::to_owned),
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
}
