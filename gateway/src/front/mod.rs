//! The MCP endpoints clients use: `/mcp` (every connection, names prefixed) and
//! `/mcp/{connection}` (one connection, names unchanged), over Streamable HTTP.

pub mod dispatch;
pub mod guard;
mod listen;
pub mod relay;
pub mod reply;
pub mod request;
pub mod session;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use bytes::Bytes;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use tracing::Instrument;

use crate::audit::Auditor;
use crate::config::{ClientAuth, Security};
use crate::jsonrpc::{self, Id, Kind, Message, code};
use crate::metrics::Metrics;
use crate::store::{BusMessage, Store, StoreEvent, hex, unhex};

use crate::upstream::{ClientInit, Registry, Upstream};
use guard::Identity;
use relay::Relay;
use reply::{Reply, SESSION_HEADER};
use request::RequestInfo;
use session::{ClientSession, SessionError, Sessions};
use stream::Outcome;

/// State of the MCP endpoints.
pub struct Front {
    pub security: Security,
    pub client_auth: ClientAuth,
    pub sessions: Arc<Sessions>,
    pub registry: Arc<Registry>,
    pub relay: Arc<Relay>,
    pub store: Arc<dyn Store>,
    pub auditor: Arc<Auditor>,
    pub metrics: Arc<Metrics>,
    pub replica: String,
    /// Sessions unused for this long are ended.
    pub session_idle_timeout: Duration,
    /// Cancelled when the process is asked to stop: GET streams end (the clients
    /// re-open them on another replica) so that shutdown waits only for calls.
    pub draining: CancellationToken,
}

/// Methods that produce an audit event.
fn audited(method: &str) -> bool {
    matches!(method, "tools/call" | "resources/read" | "prompts/get")
}

impl Front {
    /// A callback recording a forwarded call's outcome: metrics always, an audit event
    /// for the audited methods.
    #[allow(clippy::too_many_arguments)]
    pub fn audit_hook(
        &self,
        info: &RequestInfo,
        session: &Arc<ClientSession>,
        upstream: &Arc<Upstream>,
        method: &str,
        target: Option<String>,
        params: Option<&RawValue>,
        request_bytes: usize,
    ) -> Option<Box<dyn FnOnce(Outcome) + Send>> {
        let metrics = self.metrics.clone();
        let connection = upstream.name().to_owned();
        let method = method.to_owned();
        let started = info.started;
        let audit = (self.auditor.enabled() && audited(&method)).then(|| {
            (
                self.auditor.clone(),
                self.event(
                    info,
                    Some(session),
                    &method,
                    Some(connection.clone()),
                    target,
                ),
                params.map(|p| Bytes::copy_from_slice(p.get().as_bytes())),
            )
        });
        Some(Box::new(move |outcome: Outcome| {
            let elapsed = started.elapsed();
            let category = outcome.error.as_ref().map(|(c, _)| c.as_str());
            metrics.request(
                &method,
                &connection,
                category.unwrap_or("ok"),
                elapsed.as_secs_f64(),
            );
            if let Some((auditor, mut event, params)) = audit {
                event.success = outcome.error.is_none();
                if let Some((category, message)) = outcome.error {
                    event.error_category = Some(category);
                    event.error_message = Some(message.chars().take(1000).collect());
                }
                event.duration_ms = elapsed.as_secs_f64() * 1000.0;
                event.request_bytes = Some(request_bytes as i64);
                event.response_bytes = Some(outcome.response_bytes as i64);
                event.progress_count = Some(i32::try_from(outcome.progress).unwrap_or(i32::MAX));
                auditor.record(crate::audit::Record {
                    event,
                    params,
                    response: outcome.response,
                });
            }
        }))
    }

    /// A new audit event for this request (not yet finished).
    fn event(
        &self,
        info: &RequestInfo,
        session: Option<&ClientSession>,
        method: &str,
        connection: Option<String>,
        target: Option<String>,
    ) -> crate::store::AuditEvent {
        let ts_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        crate::store::AuditEvent {
            ts_ms,
            request_id: info.request_id.clone(),
            session: session.map(|s| s.handle.clone()),
            replica: self.replica.clone(),
            subject: session.map(|s| s.subject.clone()),
            auth_type: info.auth_type.map(str::to_owned),
            remote_addr: info.remote_addr.clone(),
            user_agent: info.user_agent.clone(),
            method: method.to_owned(),
            connection,
            target,
            params: None,
            success: false,
            error_category: None,
            error_message: None,
            duration_ms: 0.0,
            request_bytes: None,
            response_bytes: None,
            content_blocks: None,
            progress_count: None,
        }
    }

    /// Records a request the gateway refused (policy, authentication).
    #[allow(clippy::too_many_arguments)]
    pub fn deny(
        &self,
        info: &RequestInfo,
        session: Option<&ClientSession>,
        method: &str,
        target: Option<String>,
        category: &str,
        message: &str,
    ) {
        self.metrics
            .request(method, "", category, info.started.elapsed().as_secs_f64());
        if !self.auditor.enabled() {
            return;
        }
        let mut event = self.event(info, session, method, None, target);
        event.error_category = Some(category.to_owned());
        event.error_message = Some(message.chars().take(1000).collect());
        event.duration_ms = info.started.elapsed().as_secs_f64() * 1000.0;
        self.auditor.record(crate::audit::Record {
            event,
            params: None,
            response: None,
        });
    }

    /// Cancels a request held by another replica (whichever has it in flight).
    pub async fn cancel_elsewhere(&self, session: &ClientSession, id: &Id) {
        let message = BusMessage::Cancel {
            session: hex(&session.id_hash),
            request_id: id.json().to_owned(),
        };
        if let Err(error) = self.store.publish(None, &message).await {
            tracing::warn!(session = %session.handle, %error, "cannot forward cancellation to other replicas");
        }
    }

    /// Delivers a client's answer whose server request waits on another replica (the
    /// one its gateway id names).
    pub async fn deliver_elsewhere(&self, session: &ClientSession, msg: &Message<'_>) -> bool {
        let Some(owner) = msg.id.map(Id::from_raw).and_then(|id| Relay::owner_of(&id)) else {
            return false;
        };
        if owner == self.relay.token() {
            return false;
        }
        let raw = msg.with_id(msg.id.map(RawValue::get).unwrap_or("null"));
        let message = BusMessage::Answer {
            session: hex(&session.id_hash),
            message: String::from_utf8_lossy(&raw).into_owned(),
        };
        match self.store.publish(Some(&owner), &message).await {
            Ok(()) => {
                tracing::info!(session = %session.handle, replica_token = %owner, "answer forwarded to its replica");
                true
            }
            Err(error) => {
                tracing::warn!(session = %session.handle, %error, "cannot forward an answer to its replica");
                false
            }
        }
    }

    /// Acts on a message from another replica.
    async fn on_bus(self: &Arc<Self>, message: BusMessage) {
        match message {
            BusMessage::Answer { session, message } => {
                let Some(id_hash) = unhex(&session) else {
                    return;
                };
                let Ok(msg) = Message::parse(message.as_bytes()) else {
                    return;
                };
                match self.relay.deliver(id_hash, &msg).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::debug!("forwarded answer matches no pending request here")
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot deliver a forwarded answer upstream")
                    }
                }
            }
            BusMessage::Cancel {
                session,
                request_id,
            } => {
                let Some(id_hash) = unhex(&session) else {
                    return;
                };
                if let Some(s) = self.sessions.local_session(&id_hash)
                    && let Ok(raw) = RawValue::from_string(request_id)
                {
                    s.cancel(&Id::from_raw(&raw));
                }
            }
            // The registry handles token changes.
            BusMessage::TokenChanged { .. } => {}
            BusMessage::UpstreamSession {
                session,
                connection,
            } => {
                let Some(id_hash) = unhex(&session) else {
                    return;
                };
                if let Some(s) = self.sessions.local_session(&id_hash)
                    && s.has_stream()
                {
                    listen::follow_new(self, &s, &connection).await;
                }
            }
        }
    }
}

/// Which endpoint a request is for: `""` (aggregated) or a connection name.
struct Target(String);

impl<S: Send + Sync> FromRequestParts<S> for Target {
    type Rejection = Reply;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let path = parts.uri.path();
        let rest = path
            .strip_prefix("/mcp")
            .unwrap_or_default()
            .trim_matches('/');
        let valid = rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'/')
            && rest.matches('/').count() <= 1;
        if !valid {
            return Err(reply::http_error(
                StatusCode::NOT_FOUND,
                "unknown connection",
            ));
        }
        Ok(Self(rest.to_owned()))
    }
}

/// The routes `/mcp`, `/mcp/{connection}` and `/mcp/{namespace}/{name}`.
pub fn router(front: Arc<Front>) -> Router {
    let methods = || post(post_mcp).get(get_mcp).delete(delete_mcp);
    Router::new()
        .route("/mcp", methods())
        .route("/mcp/{connection}", methods())
        .route("/mcp/{namespace}/{name}", methods())
        .with_state(front)
}

/// Checks Host/Origin and authenticates; returns the caller.
#[allow(clippy::result_large_err)]
fn admit(front: &Front, target: &Target, headers: &HeaderMap) -> Result<Identity, Reply> {
    guard::check_origin(&front.security, headers)?;
    let identity = guard::authenticate(&front.client_auth, headers)?;
    if !target.0.is_empty() && !front.registry.view().connections.contains_key(&target.0) {
        return Err(reply::http_error(
            StatusCode::NOT_FOUND,
            &format!("unknown connection {:?}", target.0),
        ));
    }
    Ok(identity)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn accepts(headers: &HeaderMap, mime: &str) -> bool {
    match header_str(headers, header::ACCEPT.as_str()) {
        None => true,
        Some(accept) => accept.split(',').any(|a| {
            let a = a.split(';').next().unwrap_or_default().trim();
            a == mime
                || a == "*/*"
                || (a.ends_with("/*") && mime.starts_with(a.trim_end_matches('*')))
        }),
    }
}

#[allow(clippy::result_large_err)]
async fn live_session(
    front: &Front,
    target: &Target,
    identity: &Identity,
    headers: &HeaderMap,
) -> Result<Arc<ClientSession>, Reply> {
    let Some(id) = header_str(headers, SESSION_HEADER) else {
        return Err(reply::http_error(
            StatusCode::BAD_REQUEST,
            "Bad Request: Mcp-Session-Id header is required",
        ));
    };
    match front.sessions.get(id, identity, &target.0).await {
        Ok(s) => Ok(s),
        Err(SessionError::NotFound) => Err(reply::http_error(
            StatusCode::NOT_FOUND,
            "session not found: initialize a new session",
        )),
        Err(SessionError::Store(error)) => {
            tracing::error!(%error, "session lookup failed");
            Err(reply::http_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "session store unavailable; retry",
            ))
        }
    }
}

/// Largest JSON-RPC message accepted from a client.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

async fn post_mcp(
    State(front): State<Arc<Front>>,
    target: Target,
    request: axum::extract::Request,
) -> Reply {
    let (parts, body) = request.into_parts();
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let info = RequestInfo::new(&parts.headers, peer, &front.security.trusted_proxies);
    let span = tracing::info_span!(
        "mcp",
        request_id = %info.request_id,
        endpoint = %target.0,
        session = tracing::field::Empty,
    );
    handle_post(front, target, parts.headers, body, info)
        .instrument(span)
        .await
}

async fn handle_post(
    front: Arc<Front>,
    target: Target,
    headers: HeaderMap,
    body: axum::body::Body,
    mut info: RequestInfo,
) -> Reply {
    let identity = match admit(&front, &target, &headers) {
        Ok(i) => i,
        Err(r) => {
            if r.status() == StatusCode::UNAUTHORIZED {
                front.deny(
                    &info,
                    None,
                    "(unauthenticated)",
                    None,
                    "auth",
                    "missing or invalid credentials",
                );
            }
            return r;
        }
    };
    let body: Bytes = match axum::body::to_bytes(body, MAX_REQUEST_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return reply::http_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body larger than {MAX_REQUEST_BYTES} bytes, or unreadable"),
            );
        }
    };
    info.auth_type = Some(identity.auth_type);
    info.request_bytes = body.len();
    let is_json = header_str(&headers, header::CONTENT_TYPE.as_str()).is_some_and(|c| {
        c.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if !is_json {
        return reply::http_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        );
    }
    if !accepts(&headers, "application/json") || !accepts(&headers, "text/event-stream") {
        return reply::http_error(
            StatusCode::NOT_ACCEPTABLE,
            "Accept must include application/json and text/event-stream",
        );
    }
    let msg = match Message::parse(&body) {
        Ok(m) => m,
        Err(e) => {
            let mut r = reply::json(jsonrpc::error(None, code::PARSE_ERROR, &e.0, None));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return r;
        }
    };
    if let Some(version) = header_str(&headers, "mcp-protocol-version")
        && !dispatch::SUPPORTED_VERSIONS.contains(&version)
    {
        return reply::http_error(
            StatusCode::BAD_REQUEST,
            &format!(
                "unsupported MCP-Protocol-Version {version:?}; supported: {}",
                dispatch::SUPPORTED_VERSIONS.join(", ")
            ),
        );
    }
    if msg.kind() == Kind::Request && header_str(&headers, SESSION_HEADER).is_none() {
        match msg.method() {
            "initialize" => {
                let reply = initialize(&front, &target, &identity, &msg).await;
                let outcome = if reply.headers().contains_key(SESSION_HEADER) {
                    "ok"
                } else {
                    "protocol"
                };
                front.metrics.request(
                    "initialize",
                    "",
                    outcome,
                    info.started.elapsed().as_secs_f64(),
                );
                return reply;
            }
            // Newer clients probe for the stateless revision first; answering "no"
            // makes them fall back to initialize.
            "server/discover" => {
                let id = msg.id.map(Id::from_raw).unwrap_or_else(|| Id::string(""));
                return reply::rpc_error(
                    Some(id.json()),
                    code::METHOD_NOT_FOUND,
                    "method not found: server/discover (this server speaks MCP 2025-11-25 and earlier: use initialize)",
                );
            }
            _ => {}
        }
    }
    let session = match live_session(&front, &target, &identity, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    tracing::Span::current().record("session", session.handle.as_str());
    match msg.kind() {
        Kind::Request => dispatch::request(&front, &session, &msg, &info).await,
        Kind::Notification => {
            dispatch::notification(&front, &session, &msg).await;
            reply::accepted()
        }
        Kind::Response => {
            match front.relay.deliver(session.id_hash, &msg).await {
                Ok(true) => {}
                Ok(false) => {
                    if !front.deliver_elsewhere(&session, &msg).await {
                        tracing::debug!(session = %session.handle, "answer to an unknown or finished server request");
                    }
                }
                Err(error) => {
                    tracing::warn!(session = %session.handle, %error, "cannot deliver answer upstream")
                }
            }
            reply::accepted()
        }
    }
}

async fn initialize(
    front: &Front,
    target: &Target,
    identity: &Identity,
    msg: &Message<'_>,
) -> Reply {
    let id = msg.id.map(Id::from_raw).unwrap_or_else(|| Id::string(""));
    #[derive(serde::Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    struct Params {
        protocol_version: Option<String>,
        capabilities: Option<serde_json::Value>,
        client_info: Option<serde_json::Value>,
    }
    let params: Params = match msg
        .params
        .map(|p| serde_json::from_str(p.get()))
        .transpose()
    {
        Ok(p) => p.unwrap_or_default(),
        Err(e) => {
            return reply::rpc_error(
                Some(id.json()),
                code::INVALID_PARAMS,
                &format!("invalid initialize params: {e}"),
            );
        }
    };
    let version = dispatch::negotiate(params.protocol_version.as_deref());
    let view = front.registry.view();
    let result = if target.0.is_empty() {
        dispatch::aggregated_initialize(version, view.connections.len())
    } else {
        let upstream = view
            .connections
            .get(&target.0)
            .and_then(|e| e.upstream.clone());
        match upstream.map(|u| dispatch::connection_initialize(&u, version)) {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                return reply::json(stream::upstream_error(&id, &target.0, &e));
            }
            None => {
                return reply::rpc_error(
                    Some(id.json()),
                    code::UPSTREAM_UNAVAILABLE,
                    "connection is not available",
                );
            }
        }
    };
    let init = ClientInit {
        protocol_version: version.to_owned(),
        capabilities: params.capabilities,
        client_info: params.client_info,
    };
    match front.sessions.create(identity, &target.0, init).await {
        Ok((session_id, session)) => {
            tracing::info!(session = %session.handle, subject = %identity.subject, endpoint = %target.0, version, "session started");
            reply::with_session(
                reply::json(jsonrpc::result(id.json(), &result)),
                &session_id,
            )
        }
        Err(error) => {
            tracing::error!(%error, "cannot create session");
            reply::http_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "session store unavailable; retry",
            )
        }
    }
}

async fn get_mcp(State(front): State<Arc<Front>>, target: Target, headers: HeaderMap) -> Reply {
    let identity = match admit(&front, &target, &headers) {
        Ok(i) => i,
        Err(r) => return r,
    };
    if header_str(&headers, header::ACCEPT.as_str()).is_some()
        && !accepts(&headers, "text/event-stream")
    {
        return reply::http_error(
            StatusCode::NOT_ACCEPTABLE,
            "Accept must include text/event-stream",
        );
    }
    let session = match live_session(&front, &target, &identity, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    listen::open(&front, &session)
}

async fn delete_mcp(State(front): State<Arc<Front>>, target: Target, headers: HeaderMap) -> Reply {
    let identity = match admit(&front, &target, &headers) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let session = match live_session(&front, &target, &identity, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match front.sessions.end(&session, &front.registry).await {
        Ok(()) => {
            tracing::info!(session = %session.handle, "session ended by the client");
            let mut r = reply::accepted();
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        Err(error) => {
            tracing::error!(%error, "cannot end session");
            reply::http_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "session store unavailable; retry",
            )
        }
    }
}

/// Background work of the front: tells sessions about list changes, forgets sessions
/// ended on other replicas, records session use in batches and ends idle sessions.
pub fn spawn_background(front: Arc<Front>, shutdown: CancellationToken) {
    let f = front.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let mut changes = f.registry.subscribe();
        let mut events = f.store.subscribe();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                c = changes.recv() => match c {
                    Ok(changes) => {
                        for session in f.sessions.local() {
                            for kind in dedup(changes.for_endpoint(&session.endpoint)) {
                                let note = jsonrpc::notification(kind, None);
                                session.push(crate::sse::event(&note));
                            }
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    Err(_) => {}
                },
                e = events.recv() => match e {
                    Ok(StoreEvent::SessionEnded { id_hash }) => f.sessions.forget(&id_hash),
                    Ok(StoreEvent::Bus(message)) => f.on_bus(message).await,

                    Ok(StoreEvent::Resync) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        revalidate(&f).await;
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    tokio::spawn(async move {
        // Use is recorded at least four times per idle timeout, so a session in use is
        // never swept; at most once a minute, so recording stays cheap.
        let period = (front.session_idle_timeout / 4)
            .clamp(Duration::from_millis(250), Duration::from_secs(60));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let used = front.sessions.take_used();
            if let Err(error) = front.store.touch_sessions(&used).await {
                tracing::warn!(%error, "cannot record session use");
            }
            end_idle_sessions(&front).await;
        }
    });
}

fn dedup(kinds: &[crate::view::ListKind]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = kinds.iter().map(|k| k.changed_notification()).collect();
    out.dedup();
    out
}

/// Ends sessions unused for the idle timeout: the store hands each one to exactly one
/// replica, which closes its upstream sessions; every replica forgets it.
async fn end_idle_sessions(front: &Front) {
    let swept = match front.store.sweep_sessions(front.session_idle_timeout).await {
        Ok(swept) => swept,
        Err(error) => {
            tracing::warn!(%error, "cannot end idle sessions");
            return;
        }
    };
    if swept.is_empty() {
        return;
    }
    tracing::info!(count = swept.len(), "ended idle sessions");
    for record in swept {
        front.sessions.forget(&record.id_hash);
        for (connection, upstream_session) in record.upstreams {
            if let Some(upstream) = front.registry.upstream(&connection) {
                upstream.close_session(upstream_session);
            }
        }
    }
}

/// After missed notifications, drops cached sessions that ended meanwhile.
async fn revalidate(front: &Front) {
    for session in front.sessions.local() {
        if let Ok(None) = front.store.get_session(&session.id_hash).await {
            front.sessions.forget(&session.id_hash);
        }
    }
}
