//! What each MCP method does on the aggregated endpoint and on a connection's own
//! endpoint: answered here (initialize, ping, lists), routed to one upstream
//! (calls, reads, prompts, completions), or fanned out (log level, roots changes).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::Front;
use super::reply::{self, Reply};
use super::request::RequestInfo;
use super::session::ClientSession;
use super::stream::{self, CallContext, Outcome};
use crate::jsonrpc::{self, Id, Message, RawParams, code, raw_string};
use crate::upstream::{Upstream, UpstreamError};
use crate::view::{Endpoint, ListKind};

/// Protocol revisions Hawser accepts from clients, newest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];

/// The version to answer an `initialize` asking for `requested`.
pub fn negotiate(requested: Option<&str>) -> &'static str {
    requested
        .and_then(|r| SUPPORTED_VERSIONS.iter().find(|v| **v == r))
        .copied()
        .unwrap_or(SUPPORTED_VERSIONS[0])
}

/// The `initialize` result of the aggregated endpoint.
pub fn aggregated_initialize(version: &str, connections: usize) -> String {
    serde_json::json!({
        "protocolVersion": version,
        "capabilities": {
            "tools": {"listChanged": true},
            "prompts": {"listChanged": true},
            "resources": {"listChanged": true, "subscribe": true},
            "logging": {},
            "completions": {}
        },
        "serverInfo": {"name": "hawser", "title": "Hawser MCP gateway", "version": env!("CARGO_PKG_VERSION")},
        "instructions": format!(
            "Hawser aggregates {connections} MCP connection(s); each tool and prompt is named <connection>__<name>."
        )
    })
    .to_string()
}

/// The `initialize` result of a connection's endpoint: the upstream's own, with the
/// negotiated version and list changes announced (Hawser sends them on reloads).
pub fn connection_initialize(upstream: &Upstream, version: &str) -> Result<String, UpstreamError> {
    let catalog = upstream
        .catalog()
        .ok_or_else(|| UpstreamError::Unavailable("not connected yet".into()))?;
    let raw = jsonrpc::raw(String::from_utf8_lossy(&catalog.initialize).into_owned());
    let mut members = RawParams::parse(Some(&raw)).map_err(|e| UpstreamError::Protocol(e.0))?;
    members.0.set("protocolVersion", raw_string(version));
    if let Some(caps) = members.0.get("capabilities") {
        let mut caps: serde_json::Value = serde_json::from_str(caps.get()).unwrap_or_default();
        for key in ["tools", "prompts", "resources"] {
            if let Some(obj) = caps.get_mut(key).and_then(|v| v.as_object_mut()) {
                obj.insert("listChanged".into(), serde_json::Value::Bool(true));
            }
        }
        members
            .0
            .set("capabilities", jsonrpc::raw(caps.to_string()));
    }
    Ok(members.to_json())
}

/// Handles a request (a message with an id and a method) in a live session.
pub async fn request(
    front: &Front,
    session: &Arc<ClientSession>,
    msg: &Message<'_>,
    info: &RequestInfo,
) -> Reply {
    let id = msg.id.map(Id::from_raw).unwrap_or_else(|| Id::string(""));
    let view = front.registry.view();
    let endpoint: Arc<Endpoint> = if session.endpoint.is_empty() {
        view.aggregated.clone()
    } else {
        match view.connections.get(&session.endpoint) {
            Some(e) => e.clone(),
            None => {
                return reply::rpc_error(
                    Some(id.json()),
                    code::UPSTREAM_UNAVAILABLE,
                    &format!("connection {:?} no longer exists", session.endpoint),
                );
            }
        }
    };
    let aggregated = session.endpoint.is_empty();
    let method = msg.method();
    // Requests the gateway answers itself count under connection "".
    let answered = |outcome: &str| {
        front
            .metrics
            .request(method, "", outcome, info.started.elapsed().as_secs_f64());
    };
    let list = |kind: ListKind| {
        if msg.params.is_some_and(|p| p.get().contains("\"cursor\"")) {
            answered("protocol");
            return reply::rpc_error(
                Some(id.json()),
                code::INVALID_PARAMS,
                "unknown cursor: lists are not paginated",
            );
        }
        let message = jsonrpc::result(
            id.json(),
            std::str::from_utf8(&endpoint.list(kind)).unwrap_or("{}"),
        );
        answered("ok");
        // A connection's endpoint answers in the framing its upstream uses.
        if endpoint
            .upstream
            .as_ref()
            .is_some_and(|u| u.streams_replies())
        {
            reply::sse_once(message)
        } else {
            reply::json(message)
        }
    };
    match method {
        "ping" => {
            answered("ok");
            reply::json(jsonrpc::result(id.json(), "{}"))
        }
        "tools/list" => list(ListKind::Tools),
        "prompts/list" => list(ListKind::Prompts),
        "resources/list" => list(ListKind::Resources),
        "resources/templates/list" => list(ListKind::Templates),
        "initialize" => reply::rpc_error(
            Some(id.json()),
            code::INVALID_REQUEST,
            "session is already initialized",
        ),
        "tools/call" | "prompts/get" => {
            let field = if method == "tools/call" {
                "tool"
            } else {
                "prompt"
            };
            let mut params = match RawParams::parse(msg.params) {
                Ok(p) => p,
                Err(e) => return reply::rpc_error(Some(id.json()), code::INVALID_PARAMS, &e.0),
            };
            let Some(name) = params.0.get_str("name") else {
                return reply::rpc_error(
                    Some(id.json()),
                    code::INVALID_PARAMS,
                    "params.name is required",
                );
            };
            let routes = if method == "tools/call" {
                &endpoint.tools
            } else {
                &endpoint.prompts
            };
            let Some(route) = routes.get(&name) else {
                let message = format!("unknown {field} {name:?}");
                front.deny(info, Some(session), method, Some(name), "policy", &message);
                return reply::rpc_error(Some(id.json()), code::INVALID_PARAMS, &message);
            };
            let forwarded = if route.name != name {
                params.0.set("name", raw_string(&route.name));
                Some(jsonrpc::raw(params.to_json()))
            } else {
                None
            };
            let params = forwarded.as_deref().or(msg.params);
            forward(
                front,
                session,
                &route.upstream,
                method,
                params,
                id,
                Some(route.name.clone()),
                info,
            )
            .await
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            let params = match RawParams::parse(msg.params) {
                Ok(p) => p,
                Err(e) => return reply::rpc_error(Some(id.json()), code::INVALID_PARAMS, &e.0),
            };
            let Some(uri) = params.0.get_str("uri") else {
                return reply::rpc_error(
                    Some(id.json()),
                    code::INVALID_PARAMS,
                    "params.uri is required",
                );
            };
            match route_uri(&endpoint, &uri) {
                Some(upstream) => {
                    forward(
                        front,
                        session,
                        &upstream,
                        method,
                        msg.params,
                        id,
                        Some(uri),
                        info,
                    )
                    .await
                }
                None => reply::rpc_error(
                    Some(id.json()),
                    code::RESOURCE_NOT_FOUND,
                    &format!("resource not found: {uri}"),
                ),
            }
        }
        "completion/complete" => complete(front, session, &endpoint, msg, id, info).await,
        "logging/setLevel" if aggregated => set_level(front, session, msg, id).await,
        _ if aggregated => reply::rpc_error(
            Some(id.json()),
            code::METHOD_NOT_FOUND,
            &format!("method not found: {method}"),
        ),
        // A connection's endpoint is a transparent proxy: anything else goes upstream as is.
        _ => match endpoint.upstream.clone() {
            Some(upstream) => {
                forward(
                    front, session, &upstream, method, msg.params, id, None, info,
                )
                .await
            }
            None => reply::rpc_error(
                Some(id.json()),
                code::UPSTREAM_UNAVAILABLE,
                "connection is not available",
            ),
        },
    }
}

fn route_uri(endpoint: &Endpoint, uri: &str) -> Option<Arc<Upstream>> {
    endpoint
        .resource_owner(uri)
        .cloned()
        .or_else(|| endpoint.upstream.clone())
}

/// `completion/complete`: routed by the prompt (renamed) or the resource URI.
async fn complete(
    front: &Front,
    session: &Arc<ClientSession>,
    endpoint: &Endpoint,
    msg: &Message<'_>,
    id: Id,
    info: &RequestInfo,
) -> Reply {
    let mut params = match RawParams::parse(msg.params) {
        Ok(p) => p,
        Err(e) => return reply::rpc_error(Some(id.json()), code::INVALID_PARAMS, &e.0),
    };
    let Ok(mut reference) = RawParams::parse(params.0.get("ref")) else {
        return reply::rpc_error(
            Some(id.json()),
            code::INVALID_PARAMS,
            "params.ref must be an object",
        );
    };
    match reference.0.get_str("type").as_deref() {
        Some("ref/prompt") => {
            let name = reference.0.get_str("name").unwrap_or_default();
            let Some(route) = endpoint.prompts.get(&name) else {
                return reply::rpc_error(
                    Some(id.json()),
                    code::INVALID_PARAMS,
                    &format!("unknown prompt {name:?}"),
                );
            };
            reference.0.set("name", raw_string(&route.name));
            params.0.set("ref", jsonrpc::raw(reference.to_json()));
            let params = jsonrpc::raw(params.to_json());
            forward(
                front,
                session,
                &route.upstream,
                "completion/complete",
                Some(&params),
                id,
                Some(route.name.clone()),
                info,
            )
            .await
        }
        Some("ref/resource") => {
            let uri = reference.0.get_str("uri").unwrap_or_default();
            match route_uri(endpoint, &uri) {
                Some(upstream) => {
                    forward(
                        front,
                        session,
                        &upstream,
                        "completion/complete",
                        msg.params,
                        id,
                        Some(uri),
                        info,
                    )
                    .await
                }
                None => reply::rpc_error(
                    Some(id.json()),
                    code::INVALID_PARAMS,
                    &format!("unknown resource {uri:?}"),
                ),
            }
        }
        _ => reply::rpc_error(
            Some(id.json()),
            code::INVALID_PARAMS,
            "params.ref.type must be ref/prompt or ref/resource",
        ),
    }
}

/// `logging/setLevel` on the aggregated endpoint: remembered for the session and sent
/// to every upstream session it has.
async fn set_level(
    front: &Front,
    session: &Arc<ClientSession>,
    msg: &Message<'_>,
    id: Id,
) -> Reply {
    let params = RawParams::parse(msg.params).unwrap_or_default();
    let Some(level) = params.0.get_str("level") else {
        return reply::rpc_error(
            Some(id.json()),
            code::INVALID_PARAMS,
            "params.level is required",
        );
    };
    const LEVELS: &[&str] = &[
        "debug",
        "info",
        "notice",
        "warning",
        "error",
        "critical",
        "alert",
        "emergency",
    ];
    if !LEVELS.contains(&level.as_str()) {
        return reply::rpc_error(
            Some(id.json()),
            code::INVALID_PARAMS,
            &format!("unknown log level {level:?}"),
        );
    }
    if let Ok(mut l) = session.log_level.lock() {
        *l = Some(level.clone());
    }
    let _ = front
        .sessions
        .store()
        .set_log_level(&session.id_hash, &level)
        .await;
    let body = msg.params.map(|p| p.get().to_owned());
    for (connection, upstream_session) in session.upstream_sessions() {
        if let Some(upstream) = front.registry.upstream(&connection) {
            let body = body.clone();
            tokio::spawn(async move {
                let timeout = upstream.config().call_timeout;
                let _ = upstream
                    .request(
                        &upstream_session,
                        "logging/setLevel",
                        body.as_deref(),
                        timeout,
                    )
                    .await;
            });
        }
    }
    reply::json(jsonrpc::result(id.json(), "{}"))
}

/// Sends a request to `upstream` in the session's upstream session (opened on first
/// use, re-opened once if the upstream forgot it) and relays what comes back.
#[allow(clippy::too_many_arguments)]
pub async fn forward(
    front: &Front,
    session: &Arc<ClientSession>,
    upstream: &Arc<Upstream>,
    method: &str,
    params: Option<&RawValue>,
    id: Id,
    target: Option<String>,
    info: &RequestInfo,
) -> Reply {
    let inflight = session.track(id.clone());
    let timeout = upstream.config().call_timeout;
    let finish = front.audit_hook(
        info,
        session,
        upstream,
        method,
        target,
        params,
        info.request_bytes,
    );
    let fail = |e: &UpstreamError, finish: Option<Box<dyn FnOnce(Outcome) + Send>>| {
        let body = stream::upstream_error(&id, upstream.name(), e);
        if let Some(f) = finish {
            f(Outcome {
                error: Some((
                    e.category().into(),
                    format!("connection {:?}: {e}", upstream.name()),
                )),
                response_bytes: body.len(),
                progress: 0,
                response: None,
            });
        }
        reply::json(body)
    };
    let mut retried = false;
    loop {
        let cancelled = inflight.token.clone();
        let opened = tokio::select! {
            () = cancelled.cancelled() => return reply::sse(axum::body::Body::empty()),
            r = tokio::time::timeout(timeout, async {
                let upstream_session = front.sessions.upstream_session(session, upstream).await?;
                let call = upstream
                    .call(&upstream_session, method, params, Some(id.json()), &info.upstream_headers())
                    .await;
                Ok::<_, UpstreamError>((upstream_session, call))
            }) => r,
        };
        let (upstream_session, call) = match opened {
            Err(_) => return fail(&UpstreamError::Timeout(timeout), finish),
            Ok(Err(e)) => return fail(&e, finish),
            Ok(Ok(pair)) => pair,
        };
        match call {
            Ok(call) => {
                let ctx = CallContext {
                    relay: front.relay.clone(),
                    session: session.clone(),
                    upstream: upstream.clone(),
                    upstream_session,
                    client_id: id,
                    inflight,
                    timeout,
                    finish,
                };
                return stream::respond(ctx, call, !session.endpoint.is_empty()).await;
            }
            Err(UpstreamError::SessionExpired) if !retried => {
                retried = true;
                front
                    .sessions
                    .drop_upstream_session(session, upstream, &upstream_session)
                    .await;
            }
            Err(e) => return fail(&e, finish),
        }
    }
}

/// Handles a notification from the client.
pub async fn notification(front: &Front, session: &Arc<ClientSession>, msg: &Message<'_>) {
    match msg.method() {
        "notifications/cancelled" => {
            let params = RawParams::parse(msg.params).unwrap_or_default();
            if let Some(request_id) = params.0.get("requestId") {
                let id = Id::from_raw(request_id);
                if !session.cancel(&id) {
                    front.cancel_elsewhere(session, &id).await;
                }
            }
        }
        "notifications/roots/list_changed" => {
            let note = jsonrpc::notification("notifications/roots/list_changed", None);
            for (connection, upstream_session) in session.upstream_sessions() {
                if let Some(upstream) = front.registry.upstream(&connection) {
                    let note: Bytes = note.clone();
                    tokio::spawn(async move {
                        let _ = upstream.send(&upstream_session, note).await;
                    });
                }
            }
        }
        _ => {}
    }
}
