//! Per-user upstream tokens, seen by their owner and by operators:
//!
//! - `GET /api/v1/me/connections`: the caller's connections with per-user tokens, each
//!   `connected`, `consent_required` or `expired`, with a consent link when it is not
//!   connected; `DELETE /api/v1/me/connections/{name}` disconnects (revokes at the
//!   provider when it can, then deletes). The caller authenticates as on `/mcp`.
//! - `GET /api/v1/connections/{name}/users`: who holds a token (never the token);
//!   `DELETE …/users?subject=…` revokes one. Admin token.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{Admin, ConnectionName, Error, authorize};
use crate::clock::Timestamp;
use crate::endpoint::Endpoint;
use crate::store::TokenHolder;

/// The caller's subject; refused when they are not signed in.
async fn caller(admin: &Admin, headers: &HeaderMap) -> Result<String, Response> {
    match admin
        .identity
        .authenticate(headers, &Endpoint::Aggregated)
        .await
    {
        Ok(identity) if !identity.subject.is_empty() => Ok(identity.subject.clone()),
        Ok(_) => Err((
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "sign in to the gateway first: per-user connections belong to a signed-in caller"})),
        )
            .into_response()),
        Err(rejection) => {
            let status = rejection.status();
            let mut response = (
                status,
                Json(json!({"error": "missing or invalid credentials"})),
            )
                .into_response();
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                rejection.challenge.clone(),
            );
            response
                .extensions_mut()
                .insert(super::AuthFailure(rejection.reason()));
            Err(response)
        }
    }
}

/// `connected` (a token that works or can be refreshed), `expired` (one that can no
/// longer be refreshed) or `consent_required` (none).
pub(crate) fn state_of(holder: Option<&TokenHolder>) -> &'static str {
    match holder {
        None => "consent_required",
        Some(h) if h.refreshable => "connected",
        Some(h) => match h.expires_at {
            Some(exp) if exp <= Timestamp::now().millis() => "expired",
            _ => "connected",
        },
    }
}

/// `GET /api/v1/me/connections`.
pub async fn mine(State(admin): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    let subject = match caller(&admin, &headers).await {
        Ok(s) => s,
        Err(refused) => return refused,
    };
    let held = match admin.store.token_holders(None, Some(&subject)).await {
        Ok(h) => h,
        Err(error) => return Error::Store(error).into_response(),
    };
    let view = admin.registry.view();
    let mut names: Vec<&String> = view
        .connections
        .iter()
        .filter(|(_, v)| v.upstream.as_ref().is_some_and(|u| u.per_user_tokens()))
        .map(|(name, _)| name)
        .collect();
    names.sort();
    let connections: Vec<_> = names
        .into_iter()
        .map(|name| {
            let holder = held.iter().find(|h| &h.connection == name);
            let state = state_of(holder);
            let mut out = json!({"name": name, "state": state});
            if let Some(h) = holder {
                out["connectedAt"] = json!(h.updated_at / 1000);
                if let Some(exp) = h.expires_at {
                    out["accessTokenExpiresAt"] = json!(exp / 1000);
                }
            }
            if state != "connected" {
                match admin.oauth.consent_offer(name, &subject) {
                    Ok(offer) => out["consentUrl"] = json!(offer.url.as_str()),
                    Err(error) => out["consentError"] = json!(error.public_message()),
                }
            }
            out
        })
        .collect();
    Json(json!({"subject": subject, "connections": connections})).into_response()
}

/// `DELETE /api/v1/me/connections/{name}`.
pub async fn disconnect_mine(
    State(admin): State<Arc<Admin>>,
    ConnectionName(name): ConnectionName,
    headers: HeaderMap,
) -> Response {
    let subject = match caller(&admin, &headers).await {
        Ok(s) => s,
        Err(refused) => return refused,
    };
    disconnect(&admin, &name, &subject).await
}

#[derive(Deserialize)]
pub struct SubjectQuery {
    subject: Option<String>,
}

/// `GET /api/v1/connections/{name}/users`.
pub async fn holders(
    State(admin): State<Arc<Admin>>,
    ConnectionName(name): ConnectionName,
    headers: HeaderMap,
) -> Result<Response, Error> {
    authorize(&admin, &headers)?;
    if admin.store.get_connection(&name).await?.is_none() {
        return Err(Error::NotFound(name));
    }
    let holders = admin.store.token_holders(Some(&name), None).await?;
    let users: Vec<_> = holders
        .iter()
        .map(|h| {
            json!({
                "subject": h.subject,
                "state": state_of(Some(h)),
                "connectedAt": h.updated_at / 1000,
                "accessTokenExpiresAt": h.expires_at.map(|e| e / 1000),
                "refreshable": h.refreshable,
            })
        })
        .collect();
    Ok(Json(json!({"connection": name, "users": users})).into_response())
}

/// `DELETE /api/v1/connections/{name}/users?subject=…`.
pub async fn revoke(
    State(admin): State<Arc<Admin>>,
    ConnectionName(name): ConnectionName,
    Query(q): Query<SubjectQuery>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    authorize(&admin, &headers)?;
    let Some(subject) = q.subject.filter(|s| !s.is_empty()) else {
        return Err(Error::Invalid {
            field: "subject".into(),
            message: "the query parameter subject is required".into(),
        });
    };
    Ok(disconnect(&admin, &name, &subject).await)
}

/// What disconnecting a user's token did.
pub(crate) enum Disconnected {
    /// The token is gone; `revoked`: the provider confirmed a revocation.
    Done { revoked: bool },
    /// The user held no token.
    NotHeld,
}

/// Disconnects `subject`'s token on `connection`: revoked at the provider when it
/// can be, deleted, and audited (`consent/revoked`).
pub(crate) async fn disconnect_token(
    admin: &Admin,
    connection: &str,
    subject: &str,
) -> Result<Disconnected, Error> {
    let tokens = match admin.oauth.tokens_for(connection).await? {
        t if t.per_user() => t,
        _ => {
            return Err(Error::Invalid {
                field: "connection".into(),
                message: format!("connection {connection} does not use per-user tokens"),
            });
        }
    };
    let done = tokens.disconnect(subject).await.map_err(|error| {
        tracing::warn!(connection, %error, "disconnecting a per-user token failed");
        Error::Store(crate::store::Error::Unavailable)
    })?;
    if !done.held {
        return Ok(Disconnected::NotHeld);
    }
    admin.oauth.audit_consent(
        connection,
        subject,
        "revoked",
        (!done.revoked).then_some("deleted; the provider did not confirm a revocation"),
    );
    tracing::info!(
        connection,
        revoked_at_provider = done.revoked,
        "per-user token disconnected"
    );
    Ok(Disconnected::Done {
        revoked: done.revoked,
    })
}

async fn disconnect(admin: &Admin, connection: &str, subject: &str) -> Response {
    match disconnect_token(admin, connection, subject).await {
        Ok(Disconnected::Done { revoked }) => Json(json!({
            "connection": connection,
            "disconnected": true,
            "revokedAtProvider": revoked,
        }))
        .into_response(),
        Ok(Disconnected::NotHeld) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no token of this user for connection {connection}")})),
        )
            .into_response(),
        Err(error) => error.into_response(),
    }
}
