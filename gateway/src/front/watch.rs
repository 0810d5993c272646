//! Resource subscriptions Hawser holds towards upstreams for its clients: one per
//! (connection, whose token, URI) on this replica, shared by every client here that
//! asked for that resource, and ended when the last of them goes.
//!
//! Towards a legacy upstream a watch is an upstream session of its own that
//! subscribed with `resources/subscribe` (its GET stream carries the updates; ending
//! the session ends the subscription); towards a 2026-07-28 upstream it is a
//! `subscriptions/listen` stream asking for the URI. Every replica that has a client
//! interested in a resource holds its own watch, so the upstream tells each of them
//! directly and no update has to cross the replica bus.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::jsonrpc::{Message, RawParams};
use crate::registry::Registry;
use crate::revision::Era;
use crate::store::UpstreamSession;
use crate::upstream::streamable::EventStream;
use crate::upstream::{ClientInit, Upstream, UpstreamError};

/// Watches one replica holds at most (each is an upstream session or stream).
const MAX_WATCHES: usize = 1024;
/// Handles on watches one caller (subject) holds at most on one replica: one per
/// resource of each listen stream and per bridged subscription relayed here. A
/// quarter of [`MAX_WATCHES`], so that one caller cannot take them all.
pub(super) const MAX_PER_CALLER: usize = MAX_WATCHES / 4;
/// Longest wait before re-establishing a watch whose upstream stream ended.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The notification of a resource's update.
pub(super) const UPDATED: &str = "notifications/resources/updated";

/// Why a resource cannot be watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("connection {connection:?} cannot deliver resource updates: {reason}")]
    Unsupported {
        connection: String,
        reason: &'static str,
    },
    #[error("this replica already watches {MAX_WATCHES} resources")]
    TooMany,
    #[error("this caller already subscribes to {MAX_PER_CALLER} resources on this replica")]
    TooManyForCaller,
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    connection: String,
    /// Whose upstream token the watch uses (connections with per-user tokens).
    owner: Option<String>,
    uri: String,
}

/// One resource watched upstream; dropping the last handle ends it.
pub struct Watch {
    updates: broadcast::Sender<()>,
    stop: CancellationToken,
}

impl Watch {
    /// Fires once per update of the resource.
    pub fn updates(&self) -> broadcast::Receiver<()> {
        self.updates.subscribe()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A caller's handle on a watch, counted against its share while it is held.
pub struct Held {
    watch: Arc<Watch>,
    _seat: Option<Seat>,
}

impl Held {
    /// Fires once per update of the resource.
    pub fn updates(&self) -> broadcast::Receiver<()> {
        self.watch.updates()
    }
}

/// The watches each caller holds handles on, by subject, with how many handles.
type Seats = Arc<Mutex<HashMap<String, HashMap<Key, usize>>>>;

/// One handle of a caller on a watch; given back when dropped.
struct Seat {
    seats: Seats,
    subject: String,
    key: Key,
}

impl Seat {
    /// A handle for `subject` on the watch `key`: refused when that would be more
    /// than [`MAX_PER_CALLER`] distinct watches (more handles on one it holds are not).
    fn take(seats: &Seats, subject: &str, key: &Key) -> Result<Self, WatchError> {
        let mut held = seats.lock().unwrap_or_else(|p| p.into_inner());
        let watches = held.entry(subject.to_owned()).or_default();
        if !watches.contains_key(key) && watches.len() >= MAX_PER_CALLER {
            return Err(WatchError::TooManyForCaller);
        }
        *watches.entry(key.clone()).or_default() += 1;
        Ok(Self {
            seats: seats.clone(),
            subject: subject.to_owned(),
            key: key.clone(),
        })
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let mut held = self.seats.lock().unwrap_or_else(|p| p.into_inner());
        let Some(watches) = held.get_mut(&self.subject) else {
            return;
        };
        if let Some(n) = watches.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                watches.remove(&self.key);
            }
        }
        if watches.is_empty() {
            held.remove(&self.subject);
        }
    }
}

/// The watches of this replica.
#[derive(Default)]
pub struct Watches {
    open: Mutex<HashMap<Key, Weak<Watch>>>,
    /// How many handles each caller holds.
    seats: Seats,
    /// Legacy sessions' subscriptions bridged to 2026-07-28 upstreams.
    pub(super) sessions: super::bridged::Subscribed,
}

impl Watches {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Weak<Watch>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A handle for `subject` on the watch of `uri` at `upstream`, established first
    /// when this replica has none (so that a refusal reaches the client asking).
    /// `counted`: the handle counts against the caller's share ([`MAX_PER_CALLER`]);
    /// not for anonymous callers (client authentication off), who are all one.
    pub async fn watch(
        &self,
        registry: &Arc<Registry>,
        upstream: &Arc<Upstream>,
        subject: &str,
        uri: &str,
        counted: bool,
    ) -> Result<Held, WatchError> {
        let key = Key {
            connection: upstream.name().to_owned(),
            owner: upstream.per_user_tokens().then(|| subject.to_owned()),
            uri: uri.to_owned(),
        };
        let seat = counted
            .then(|| Seat::take(&self.seats, subject, &key))
            .transpose()?;
        let watch = self.shared(registry, upstream, key).await?;
        Ok(Held { watch, _seat: seat })
    }

    async fn shared(
        &self,
        registry: &Arc<Registry>,
        upstream: &Arc<Upstream>,
        key: Key,
    ) -> Result<Arc<Watch>, WatchError> {
        {
            let mut open = self.lock();
            if let Some(watch) = open.get(&key).and_then(Weak::upgrade) {
                return Ok(watch);
            }
            open.retain(|_, w| w.strong_count() > 0);
            if open.len() >= MAX_WATCHES {
                return Err(WatchError::TooMany);
            }
        }
        watchable(upstream)?;
        let established = establish(upstream, &key).await?;
        let (updates, _) = broadcast::channel(16);
        let watch = Arc::new(Watch {
            updates: updates.clone(),
            stop: CancellationToken::new(),
        });
        tokio::spawn(run(
            registry.clone(),
            key.clone(),
            established,
            updates,
            watch.stop.clone(),
        ));
        let mut open = self.lock();
        // Another client may have established the same watch meanwhile: both work,
        // the newer one is shared from now on.
        open.insert(key, Arc::downgrade(&watch));
        Ok(watch)
    }

    /// Watches established on this replica and still wanted (metrics, tests).
    pub fn len(&self) -> usize {
        self.lock()
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Refuses upstreams that cannot send resource updates to Hawser.
pub(super) fn watchable(upstream: &Upstream) -> Result<(), WatchError> {
    let unsupported = |reason| WatchError::Unsupported {
        connection: upstream.name().to_owned(),
        reason,
    };
    if upstream.is_shared() {
        // stdio and legacy SSE upstreams' own messages are not relayed.
        return Err(unsupported(
            "its transport (stdio or legacy SSE) does not relay updates",
        ));
    }
    let subscribes = upstream.catalog().is_some_and(|c| {
        c.capabilities
            .resources
            .as_ref()
            .and_then(|r| r.subscribe)
            .unwrap_or(false)
    });
    if !subscribes {
        return Err(unsupported("the upstream offers no resource subscriptions"));
    }
    Ok(())
}

/// A watch as established upstream: the stream updates arrive on, and the upstream
/// session to end with it (legacy upstreams).
struct Established {
    stream: EventStream,
    session: Option<UpstreamSession>,
    upstream: Arc<Upstream>,
}

impl Drop for Established {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.upstream.close_session(session);
        }
    }
}

async fn establish(upstream: &Arc<Upstream>, key: &Key) -> Result<Established, UpstreamError> {
    let uri = serde_json::to_string(&key.uri).unwrap_or_default();
    if upstream.era_for(Era::Modern) == Era::Modern {
        let session = upstream.stateless_session(key.owner.as_deref());
        let filter = format!(r#"{{"notifications":{{"resourceSubscriptions":[{uri}]}}}}"#);
        let mut stream = upstream
            .listen_for(&session, &filter)
            .await?
            .ok_or_else(|| UpstreamError::Protocol("resource subscription refused".into()))?;
        // The acknowledgement says whether the upstream took the URI.
        let timeout = upstream.config().connect_timeout;
        let ack = tokio::time::timeout(timeout, stream.next_message())
            .await
            .map_err(|_| UpstreamError::Timeout(timeout))?
            .ok_or(UpstreamError::Closed)??;
        if !acknowledged(&ack, &key.uri) {
            return Err(UpstreamError::Protocol(format!(
                "the upstream did not accept a subscription to {}",
                key.uri
            )));
        }
        return Ok(Established {
            stream,
            session: None,
            upstream: upstream.clone(),
        });
    }
    let session = upstream
        .open_session(&ClientInit::default(), key.owner.as_deref())
        .await?;
    // The GET stream first, so that no update sent right after subscribing is missed.
    let stream = match upstream.listen(&session).await {
        Ok(Some(stream)) => stream,
        Ok(None) => {
            upstream.close_session(session);
            return Err(UpstreamError::Protocol(
                "the upstream offers no GET stream".into(),
            ));
        }
        Err(error) => {
            upstream.close_session(session);
            return Err(error);
        }
    };
    // From here the session (and its subscription) ends with `established`.
    let established = Established {
        stream,
        session: Some(session.clone()),
        upstream: upstream.clone(),
    };
    let params = format!(r#"{{"uri":{uri}}}"#);
    let timeout = upstream.config().call_timeout;
    upstream
        .request(&session, "resources/subscribe", Some(&params), timeout)
        .await?;
    Ok(established)
}

/// Whether a 2026-07-28 acknowledgement lists `uri` among its resource subscriptions.
fn acknowledged(ack: &[u8], uri: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Ack {
        params: AckParams,
    }
    #[derive(serde::Deserialize)]
    struct AckParams {
        notifications: Accepted,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Accepted {
        #[serde(default)]
        resource_subscriptions: Vec<String>,
    }
    serde_json::from_slice::<Ack>(ack).is_ok_and(|a| {
        a.params
            .notifications
            .resource_subscriptions
            .iter()
            .any(|u| u == uri)
    })
}

/// Whether an upstream message is an update of `uri`.
fn is_update(bytes: &[u8], uri: &str) -> bool {
    let Ok(msg) = Message::parse(bytes) else {
        return false;
    };
    msg.method() == UPDATED
        && RawParams::parse(msg.params)
            .ok()
            .and_then(|p| p.0.get_str("uri"))
            .is_some_and(|u| u == uri)
}

/// Relays the watch's updates until it is no longer wanted, establishing it again
/// (with the connection's current upstream) whenever its upstream stream ends.
async fn run(
    registry: Arc<Registry>,
    key: Key,
    first: Established,
    updates: broadcast::Sender<()>,
    stop: CancellationToken,
) {
    let mut current = Some(first);
    let mut backoff = Duration::from_millis(250);
    loop {
        if let Some(mut established) = current.take() {
            loop {
                let next = tokio::select! {
                    () = stop.cancelled() => return,
                    m = established.stream.next_message() => m,
                };
                match next {
                    Some(Ok(bytes)) => {
                        if is_update(&bytes, &key.uri) {
                            let _ = updates.send(());
                        }
                    }
                    Some(Err(_)) | None => break,
                }
            }
            tracing::debug!(connection = %key.connection, uri = %key.uri, "resource watch ended upstream; re-establishing");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        let Some(upstream) = registry.upstream(&key.connection) else {
            continue;
        };
        match establish(&upstream, &key).await {
            Ok(established) => {
                backoff = Duration::from_millis(250);
                current = Some(established);
            }
            Err(error) => {
                tracing::debug!(connection = %key.connection, uri = %key.uri, %error, "cannot re-establish a resource watch");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_caller_holds_at_most_its_share_of_watches() {
        let key = |uri: String| Key {
            connection: "fx".into(),
            owner: None,
            uri,
        };
        let seats = Seats::default();
        let take = |subject: &str, uri: String| Seat::take(&seats, subject, &key(uri));
        let mut mallory: Vec<Seat> = (0..MAX_PER_CALLER)
            .map(|i| take("mallory", format!("test://{i}")).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        assert!(matches!(
            take("mallory", "test://more".into()),
            Err(WatchError::TooManyForCaller)
        ));
        // More handles on a watch she holds cost nothing (many clients of one
        // service account, a stream opened again).
        let again: Vec<Seat> = (0..10)
            .map(|_| take("mallory", "test://0".into()).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        // Others are not held back by her, even on the same resources.
        let alice = take("alice", "test://more".into());
        assert!(alice.is_ok());
        // A watch let go makes room again, and nothing is left once all are.
        mallory.pop();
        assert!(take("mallory", "test://more".into()).is_ok());
        drop(again);
        mallory.clear();
        drop(alice);
        assert!(seats.lock().unwrap_or_else(|p| p.into_inner()).is_empty());
    }

    #[test]
    fn updates_are_matched_by_uri() {
        let update = br#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"test://a"}}"#;
        assert!(is_update(update, "test://a"));
        assert!(!is_update(update, "test://b"));
        let other = br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
        assert!(!is_update(other, "test://a"));
    }

    #[test]
    fn acknowledgements_name_the_uris_taken() {
        let ack = br#"{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{"notifications":{"resourceSubscriptions":["test://a"]}}}"#;
        assert!(acknowledged(ack, "test://a"));
        assert!(!acknowledged(ack, "test://b"));
        let none = br#"{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{"notifications":{}}}"#;
        assert!(!acknowledged(none, "test://a"));
    }
}
