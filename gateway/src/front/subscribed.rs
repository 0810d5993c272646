//! A legacy client's `resources/subscribe` to a resource of a 2026-07-28-only
//! upstream, which has no such method: Hawser watches the resource at the upstream
//! (a `subscriptions/listen` stream, [`super::watch`]) and relays its updates to the
//! client's GET stream, until `resources/unsubscribe`, the end of the session or of
//! the stream. Its subscriptions to other upstreams go upstream as they are and are
//! only recorded ([`remember`]), to be sent again to a new upstream session.
//!
//! The subscribe may reach any replica, and the GET stream may be open on another
//! one (or re-opened on a third, started since): the subscription is kept with the
//! session in the store, replicas holding the session hear of the change on the
//! replica bus, and the one holding the GET stream watches.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::bridged::{MAX_PER_SESSION, MAX_URI_BYTES, lock};
use super::error::{Error, Result};
use super::reply::{self, Reply};
use super::session::ClientSession;
use super::state::Front;
use super::watch::WatchError;
use crate::crypto::IdHash;
use crate::jsonrpc::{self, Id};
use crate::sse;
use crate::store::{BusMessage, ResourceSubscription};
use crate::upstream::Upstream;

/// Whether `resources/subscribe` and `unsubscribe` to `upstream` are bridged for a
/// client of this session: a legacy client, an upstream that speaks only 2026-07-28.
pub fn bridged(session: &ClientSession, upstream: &Upstream) -> bool {
    !session.is_modern()
        && upstream.era_for(crate::revision::Era::Legacy) == crate::revision::Era::Modern
}

/// `resources/subscribe` (`subscribed`) or `resources/unsubscribe` of `uri`, already
/// routed to `upstream` and allowed by policy.
pub async fn handle(
    front: &Front,
    session: &Arc<ClientSession>,
    upstream: &Arc<Upstream>,
    uri: String,
    subscribed: bool,
    id: &Id,
) -> Result<Reply> {
    if subscribed {
        super::watch::watchable(upstream)
            .map_err(|e| Error::InvalidParams(format!("cannot subscribe to {uri:?}: {e}")))?;
        if uri.len() > MAX_URI_BYTES || uri.contains('\0') {
            return Err(Error::InvalidParams(format!(
                "cannot subscribe to this resource: its URI must be at most {MAX_URI_BYTES} bytes, without NUL"
            )));
        }
    }
    let resource = ResourceSubscription {
        connection: upstream.name().to_owned(),
        uri,
    };
    if !keep(front, session, &resource, subscribed)
        .await
        .map_err(Error::Store)?
    {
        return Err(Error::InvalidParams(format!(
            "at most {MAX_PER_SESSION} resource subscriptions per session"
        )));
    }
    // This replica acts now; the others holding the session when they hear of it
    // (this one again, harmlessly).
    apply(front, session.id_hash, resource, subscribed);
    Ok(reply::json(jsonrpc::result(id.json(), "{}")))
}

/// Records a legacy client's `resources/subscribe` or `unsubscribe` of `uri` at a
/// legacy `upstream` (already forwarded as it is), so that an upstream session
/// opened for the client later (a new revision of the connection, or an upstream
/// that forgot the old one) is subscribed again. What cannot be kept (the store
/// away, more than [`MAX_PER_SESSION`], a URI too long) still holds on the upstream
/// session it was sent on, only it is not renewed.
pub async fn remember(
    front: &Front,
    session: &Arc<ClientSession>,
    upstream: &Upstream,
    uri: &str,
    subscribed: bool,
) {
    if subscribed && (uri.len() > MAX_URI_BYTES || uri.contains('\0')) {
        return;
    }
    let resource = ResourceSubscription {
        connection: upstream.name().to_owned(),
        uri: uri.to_owned(),
    };
    match keep(front, session, &resource, subscribed).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!(session = %session.handle, "resource subscription not kept: the session holds as many as it may")
        }
        Err(error) => {
            tracing::warn!(session = %session.handle, %error, "cannot keep a resource subscription with the session")
        }
    }
}

/// Ends every record of `uri` of a legacy client's session (an unsubscribe of a
/// resource no longer served, or hidden since): it is not renewed, nor relayed.
pub async fn forget(front: &Front, session: &Arc<ClientSession>, uri: &str) {
    if session.is_modern() {
        return;
    }
    for resource in session.resource_subscriptions() {
        if resource.uri != uri {
            continue;
        }
        if let Err(error) = keep(front, session, &resource, false).await {
            tracing::warn!(session = %session.handle, %error, "cannot end a resource subscription kept with the session");
        }
        apply(front, session.id_hash, resource, false);
    }
}

/// Keeps a subscription change with the session in the store and tells the other
/// replicas; `false` when the session already holds [`MAX_PER_SESSION`] others.
async fn keep(
    front: &Front,
    session: &Arc<ClientSession>,
    resource: &ResourceSubscription,
    subscribed: bool,
) -> std::result::Result<bool, crate::store::Error> {
    let room = front
        .sessions
        .set_resource_subscription(session, resource, subscribed, MAX_PER_SESSION)
        .await?;
    if !room {
        return Ok(false);
    }
    let message = BusMessage::ResourceSubscription {
        session: session.id_hash,
        connection: resource.connection.clone(),
        uri: resource.uri.clone(),
        subscribed,
    };
    if let Err(error) = front.store.publish(None, &message).await {
        tracing::warn!(session = %session.handle, %error, "cannot tell other replicas of a resource subscription");
    }
    Ok(true)
}

/// A subscription change heard on the bus. A replica that does not hold the session
/// now learns of it from the store when it next loads the session.
pub fn receive(front: &Front, session: IdHash, connection: String, uri: String, subscribed: bool) {
    let resource = ResourceSubscription { connection, uri };
    if let Some(s) = front.sessions.local_session(&session) {
        s.note_resource_subscription(&resource, subscribed);
    }
    apply(front, session, resource, subscribed);
}

/// Starts or stops relaying one subscription, if this replica holds the session's
/// GET stream.
fn apply(front: &Front, session: IdHash, resource: ResourceSubscription, subscribed: bool) {
    let subscriptions = &front.listeners.watches.sessions;
    let key = (session, resource);
    if !subscribed {
        if let Some(stop) = lock(&subscriptions.relaying).remove(&key) {
            stop.cancel();
        }
        return;
    }
    if let Some(s) = front.sessions.local_session(&session)
        && s.has_stream()
    {
        start(front, &s, key.1);
    }
}

/// Relays every subscription of `session` to its GET stream (just opened here). The
/// newest stream takes the relays over: those of an older one (a client that
/// reconnected before the old stream was seen closed) would end with it.
pub fn follow(front: &Front, session: &Arc<ClientSession>) {
    lock(&front.listeners.watches.sessions.relaying).retain(|(id, _), stop| {
        if *id == session.id_hash {
            stop.cancel();
            return false;
        }
        true
    });
    for resource in session.resource_subscriptions() {
        start(front, session, resource);
    }
}

/// Relays the updates of one resource to the session's newest GET stream, until it
/// closes or the client unsubscribes.
fn start(front: &Front, session: &Arc<ClientSession>, resource: ResourceSubscription) {
    let stop = session.stream_stop().child_token();
    {
        let mut relaying = lock(&front.listeners.watches.sessions.relaying);
        let key = (session.id_hash, resource.clone());
        if relaying.get(&key).is_some_and(|t| !t.is_cancelled()) {
            return;
        }
        relaying.retain(|_, t| !t.is_cancelled());
        relaying.insert(key, stop.clone());
    }
    let registry = front.registry.clone();
    let listeners = front.listeners.clone();
    let policy = front.policy.clone();
    // Anonymous callers (client authentication off) are all one: not counted.
    let counted = session
        .stream_caller()
        .is_none_or(|c| c.method != crate::identity::AuthMethod::None);
    let session = session.clone();
    tokio::spawn(async move {
        let ResourceSubscription { connection, uri } = resource;
        // Only subscriptions at 2026-07-28-only upstreams are watched here; the
        // others are the upstream's to announce on the client's session.
        let Some(upstream) = registry
            .upstream(&connection)
            .filter(|u| bridged(&session, u))
        else {
            stop.cancel();
            return;
        };
        let watch = tokio::select! {
            () = stop.cancelled() => return,
            w = listeners.watches.watch(&registry, &upstream, &session.subject, &uri, counted) => w,
        };
        let watch = match watch {
            Ok(w) => w,
            Err(error) => {
                let error: &dyn std::fmt::Display = match &error {
                    WatchError::Upstream(e) => e,
                    e => e,
                };
                tracing::warn!(session = %session.handle, %connection, %uri, %error, "cannot watch a subscribed resource");
                // A later subscribe or GET stream tries again.
                stop.cancel();
                return;
            }
        };
        let params = format!(r#"{{"uri":{}}}"#, jsonrpc::raw_string(&uri).get());
        let note = sse::event(&jsonrpc::notification(
            "notifications/resources/updated",
            Some(&params),
        ));
        let mut updates = watch.updates();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                update = updates.recv() => match update {
                    Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Of a resource the stream's caller may no longer see: not relayed.
                        if session.hears(&policy).resource(&connection, &uri) {
                            session.push(note.clone());
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
}
