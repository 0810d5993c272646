//! Signing in to the console: with the admin token (embedded mode, or as a fallback),
//! or with the company's OpenID Connect provider, the gateway being a confidential
//! client (authorization_code + PKCE S256 + nonce). The flow's state, verifier and
//! nonce travel in a short-lived sealed cookie, so the callback may reach any replica.
//!
//! The admin-token form is protected against login CSRF (a site signing a browser in
//! behind its user's back): the sign-in page sets a random pre-session cookie and the
//! form carries a token derived from it, which another site can neither read nor
//! forge. Wrong tokens are counted per client address (`http.maxAuthFailuresPerMinute`,
//! in `hawser_auth_failures_total{reason="invalid"}`); an address over its allowance
//! is answered 429 with `Retry-After`, whatever token it sends, until it has waited.

use std::sync::Arc;
use std::time::Duration;

use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use oauth2::PkceCodeChallenge;
use serde::{Deserialize, Serialize};

use super::layout::{bare, bare_page};
use super::session::{self, Session};
use super::{Console, Error};
use crate::clock::Timestamp;
use crate::crypto::IdHash;

/// The cookie holding a sign-in in progress.
const LOGIN_COOKIE: &str = "hawser_ui_login";
const LOGIN_CONTEXT: &str = "hawser/console-login";
/// How long a person has at the provider.
const LOGIN_TTL: Duration = Duration::from_secs(600);
/// The pre-session cookie the admin-token form's CSRF token is bound to.
const PRE_COOKIE: &str = "hawser_ui_pre";
/// How long a sign-in page's form stays usable.
const PRE_TTL: Duration = Duration::from_secs(2 * 3600);

/// A sign-in in progress, sealed into [`LOGIN_COOKIE`].
#[derive(Serialize, Deserialize)]
struct Pending {
    #[serde(rename = "st")]
    state: String,
    #[serde(rename = "v")]
    verifier: String,
    #[serde(rename = "n")]
    nonce: String,
    #[serde(rename = "e")]
    expires: Timestamp,
    /// The console page to land on afterwards (a consent link's page).
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    then: Option<String>,
}

/// Sets `cookies` on a redirect to `to`.
fn redirect_with(to: &str, cookies: &[String]) -> Response {
    let mut response = Redirect::to(to).into_response();
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// `GET /ui/signin`.
pub async fn page(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if session::read(&console, &headers).is_some() {
        return Redirect::to("/ui/").into_response();
    }
    signin_page(&console, &headers, None, StatusCode::OK)
}

/// The login-CSRF token of pre-session value `pre`.
fn login_csrf(pre: &str) -> String {
    IdHash::of(&format!("hawser/console-login-csrf:{pre}")).to_hex()
}

/// The request's pre-session value, if it sent a well-formed one.
fn pre_session(headers: &HeaderMap) -> Option<&str> {
    session::cookie_value(headers, PRE_COOKIE)
        .filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The sign-in page; its form is bound to the browser's pre-session cookie (set
/// here when the browser has none).
fn signin_page(
    console: &Console,
    headers: &HeaderMap,
    problem: Option<&str>,
    status: StatusCode,
) -> Response {
    let (pre, fresh) = match pre_session(headers) {
        Some(p) => (p.to_owned(), false),
        None => (crate::crypto::random_hex::<16>(), true),
    };
    let oidc = console.uses_oidc();
    let token_form = html! {
        form method="post" action="/ui/signin" {
            input type="hidden" name="csrf" value=(login_csrf(&pre));
            label for="token" { "Admin token" }
            input #token type="password" name="token" autocomplete="current-password" required;
            button type="submit" { "Sign in with the admin token" }
        }
    };
    let content = html! {
        @if let Some(p) = problem {
            div.notice.bad role="alert" { (p) }
        }
        @if oidc {
            p { "Sign in with your company account." }
            p { a.button href="/ui/auth/login" { "Sign in with single sign-on" } }
            details open[problem.is_some()] {
                summary { "Operators: sign in with the admin token" }
                (token_form)
            }
        } @else if console.admin.token.is_some() {
            p { "Sign in with the gateway's admin token (" code { "HAWSER_ADMIN_TOKEN" } ")." }
            (token_form)
        } @else {
            p { "No sign-in is configured. Set " code { "HAWSER_ADMIN_TOKEN" }
                ", or " code { "console.oidc" } " with " code { "clientAuth.oidc" } "." }
        }
    };
    let mut response = (status, bare_page("Sign in", content)).into_response();
    if fresh {
        let cookie = session::set_cookie(console, PRE_COOKIE, &pre, "/ui/signin", PRE_TTL);
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

#[derive(Deserialize)]
pub struct TokenForm {
    token: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/signin`: the admin token makes an admin.
pub async fn with_token(
    State(console): State<Arc<Console>>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let Some(expected) = console.admin.token else {
        return signin_page(
            &console,
            &headers,
            Some("The admin token is not set."),
            StatusCode::FORBIDDEN,
        );
    };
    let bound = pre_session(&headers).is_some_and(|pre| {
        crate::crypto::constant_time_eq(form.csrf.as_bytes(), login_csrf(pre).as_bytes())
    });
    if !bound {
        tracing::warn!("console: admin-token sign-in without this browser's sign-in form");
        return signin_page(
            &console,
            &headers,
            Some("This sign-in form is stale or was sent from another site. Sign in again here."),
            StatusCode::FORBIDDEN,
        );
    }
    let address = crate::front::request::client_address(
        &headers,
        extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|ConnectInfo(p)| *p),
        &console.trusted_proxies,
    )
    .unwrap_or_default();
    if let Some(wait) = console.sign_in_failures.waiting(&address) {
        return too_many(&console, &headers, wait);
    }
    if !IdHash::of(&form.token).matches(&expected) {
        tracing::warn!(client = %address, "console: sign-in with a wrong admin token");
        console.metrics.auth_failure("invalid");
        if let Some(wait) = console.sign_in_failures.failed(&address) {
            return too_many(&console, &headers, wait);
        }
        return signin_page(
            &console,
            &headers,
            Some("That is not the admin token."),
            StatusCode::UNAUTHORIZED,
        );
    }
    tracing::info!("console: signed in with the admin token");
    let s = Session::new("admin".to_owned(), Vec::new(), true);
    redirect_with("/ui/", &[session::cookie(&console, &s)])
}

/// 429: this address sent too many wrong admin tokens.
fn too_many(console: &Console, headers: &HeaderMap, wait: Duration) -> Response {
    let secs = wait.as_secs().max(1);
    tracing::warn!(wait_secs = secs, "console: admin-token sign-in throttled");
    let message = format!(
        "Too many wrong admin tokens were sent from your address. Wait {secs} seconds, then try again."
    );
    let mut response = signin_page(
        console,
        headers,
        Some(&message),
        StatusCode::TOO_MANY_REQUESTS,
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

#[derive(Deserialize)]
pub struct StartQuery {
    login_hint: Option<String>,
    /// A console path to land on after signing in.
    then: Option<String>,
}

fn redirect_uri(console: &Console) -> Result<url::Url, Error> {
    let public = console.public_url.as_ref().ok_or_else(|| {
        Error::Invalid("set publicUrl (HAWSER_PUBLIC_URL) to sign in with single sign-on".into())
    })?;
    crate::oauth::flow::public_path(public, "ui/auth/callback")
        .map_err(|e| Error::Invalid(format!("publicUrl: {e}")))
}

/// `GET /ui/auth/login`: off to the provider.
pub async fn start(
    State(console): State<Arc<Console>>,
    Query(q): Query<StartQuery>,
) -> Result<Response, Error> {
    let (Some(client), Some(oidc)) = (&console.settings.oidc, console.admin.identity.oidc()) else {
        return Ok(Redirect::to("/ui/signin").into_response());
    };
    let redirect = redirect_uri(&console)?;
    let (authorize, _) = oidc.sign_in_endpoints().await.map_err(|e| {
        tracing::warn!(error = %e, "console: identity provider discovery failed");
        Error::Invalid("the identity provider cannot be reached; try again".into())
    })?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let pending = Pending {
        state: crate::crypto::random_hex::<16>(),
        verifier: verifier.secret().clone(),
        nonce: crate::crypto::random_hex::<16>(),
        expires: Timestamp::now().plus(LOGIN_TTL),
        then: q.then.filter(|t| crate::oauth::flow::is_console_path(t)),
    };
    let mut url = authorize;
    {
        let mut q2 = url.query_pairs_mut();
        q2.append_pair("response_type", "code")
            .append_pair("client_id", &client.client_id)
            .append_pair("redirect_uri", redirect.as_str())
            .append_pair("scope", &client.scopes.join(" "))
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", challenge.as_str())
            .append_pair("code_challenge_method", "S256");
        if let Some(hint) = q.login_hint.filter(|h| !h.is_empty()) {
            q2.append_pair("login_hint", &hint);
        }
    }
    let sealed = console.keyring.seal(
        &serde_json::to_vec(&pending).unwrap_or_default(),
        LOGIN_CONTEXT,
    );
    let cookie = session::set_cookie(&console, LOGIN_COOKIE, &sealed, "/ui/auth", LOGIN_TTL);
    Ok(redirect_with(url.as_str(), &[cookie]))
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    id_token: Option<String>,
}

/// `GET /ui/auth/callback`: the code for tokens, the tokens for a session.
pub async fn callback(
    State(console): State<Arc<Console>>,
    Query(q): Query<CallbackQuery>,
    headers: HeaderMap,
) -> Response {
    let spent = session::set_cookie(&console, LOGIN_COOKIE, "", "/ui/auth", Duration::ZERO);
    match finish(&console, q, &headers).await {
        Ok((s, then)) => {
            tracing::info!(subject = %s.subject, admin = s.admin, "console: signed in");
            let to = then.as_deref().unwrap_or("/ui/");
            redirect_with(to, &[spent, session::cookie(&console, &s)])
        }
        Err(message) => {
            tracing::warn!(error = %message, "console: sign-in failed");
            let mut r = (StatusCode::BAD_REQUEST, bare("Sign-in failed", &message)).into_response();
            if let Ok(v) = HeaderValue::from_str(&spent) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
    }
}

async fn finish(
    console: &Console,
    q: CallbackQuery,
    headers: &HeaderMap,
) -> Result<(Session, Option<String>), String> {
    let (Some(client), Some(oidc)) = (&console.settings.oidc, console.admin.identity.oidc()) else {
        return Err("single sign-on is not configured".into());
    };
    let pending: Pending = session::cookie_value(headers, LOGIN_COOKIE)
        .and_then(|c| console.keyring.unseal(c, LOGIN_CONTEXT).ok())
        .and_then(|p| serde_json::from_slice(&p).ok())
        .ok_or("this sign-in was not started in this browser, or took too long; start again")?;
    if pending.expires < Timestamp::now() {
        return Err("this sign-in took too long; start again".into());
    }
    let state = q.state.unwrap_or_default();
    if !crate::crypto::constant_time_eq(state.as_bytes(), pending.state.as_bytes()) {
        return Err("the answer does not belong to this sign-in; start again".into());
    }
    if let Some(error) = q.error {
        return Err(format!("the identity provider refused: {error}"));
    }
    let code = q
        .code
        .filter(|c| !c.is_empty())
        .ok_or("the answer carries no code")?;
    let redirect = redirect_uri(console).map_err(|e| e.to_string())?;
    let (_, token_endpoint) = oidc.sign_in_endpoints().await?;
    let answer = console
        .http
        .post(token_endpoint)
        .basic_auth(
            form_encode(&client.client_id),
            Some(form_encode(client.client_secret.expose())),
        )
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("code_verifier", pending.verifier.as_str()),
        ])
        .send()
        .await
        .map_err(|e| format!("the identity provider cannot be reached: {e}"))?;
    if !answer.status().is_success() {
        return Err(format!(
            "the identity provider refused the code ({})",
            answer.status()
        ));
    }
    let tokens: TokenAnswer = answer
        .json()
        .await
        .map_err(|_| "the identity provider's answer is not a token response".to_owned())?;
    let identity = match (tokens.id_token, tokens.access_token) {
        (Some(id), _) => {
            let identity = oidc
                .verify_id_token(&id, &client.client_id)
                .await
                .map_err(|r| format!("the ID token was refused: {r}"))?;
            let nonce = identity
                .claims
                .as_ref()
                .and_then(|c| c.get("nonce"))
                .and_then(|n| n.as_str());
            if nonce != Some(pending.nonce.as_str()) {
                return Err("the ID token does not belong to this sign-in".into());
            }
            identity
        }
        (None, Some(access)) => {
            let resource = console.admin.identity.resource();
            oidc.verify(&access, IdHash::of(&access), |aud| {
                aud == client.client_id
                    || resource.accepts(headers, &crate::endpoint::Endpoint::Aggregated, aud)
            })
            .await
            .map_err(|r| format!("the access token was refused: {r}"))?
        }
        (None, None) => return Err("the identity provider returned no token".into()),
    };
    let admin = identity
        .groups
        .iter()
        .any(|g| console.settings.admin_groups.contains(g));
    let then = pending
        .then
        .filter(|t| crate::oauth::flow::is_console_path(t));
    Ok((
        Session::new(identity.subject.clone(), identity.groups.clone(), admin),
        then,
    ))
}

/// RFC 6749 §2.3.1: client credentials are form-encoded before Basic auth.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/signout`: ends this sign-in on every replica, not only in this browser.
pub async fn sign_out(
    State(console): State<Arc<Console>>,
    session: Session,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Error> {
    session.check_csrf(&form.csrf)?;
    console.revocations.revoke(&session).await?;
    tracing::info!(subject = %session.subject, "console: signed out");
    Ok(redirect_with("/ui/signin", &[session::cleared(&console)]))
}
