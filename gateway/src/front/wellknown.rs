//! `/.well-known/oauth-protected-resource[/mcp…]`: what an MCP client reads after a
//! 401 to learn where to sign in (RFC 9728). The path after the well-known prefix is
//! the endpoint's path, with or without `publicUrl`'s own path prefix (a proxy may
//! route `https://host/.well-known/oauth-protected-resource/prefix/mcp` here unchanged).
//! `/.well-known/jwks.json`: Hawser's public keys, for upstreams checking the
//! assertions of identity mode `jwt`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::admission;
use super::state::Front;
use crate::identity::metadata::METADATA_PATH;

pub async fn protected_resource(
    State(front): State<Arc<Front>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(error) = admission::check_origin(&front.security, &headers) {
        return error.reply(None);
    }
    let resource = front.identity.resource();
    let rest = uri.path().strip_prefix(METADATA_PATH).unwrap_or_default();
    let prefix = resource.path_prefix();
    let rest = match rest.strip_prefix(prefix) {
        Some(r) if !prefix.is_empty() && (r.is_empty() || r.starts_with('/')) => r,
        _ => rest,
    };
    // The bare form describes the aggregated endpoint.
    let path = if rest.is_empty() { "/mcp" } else { rest };
    let endpoint = match path.starts_with("/mcp") {
        true => admission::endpoint_of(path).ok(),
        false => None,
    };
    let Some(endpoint) = endpoint else {
        return (StatusCode::NOT_FOUND, "no MCP endpoint at this path").into_response();
    };
    let mut r = Json(resource.document(&headers, &endpoint)).into_response();
    // Browser-based clients read it from another origin; it holds nothing secret.
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    r
}

pub async fn jwks(State(front): State<Arc<Front>>) -> Response {
    match front.identity.towards().jwks() {
        Some(keys) => {
            let mut r = Json(keys).into_response();
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=300"),
            );
            r
        }
        None => (StatusCode::NOT_FOUND, "no signing keys").into_response(),
    }
}
