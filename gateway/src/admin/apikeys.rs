//! `/api/v1/apikeys`: issue (the key is in the answer once, never again), list and
//! revoke API keys; `/api/v1/signing-keys/rotate`: a new signing key for the
//! assertions Hawser sends upstreams.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Admin, Error, authorize, read_body};
use crate::identity::apikeys::{ApiKeys, IssueError, NewKey};
use crate::store::ApiKeyRecord;

fn keys(admin: &Admin) -> Result<&Arc<ApiKeys>, Error> {
    admin.api_keys.as_ref().ok_or(Error::ApiKeysOff)
}

fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let ymd = crate::clock::civil_from_days(days);
    format!(
        "{}-{}-{}T{:02}:{:02}:{:02}Z",
        &ymd[..4],
        &ymd[4..6],
        &ymd[6..8],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A key as listed: never its hash, never the key.
pub(crate) fn describe(k: &ApiKeyRecord) -> Value {
    json!({
        "id": k.id,
        "prefix": k.prefix,
        "subject": k.subject,
        "groups": k.groups,
        "description": k.description,
        "createdAt": rfc3339(k.created_at),
        "expiresAt": k.expires_at.map(rfc3339),
        "lastUsedAt": k.last_used_at.map(rfc3339),
        "revokedAt": k.revoked_at.map(rfc3339),
    })
}

pub(super) async fn list(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    authorize(&admin, &headers)?;
    keys(&admin)?;
    let all = admin.store.list_api_keys().await?;
    let items: Vec<Value> = all.iter().map(describe).collect();
    Ok(Json(json!({ "apiKeys": items })).into_response())
}

pub(super) async fn create(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    authorize(&admin, &headers)?;
    let keys = keys(&admin)?;
    let body = read_body(&headers, body).await?;
    let new: NewKey = serde_json::from_slice(&body).map_err(|e| Error::Invalid {
        field: "body".into(),
        message: e.to_string(),
    })?;
    let issued = keys.issue(new).await.map_err(|e| match e {
        IssueError::Invalid(message) => Error::Invalid {
            field: "body".into(),
            message,
        },
        IssueError::Store(e) => Error::Store(e),
    })?;
    tracing::info!(id = %issued.record.id, subject = %issued.record.subject, "API key issued");
    let mut out = describe(&issued.record);
    out["key"] = json!(issued.key.expose());
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

pub(super) async fn revoke(
    State(admin): State<Arc<Admin>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    authorize(&admin, &headers)?;
    let keys = keys(&admin)?;
    if !keys.revoke(&id).await? {
        return Err(Error::KeyNotFound(id));
    }
    tracing::info!(%id, "API key revoked");
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn rotate_signing_key(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    authorize(&admin, &headers)?;
    let signer = admin.signer.as_ref().ok_or(Error::Disabled)?;
    let kid = signer.rotate().await.map_err(|e| {
        tracing::warn!(error = %e, "signing key rotation failed");
        Error::Store(crate::store::Error::Corrupt(
            "signing key rotation failed".into(),
        ))
    })?;
    tracing::info!(%kid, "signing key rotated");
    Ok(Json(json!({ "kid": kid })).into_response())
}
