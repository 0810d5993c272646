//! Relaying one call to the client: a JSON response when the upstream answers right
//! away, an SSE stream as soon as anything else (progress, logs, a request to the
//! client) arrives first. Nothing is buffered: each message is written as it comes.
//! The client going away, `notifications/cancelled`, or the call timeout drop the
//! upstream call, which cancels it upstream.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;

use super::error::Error;
use super::record::CallRecord;
use super::relay::Relay;
use super::reply::{self, Reply};
use super::session::{ClientSession, Inflight};
use crate::audit::Outcome;
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
    pub record: Option<CallRecord>,
}

enum Step {
    /// Send this and continue.
    Frame(Bytes),
    /// Nothing to send (a server request answered here); continue.
    Skip,
    /// Send this and stop.
    Last(Bytes),
    /// Stop without sending anything (cancelled).
    Stop,
}

struct Relaying {
    ctx: CallContext,
    call: Option<Call>,
    pending: Vec<String>,
    outcome: Outcome,
}

impl Relaying {
    /// The next step that sends something, or stops.
    async fn next_frame(&mut self) -> Step {
        loop {
            match self.step().await {
                Step::Skip => continue,
                other => return other,
            }
        }
    }

    async fn step(&mut self) -> Step {
        let Some(call) = self.call.as_mut() else {
            return Step::Stop;
        };
        let next = tokio::select! {
            biased;
            () = self.ctx.inflight.token.cancelled() => {
                self.outcome.error = Some(("cancelled", "cancelled by the client".into()));
                // Dropping the call tells the upstream.
                self.call = None;
                return Step::Stop;
            }
            r = tokio::time::timeout(self.ctx.timeout, call.next()) => r,
        };
        match next {
            Err(_) => self.fail(UpstreamError::Timeout(self.ctx.timeout)),
            Ok(None) => self.fail(UpstreamError::Closed),
            Ok(Some(Err(e))) => self.fail(e),
            Ok(Some(Ok(Inbound::Response { bytes, error }))) => {
                self.outcome.response_bytes = bytes.len();
                if let Some((code, message)) = error {
                    self.outcome.error = Some(("upstream", format!("error {code}: {message}")));
                }
                self.outcome.response = Some(bytes.clone());
                Step::Last(bytes)
            }
            Ok(Some(Ok(Inbound::Notification(bytes)))) => {
                if memchr::memmem::find(&bytes, b"notifications/progress").is_some() {
                    self.outcome.progress += 1;
                }
                Step::Frame(bytes)
            }
            Ok(Some(Ok(Inbound::Request { id, bytes }))) => self.server_request(id, bytes).await,
        }
    }

    fn fail(&mut self, e: UpstreamError) -> Step {
        self.outcome.error = Some((e.category(), e.to_string()));
        self.call = None;
        let error = Error::upstream(self.ctx.upstream.name(), e);
        Step::Last(error.to_message(Some(&self.ctx.client_id)))
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
            return Step::Skip;
        }
        match self.ctx.relay.register(
            self.ctx.session.id_hash,
            &self.ctx.upstream,
            &self.ctx.upstream_session,
            id,
            &bytes,
        ) {
            Some((rewritten, gateway_id)) => {
                self.pending.push(gateway_id);
                Step::Frame(rewritten)
            }
            None => Step::Skip,
        }
    }

    fn finish(&mut self) {
        self.ctx.relay.forget(&self.pending);
        self.pending.clear();
        if let Some(record) = self.ctx.record.take() {
            record.finish(std::mem::take(&mut self.outcome));
        }
    }
}

impl Drop for Relaying {
    fn drop(&mut self) {
        if self.call.as_ref().is_some_and(|c| !c.is_finished()) && self.outcome.error.is_none() {
            self.outcome.error = Some(("cancelled", "client went away".into()));
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
        outcome: Outcome::default(),
    };
    // Wait for the first message: if it is the response, answer with plain JSON.
    let first = match state.next_frame().await {
        Step::Last(bytes) if !stream_anyway => {
            state.call = None;
            drop(state);
            return reply::json(bytes);
        }
        Step::Last(bytes) => {
            state.call = None;
            drop(state);
            return reply::sse_once(bytes);
        }
        // Cancelled before anything was said: the client asked for silence.
        Step::Stop | Step::Skip => return reply::sse(Body::empty()),
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
        match state.next_frame().await {
            Step::Frame(b) => Some((Ok(sse::event(&b)), (None, Some(state)))),
            Step::Last(b) => {
                state.call = None;
                Some((Ok(sse::event(&b)), (None, None)))
            }
            Step::Stop | Step::Skip => None,
        }
    });
    reply::sse(Body::from_stream(stream))
}
