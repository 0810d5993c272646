//! HTTP routes of the mock provider.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

use super::{
    MintRequest,
    error::OAuthError,
    params::{Params, is_form},
    provider::{AuthorizeOutcome, Fetched, Provider},
};

const AS_METADATA: &str = "/.well-known/oauth-authorization-server";
const OIDC_METADATA: &str = "/.well-known/openid-configuration";

type AppState = Arc<Provider>;

/// All routes. When the issuer has a path `P`, the endpoints are also served
/// under `P` and the metadata at `/.well-known/oauth-authorization-server{P}`
/// (RFC 8414 §3.1) and `{P}/.well-known/openid-configuration`.
pub(crate) fn router(provider: Arc<Provider>) -> Router {
    let endpoints: Router<AppState> = Router::new()
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route("/introspect", post(introspect))
        .route("/revoke", post(revoke))
        .route("/jwks", get(jwks))
        .route("/register", post(register));
    let mut app = Router::new()
        .route(AS_METADATA, get(as_metadata))
        .route(OIDC_METADATA, get(oidc_metadata))
        .route("/control/log", get(control_log))
        .route("/control/revocation-log", get(control_revocation_log))
        .route("/control/reset", post(control_reset))
        .route("/control/deny-next", post(control_deny_next))
        .route("/control/revoke-all", post(control_revoke_all))
        .route("/control/rotate-key", post(control_rotate_key))
        .route("/control/mint", post(control_mint))
        .route("/control/clients", get(control_clients))
        .merge(endpoints.clone());
    let prefix = provider.issuer_path();
    if !prefix.is_empty() {
        app = app
            .route(&format!("{AS_METADATA}{prefix}"), get(as_metadata))
            .route(&format!("{prefix}{OIDC_METADATA}"), get(oidc_metadata))
            .nest(&prefix, endpoints);
    }
    app.with_state(provider)
}

fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

async fn as_metadata(State(provider): State<AppState>) -> Json<Value> {
    Json(provider.metadata(false))
}

async fn oidc_metadata(State(provider): State<AppState>) -> Json<Value> {
    Json(provider.metadata(true))
}

/// The client ID metadata document a form body's `client_id` names, fetched.
async fn prefetch_form(provider: &Provider, headers: &HeaderMap, body: &[u8]) -> Fetched {
    if !is_form(headers) {
        return None;
    }
    provider
        .prefetch(Params::parse(body).get("client_id"))
        .await
}

async fn authorize(State(provider): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let fetched = provider
        .prefetch(Params::parse(query.as_bytes()).get("client_id"))
        .await;
    match provider.authorize(&query, &fetched) {
        AuthorizeOutcome::Redirect(location) => match HeaderValue::from_str(&location) {
            Ok(location) => {
                no_store((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
            }
            Err(_) => (
                StatusCode::BAD_REQUEST,
                "redirect_uri cannot be redirected to",
            )
                .into_response(),
        },
        AuthorizeOutcome::Rejected(error) => {
            tracing::info!(error = error.code, reason = %error.description, "authorization request rejected without redirect");
            // A 400 with the error, not a redirect (RFC 6749 §4.1.2.1).
            let mut response = error.into_response();
            response.headers_mut().remove(header::WWW_AUTHENTICATE);
            response
        }
    }
}

async fn token(State(provider): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let fetched = prefetch_form(&provider, &headers, &body).await;
    match provider.token(&headers, &body, &fetched) {
        Ok(answer) => no_store(Json(answer).into_response()),
        Err(error) => error.into_response(),
    }
}

async fn introspect(State(provider): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match provider.introspect(&headers, &body) {
        Ok(answer) => no_store(Json(answer).into_response()),
        Err(error) => error.into_response(),
    }
}

async fn revoke(State(provider): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let fetched = prefetch_form(&provider, &headers, &body).await;
    match provider.revoke(&headers, &body, &fetched) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(error) => error.into_response(),
    }
}

async fn control_log(State(provider): State<AppState>) -> Response {
    Json(provider.token_log()).into_response()
}

async fn control_revocation_log(State(provider): State<AppState>) -> Response {
    Json(provider.revocation_log()).into_response()
}

async fn control_reset(State(provider): State<AppState>) -> StatusCode {
    provider.reset();
    tracing::info!("state reset");
    StatusCode::NO_CONTENT
}

async fn control_deny_next(State(provider): State<AppState>) -> StatusCode {
    provider.deny_next();
    tracing::info!("the next authorization will be denied");
    StatusCode::NO_CONTENT
}

async fn control_revoke_all(State(provider): State<AppState>) -> StatusCode {
    provider.revoke_all();
    tracing::info!("every token revoked");
    StatusCode::NO_CONTENT
}

async fn jwks(State(provider): State<AppState>) -> Response {
    let mut response = Json(provider.jwks()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=60"),
    );
    response
}

async fn register(State(provider): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match provider.register(&headers, &body) {
        Ok(answer) => no_store((StatusCode::CREATED, Json(answer)).into_response()),
        Err(error) => error.into_response(),
    }
}

fn control_error(status: StatusCode, description: impl Into<String>) -> Response {
    let code = if status.is_server_error() {
        "server_error"
    } else {
        "invalid_request"
    };
    OAuthError::new(status, code, description).into_response()
}

async fn control_rotate_key(
    State(provider): State<AppState>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    let retire = match params.get("retire") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return control_error(StatusCode::BAD_REQUEST, "retire must be true or false"),
    };
    match provider.rotate_key(retire) {
        Ok(kid) => Json(json!({ "kid": kid })).into_response(),
        Err(error) => control_error(StatusCode::INTERNAL_SERVER_ERROR, format!("{error:#}")),
    }
}

async fn control_mint(State(provider): State<AppState>, body: Bytes) -> Response {
    let request: MintRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return control_error(
                StatusCode::BAD_REQUEST,
                format!("expected {{claims, sign?, kid?, typ?}}: {error}"),
            );
        }
    };
    match provider.mint(&request) {
        Ok(token) => no_store(Json(json!({ "token": token })).into_response()),
        Err(error) => control_error(StatusCode::BAD_REQUEST, format!("{error:#}")),
    }
}

async fn control_clients(State(provider): State<AppState>) -> Json<Value> {
    Json(provider.registered_clients())
}
