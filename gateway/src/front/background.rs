//! Background work of the front: tells sessions about list changes, acts on what
//! other replicas send, forgets sessions ended elsewhere, records session use in
//! batches and ends idle sessions.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::bus;
use super::state::Front;
use crate::jsonrpc;
use crate::store::StoreEvent;
use crate::view::ListKind;

/// Starts the front's background tasks; they stop with `shutdown`.
pub fn spawn(front: Arc<Front>, shutdown: CancellationToken) {
    tokio::spawn(follow_events(front.clone(), shutdown.clone()));
    tokio::spawn(sweep_sessions(front, shutdown));
}

async fn follow_events(front: Arc<Front>, stop: CancellationToken) {
    let mut changes = front.registry.subscribe();
    let mut events = front.store.subscribe();
    let mut policies = front.policy.watch();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            p = policies.changed() => {
                if p.is_err() {
                    return;
                }
                // What each caller may see changed: listen streams hear of it when
                // their caller's lists did; sessions are told to list again.
                front.listeners.announce(&front.registry.view(), &front.policy, None);
                for session in front.sessions.local() {
                    for kind in notifications(&ListKind::ALL) {
                        session.push(crate::sse::event(&jsonrpc::notification(kind, None)));
                    }
                }
            }
            c = changes.recv() => match c {
                Ok(changes) => {
                    front.listeners.announce(&front.registry.view(), &front.policy, Some(&changes));
                    for session in front.sessions.local() {
                        for kind in notifications(changes.for_endpoint(&session.endpoint)) {
                            let note = jsonrpc::notification(kind, None);
                            session.push(crate::sse::event(&note));
                        }
                    }
                }
                Err(RecvError::Closed) => return,
                Err(RecvError::Lagged(_)) => {}
            },
            e = events.recv() => match e {
                Ok(StoreEvent::SessionEnded { id_hash }) => {
                    front.sessions.forget(&id_hash);
                    front.listeners.watches.sessions.forget(&id_hash);
                }
                Ok(StoreEvent::Bus(message)) => bus::receive(&front, message).await,
                Ok(StoreEvent::Resync) | Err(RecvError::Lagged(_)) => revalidate(&front).await,
                Ok(_) => {}
                Err(RecvError::Closed) => return,
            },
        }
    }
}

/// The list-changed notifications for `kinds`, each once.
fn notifications(kinds: &[ListKind]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = kinds.iter().map(|k| k.changed_notification()).collect();
    out.dedup();
    out
}

async fn sweep_sessions(front: Arc<Front>, shutdown: CancellationToken) {
    // Use is recorded at least four times per idle timeout, so a session in use is
    // never swept; at most once a minute, so recording stays cheap.
    let period =
        (front.session_idle_timeout / 4).clamp(Duration::from_millis(250), Duration::from_secs(60));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let abandoned = front.bridge.sweep();
        if abandoned > 0 {
            tracing::info!(
                count = abandoned,
                "ended bridged calls whose client never retried"
            );
        }
        let pooled = front.sessions.pool.sweep(&front.registry);
        if pooled > 0 {
            tracing::debug!(count = pooled, "closed idle pooled upstream sessions");
        }
        let used = front.sessions.take_used();
        if let Err(error) = front.store.touch_sessions(&used).await {
            tracing::warn!(%error, "cannot record session use");
        }
        end_idle_sessions(&front).await;
    }
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
        front.listeners.watches.sessions.forget(&record.id_hash);
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
