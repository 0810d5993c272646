//! Requests from upstreams to clients (sampling, elicitation, roots): forwarded with a
//! gateway id that names this replica, so the client's answer finds its way back to
//! the upstream that is waiting, whichever replica the answer reaches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::session::ClientSession;
use crate::crypto::IdHash;
use crate::crypto::Tagger;
use crate::jsonrpc::{self, Id, Message};
use crate::store::UpstreamSession;
use crate::upstream::{Upstream, UpstreamError};

/// Who waits for the client's answer.
pub enum Waiter {
    /// An upstream's request, answered in its session with its own id.
    Upstream {
        upstream: Arc<Upstream>,
        upstream_session: UpstreamSession,
        upstream_id: Id,
        /// How the client was shown the upstream's task ids: on the aggregated
        /// endpoint (prefixed), bound to the client's subject (when callers
        /// authenticate, and the connection is not shared by every client: see
        /// [`super::stream`]).
        aggregated: bool,
        subject: String,
    },
    /// Hawser itself: a 2026-07-28 upstream's input request, asked of a legacy client
    /// as an ordinary request; the answer (the whole response) goes to the call.
    Local(tokio::sync::oneshot::Sender<Bytes>),
}

/// A server→client request waiting for the client's answer.
pub struct Pending {
    pub session: IdHash,
    pub waiter: Waiter,
    created: Instant,
    /// The wait, as a span under the upstream call that asked (when traced).
    span: tracing::Span,
}

/// Pending server→client requests of this replica.
pub struct Relay {
    token: String,
    next: AtomicU64,
    pending: Mutex<HashMap<String, Pending>>,
}

/// Forget a pending request the client never answered after this long.
const MAX_AGE: Duration = Duration::from_secs(3600);

impl Relay {
    pub fn new(replica_token: &str) -> Arc<Self> {
        Arc::new(Self {
            token: replica_token.to_owned(),
            next: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The replica token a gateway id names, if it is one of ours at all.
    pub fn owner_of(id: &Id) -> Option<String> {
        let s = id.as_str()?;
        let rest = s.strip_prefix("hw-")?;
        rest.split_once('-').map(|(token, _)| token.to_owned())
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Registers a request from `upstream` and returns it rewritten for the client,
    /// with the gateway id (JSON text) it now has. `call` is the upstream call's span.
    pub fn register(
        &self,
        client: &ClientSession,
        upstream: &Arc<Upstream>,
        upstream_session: &UpstreamSession,
        upstream_id: Id,
        message: &[u8],
        call: &tracing::Span,
    ) -> Option<(Bytes, String)> {
        let session = client.id_hash;
        let msg = Message::parse(message).ok()?;
        let gateway_id = self.next_id();
        let rewritten = msg.with_id(&gateway_id);
        self.insert(
            &gateway_id,
            session,
            Waiter::Upstream {
                upstream: upstream.clone(),
                upstream_session: upstream_session.clone(),
                upstream_id,
                aggregated: client.endpoint.is_aggregated(),
                subject: client.subject.clone(),
            },
            crate::telemetry::span::client_answer(call, msg.method()),
        );
        Some((rewritten, gateway_id))
    }

    /// Registers a request Hawser asks of the client itself (`method` with `params`,
    /// JSON text); the request to send, its gateway id, and where the answer arrives.
    pub fn ask(
        &self,
        session: IdHash,
        method: &str,
        params: Option<&str>,
        call: &tracing::Span,
    ) -> (Bytes, String, tokio::sync::oneshot::Receiver<Bytes>) {
        let gateway_id = self.next_id();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let span = crate::telemetry::span::client_answer(call, method);
        self.insert(&gateway_id, session, Waiter::Local(tx), span);
        (
            jsonrpc::request(&gateway_id, method, params),
            gateway_id,
            rx,
        )
    }

    /// A new gateway id (JSON text) naming this replica.
    fn next_id(&self) -> String {
        format!(
            "\"hw-{}-{}\"",
            self.token,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn insert(&self, gateway_id: &str, session: IdHash, waiter: Waiter, span: tracing::Span) {
        let mut pending = self.lock();
        pending.retain(|_, p| p.created.elapsed() < MAX_AGE);
        pending.insert(
            gateway_id.to_owned(),
            Pending {
                session,
                waiter,
                created: Instant::now(),
                span,
            },
        );
    }

    /// Forgets pending requests (the call that raised them ended).
    pub fn forget(&self, gateway_ids: &[String]) {
        if gateway_ids.is_empty() {
            return;
        }
        let mut pending = self.lock();
        for id in gateway_ids {
            if let Some(p) = pending.remove(id) {
                crate::telemetry::span::end(&p.span, "unanswered");
            }
        }
    }

    /// Delivers a client's answer held on this replica to the waiting upstream, the
    /// task it names as the upstream knows it (`tasks` binds task ids to callers, when
    /// they authenticate). `Ok(false)` when nothing waits for it here.
    pub async fn deliver(
        &self,
        session: IdHash,
        answer: &Message<'_>,
        tasks: Option<&Tagger>,
    ) -> Result<bool, UpstreamError> {
        let Some(id) = answer.id.map(Id::from_raw) else {
            return Ok(false);
        };
        let pending = {
            let mut map = self.lock();
            match map.get(id.json()) {
                Some(p) if p.session == session => map.remove(id.json()),
                _ => None,
            }
        };
        let Some(p) = pending else {
            return Ok(false);
        };
        let outcome = if answer.error.is_some() {
            "refused"
        } else {
            "ok"
        };
        crate::telemetry::span::end(&p.span, outcome);
        match p.waiter {
            Waiter::Upstream {
                upstream,
                upstream_session,
                upstream_id,
                aggregated,
                subject,
            } => {
                let tasks = tasks.filter(|_| !upstream.is_shared());
                let names = super::task_ids::Names::new(tasks, aggregated, &upstream, &subject);
                let reply = super::task_ids::own_answer(answer, upstream_id.json(), &names);
                upstream.send(&upstream_session, reply).await?;
            }
            Waiter::Local(tx) => {
                // The call may have ended meanwhile; then nobody waits.
                let _ = tx.send(answer.with_id(id.json()));
            }
        }
        Ok(true)
    }

    /// An error answer for an upstream request the client cannot take.
    pub fn refuse(upstream_id: &Id, why: &str) -> Bytes {
        jsonrpc::error(
            Some(upstream_id.json()),
            jsonrpc::code::METHOD_NOT_FOUND,
            why,
            None,
        )
    }
}
