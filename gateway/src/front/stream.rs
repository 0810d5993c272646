//! Relaying one call to the client: a JSON response when the upstream answers right
//! away, an SSE stream as soon as anything else (progress, logs, a request to the
//! client) arrives first. Nothing is buffered: each message is written as it comes.
//! The client going away, `notifications/cancelled`, or the call timeout drop the
//! upstream call, which cancels it upstream.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;

use super::relay::Relay;
use super::reply::{self, Reply};
use super::session::{ClientSession, Inflight};
use crate::jsonrpc::{self, Id};
use crate::sse;
use crate::store::UpstreamSession;
use crate::upstream::{Call, Inbound, Upstream, UpstreamError};

/// Everything needed to relay one call.
pub struct CallContext {
    pub relay: Arc<Relay>,
    pub session: Arc<ClientSession>,
    pub upstream: Arc<Upstream>,
    pub upstream_session: UpstreamSession,
    pub client_id: Id,
    pub inflight: Inflight,
    pub timeout: Duration,
    pub finish: Option<Box<dyn FnOnce(Outcome) + Send>>,
}

/// How a call ended, for audit and metrics.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Error category and message, when it failed.
    pub error: Option<(String, String)>,
    pub response_bytes: usize,
    /// Progress notifications relayed.
    pub progress: u32,
    /// The response (shared bytes, not a copy), for counting content blocks later.
    pub response: Option<Bytes>,
}

/// The error response a client gets for an upstream failure.
pub fn upstream_error(id: &Id, connection: &str, error: &UpstreamError) -> Bytes {
    jsonrpc::error(
        Some(id.json()),
        error.jsonrpc_code(),
        &format!("connection {connection:?}: {error}"),
        Some(&serde_json::json!({"connection": connection, "category": error.category()})),
    )
}

enum Step {
    /// Send this and continue.
    Frame(Bytes),
    /// Send this and stop.
    Last(Bytes),
    /// Stop without sending anything (cancelled).
    Stop,
}

struct Relaying {
    ctx: CallContext,
    call: Option<Call>,
    pending: Vec<String>,
    progress: u32,
    response_bytes: usize,
    response: Option<Bytes>,
    error: Option<(String, String)>,
}

impl Relaying {
    async fn step(&mut self) -> Step {
        let Some(call) = self.call.as_mut() else {
            return Step::Stop;
        };
        let next = tokio::select! {
            biased;
            () = self.ctx.inflight.token.cancelled() => {
                self.error = Some(("cancelled".into(), "cancelled by the client".into()));
                // Dropping the call tells the upstream.
                self.call = None;
                return Step::Stop;
            }
            r = tokio::time::timeout(self.ctx.timeout, call.next()) => r,
        };
        let failure = |me: &mut Self, e: UpstreamError| {
            me.error = Some((e.category().into(), e.to_string()));
            me.call = None;
            Step::Last(upstream_error(
                &me.ctx.client_id,
                me.ctx.upstream.name(),
                &e,
            ))
        };
        match next {
            Err(_) => failure(self, UpstreamError::Timeout(self.ctx.timeout)),
            Ok(None) => failure(self, UpstreamError::Closed),
            Ok(Some(Err(e))) => failure(self, e),
            Ok(Some(Ok(Inbound::Response { bytes, error }))) => {
                self.response_bytes = bytes.len();
                if let Some((code, message)) = error {
                    self.error = Some(("upstream".into(), format!("error {code}: {message}")));
                }
                self.response = Some(bytes.clone());
                Step::Last(bytes)
            }
            Ok(Some(Ok(Inbound::Notification(bytes)))) => {
                if memchr::memmem::find(&bytes, b"notifications/progress").is_some() {
                    self.progress += 1;
                }
                Step::Frame(bytes)
            }
            Ok(Some(Ok(Inbound::Request { id, bytes }))) => self.server_request(id, bytes).await,
        }
    }

    async fn server_request(&mut self, id: Id, bytes: Bytes) -> Step {
        let method = jsonrpc::Message::parse(&bytes)
            .map(|m| m.method().to_owned())
            .unwrap_or_default();
        let needs = match method.as_str() {
            "sampling/createMessage" => Some("sampling"),
            "elicitation/create" => Some("elicitation"),
            "roots/list" => Some("roots"),
            _ => None,
        };
        if let Some(cap) = needs
            && !self.ctx.session.supports(cap)
        {
            let refusal = Relay::refuse(
                &id,
                &format!("the client did not declare the {cap} capability"),
            );
            let _ = self
                .ctx
                .upstream
                .send(&self.ctx.upstream_session, refusal)
                .await;
            return Step::Frame(Bytes::new());
        }
        match self.ctx.relay.register(
            self.ctx.session.id_hash,
            &self.ctx.upstream,
            &self.ctx.upstream_session,
            id.clone(),
            &bytes,
        ) {
            Some((rewritten, gateway_id)) => {
                self.pending.push(gateway_id);
                Step::Frame(rewritten)
            }
            None => Step::Frame(Bytes::new()),
        }
    }

    fn finish(&mut self) {
        self.ctx.relay.forget(&self.pending);
        self.pending.clear();
        if let Some(f) = self.ctx.finish.take() {
            f(Outcome {
                error: self.error.take(),
                response_bytes: self.response_bytes,
                progress: self.progress,
                response: self.response.take(),
            });
        }
    }
}

impl Drop for Relaying {
    fn drop(&mut self) {
        if self.call.as_ref().is_some_and(|c| !c.is_finished()) && self.error.is_none() {
            self.error = Some(("cancelled".into(), "client went away".into()));
        }
        self.finish();
    }
}

/// Relays `call` to the client. A connection's own endpoint mirrors the upstream's
/// framing (SSE when the upstream streams); otherwise an immediate answer is JSON.
pub async fn respond(ctx: CallContext, call: Call, mirror: bool) -> Reply {
    let stream_anyway = mirror && call.is_streamed();
    let mut state = Relaying {
        ctx,
        call: Some(call),
        pending: Vec::new(),
        progress: 0,
        response_bytes: 0,
        response: None,
        error: None,
    };
    // Wait for the first message: if it is the response, answer with plain JSON.
    let first = loop {
        match state.step().await {
            Step::Frame(b) if b.is_empty() => continue,
            other => break other,
        }
    };
    let first = match first {
        Step::Last(bytes) if !stream_anyway => {
            state.call = None;
            drop(state);
            return reply::json(bytes);
        }
        Step::Last(bytes) => {
            state.call = None;
            drop(state);
            let once = futures::stream::once(async move {
                Ok::<_, std::convert::Infallible>(sse::event(&bytes))
            });
            return reply::sse(Body::from_stream(once));
        }
        // Cancelled before anything was said: the client asked for silence.
        Step::Stop => return reply::sse(Body::empty()),
        Step::Frame(bytes) => bytes,
    };
    let stream = futures::stream::unfold((Some(first), Some(state)), |(first, state)| async move {
        if let Some(frame) = first {
            return Some((
                Ok::<_, std::convert::Infallible>(sse::event(&frame)),
                (None, state),
            ));
        }
        let mut state = state?;
        loop {
            match state.step().await {
                Step::Frame(b) if b.is_empty() => continue,
                Step::Frame(b) => return Some((Ok(sse::event(&b)), (None, Some(state)))),
                Step::Last(b) => {
                    state.call = None;
                    return Some((Ok(sse::event(&b)), (None, None)));
                }
                Step::Stop => return None,
            }
        }
    });
    reply::sse(Body::from_stream(stream))
}
