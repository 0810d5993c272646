//! Upstream MCP servers: dialling them (Streamable HTTP, legacy SSE, stdio), their
//! sessions, discovering what they offer, and calls in flight.
//!
//! Streamable HTTP upstreams get one upstream session per client session, shared by
//! every replica through the session row. Legacy SSE and stdio upstreams are one
//! multiplexed [`channel::Channel`] per replica.

pub mod auth;
mod call;
pub mod catalog;
pub mod channel;
mod client;
pub mod era;
pub(crate) mod error;
mod http_pool;
pub mod lifecycle;
mod sse_legacy;
mod stdio;
pub mod streamable;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::HeaderMap;
use serde_json::value::RawValue;

pub use call::{Call, Inbound};
pub use catalog::Catalog;
pub use client::{ClientInit, Declared};
pub use error::UpstreamError;

use crate::config::{ConnectionConfig, Target};
use crate::jsonrpc::{self, Message};
use crate::revision::{self, Envelope, Era};
use crate::store::UpstreamSession;
use streamable::{Reply, SessionRef};

/// The protocol revision Hawser speaks on its own sessions.
pub const PROTOCOL_VERSION: &str = "2025-11-25";

impl UpstreamSession {
    pub(crate) fn as_ref(&self) -> SessionRef<'_> {
        SessionRef {
            id: self.id.as_deref(),
            protocol_version: &self.protocol_version,
            subject: self.subject.as_deref(),
        }
    }

    /// Whether this is a 2026-07-28 upstream's (no session at all).
    pub fn is_modern(&self) -> bool {
        self.id.is_none() && Era::of(&self.protocol_version) == Era::Modern
    }
}

enum Transport {
    Http(Box<streamable::HttpTransport>),
    /// stdio or legacy SSE: one channel, replaced when the lifecycle redials.
    Channel(ArcSwapOption<channel::Channel>),
}

/// One connection's upstream on this replica.
pub struct Upstream {
    config: Arc<ConnectionConfig>,
    revision: i64,
    transport: Transport,
    credentials: auth::Credentials,
    catalog: ArcSwapOption<Catalog>,
    /// Hawser's own session (HTTP) for discovery and list_changed.
    control: ArcSwapOption<UpstreamSession>,
    id_prefix: String,
    next_id: AtomicU64,
    /// Whether the upstream answers requests with SSE streams (its endpoint mirrors it).
    streams_replies: AtomicBool,
    /// Whether the upstream speaks 2026-07-28 (found when dialling).
    modern: AtomicBool,
    /// Whether it also speaks a session-based revision (a dual-era server).
    legacy_too: AtomicBool,
    /// Wakes the lifecycle out of its back-off (credentials arrived).
    wake: tokio::sync::Notify,
    /// Whether the first dial has ended (with a catalog or an error).
    dialled: AtomicBool,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.config.name)
            .field("revision", &self.revision)
            .finish()
    }
}

impl Upstream {
    /// Builds the upstream (no I/O): `credentials` come from the connection's auth.
    pub fn new(
        config: Arc<ConnectionConfig>,
        revision: i64,
        credentials: auth::Credentials,
        replica_token: &str,
    ) -> Result<Self, UpstreamError> {
        let transport = match &config.target {
            Target::StreamableHttp(url) => Transport::Http(Box::new(
                streamable::HttpTransport::new(url, credentials.clone(), config.connect_timeout)?,
            )),
            Target::Sse(_) | Target::Stdio { .. } => Transport::Channel(ArcSwapOption::empty()),
        };
        Ok(Self {
            config,
            revision,
            transport,
            credentials,
            catalog: ArcSwapOption::empty(),
            control: ArcSwapOption::empty(),
            id_prefix: format!("h{replica_token}"),
            next_id: AtomicU64::new(1),
            streams_replies: AtomicBool::new(false),
            modern: AtomicBool::new(false),
            legacy_too: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
            dialled: AtomicBool::new(false),
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn config(&self) -> &Arc<ConnectionConfig> {
        &self.config
    }

    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn catalog(&self) -> Option<Arc<Catalog>> {
        self.catalog.load_full()
    }

    /// Whether the first dial has ended, with its catalog read or an error: until
    /// then, what it serves is not known yet.
    pub fn dialled(&self) -> bool {
        self.dialled.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn mark_dialled(&self) {
        self.dialled
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The era Hawser speaks to this upstream for a client of `client`'s era: the
    /// client's own when the upstream speaks both (nothing to bridge), else the
    /// upstream's.
    pub fn era_for(&self, client: Era) -> Era {
        if self.era() == Era::Modern
            && client == Era::Legacy
            && self.legacy_too.load(Ordering::Relaxed)
        {
            Era::Legacy
        } else {
            self.era()
        }
    }

    /// The era this upstream speaks, as found when it was last dialled (modern when it
    /// speaks both).
    pub fn era(&self) -> Era {
        if self.modern.load(Ordering::Relaxed) {
            Era::Modern
        } else {
            Era::Legacy
        }
    }

    /// The session of every request to a 2026-07-28 upstream: none, only the revision
    /// (and whose token its requests carry, on a connection with per-user tokens).
    pub fn stateless_session(&self, subject: Option<&str>) -> UpstreamSession {
        UpstreamSession {
            id: None,
            protocol_version: revision::MODERN.to_owned(),
            revision: self.revision,
            url: self.http_url(),
            subject: self.token_owner(subject),
        }
    }

    /// Whether each caller uses an upstream token of their own.
    pub fn per_user_tokens(&self) -> bool {
        self.config.per_user_tokens()
    }

    /// Whose token a session opened for `subject` uses: theirs on a connection with
    /// per-user tokens, else none in particular.
    fn token_owner(&self, subject: Option<&str>) -> Option<String> {
        subject
            .filter(|_| self.per_user_tokens())
            .map(str::to_owned)
    }

    pub(crate) fn http(&self) -> Option<&streamable::HttpTransport> {
        match &self.transport {
            Transport::Http(h) => Some(h),
            Transport::Channel(_) => None,
        }
    }

    fn channel(&self) -> Result<Arc<channel::Channel>, UpstreamError> {
        match &self.transport {
            Transport::Channel(slot) => slot
                .load_full()
                .filter(|c| !c.is_closed())
                .ok_or_else(|| UpstreamError::Unavailable("not connected (reconnecting)".into())),
            Transport::Http(_) => Err(UpstreamError::Unavailable("not a channel transport".into())),
        }
    }

    /// Whether client sessions share one upstream connection (stdio, legacy SSE).
    pub fn is_shared(&self) -> bool {
        matches!(self.transport, Transport::Channel(_))
    }

    fn next_upstream_id(&self) -> String {
        format!(
            "\"{}-{}\"",
            self.id_prefix,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Opens an upstream session for a client session (Streamable HTTP) of `subject`,
    /// replaying the client's capabilities so the upstream knows what it may ask of the
    /// client. For shared transports, returns the shared session.
    pub async fn open_session(
        &self,
        init: &ClientInit,
        subject: Option<&str>,
    ) -> Result<UpstreamSession, UpstreamError> {
        if self.era_for(Era::Legacy) == Era::Modern {
            return Ok(self.stateless_session(subject));
        }
        if self.is_shared() {
            let catalog = self
                .catalog()
                .ok_or_else(|| UpstreamError::Unavailable("not connected yet".into()))?;
            return Ok(UpstreamSession {
                id: None,
                protocol_version: catalog.protocol_version.clone(),
                revision: self.revision,
                url: None,
                subject: None,
            });
        }
        let version = if init.protocol_version.is_empty() {
            PROTOCOL_VERSION
        } else {
            &init.protocol_version
        };
        let owner = self.token_owner(subject);
        let (session, _) = self
            .initialize_http(version, &init.params(version), owner)
            .await?;
        Ok(session)
    }

    /// initialize + notifications/initialized on a new HTTP session. `version` is the
    /// `protocolVersion` of `params`: the header says the same as the body, as strict
    /// servers require.
    pub(crate) async fn initialize_http(
        &self,
        version: &str,
        params: &str,
        subject: Option<String>,
    ) -> Result<(UpstreamSession, Box<RawValue>), UpstreamError> {
        let http = self.http().ok_or(UpstreamError::Closed)?;
        let id = self.next_upstream_id();
        let body = jsonrpc::request(&id, "initialize", Some(params));
        let timeout = self.config.connect_timeout;
        let fresh = SessionRef {
            id: None,
            protocol_version: version,
            subject: subject.as_deref(),
        };
        let (reply, session_id) =
            tokio::time::timeout(timeout, http.post(fresh, body, &HeaderMap::new()))
                .await
                .map_err(|_| UpstreamError::Timeout(timeout))??;
        let response = match reply {
            Reply::Message(b) => b,
            Reply::Events(mut events) => tokio::time::timeout(timeout, async {
                while let Some(m) = events.next_message().await {
                    let m = m?;
                    if Message::parse(&m).is_ok_and(|p| p.id.is_some_and(|i| i.get().trim() == id))
                    {
                        return Ok(m);
                    }
                }
                Err(UpstreamError::Closed)
            })
            .await
            .map_err(|_| UpstreamError::Timeout(timeout))??,
            Reply::Accepted => {
                return Err(UpstreamError::Protocol(
                    "initialize answered with 202".into(),
                ));
            }
        };
        let result = result_of(&response)?;
        let (_, version) = catalog::parse_initialize(&result)?;
        let session = UpstreamSession {
            id: session_id,
            protocol_version: version,
            revision: self.revision,
            url: self.http_url(),
            subject,
        };
        let note = jsonrpc::notification("notifications/initialized", None);
        http.post(session.as_ref(), note, &HeaderMap::new()).await?;
        Ok((session, result))
    }

    /// The Streamable HTTP endpoint, for transports that have one.
    pub fn http_url(&self) -> Option<String> {
        match &self.config.target {
            crate::config::Target::StreamableHttp(url) => Some(url.to_string()),
            _ => None,
        }
    }

    /// Ends an upstream session (in the background).
    pub fn close_session(self: &Arc<Self>, session: UpstreamSession) {
        if session.id.is_none() || self.is_shared() {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            if let Some(http) = me.http() {
                http.delete_session(session.as_ref()).await;
            }
        });
    }

    /// How long calls already routed here may still run: their call timeout, at most a
    /// minute. What is replaced (a revision, an upstream session) lives that long.
    pub fn drain_grace(&self) -> std::time::Duration {
        self.config
            .call_timeout
            .min(std::time::Duration::from_secs(60))
    }

    /// Ends `session` (one of an earlier revision of this connection, at this URL) once
    /// the calls it may still carry are done: they were routed before the change and
    /// end within their call timeout (at most a minute is waited).
    pub fn close_session_after_calls(self: &Arc<Self>, session: UpstreamSession) {
        if session.id.is_none() || self.is_shared() {
            return;
        }
        let grace = self.drain_grace();
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            me.close_session(session);
        });
    }

    /// Sends a client request upstream. `client_id` (JSON text) replaces the
    /// upstream id on the response. A 2026-07-28 session gets `envelope` (the client's;
    /// Hawser's own when `None`) in `params._meta`, and the headers mirroring the body.
    pub async fn call(
        self: &Arc<Self>,
        session: &UpstreamSession,
        method: &str,
        params: Option<&RawValue>,
        client_id: Option<&str>,
        headers: &HeaderMap,
        envelope: Option<&Envelope>,
    ) -> Result<Call, UpstreamError> {
        let (source, upstream_id) = match &self.transport {
            Transport::Http(http) => {
                let upstream_id = self.next_upstream_id();
                let modern = session.is_modern();
                let (body, extra);
                let headers = if modern {
                    let own;
                    let envelope = match envelope {
                        Some(e) => e,
                        None => {
                            own = era::hawser_envelope();
                            &own
                        }
                    };
                    // The trace context travels in `_meta` too (SEP-414), naming the
                    // same parent as the `traceparent` header.
                    let dressed =
                        era::with_meta(params, Some(envelope), &era::trace_members(headers));
                    let annotated = self.param_headers(method, &dressed);
                    let mut h = era::request_headers(method, Some(&dressed), &annotated);
                    h.extend(headers.iter().map(|(k, v)| (k.clone(), v.clone())));
                    body = jsonrpc::request(&upstream_id, method, Some(dressed.get()));
                    extra = h;
                    &extra
                } else {
                    // A client's own `_meta.traceparent` would name the client as the
                    // upstream's parent: it is replaced by the header's.
                    let retraced = crate::telemetry::context::TraceParent::of_meta(params)
                        .and_then(|_| {
                            let members = era::trace_members(headers);
                            (!members.is_empty()).then(|| era::with_meta(params, None, &members))
                        });
                    let params = retraced.as_deref().or(params);
                    body = jsonrpc::request(&upstream_id, method, params.map(RawValue::get));
                    headers
                };
                let (reply, _) = http.post(session.as_ref(), body, headers).await?;
                let source = match reply {
                    Reply::Message(b) => {
                        self.streams_replies.store(false, Ordering::Relaxed);
                        call::Source::Ready(Some(b))
                    }
                    Reply::Events(events) => {
                        self.streams_replies.store(true, Ordering::Relaxed);
                        call::Source::Http { events, resumes: 0 }
                    }
                    Reply::Accepted => {
                        return Err(UpstreamError::Protocol(format!(
                            "{method} answered with 202 and no response"
                        )));
                    }
                };
                (source, upstream_id)
            }
            Transport::Channel(_) => {
                let channel = self.channel()?;
                let c = channel.request(method, params).await?;
                (call::Source::Channel { rx: c.rx, channel }, c.upstream_id)
            }
        };
        Ok(Call {
            upstream: self.clone(),
            session: session.clone(),
            source,
            upstream_id,
            client_id: client_id.map(str::to_owned),
            completes: false,
            finished: false,
        })
    }

    /// The `x-mcp-header` annotations of the tool a `tools/call` names.
    fn param_headers(&self, method: &str, params: &RawValue) -> Vec<era::ParamHeader> {
        if method != "tools/call" {
            return Vec::new();
        }
        let Some(catalog) = self.catalog() else {
            return Vec::new();
        };
        if catalog.param_headers.is_empty() {
            return Vec::new();
        }
        jsonrpc::ParamsView::of(params)
            .ok()
            .and_then(|p| p.get_str("name"))
            .and_then(|name| catalog.param_headers.get(&name).cloned())
            .unwrap_or_default()
    }

    /// Sends a notification or a response to a server request. A 2026-07-28 upstream
    /// takes neither over HTTP (cancelling is closing the stream): nothing is sent.
    pub async fn send(
        &self,
        session: &UpstreamSession,
        message: Bytes,
    ) -> Result<(), UpstreamError> {
        if session.is_modern() {
            return Ok(());
        }
        match &self.transport {
            Transport::Http(http) => http
                .post(session.as_ref(), message, &HeaderMap::new())
                .await
                .map(|_| ()),
            Transport::Channel(_) => self.channel()?.send(message).await,
        }
    }

    /// Opens the server-initiated stream of an upstream session (HTTP only): the GET
    /// stream of a session, or a 2026-07-28 upstream's `subscriptions/listen` for list
    /// changes.
    pub async fn listen(
        self: &Arc<Self>,
        session: &UpstreamSession,
    ) -> Result<Option<streamable::EventStream>, UpstreamError> {
        const LISTS: &str = r#"{"notifications":{"toolsListChanged":true,"promptsListChanged":true,"resourcesListChanged":true}}"#;
        self.listen_for(session, LISTS).await
    }

    /// Like [`Self::listen`], a 2026-07-28 upstream's stream asking for what `filter`
    /// (the `subscriptions/listen` params, JSON text) says, e.g. resource updates.
    pub async fn listen_for(
        self: &Arc<Self>,
        session: &UpstreamSession,
        filter: &str,
    ) -> Result<Option<streamable::EventStream>, UpstreamError> {
        let Some(http) = self.http() else {
            return Ok(None);
        };
        if session.is_modern() {
            let params = era::with_envelope(
                Some(&jsonrpc::raw_or_null(filter.to_owned())),
                &era::hawser_envelope(),
            );
            let id = self.next_upstream_id();
            let body = jsonrpc::request(&id, "subscriptions/listen", Some(params.get()));
            let headers = era::request_headers("subscriptions/listen", None, &[]);
            return match http.post(session.as_ref(), body, &headers).await {
                Ok((Reply::Events(events), _)) => Ok(Some(events)),
                Ok(_) => Ok(None),
                // An upstream without list changes refuses the subscription.
                Err(UpstreamError::Http { status, .. }) if (400..500).contains(&status) => Ok(None),
                Err(e) => Err(e),
            };
        }
        match session.id {
            Some(_) => http.get_stream(session.as_ref(), None).await,
            None => Ok(None),
        }
    }

    /// Checks the upstream still answers: `ping` in a session, `server/discover` for a
    /// 2026-07-28 upstream (which has no ping).
    pub async fn check_alive(
        self: &Arc<Self>,
        session: &UpstreamSession,
    ) -> Result<(), UpstreamError> {
        let method = if session.is_modern() {
            "server/discover"
        } else {
            "ping"
        };
        self.request(session, method, None, self.config.connect_timeout)
            .await
            .map(|_| ())
    }

    /// Hawser's own request on `session`; returns the result or the upstream's error.
    pub async fn request(
        self: &Arc<Self>,
        session: &UpstreamSession,
        method: &str,
        params: Option<&str>,
        timeout: Duration,
    ) -> Result<Box<RawValue>, UpstreamError> {
        let params = params.map(|p| jsonrpc::raw_or_null(p.to_owned()));
        let work = async {
            let mut call = self
                .call(
                    session,
                    method,
                    params.as_deref(),
                    None,
                    &HeaderMap::new(),
                    None,
                )
                .await?;
            while let Some(item) = call.next().await {
                match item? {
                    Inbound::Response { bytes, .. } => return result_of(&bytes),
                    Inbound::Request { id, .. } => {
                        // Hawser's own sessions declare no client capabilities.
                        let reply = jsonrpc::error(
                            Some(id.json()),
                            jsonrpc::code::METHOD_NOT_FOUND,
                            "not supported by the gateway's discovery session",
                            None,
                        );
                        let _ = self.send(session, reply).await;
                    }
                    Inbound::Notification(_) => {}
                }
            }
            Err(UpstreamError::Closed)
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| UpstreamError::Timeout(timeout))?
    }

    /// Another replica changed `subject`'s per-user token: forget this replica's copy.
    pub fn forget_token(&self, subject: &str) {
        self.credentials.forget(subject);
    }

    /// Re-dials now instead of after the back-off (new credentials are available).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Whether the connection authenticates with OAuth.
    pub fn uses_oauth(&self) -> bool {
        matches!(self.credentials, auth::Credentials::OAuth(_))
    }

    /// Whether the upstream answers requests with SSE rather than plain JSON.
    pub fn streams_replies(&self) -> bool {
        self.streams_replies.load(Ordering::Relaxed)
    }

    /// The session Hawser uses for discovery.
    pub fn control_session(&self) -> Option<Arc<UpstreamSession>> {
        self.control.load_full()
    }
}

/// `clientInfo` Hawser presents on its own sessions.
pub fn hawser_info() -> serde_json::Value {
    serde_json::json!({"name": "hawser", "version": env!("CARGO_PKG_VERSION")})
}

/// The `result` of a response, or its error as an [`UpstreamError`].
fn result_of(bytes: &[u8]) -> Result<Box<RawValue>, UpstreamError> {
    let msg = Message::parse(bytes).map_err(|e| UpstreamError::Protocol(e.message))?;
    if let Some(result) = msg.result {
        return Ok(result.to_owned());
    }
    let (code, message) = msg
        .error
        .map(jsonrpc::error_summary)
        .unwrap_or((0, "no result".into()));
    Err(UpstreamError::Protocol(format!("error {code}: {message}")))
}
