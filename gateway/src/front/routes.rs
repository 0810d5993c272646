//! The routes `/mcp`, `/mcp/{connection}` and `/mcp/{namespace}/{name}`: each request
//! is admitted, then either starts a session or is dispatched in the one it names.

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use tracing::Instrument;

use super::error::Error;
use super::reply::{self, Reply};
use super::request::RequestInfo;
use super::state::Front;
use super::wire::{self, Wire};
use super::{admission, dispatch, initialize, listen, modern, record, wellknown};
use crate::endpoint::Endpoint;
use crate::identity::metadata::METADATA_PATH;
use crate::jsonrpc::{Id, Kind, Message};

/// The endpoint a request's path names.
struct Path(Endpoint);

impl<S: Send + Sync> FromRequestParts<S> for Path {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        admission::endpoint_of(parts.uri.path()).map(Self)
    }
}

/// The MCP routes.
pub fn router(front: Arc<Front>) -> Router {
    let methods = || post(post_mcp).get(get_mcp).delete(delete_mcp);
    Router::new()
        .route("/mcp", methods())
        .route("/mcp/{connection}", methods())
        .route("/mcp/{namespace}/{name}", methods())
        .route(METADATA_PATH, get(wellknown::protected_resource))
        .route("/.well-known/jwks.json", get(wellknown::jwks))
        .route(
            &format!("{METADATA_PATH}/{{*rest}}"),
            get(wellknown::protected_resource),
        )
        .with_state(front)
}

/// The TCP peer of a request.
fn peer_of(parts: &Parts) -> Option<std::net::SocketAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0)
}

async fn post_mcp(
    State(front): State<Arc<Front>>,
    Path(endpoint): Path,
    request: axum::extract::Request,
) -> Reply {
    let (parts, body) = request.into_parts();
    let peer = peer_of(&parts);
    let mut info = RequestInfo::new(
        &parts.headers,
        peer,
        &front.security.trusted_proxies,
        &endpoint,
    );
    let span = info.trace.span.clone();
    async move {
        let reply = handle_post(front, endpoint, Arc::new(parts.headers), body, &mut info).await;
        info.trace.answered(reply.status().as_u16());
        reply
    }
    .instrument(span)
    .await
}

async fn handle_post(
    front: Arc<Front>,
    endpoint: Endpoint,
    // Shared, not copied, with the upstream requests (a connection's forwardHeaders).
    headers: Arc<HeaderMap>,
    body: axum::body::Body,
    info: &mut RequestInfo,
) -> Reply {
    let identity =
        match admission::admit(&front, &endpoint, &headers, info.remote_addr.as_deref()).await {
            Ok(identity) => identity,
            Err(error) => {
                if let Error::Unauthenticated(_) | Error::TooManyFailures(_) = error {
                    record::refused(&front, info, None, "(unauthenticated)", None, &error);
                }
                return error.reply(None);
            }
        };
    let body = match admission::read_body(&headers, body, &front.limits).await {
        Ok(body) => body,
        Err(error) => return error.reply(None),
    };
    info.auth_type = Some(identity.method.as_str());
    info.caller = Some(identity.clone());
    info.client_headers = Some(headers.clone());
    info.request_bytes = body.len();
    let msg = match Message::parse(&body) {
        Ok(m) => m,
        Err(e) => {
            let id = e.id.clone();
            return Error::Parse(e).reply(id.as_ref());
        }
    };
    info.begin_trace(&msg, &endpoint.to_string());
    match wire::classify(&headers, &msg) {
        Ok(Wire::Legacy) => {}
        Ok(Wire::Modern(modern)) => {
            let raw = modern::Raw {
                headers: &headers,
                body: &body,
            };
            info.trace
                .set("mcp.protocol.version", crate::revision::MODERN);
            return modern::handle(&front, &endpoint, &identity, &msg, modern, info, raw).await;
        }
        Err(error) => return error.reply_modern(msg.id.map(Id::from_raw).as_ref()),
    }
    if msg.kind() == Kind::Request
        && !admission::has_session(&headers)
        && let Some(reply) = initialize::sessionless(&front, &endpoint, &identity, &msg).await
    {
        if msg.method() == "initialize" {
            let outcome = if initialize::started(&reply) {
                "ok"
            } else {
                "protocol"
            };
            record::answered(&front, info, "initialize", outcome);
        }
        return reply;
    }
    let session = match admission::live_session(&front, &endpoint, &identity, &headers).await {
        Ok(s) => s,
        Err(error) => return error.reply(None),
    };
    tracing::Span::current().record("session", session.handle.as_str());
    // The session's handle, never its id (a bearer secret).
    info.trace.set("mcp.session.id", session.handle.clone());
    info.trace.set(
        "mcp.protocol.version",
        session.init.protocol_version.clone(),
    );
    dispatch::message(&front, &session, &msg, info).await
}

async fn get_mcp(
    State(front): State<Arc<Front>>,
    Path(endpoint): Path,
    request: axum::extract::Request,
) -> Reply {
    let (parts, _) = request.into_parts();
    let mut info = RequestInfo::new(
        &parts.headers,
        peer_of(&parts),
        &front.security.trusted_proxies,
        &endpoint,
    );
    let route = route_of(&parts);
    let headers = parts.headers;
    let client = info.remote_addr.clone();
    let opened = async {
        let identity = admission::admit(&front, &endpoint, &headers, client.as_deref()).await?;
        if !admission::has_session(&headers) {
            return Err(Error::MethodNotAllowed("GET"));
        }
        admission::check_stream_accept(&headers)?;
        let session = admission::live_session(&front, &endpoint, &identity, &headers).await?;
        Ok((session, identity))
    };
    let (reply, session, outcome) = match opened.await {
        Ok((session, identity)) => (
            listen::open(&front, &session, identity),
            Some(session),
            "ok",
        ),
        Err(error) => {
            let outcome = error.metric_label();
            (error.reply(None), None, outcome)
        }
    };
    let status = reply.status().as_u16();
    let path = endpoint.to_string();
    info.end_http("GET", route, &path, session.as_deref(), status, outcome);
    reply
}

/// The route a request matched (`/mcp/{connection}`), for the span's name.
fn route_of(parts: &Parts) -> &'static str {
    match parts.uri.path().trim_matches('/').split('/').count() {
        1 => "/mcp",
        2 => "/mcp/{connection}",
        _ => "/mcp/{namespace}/{name}",
    }
}

async fn delete_mcp(
    State(front): State<Arc<Front>>,
    Path(endpoint): Path,
    request: axum::extract::Request,
) -> Reply {
    let (parts, _) = request.into_parts();
    let mut info = RequestInfo::new(
        &parts.headers,
        peer_of(&parts),
        &front.security.trusted_proxies,
        &endpoint,
    );
    let route = route_of(&parts);
    let headers = parts.headers;
    let client = info.remote_addr.clone();
    let ended = async {
        let identity = admission::admit(&front, &endpoint, &headers, client.as_deref()).await?;
        if !admission::has_session(&headers) {
            return Err(Error::MethodNotAllowed("DELETE"));
        }
        let session = admission::live_session(&front, &endpoint, &identity, &headers).await?;
        front
            .sessions
            .end(&session, &front.registry)
            .await
            .map_err(Error::Store)?;
        tracing::info!(session = %session.handle, "session ended by the client");
        Ok::<_, Error>(session)
    };
    let (reply, session, outcome) = match ended.await {
        Ok(session) => {
            let mut r = reply::accepted();
            *r.status_mut() = StatusCode::NO_CONTENT;
            (r, Some(session), "ok")
        }
        Err(error) => {
            let outcome = error.metric_label();
            (error.reply(None), None, outcome)
        }
    };
    let status = reply.status().as_u16();
    let path = endpoint.to_string();
    info.end_http("DELETE", route, &path, session.as_deref(), status, outcome);
    reply
}
