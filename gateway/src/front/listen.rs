//! The client's GET stream: server-initiated messages not tied to a request — list
//! changes, and what upstreams send on their own streams (resource updates, logs).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::reply::{self, Reply};
use super::session::ClientSession;
use super::state::Front;
use super::watch::UPDATED;
use crate::identity::Identity;
use crate::jsonrpc::{Id, Kind, Message};
use crate::sse;
use crate::store::UpstreamSession;
use crate::upstream::Upstream;

/// Interval of keep-alive comments on idle streams.
const KEEPALIVE: Duration = Duration::from_secs(20);

/// Opens a GET stream for `session`, on behalf of `caller`.
pub fn open(front: &Arc<Front>, session: &Arc<ClientSession>, caller: Arc<Identity>) -> Reply {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let stop = session.ended.child_token();
    session.add_stream(tx, stop.clone(), caller);
    // Resources subscribed at 2026-07-28 upstreams are watched where the stream is.
    super::subscribed::follow(front, session);

    for (connection, upstream_session) in session.upstream_sessions() {
        if let Some(upstream) = front.registry.upstream(&connection)
            && !upstream.is_shared()
        {
            tokio::spawn(follow_upstream(
                front.clone(),
                session.clone(),
                upstream,
                upstream_session,
                stop.clone(),
            ));
        }
    }
    let ended = session.ended.clone();
    let draining = front.draining.clone();
    let guard = StopOnDrop(stop);
    let stream = futures::stream::unfold((rx, guard), move |(mut rx, guard)| {
        let ended = ended.clone();
        let draining = draining.clone();
        async move {
            tokio::select! {
                () = ended.cancelled() => None,
                () = draining.cancelled() => None,
                frame = rx.recv() => frame.map(|f| (Ok::<_, std::convert::Infallible>(f), (rx, guard))),
                () = tokio::time::sleep(KEEPALIVE) => Some((Ok(Bytes::from_static(sse::KEEPALIVE)), (rx, guard))),
            }
        }
    });
    reply::sse(Body::from_stream(stream))
}

struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Starts following the upstream session of `connection` (opened after the client's
/// GET stream, possibly by another replica).
pub async fn follow_new(front: &Arc<Front>, session: &Arc<ClientSession>, connection: &str) {
    let Some(upstream) = front.registry.upstream(connection) else {
        return;
    };
    if upstream.is_shared() {
        return;
    }
    // The session that was announced is in the store; this replica's copy may be the
    // one it replaced (the upstream forgot that one after a restart).
    session.forget_local_upstream_session(connection).await;
    let Ok(upstream_session) = front.sessions.upstream_session(session, &upstream).await else {
        return;
    };
    let stop = session.stream_stop();
    tokio::spawn(follow_upstream(
        front.clone(),
        session.clone(),
        upstream,
        upstream_session,
        stop,
    ));
}

/// Relays an upstream session's own stream to the client's GET stream. A stream the
/// upstream (or a proxy's idle timeout) ends is opened again while the session lives;
/// one the upstream refuses (the session is gone) is left: the next upstream session
/// is followed when it is opened.
async fn follow_upstream(
    front: Arc<Front>,
    session: Arc<ClientSession>,
    upstream: Arc<Upstream>,
    upstream_session: UpstreamSession,
    stop: CancellationToken,
) {
    let mut wait = RELISTEN_AFTER;
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            s = upstream.listen(&upstream_session) => s,
        };
        let stream = match stream {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(error) => {
                tracing::debug!(connection = %upstream.name(), %error, "no upstream stream");
                return;
            }
        };
        let opened = tokio::time::Instant::now();
        relay_upstream(
            &front,
            &session,
            &upstream,
            &upstream_session,
            stream,
            &stop,
        )
        .await;
        // A stream that lasted is opened again soon; one that ends at once, less and
        // less often.
        if opened.elapsed() >= RELISTEN_STEADY {
            wait = RELISTEN_AFTER;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(RELISTEN_STEADY);
    }
}

/// How long after an upstream ended its stream it is opened again, at first.
const RELISTEN_AFTER: Duration = Duration::from_secs(1);
/// The longest wait, and how long a stream must have lasted to reset it.
const RELISTEN_STEADY: Duration = Duration::from_secs(30);

/// Relays one upstream stream until it ends or `stop`.
async fn relay_upstream(
    front: &Front,
    session: &Arc<ClientSession>,
    upstream: &Arc<Upstream>,
    upstream_session: &UpstreamSession,
    mut stream: crate::upstream::streamable::EventStream,
    stop: &CancellationToken,
) {
    loop {
        let next = tokio::select! {
            () = stop.cancelled() => return,
            m = stream.next_message() => m,
        };
        let Some(Ok(bytes)) = next else { return };
        let names = super::task_ids::Names::new(
            front.task_tagger(),
            session.endpoint.is_aggregated(),
            upstream,
            &session.subject,
        );
        let bytes = super::task_ids::expose_message(bytes, &names);
        let Ok(msg) = Message::parse(&bytes) else {
            continue;
        };
        match msg.kind() {
            // Hawser's own discovery follows list changes and announces them itself.
            Kind::Notification if msg.method().ends_with("/list_changed") => {}
            // Of a resource the stream's caller may no longer see: not relayed.
            Kind::Notification
                if msg.method() == UPDATED
                    && !session.hears(&front.policy).update(upstream.name(), &bytes) => {}
            Kind::Notification => {
                session.push(sse::event(&bytes));
            }
            Kind::Request => {
                let id = msg.id.map(Id::from_raw).unwrap_or_else(|| Id::string(""));
                if let Some((rewritten, _)) = front.relay.register(
                    session,
                    upstream,
                    upstream_session,
                    id,
                    &bytes,
                    &tracing::Span::none(),
                ) {
                    session.push(sse::event(&rewritten));
                }
            }
            Kind::Response => {}
        }
    }
}
