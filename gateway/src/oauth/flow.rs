//! The authorization_code flow: `POST …/oauth/start` (admin) hands out an authorization
//! URL with PKCE S256 for the shared token, a consent link ([`super::consent`]) one
//! for a caller's own; `GET /oauth/callback` (public) exchanges the code. The PKCE
//! state lives in the store, so start and callback may reach different replicas, and
//! is taken exactly once.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use hawser_crds::OAuth2Grant;
use oauth2::{
    AuthUrl, AuthorizationCode, CsrfToken, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
};
use serde::Deserialize;
use serde_json::json;

use super::discovery::Endpoints;
use super::tokens::{self, ConnectionTokens};
use super::{Error, OAuth};
use crate::clock::Timestamp;
use crate::crypto::{IdHash, Secret};
use crate::store::PkceState;

/// How long an operator has to complete the authorization.
const FLOW_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// Starts an authorization of the shared token of `connection`; the admin API calls
/// this.
pub async fn start(oauth: &OAuth, connection: &str) -> Result<Response, Error> {
    let (url, state) = begin(oauth, connection, "", None).await?;
    tracing::info!(connection, "OAuth authorization started");
    Ok(Json(json!({
        "authorizationUrl": url.as_str(),
        "state": state.state,
        "expiresAt": state.expires_at.millis() / 1000,
        "redirectUri": state.redirect_uri,
    }))
    .into_response())
}

/// A flow begun: what the authorization URL carries.
pub struct Begun {
    pub state: String,
    pub expires_at: Timestamp,
    pub redirect_uri: String,
}

/// Begins an authorization_code flow for `subject`'s token (`""`: the shared one),
/// optionally to be completed by the browser with cookie hash `browser`; returns the
/// authorization URL.
pub async fn begin(
    oauth: &OAuth,
    connection: &str,
    subject: &str,
    browser: Option<IdHash>,
) -> Result<(url::Url, Begun), Error> {
    let public = oauth.public_url.as_ref().ok_or(Error::NoPublicUrl)?;
    let tokens = oauth.tokens_for(connection).await?;
    if tokens.settings().spec.grant != OAuth2Grant::AuthorizationCode {
        return Err(Error::NothingToAuthorize(connection.to_owned()));
    }
    let endpoints = tokens.endpoints().await.map_err(Error::Discovery)?;
    let Some(authorization) = endpoints.authorization.clone() else {
        return Err(Error::NoAuthorizationEndpoint);
    };
    let redirect = callback_url(public).map_err(Error::RedirectUri)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let spec = &tokens.settings().spec;
    let client = oauth2::basic::BasicClient::new(oauth2::ClientId::new(spec.client_id.clone()))
        .set_auth_uri(AuthUrl::from_url(authorization))
        .set_redirect_uri(RedirectUrl::from_url(redirect.clone()));
    let mut request = client
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .add_scopes(spec.scopes.iter().map(|s| Scope::new(s.clone())))
        .add_extra_param("resource", endpoints.resource.clone());
    for (k, v) in &spec.extra_params {
        request = request.add_extra_param(k.clone(), v.clone());
    }
    let (url, state) = request.url();
    let expires_at = Timestamp::now().plus(FLOW_TTL);
    oauth
        .store
        .put_pkce(&PkceState {
            state_hash: IdHash::of(state.secret()),
            connection: connection.to_owned(),
            subject: subject.to_owned(),
            browser,
            verifier: Secret::new(verifier.secret().clone()),
            redirect_uri: redirect.to_string(),
            expires_at,
        })
        .await?;
    Ok((
        url,
        Begun {
            state: state.secret().clone(),
            expires_at,
            redirect_uri: redirect.to_string(),
        },
    ))
}

/// The cookie naming where the browser goes once an authorization the web console
/// started is done (sealed, bound to the flow's state).
const RETURN_COOKIE: &str = "hawser_return";
/// The cookie a consent link sets in the browser that must complete its flow.
pub(crate) const CONSENT_COOKIE: &str = "hawser_consent";
const RETURN_CONTEXT: &str = "hawser/oauth-return";

/// Whether `target` is a path of the web console (same origin, under `/ui/`).
pub fn is_console_path(target: &str) -> bool {
    target.starts_with("/ui/")
        && !target.contains("//")
        && !target.contains('\\')
        && !target.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// The `Set-Cookie` value that sends the browser completing flow `state` back to
/// `target` (a console path) instead of showing the result page.
pub fn return_cookie(oauth: &OAuth, state: &str, target: &str) -> Option<String> {
    if !is_console_path(target) {
        return None;
    }
    let plain = serde_json::to_vec(&(IdHash::of(state).to_hex(), target)).ok()?;
    let sealed = oauth.keyring.seal(&plain, RETURN_CONTEXT);
    Some(oauth.cookie(RETURN_COOKIE, &sealed, FLOW_TTL))
}

/// Where the browser completing flow `state` asked to go back to, if anywhere.
fn return_target(oauth: &OAuth, headers: &axum::http::HeaderMap, state: &str) -> Option<String> {
    let sealed = crate::headers::cookie_value(headers, RETURN_COOKIE)?;
    let plain = oauth.keyring.unseal(sealed, RETURN_CONTEXT).ok()?;
    let (hash, target): (String, String) = serde_json::from_slice(&plain).ok()?;
    (hash == IdHash::of(state).to_hex() && is_console_path(&target)).then_some(target)
}

/// Query of the redirect from the authorization server.
#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    /// RFC 9207: the authorization server that sent the response.
    iss: Option<String>,
}

/// `<public URL>/oauth/callback`, keeping a path the public URL has (a gateway served
/// under `https://example.com/hawser` gets `https://example.com/hawser/oauth/callback`).
pub fn callback_url(public: &url::Url) -> Result<url::Url, url::ParseError> {
    public_path(public, "oauth/callback")
}

/// `relative` under the public URL, keeping its path.
pub fn public_path(public: &url::Url, relative: &str) -> Result<url::Url, url::ParseError> {
    let mut base = public.clone();
    base.set_query(None);
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    base.join(relative)
}

/// `GET /oauth/callback`: exchanges the code and shows a small page saying what happened.
pub async fn callback(
    State(oauth): State<Arc<OAuth>>,
    Query(q): Query<Callback>,
    headers: axum::http::HeaderMap,
) -> Response {
    let Some(state) = q.state.filter(|s| !s.is_empty()) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Authorization failed",
            "The redirect carries no state parameter.",
        );
    };
    // Taken exactly once, even when the provider reports an error.
    let pending = match oauth.store.take_pkce(&IdHash::of(&state)).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Authorization failed",
                "This authorization is unknown, was already used, or expired. Start it again.",
            );
        }
        Err(error) => {
            tracing::error!(%error, "cannot read the OAuth state");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Authorization failed",
                "The gateway's store is unavailable; try again.",
            );
        }
    };
    let connection = pending.connection.clone();
    let per_user = !pending.subject.is_empty();
    // A refusal after the state was taken: a consent's is audited (`why`), then shown.
    let refused = |why: &str, status: StatusCode, title: &str, shown: &str| {
        if per_user {
            oauth.audit_consent(&connection, &pending.subject, "refused", Some(why));
        }
        page(status, title, shown)
    };
    // A flow a consent link started is completed by the browser that opened the link.
    if let Some(browser) = pending.browser
        && crate::headers::cookie_value(&headers, CONSENT_COOKIE).map(IdHash::of) != Some(browser)
    {
        tracing::warn!(connection = %connection, "consent callback from another browser refused");
        oauth.audit_consent(
            &connection,
            &pending.subject,
            "refused",
            Some("the callback came from another browser than the one that opened the link"),
        );
        return page(
            StatusCode::FORBIDDEN,
            "Authorization refused",
            "This sign-in was started in another browser. Open the link from your client again, in one browser.",
        );
    }
    // The connection's authorization server, looked up once: the response is checked
    // against it and its code sent to it, never a second lookup that could differ.
    let resolved = async {
        let tokens = oauth
            .tokens_for(&connection)
            .await
            .map_err(|e| e.public_message())?;
        let endpoints = tokens.endpoints().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((tokens, endpoints))
    };
    let (tokens, endpoints) = match resolved.await {
        Ok(found) => found,
        Err(message) => {
            tracing::warn!(connection = %connection, error = %message, "OAuth callback: no authorization server");
            return refused(
                &message,
                StatusCode::BAD_GATEWAY,
                "Authorization failed",
                &format!(
                    "Completing the authorization of connection {connection} failed: {message}"
                ),
            );
        }
    };
    // RFC 9207: a response from another authorization server (a mix-up), error
    // responses included, is refused; its code never reaches this one's token endpoint.
    if let Err(message) = endpoints.check_response_issuer(q.iss.as_deref()) {
        tracing::warn!(connection = %connection, error = %message, "authorization response refused");
        return refused(
            &message,
            StatusCode::BAD_REQUEST,
            "Authorization refused",
            &message,
        );
    }
    if let Some(error) = q.error {
        let detail = q
            .error_description
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        tracing::warn!(connection = %connection, %error, "authorization server refused the authorization");
        return refused(
            &format!("{error}{detail}"),
            StatusCode::BAD_REQUEST,
            "Authorization refused",
            &format!(
                "The authorization server answered {error}{detail} for connection {connection}."
            ),
        );
    }
    let Some(code) = q.code.filter(|c| !c.is_empty()) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Authorization failed",
            "The redirect carries no code.",
        );
    };
    match exchange(&oauth, &pending, &tokens, &endpoints, code).await {
        Ok(()) if per_user => {
            tracing::info!(connection = %connection, "per-user consent completed");
            oauth.audit_consent(&connection, &pending.subject, "completed", None);
            let mut done = page(
                StatusCode::OK,
                "Account connected",
                &format!(
                    "Hawser now acts as you on connection {connection}. Go back to your client: it can retry. You can close this window."
                ),
            );
            let spent = oauth.cookie(CONSENT_COOKIE, "", std::time::Duration::ZERO);
            if let Ok(v) = axum::http::HeaderValue::from_str(&spent) {
                done.headers_mut().insert(axum::http::header::SET_COOKIE, v);
            }
            done
        }
        Ok(()) => {
            tracing::info!(connection = %connection, "OAuth authorization completed");
            if let Some(target) = return_target(&oauth, &headers, &state) {
                let mut back = axum::response::Redirect::to(&target).into_response();
                let spent = oauth.cookie(RETURN_COOKIE, "", std::time::Duration::ZERO);
                if let Ok(v) = axum::http::HeaderValue::from_str(&spent) {
                    back.headers_mut().insert(axum::http::header::SET_COOKIE, v);
                }
                return back;
            }
            page(
                StatusCode::OK,
                "Connection authorized",
                &format!(
                    "Hawser now holds a token for connection {connection}. You can close this window."
                ),
            )
        }
        Err(message) => {
            tracing::warn!(connection = %connection, error = %message, "OAuth code exchange failed");
            refused(
                &message,
                StatusCode::BAD_GATEWAY,
                "Authorization failed",
                &format!("Exchanging the code for connection {connection} failed: {message}"),
            )
        }
    }
}

async fn exchange(
    oauth: &OAuth,
    pending: &PkceState,
    tokens: &ConnectionTokens,
    endpoints: &Endpoints,
    code: String,
) -> Result<(), String> {
    let redirect = RedirectUrl::new(pending.redirect_uri.clone()).map_err(|e| e.to_string())?;
    let client = tokens.token_client(endpoints).set_redirect_uri(redirect);
    let adapter = super::http::adapter(oauth.http.clone());
    let response = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.expose().to_owned()))
        .add_extra_param("resource", endpoints.resource.clone())
        .request_async(&adapter)
        .await
        .map_err(|e| tokens::describe(&e))?;
    let row = tokens.to_row(&pending.subject, &response, None);
    tokens.store_grant(row).await.map_err(|e| e.to_string())
}

/// A small page saying what happened; it runs nothing, cannot be framed and is not
/// cached.
pub(crate) fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t} · Hawser</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;color:#222}}</style></head>\
         <body><h1>{t}</h1><p>{m}</p></body></html>",
        t = escape(title),
        m = escape(message)
    );
    let mut response = (status, Html(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_SECURITY_POLICY,
        axum::http::HeaderValue::from_static(PAGE_CSP),
    );
    // The outcome of one flow, for one browser: never kept by a cache.
    headers.insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

/// Pages run no script, load nothing, and are never framed (the consent button).
pub(crate) const PAGE_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'";

/// Escapes text for HTML (provider error descriptions are attacker-controlled).
pub(crate) fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '&' => "&amp;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_callback_keeps_the_public_urls_path() {
        let url = |u: &str| {
            super::callback_url(&url::Url::parse(u).unwrap())
                .unwrap()
                .to_string()
        };
        assert_eq!(
            url("https://mcp.example.com"),
            "https://mcp.example.com/oauth/callback"
        );
        assert_eq!(
            url("https://example.com/hawser"),
            "https://example.com/hawser/oauth/callback"
        );
        assert_eq!(
            url("https://example.com/hawser/"),
            "https://example.com/hawser/oauth/callback"
        );
    }

    #[test]
    fn only_console_paths_are_return_targets() {
        assert!(super::is_console_path("/ui/connection?name=gh"));
        for bad in [
            "https://evil.example/ui/",
            "//evil.example/ui/",
            "/ui//evil",
            "/api/v1/x",
            "/ui/\\evil",
            "/ui/ x",
        ] {
            assert!(!super::is_console_path(bad), "{bad}");
        }
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            super::escape("<script>&\"'"),
            "&lt;script&gt;&amp;&quot;&#39;"
        );
    }
}
