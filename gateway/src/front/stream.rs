//! Relaying one call to the client: a JSON response when the upstream answers right
//! away, an SSE stream as soon as anything else (progress, logs, a request to the
//! client) arrives first. Nothing is buffered: each message is written as it comes.
//! The client going away, `notifications/cancelled`, or the call timeout drop the
//! upstream call, which cancels it upstream.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::HeaderMap;
use bytes::Bytes;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use super::bridge::{Bridge, Parking};
use super::error::Error;
use super::inputs::{self, InputRequired};
use super::record::CallRecord;
use super::relay::Relay;
use super::reply::{self, Reply};
use super::session::{ClientSession, Hears, Inflight};
use crate::audit::Outcome;
use crate::identity::Identity;
use crate::jsonrpc::{self, Id};
use crate::revision::{Envelope, Era};
use crate::sse;
use crate::store::UpstreamSession;
use crate::upstream::{Call, Inbound, Upstream, UpstreamError};

/// Everything needed to relay one call.
pub struct CallContext {
    pub relay: Arc<Relay>,
    /// Where a 2026-07-28 client's call waits while the client answers an upstream's
    /// request (the era bridge).
    pub bridge: Arc<Bridge>,
    /// The request's method and what it names upstream (a parked call is resumed
    /// only by a retry of the same request).
    pub method: String,
    pub target: Option<String>,
    /// Set when a 2026-07-28 upstream may answer `input_required` to a legacy client:
    /// what retrying the call needs.
    pub retry: Option<RetryContext>,
    pub session: Arc<ClientSession>,
    pub upstream: Arc<Upstream>,
    pub upstream_session: UpstreamSession,
    pub client_id: Id,
    pub inflight: Inflight,
    pub timeout: Duration,
    pub record: Option<CallRecord>,
    /// The upstream call's client span (`Span::none()` when not traced): the parent
    /// of the waits for the client's answers.
    pub span: tracing::Span,
    /// Who the call is for: a resource update sent along the answer is relayed only
    /// if the caller may see the resource.
    pub hears: Hears,
    /// The client's progress token, when the upstream was sent one of Hawser's own
    /// instead (a pooled upstream session): progress is reported under the client's.
    pub progress_token: Option<Box<RawValue>>,
    /// Binds the task ids the caller is shown to the caller (when callers
    /// authenticate; see [`super::task_ids::Names`]).
    pub tasks: Option<crate::crypto::Tagger>,
}

/// Most `input_required` rounds one call may take (a server that keeps asking, or
/// answers `input_required` with nothing to ask, is not waited on forever).
const MAX_INPUT_ROUNDS: u32 = 16;

/// What Hawser needs to retry a call whose 2026-07-28 upstream asked for input.
pub struct RetryContext {
    pub params: Option<Box<RawValue>>,
    pub headers: HeaderMap,
    pub envelope: Envelope,
}

/// Input requests asked of a legacy client, and their answers to wait for.
struct Asking {
    frames: VecDeque<Bytes>,
    waits: Vec<(String, oneshot::Receiver<Bytes>)>,
    state: Option<Box<RawValue>>,
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
    /// A 2026-07-28 client must answer the upstream's request `upstream_id`: park the
    /// call and answer `input_required`.
    Park { upstream_id: Id, request: Bytes },
}

/// One call being relayed (or parked by the bridge, waiting for the client's retry).
pub struct Relaying {
    pub(super) ctx: CallContext,
    call: Option<Call>,
    pending: Vec<String>,
    outcome: Outcome,
    asking: Option<Asking>,
    /// `input_required` rounds so far.
    rounds: u32,
    /// Set once a retry took the call over: the progress token its progress
    /// notifications now carry (`None`: the retry asked for none).
    progress_token: Option<Option<Box<RawValue>>>,
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
        if let Some(asking) = self.asking.as_mut() {
            if let Some(frame) = asking.frames.pop_front() {
                return Step::Frame(frame);
            }
            return self.answered().await;
        }
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
                if self.ctx.retry.is_some()
                    && let Some(input) = inputs::of(&bytes)
                {
                    return self.ask(input);
                }
                let bytes = super::task_ids::expose(bytes, &self.ctx.method, &self.task_names());
                self.outcome.response = Some(bytes.clone());
                Step::Last(bytes)
            }
            Ok(Some(Ok(Inbound::Notification(bytes)))) => {
                if find_bytes!(&bytes, b"notifications/resources/updated").is_some()
                    && !self.ctx.hears.update(self.ctx.upstream.name(), &bytes)
                {
                    return Step::Skip;
                }
                let bytes = self.expose_tasks(bytes);
                if find_bytes!(&bytes, b"notifications/progress").is_none() {
                    return Step::Frame(bytes);
                }
                self.outcome.progress += 1;
                // A resumed call reports progress under its retry's token.
                match &self.progress_token {
                    None => Step::Frame(bytes),
                    Some(None) => Step::Skip,
                    Some(Some(token)) => Step::Frame(with_progress_token(&bytes, token)),
                }
            }
            Ok(Some(Ok(Inbound::Request { id, bytes }))) => {
                // A connection every client shares hands its requests to the newest
                // call, whoever made it: a task they name is not named for this caller.
                let names = if self.ctx.upstream.is_shared() {
                    self.task_names().unbound()
                } else {
                    self.task_names()
                };
                let bytes = super::task_ids::expose_message(bytes, &names);
                self.server_request(id, bytes).await
            }
        }
    }

    /// How the caller knows this upstream's tasks.
    fn task_names(&self) -> super::task_ids::Names<'_> {
        super::task_ids::Names::new(
            self.ctx.tasks.as_ref(),
            self.ctx.session.endpoint.is_aggregated(),
            &self.ctx.upstream,
            &self.ctx.session.subject,
        )
    }

    /// An upstream's message with its task ids named as the client knows them.
    fn expose_tasks(&self, bytes: Bytes) -> Bytes {
        super::task_ids::expose_message(bytes, &self.task_names())
    }

    /// Answers the upstream's request `id` with an error on the client's behalf.
    async fn refuse(&mut self, id: &Id, why: &str) -> Step {
        let refusal = Relay::refuse(id, why);
        let _ = self
            .ctx
            .upstream
            .send(&self.ctx.upstream_session, refusal)
            .await;
        Step::Skip
    }

    /// Asks a legacy client the input requests of a 2026-07-28 upstream.
    fn ask(&mut self, input: InputRequired) -> Step {
        self.call = None;
        self.rounds += 1;
        if self.rounds > MAX_INPUT_ROUNDS {
            return self.fail(UpstreamError::Protocol(format!(
                "asked for input more than {MAX_INPUT_ROUNDS} times in one call"
            )));
        }
        let mut asking = Asking {
            frames: VecDeque::with_capacity(input.requests.len()),
            waits: Vec::with_capacity(input.requests.len()),
            state: input.state,
        };
        for (key, method, params) in input.requests {
            if let Some(cap) = inputs::capability(&method)
                && !self.ctx.session.supports(cap)
            {
                let error = Error::MissingCapability {
                    capability: cap,
                    what: format!("{} ({method})", self.ctx.upstream.name()),
                };
                self.outcome.error = Some(("protocol", error.to_string()));
                return Step::Last(error.to_message(Some(&self.ctx.client_id)));
            }
            let (frame, gateway_id, rx) = self.ctx.relay.ask(
                self.ctx.session.id_hash,
                &method,
                Some(params.get()),
                &self.ctx.span,
            );
            self.pending.push(gateway_id);
            asking.frames.push_back(frame);
            asking.waits.push((key, rx));
        }
        self.asking = Some(asking);
        Step::Skip
    }

    /// Waits for the client's answers, then retries the upstream call with them.
    async fn answered(&mut self) -> Step {
        let Some(asking) = self.asking.take() else {
            return Step::Skip;
        };
        let mut responses = Vec::with_capacity(asking.waits.len());
        for (key, rx) in asking.waits {
            let answer = tokio::select! {
                biased;
                () = self.ctx.inflight.token.cancelled() => {
                    self.outcome.error = Some(("cancelled", "cancelled by the client".into()));
                    return Step::Stop;
                }
                r = tokio::time::timeout(self.ctx.timeout, rx) => r,
            };
            let answer = match answer {
                Err(_) => return self.fail(UpstreamError::Timeout(self.ctx.timeout)),
                Ok(Err(_)) => return self.fail(UpstreamError::Closed),
                Ok(Ok(bytes)) => bytes,
            };
            let result = jsonrpc::Message::parse(&answer)
                .ok()
                .and_then(|m| m.result.map(ToOwned::to_owned));
            let Some(result) = result else {
                let error = Error::InvalidParams(format!(
                    "the client refused the input request {key:?} of {}",
                    self.ctx.upstream.name()
                ));
                self.outcome.error = Some(("protocol", error.to_string()));
                return Step::Last(error.to_message(Some(&self.ctx.client_id)));
            };
            responses.push((key, result));
        }
        let Some(retry) = self.ctx.retry.as_ref() else {
            return Step::Stop;
        };
        let params =
            inputs::retry_params(retry.params.as_deref(), &responses, asking.state.as_deref());
        let retried = self.ctx.upstream.call(
            &self.ctx.upstream_session,
            &self.ctx.method,
            Some(&params),
            Some(self.ctx.client_id.json()),
            &retry.headers,
            Some(&retry.envelope),
        );
        let call = tokio::select! {
            biased;
            () = self.ctx.inflight.token.cancelled() => {
                self.outcome.error = Some(("cancelled", "cancelled by the client".into()));
                return Step::Stop;
            }
            r = tokio::time::timeout(self.ctx.timeout, retried) => r,
        };
        match call {
            Ok(Ok(call)) => {
                self.call = Some(call);
                Step::Skip
            }
            Ok(Err(e)) => self.fail(e),
            Err(_) => self.fail(UpstreamError::Timeout(self.ctx.timeout)),
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
        let modern = self.ctx.session.is_modern();
        if let Some(cap) = needs
            && !self.ctx.session.supports(cap)
        {
            return self
                .refuse(
                    &id,
                    &format!("the client did not declare the {cap} capability"),
                )
                .await;
        }
        if modern && method == "ping" {
            // Answered on the client's behalf: 2026-07-28 has no server→client ping.
            let pong = jsonrpc::result(id.json(), "{}");
            let _ = self
                .ctx
                .upstream
                .send(&self.ctx.upstream_session, pong)
                .await;
            return Step::Skip;
        }
        if modern {
            // A 2026-07-28 client answers in a retry of its request, not on this stream.
            if needs.is_some() {
                return Step::Park {
                    upstream_id: id,
                    request: bytes,
                };
            }
            return self
                .refuse(&id, &format!("{method} cannot reach a 2026-07-28 client"))
                .await;
        }
        match self.ctx.relay.register(
            &self.ctx.session,
            &self.ctx.upstream,
            &self.ctx.upstream_session,
            id,
            &bytes,
            &self.ctx.span,
        ) {
            Some((rewritten, gateway_id)) => {
                self.pending.push(gateway_id);
                Step::Frame(rewritten)
            }
            None => Step::Skip,
        }
    }

    /// Takes the call over for the retry of a parked call: the new request's id,
    /// session (capabilities), cancellation and caller.
    pub(super) fn adopt(
        &mut self,
        session: Arc<ClientSession>,
        client_id: Id,
        inflight: Inflight,
        progress_token: Option<Box<RawValue>>,
        caller: Option<Arc<Identity>>,
    ) {
        if let Some(call) = self.call.as_mut() {
            call.set_client_id(Some(client_id.json().to_owned()));
        }
        self.progress_token = Some(progress_token);
        self.ctx.session = session;
        self.ctx.client_id = client_id;
        self.ctx.inflight = inflight;
        self.ctx.hears.caller = caller;
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
pub async fn respond(ctx: CallContext, mut call: Call, mirror: bool) -> Reply {
    let stream_anyway = mirror && call.is_streamed();
    // A 2026-07-28 client needs every result to say what it is.
    if ctx.session.is_modern() && ctx.upstream.era_for(Era::Modern) == Era::Legacy {
        call.completes();
    }
    let progress_token = ctx.progress_token.clone().map(Some);
    let state = Relaying {
        ctx,
        call: Some(call),
        pending: Vec::new(),
        outcome: Outcome::default(),
        asking: None,
        rounds: 0,
        progress_token,
    };
    relay(state, stream_anyway).await
}

/// A `notifications/progress` with `params.progressToken` set to `token`.
fn with_progress_token(notification: &[u8], token: &RawValue) -> Bytes {
    let Ok(msg) = jsonrpc::Message::parse(notification) else {
        return Bytes::copy_from_slice(notification);
    };
    let Ok(mut params) = jsonrpc::RawParams::parse(msg.params) else {
        return Bytes::copy_from_slice(notification);
    };
    params.0.set("progressToken", token.to_owned());
    msg.with_params(params.to_raw().get())
}

/// Hands the call to the bridge; the `input_required` answer for the client.
fn park(state: Relaying, upstream_id: Id, request: &[u8]) -> Bytes {
    let bridge = state.ctx.bridge.clone();
    let (client_id, subject) = (
        state.ctx.client_id.clone(),
        state.ctx.session.subject.clone(),
    );
    let (method, target) = (state.ctx.method.clone(), state.ctx.target.clone());
    let connection = state.ctx.upstream.name().to_owned();
    let about = Parking {
        client_id: &client_id,
        subject: &subject,
        method: &method,
        connection: &connection,
        target: target.as_deref(),
    };
    bridge.park(Box::new(state), about, upstream_id, request)
}

/// Goes on relaying a call the bridge had parked, as the answer to its retry.
pub async fn resume(state: Relaying) -> Reply {
    relay(state, false).await
}

async fn relay(mut state: Relaying, stream_anyway: bool) -> Reply {
    // Wait for the first message: if it is the response, answer with plain JSON.
    let first = match state.next_frame().await {
        Step::Last(bytes) if !stream_anyway => {
            let modern = state.ctx.session.is_modern();
            state.call = None;
            drop(state);
            return if modern {
                reply::json_modern(bytes)
            } else {
                reply::json(bytes)
            };
        }
        Step::Last(bytes) => {
            state.call = None;
            drop(state);
            return reply::sse_once(bytes);
        }
        Step::Park {
            upstream_id,
            request,
        } => return reply::json(park(state, upstream_id, &request)),
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
            Step::Park {
                upstream_id,
                request,
            } => {
                let answer = park(state, upstream_id, &request);
                Some((Ok(sse::event(&answer)), (None, None)))
            }
            Step::Stop | Step::Skip => None,
        }
    });
    reply::sse(Body::from_stream(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_after_a_resume_carries_the_retry_token() {
        let note = br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"first","progress":2,"total":5}}"#;
        let token = RawValue::from_string("7".into()).unwrap();
        let out: serde_json::Value =
            serde_json::from_slice(&with_progress_token(note, &token)).unwrap();
        assert_eq!(out["params"]["progressToken"], 7);
        assert_eq!(out["params"]["progress"], 2);
        assert_eq!(out["params"]["total"], 5);
        assert_eq!(out["method"], "notifications/progress");
    }

    /// An update of a resource a policy hides from the caller is not relayed along an
    /// answer; other notifications, and updates it may see, are.
    #[tokio::test]
    async fn resource_updates_along_an_answer_follow_the_policies() {
        use crate::identity::AuthMethod;
        use crate::policy::Policies;
        use crate::store::{MemoryStore, Store as _};
        let store = Arc::new(MemoryStore::new());
        let spec: hawser_crds::McpPolicySpec = serde_json::from_value(serde_json::json!({
            "targetRefs": [{"name": "fx"}],
            "rules": [{"subjects": ["alice"], "resources": ["test://shown"]}],
        }))
        .unwrap();
        store
            .put_policy(
                "p",
                &spec,
                crate::config::Source::Api,
                &["fx".to_owned()],
                None,
            )
            .await
            .unwrap();
        let policy = Policies::new(store, false, crate::metrics::Metrics::new());
        policy.load().await.unwrap();
        let alice = Arc::new(Identity {
            subject: "alice".into(),
            method: AuthMethod::StaticToken,
            groups: Vec::new(),
            scopes: Vec::new(),
            token: None,
            claims: None,
        });
        let hears = Hears {
            policy,
            caller: Some(alice),
        };
        let updated = |uri: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{{"uri":"{uri}"}}}}"#
            )
        };
        assert!(hears.update("fx", updated("test://shown").as_bytes()));
        assert!(!hears.update("fx", updated("test://hidden").as_bytes()));
        // A connection no policy governs shows everything.
        assert!(hears.update("other", updated("test://hidden").as_bytes()));
        let log = br#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"notifications/resources/updated test://hidden"}}"#;
        assert!(hears.update("fx", log));
        let nobody = Hears {
            policy: hears.policy.clone(),
            caller: None,
        };
        assert!(!nobody.update("fx", updated("test://shown").as_bytes()));
    }
}
