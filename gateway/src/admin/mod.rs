//! The admin REST API: connections (list, get, create/replace, delete) and their
//! status on every replica. Bearer `HAWSER_ADMIN_TOKEN`; disabled without one.
//!
//! Writes go to the store, which bumps the connection's revision and notifies every
//! replica; nothing here talks to replicas directly.

pub(crate) mod apikeys;
mod error;
pub(crate) mod policies;
pub(crate) mod users;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
pub use error::Error;
use hawser_crds::{McpConnectionSpec, SecretValue};
use serde_json::{Value, json};

use crate::clock::Timestamp;
use crate::config::{InlineOnly, Policy, Source, resolve};
use crate::crypto::IdHash;
use crate::store::{ConnectionState, PutOutcome, Store, StoredConnection};

/// A status row older than this comes from a replica that stopped reporting.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(150);

/// State of the admin API.
pub struct Admin {
    pub store: Arc<dyn Store>,
    /// SHA-256 of the admin token; `None` disables the API.
    pub token: Option<IdHash>,
    pub policy: Policy,
    pub oauth: Arc<crate::oauth::OAuth>,
    /// API keys, when `clientAuth.apiKeys` is on.
    pub api_keys: Option<Arc<crate::identity::apikeys::ApiKeys>>,
    /// Hawser's signing keys (identity mode `jwt`).
    pub signer: Option<Arc<crate::identity::signing::Signer>>,
    /// The policies replicas enforce (for `explain`).
    pub policies: Arc<crate::policy::Policies>,
    /// What clients see (for `explain` of exposed names).
    pub registry: Arc<crate::registry::Registry>,
    /// Who is calling `/api/v1/me/…` (authenticated as on `/mcp`).
    pub identity: Arc<crate::identity::Authenticator>,
}

/// The admin routes.
pub fn router(admin: Arc<Admin>) -> Router {
    Router::new()
        .route("/api/v1/connections", get(list))
        .route(
            "/api/v1/connections/{name}",
            get(get_one).put(put).delete(delete),
        )
        .route("/api/v1/connections/{name}/status", get(status))
        .route(
            "/api/v1/connections/{name}/oauth/start",
            axum::routing::post(oauth_start),
        )
        .route(
            "/api/v1/connections/{namespace}/{name}/oauth/start",
            axum::routing::post(oauth_start),
        )
        .route(
            "/api/v1/connections/{namespace}/{name}",
            get(get_one).put(put).delete(delete),
        )
        .route("/api/v1/connections/{namespace}/{name}/status", get(status))
        .route(
            "/api/v1/connections/{name}/users",
            get(users::holders).delete(users::revoke),
        )
        .route(
            "/api/v1/connections/{namespace}/{name}/users",
            get(users::holders).delete(users::revoke),
        )
        .route("/api/v1/me/connections", get(users::mine))
        .route(
            "/api/v1/me/connections/{name}",
            axum::routing::delete(users::disconnect_mine),
        )
        .route(
            "/api/v1/me/connections/{namespace}/{name}",
            axum::routing::delete(users::disconnect_mine),
        )
        .route("/api/v1/apikeys", get(apikeys::list).post(apikeys::create))
        .route(
            "/api/v1/apikeys/{id}",
            axum::routing::delete(apikeys::revoke),
        )
        .route("/api/v1/policies", get(policies::list))
        .route("/api/v1/policies/explain", get(policies::explain))
        .route(
            "/api/v1/policies/{name}",
            get(policies::get_one)
                .put(policies::put)
                .delete(policies::delete),
        )
        .route(
            "/api/v1/signing-keys/rotate",
            axum::routing::post(apikeys::rotate_signing_key),
        )
        .with_state(admin)
}

/// The connection a route names: `{name}`, or `{namespace}/{name}` for connections
/// from `McpConnection` resources.
pub(crate) struct ConnectionName(String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ConnectionName {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let Path(segments) = Path::<Vec<String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::BadPath(e.body_text()))?;
        Ok(Self(segments.join("/")))
    }
}

/// Why a 401 of the admin API was given, for `hawser_auth_failures_total` (a response
/// extension; without it, `invalid`).
#[derive(Debug, Clone, Copy)]
pub struct AuthFailure(pub &'static str);

pub(crate) fn authorize(admin: &Admin, headers: &HeaderMap) -> Result<(), Error> {
    let expected = admin.token.ok_or(Error::Disabled)?;
    let presented = crate::headers::bearer(headers).unwrap_or_default();
    if !IdHash::of(presented).matches(&expected) {
        return Err(Error::Unauthorized);
    }
    Ok(())
}

/// A spec as shown by the API: every secret value replaced by `"<redacted>"`.
fn redacted(spec: &McpConnectionSpec) -> Value {
    let mut shown = spec.clone();
    for (_, value) in shown.secrets_mut() {
        if let SecretValue::Inline(_) = value {
            *value = SecretValue::Inline("<redacted>".into());
        }
    }
    serde_json::to_value(&shown).unwrap_or(Value::Null)
}

fn describe(conn: &StoredConnection) -> Value {
    let mut out = json!({
        "name": conn.name,
        "source": conn.source.as_str(),
        "revision": conn.revision,
    });
    match &conn.spec {
        Ok(spec) => out["spec"] = redacted(spec),
        Err(e) => out["error"] = json!(e),
    }
    if let Some(g) = conn.generation {
        out["generation"] = json!(g);
    }
    out
}

async fn list(State(admin): State<Arc<Admin>>, headers: HeaderMap) -> Result<Response, Error> {
    authorize(&admin, &headers)?;
    let rows = admin.store.list_connections().await?;
    let items: Vec<Value> = rows.iter().map(describe).collect();
    Ok(Json(json!({ "connections": items })).into_response())
}

async fn get_one(
    State(admin): State<Arc<Admin>>,
    ConnectionName(name): ConnectionName,
    headers: HeaderMap,
) -> Result<Response, Error> {
    show(&admin, &headers, &name).await
}

/// The stored connection `name`, or 404.
async fn stored(admin: &Admin, name: &str) -> Result<StoredConnection, Error> {
    admin
        .store
        .get_connection(name)
        .await?
        .ok_or_else(|| Error::NotFound(name.to_owned()))
}

async fn show(admin: &Admin, headers: &HeaderMap, name: &str) -> Result<Response, Error> {
    authorize(admin, headers)?;
    let conn = stored(admin, name).await?;
    Ok(Json(describe(&conn)).into_response())
}

async fn put(
    State(admin): State<Arc<Admin>>,
    ConnectionName(name): ConnectionName,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    write(&admin, &headers, &name, body).await
}

/// Largest admin API body: a connection spec is a few KB.
const MAX_BODY_BYTES: usize = 1 << 20;

/// Reads a body after the caller is known to be allowed to send one.
/// A write's JSON body: `Content-Type: application/json` (415 otherwise, on every
/// route that takes one), at most [`MAX_BODY_BYTES`].
pub(crate) async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, Error> {
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(Error::UnsupportedMediaType);
    }
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            if crate::body::is_too_large(&e) {
                Error::BodyTooLarge(MAX_BODY_BYTES)
            } else if crate::body::is_body_timeout(&e) {
                Error::BodyTimeout
            } else {
                Error::BadBody
            }
        })
}

/// Refuses changes to connections another source owns.
fn check_owner(existing: Option<&StoredConnection>, name: &str) -> Result<(), Error> {
    match existing.map(|c| c.source) {
        Some(Source::Crd) => Err(Error::ManagedByResource(name.to_owned())),
        Some(Source::File) => Err(Error::ManagedByFile(name.to_owned())),
        _ => Ok(()),
    }
}

async fn write(
    admin: &Admin,
    headers: &HeaderMap,
    name: &str,
    body: Body,
) -> Result<Response, Error> {
    authorize(admin, headers)?;
    if name.contains('/') {
        return Err(Error::NamespacedName(name.to_owned()));
    }
    let body = read_body(headers, body).await?;
    let mut de = serde_json::Deserializer::from_slice(&body);
    let spec: McpConnectionSpec = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        Error::Invalid {
            field: if field == "." { "(body)".into() } else { field },
            message: e.into_inner().to_string(),
        }
    })?;
    let conn = resolve(name, spec, Source::Api, admin.policy, &InlineOnly).map_err(|e| {
        Error::Invalid {
            field: e.field,
            message: e.message,
        }
    })?;
    let existing = admin.store.get_connection(name).await?;
    check_owner(existing.as_ref(), name)?;
    let outcome = admin.store.put_connection(&conn, None).await?;
    let (status, what) = match outcome {
        PutOutcome::Created { .. } => (StatusCode::CREATED, "created"),
        PutOutcome::Updated { .. } => (StatusCode::OK, "updated"),
        PutOutcome::Unchanged { .. } => (StatusCode::OK, "unchanged"),
    };
    tracing::info!(connection = %name, revision = outcome.revision(), outcome = what, "connection written through the admin API");
    Ok((
        status,
        Json(json!({"name": name, "revision": outcome.revision(), "result": what})),
    )
        .into_response())
}

async fn delete(
    State(admin): State<Arc<Admin>>,
    ConnectionName(name): ConnectionName,
    headers: HeaderMap,
) -> Result<Response, Error> {
    remove(&admin, &headers, &name).await
}

async fn remove(admin: &Admin, headers: &HeaderMap, name: &str) -> Result<Response, Error> {
    authorize(admin, headers)?;
    let existing = stored(admin, name).await?;
    check_owner(Some(&existing), name)?;
    admin.store.delete_connection(name).await?;
    tracing::info!(connection = %name, "connection deleted through the admin API");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn status(
    State(admin): State<Arc<Admin>>,
    ConnectionName(name): ConnectionName,
    headers: HeaderMap,
) -> Result<Response, Error> {
    report(&admin, &headers, &name).await
}

async fn report(admin: &Admin, headers: &HeaderMap, name: &str) -> Result<Response, Error> {
    authorize(admin, headers)?;
    let conn = stored(admin, name).await?;
    let now = Timestamp::now();
    let replicas: Vec<Value> = admin
        .store
        .read_status(name)
        .await?
        .into_iter()
        .filter(|s| s.state != ConnectionState::Removed)
        .map(|s| {
            let age = now.since(s.updated_at);
            json!({
                "replica": s.replica,
                "state": s.state,
                "tools": s.tools,
                "lastError": s.last_error,
                "authState": s.auth_state,
                "revision": s.revision,
                "current": s.revision == conn.revision,
                "ageSeconds": age.as_secs(),
                "stale": age > STALE_AFTER,
            })
        })
        .collect();
    let ready = replicas
        .iter()
        .filter(|r| r["state"] == ConnectionState::Ready.as_str() && r["stale"] == false)
        .count();
    Ok(Json(json!({
        "name": name,
        "source": conn.source.as_str(),
        "revision": conn.revision,
        "readyReplicas": ready,
        "replicas": replicas,
    }))
    .into_response())
}

async fn oauth_start(
    State(admin): State<Arc<Admin>>,
    ConnectionName(name): ConnectionName,
    headers: HeaderMap,
) -> Result<Response, Error> {
    authorize(&admin, &headers)?;
    Ok(crate::oauth::flow::start(&admin.oauth, &name).await?)
}
