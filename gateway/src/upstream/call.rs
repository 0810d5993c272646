//! One request in flight towards an upstream, and everything that comes back for it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::channel::{CallItem, Channel};
use super::streamable::EventStream;
use super::{Upstream, UpstreamError};
use crate::jsonrpc::{Id, Kind, Message};
use crate::store::UpstreamSession;

/// Resume a dropped upstream stream (SSE `Last-Event-ID`) at most this often per call.
const MAX_RESUMES: u8 = 3;

/// A message that arrived for a call.
#[derive(Debug)]
pub enum Inbound {
    /// A notification about the call (progress, log message).
    Notification(Bytes),
    /// A request from the upstream to the client (sampling, elicitation, roots).
    Request { id: Id, bytes: Bytes },
    /// The call's final response, its id already restored to the client's, and its
    /// error code and message when it is an error.
    Response {
        bytes: Bytes,
        error: Option<(i64, String)>,
    },
}

pub(super) enum Source {
    Ready(Option<Bytes>),
    Http {
        events: EventStream,
        resumes: u8,
    },
    Channel {
        rx: mpsc::Receiver<CallItem>,
        channel: Arc<Channel>,
    },
}

/// A request in flight. Dropping it before its response arrived cancels it upstream
/// (`notifications/cancelled`), which is how a client going away or a timeout reaches
/// the upstream.
pub struct Call {
    pub(super) upstream: Arc<Upstream>,
    pub(super) session: UpstreamSession,
    pub(super) source: Source,
    /// JSON text of the id this call has upstream.
    pub(super) upstream_id: String,
    /// JSON text of the client's id, put back on the response (`None`: keep).
    pub(super) client_id: Option<String>,
    /// Whether the result must say `resultType: complete` (see [`Call::completes`]).
    pub(super) completes: bool,
    pub(super) finished: bool,
}

impl Call {
    /// The client id (JSON text) the response is given (`None`: the upstream's).
    pub fn set_client_id(&mut self, client_id: Option<String>) {
        self.client_id = client_id;
    }

    /// Makes the response's result say `"resultType":"complete"`, as a 2026-07-28
    /// client needs of an answer from an upstream of an earlier revision (spliced in
    /// while the id is put back: the response is written once).
    pub fn completes(&mut self) {
        self.completes = true;
    }

    /// The next message for this call; `None` after the response.
    pub async fn next(&mut self) -> Option<Result<Inbound, UpstreamError>> {
        if self.finished {
            return None;
        }
        loop {
            let bytes = match self.next_raw().await {
                Ok(b) => b,
                Err(e) => {
                    self.finished = true;
                    self.forget();
                    return Some(Err(e));
                }
            };
            let msg = match Message::parse(&bytes) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(connection = %self.upstream.name(), error = %e, "invalid message from upstream");
                    continue;
                }
            };
            match msg.kind() {
                Kind::Response => {
                    if msg.id.map(|id| id.get().trim()) != Some(self.upstream_id.as_str()) {
                        // An answer to something else (e.g. a request of ours that was cancelled).
                        continue;
                    }
                    self.finished = true;
                    let completed = if self.completes {
                        msg.completed(self.client_id.as_deref())
                    } else {
                        None
                    };
                    let out = match (completed, &self.client_id) {
                        (Some(out), _) => out,
                        (None, Some(id)) => msg.with_id(id),
                        (None, None) => bytes.clone(),
                    };
                    let error = msg.error.map(crate::jsonrpc::error_summary);
                    return Some(Ok(Inbound::Response { bytes: out, error }));
                }
                Kind::Notification => return Some(Ok(Inbound::Notification(bytes.clone()))),
                Kind::Request => {
                    let id = msg.id.map(Id::from_raw).unwrap_or_else(|| Id::string(""));
                    return Some(Ok(Inbound::Request {
                        id,
                        bytes: bytes.clone(),
                    }));
                }
            }
        }
    }

    async fn next_raw(&mut self) -> Result<Bytes, UpstreamError> {
        loop {
            match &mut self.source {
                Source::Ready(slot) => return slot.take().ok_or(UpstreamError::Closed),
                Source::Channel { rx, .. } => {
                    return rx.recv().await.unwrap_or(Err(UpstreamError::Closed));
                }
                Source::Http { events, resumes } => {
                    if let Some(item) = events.next_message().await {
                        return item;
                    }
                    // The upstream closed the stream before answering: resume it where
                    // it stopped when it gave event ids (SEP-1699 polling).
                    let Some(last) = events.last_event_id.clone() else {
                        return Err(UpstreamError::Closed);
                    };
                    if *resumes >= MAX_RESUMES {
                        return Err(UpstreamError::Closed);
                    }
                    *resumes += 1;
                    let delay = events
                        .retry
                        .unwrap_or(Duration::ZERO)
                        .min(Duration::from_secs(5));
                    tokio::time::sleep(delay).await;
                    let resumed = self
                        .upstream
                        .http()
                        .ok_or(UpstreamError::Closed)?
                        .get_stream(self.session.as_ref(), Some(&last))
                        .await?;
                    match resumed {
                        Some(stream) => {
                            *events = stream;
                            events.last_event_id = Some(last);
                        }
                        None => return Err(UpstreamError::Closed),
                    }
                }
            }
        }
    }

    fn forget(&self) {
        if let Source::Channel { channel, .. } = &self.source {
            channel.forget(&self.upstream_id);
        }
    }

    /// The id this call has upstream (JSON text).
    pub fn upstream_id(&self) -> &str {
        &self.upstream_id
    }

    /// Whether the upstream answered with an SSE stream.
    pub fn is_streamed(&self) -> bool {
        matches!(self.source, Source::Http { .. })
    }

    /// Whether the response arrived.
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.finished {
            if let Source::Http { events, .. } =
                std::mem::replace(&mut self.source, Source::Ready(None))
            {
                events.settle();
            }
            return;
        }
        self.forget();
        let upstream = self.upstream.clone();
        let session = self.session.clone();
        let params = format!(
            r#"{{"requestId":{},"reason":"cancelled by the client"}}"#,
            self.upstream_id
        );
        let note = crate::jsonrpc::notification("notifications/cancelled", Some(&params));
        // Drop can run outside a runtime (process exit); then there is nobody to tell.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(error) = upstream.send(&session, note).await {
                    tracing::debug!(connection = %upstream.name(), %error, "could not deliver cancellation");
                }
            });
        }
    }
}
