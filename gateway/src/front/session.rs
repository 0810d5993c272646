//! Client sessions: issued here, valid on every replica (the record is in the store),
//! bound to the caller's identity, read from a local cache on the hot path.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::pool::Pool;
use super::watch::UPDATED;
use super::wire::Modern;
use crate::crypto::IdHash;
use crate::endpoint::Endpoint;
use crate::identity::Identity;
use crate::jsonrpc::{Id, Message};
use crate::policy::{self, Policies};
use crate::registry::Registry;
use crate::revision::{self, Envelope, Era};
use crate::store::{
    self, BusMessage, Health, ResourceSubscription, SessionRecord, Store, UpstreamSession,
};
use crate::upstream::{ClientInit, Upstream, UpstreamError};

/// A new unguessable session id (256 random bits).
fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whom resource updates are relayed to, to ask the policies at each one: an update
/// of a resource hidden from the caller (since it subscribed) is not heard of.
pub struct Hears {
    pub policy: Arc<Policies>,
    pub caller: Option<Arc<Identity>>,
}

impl Hears {
    /// Whether the caller may hear of resource `uri` at `connection`.
    pub fn resource(&self, connection: &str, uri: &str) -> bool {
        self.caller.as_ref().is_some_and(|caller| {
            self.policy
                .visible(caller, connection, policy::Kind::Resource, uri)
        })
    }

    /// Whether the caller may hear `notification` from `connection`: not an update of
    /// a resource it cannot see, or of none named.
    pub fn update(&self, connection: &str, notification: &[u8]) -> bool {
        let Ok(msg) = Message::parse(notification) else {
            return true;
        };
        msg.method() != UPDATED
            || msg
                .members()
                .ok()
                .and_then(|p| p.get_str("uri"))
                .is_some_and(|uri| self.resource(connection, &uri))
    }
}

/// One client session as this replica holds it.
pub struct ClientSession {
    /// SHA-256 of the session id: the key everywhere, so the id itself is never stored.
    pub id_hash: IdHash,
    /// A short, non-secret handle for logs and audit (hash prefix).
    pub handle: String,
    pub subject: String,
    pub endpoint: Endpoint,
    pub init: ClientInit,
    pub log_level: Mutex<Option<String>>,
    upstreams: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<UpstreamSession>>>>>,
    /// Resources subscribed to ([`super::subscribed`]): watched by Hawser at
    /// 2026-07-28-only upstreams, renewed on new upstream sessions at others.
    subscriptions: Mutex<BTreeSet<ResourceSubscription>>,
    /// Local GET streams (SSE frames); server-initiated messages go to the newest.
    streams: Mutex<Vec<mpsc::Sender<Bytes>>>,
    stream_stop: Mutex<Option<CancellationToken>>,
    /// Who opened the newest GET stream: what it hears of is what that caller may see.
    stream_caller: Mutex<Option<Arc<Identity>>>,

    /// Requests in flight on this replica, by client id, for cancellation.
    inflight: Mutex<HashMap<Id, CancellationToken>>,
    pub ended: CancellationToken,
    used: AtomicBool,
    /// A 2026-07-28 request's envelope: the "session" lives for that request only,
    /// has no id and is stored nowhere.
    pub modern: Option<Envelope>,
}

impl std::fmt::Debug for ClientSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSession")
            .field("handle", &self.handle)
            .field("subject", &self.subject)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl ClientSession {
    fn from_record(record: &SessionRecord) -> Self {
        let upstreams = record
            .upstreams
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    Arc::new(tokio::sync::Mutex::new(Some(v.clone()))),
                )
            })
            .collect();
        Self {
            id_hash: record.id_hash,
            handle: record.id_hash.handle(),
            subject: record.subject.clone(),
            endpoint: record.endpoint.clone(),
            init: ClientInit::new(
                record.protocol_version.clone(),
                record.client_capabilities.clone(),
                record.client_info.clone(),
            ),
            log_level: Mutex::new(record.log_level.clone()),
            upstreams: Mutex::new(upstreams),
            subscriptions: Mutex::new(record.resource_subscriptions.clone()),
            streams: Mutex::new(Vec::new()),
            stream_stop: Mutex::new(None),
            stream_caller: Mutex::new(None),
            inflight: Mutex::new(HashMap::new()),
            ended: CancellationToken::new(),
            used: AtomicBool::new(true),
            modern: None,
        }
    }

    /// The stand-in session of one 2026-07-28 request: what the request says about its
    /// client, bound to the caller, never stored.
    pub fn ephemeral(identity: &Identity, endpoint: &Endpoint, modern: Modern) -> Arc<Self> {
        let bytes: [u8; 32] = rand::random();
        let id_hash = IdHash::from_bytes(&bytes).unwrap_or_else(|| IdHash::of("ephemeral"));
        let Modern { envelope, declared } = modern;
        Arc::new(Self {
            id_hash,
            handle: "-".to_owned(),
            subject: identity.subject.clone(),
            endpoint: endpoint.clone(),
            init: ClientInit::declared(
                revision::MODERN.to_owned(),
                envelope.capabilities.clone(),
                envelope.client_info.clone(),
                declared,
            ),
            log_level: Mutex::new(envelope.log_level.clone()),
            upstreams: Mutex::new(HashMap::new()),
            subscriptions: Mutex::new(BTreeSet::new()),
            streams: Mutex::new(Vec::new()),
            stream_stop: Mutex::new(None),
            stream_caller: Mutex::new(None),
            inflight: Mutex::new(HashMap::new()),
            ended: CancellationToken::new(),
            used: AtomicBool::new(false),
            modern: Some(envelope),
        })
    }

    /// Whether this stands for one 2026-07-28 request.
    pub fn is_modern(&self) -> bool {
        self.modern.is_some()
    }

    /// The era the client speaks.
    pub fn era(&self) -> Era {
        if self.is_modern() {
            Era::Modern
        } else {
            Era::Legacy
        }
    }

    /// The envelope a 2026-07-28 upstream gets for this client's requests.
    pub fn envelope(&self) -> Envelope {
        if let Some(envelope) = &self.modern {
            return envelope.clone();
        }
        Envelope {
            protocol_version: Some(revision::MODERN.to_owned()),
            capabilities: self.init.capabilities.clone(),
            client_info: self.init.client_info.clone(),
            log_level: lock(&self.log_level).clone(),
            meta_others: false,
        }
    }

    /// Whether the client declared `capability` (e.g. `elicitation`) in initialize.
    pub fn supports(&self, capability: &str) -> bool {
        self.init.declared.has(capability)
    }

    /// Registers a request in flight; the guard unregisters it.
    pub fn track(self: &Arc<Self>, id: Id) -> Inflight {
        let token = self.ended.child_token();
        lock(&self.inflight).insert(id.clone(), token.clone());
        Inflight {
            session: self.clone(),
            id,
            token,
        }
    }

    /// Cancels a request in flight on this replica; whether it was found.
    pub fn cancel(&self, id: &Id) -> bool {
        match lock(&self.inflight).remove(id) {
            Some(t) => {
                t.cancel();
                true
            }
            None => false,
        }
    }

    /// Adds a GET stream `caller` opened; `stop` fires when it closes.
    pub fn add_stream(
        &self,
        tx: mpsc::Sender<Bytes>,
        stop: CancellationToken,
        caller: Arc<Identity>,
    ) {
        let mut streams = lock(&self.streams);
        streams.retain(|s| !s.is_closed());
        streams.push(tx);
        *lock(&self.stream_stop) = Some(stop);
        *lock(&self.stream_caller) = Some(caller);
    }

    /// Who opened the newest GET stream, if one was opened here.
    pub fn stream_caller(&self) -> Option<Arc<Identity>> {
        lock(&self.stream_caller).clone()
    }

    /// What the newest GET stream may hear of: what its caller may see (a policy may
    /// have hidden a resource since it was subscribed to).
    pub fn hears(&self, policy: &Arc<Policies>) -> Hears {
        Hears {
            policy: policy.clone(),
            caller: self.stream_caller(),
        }
    }

    /// Fires when the newest GET stream closes.
    pub fn stream_stop(&self) -> CancellationToken {
        lock(&self.stream_stop)
            .clone()
            .unwrap_or_else(|| self.ended.child_token())
    }

    pub fn has_stream(&self) -> bool {
        lock(&self.streams).iter().any(|s| !s.is_closed())
    }

    /// Sends an SSE frame on the newest open GET stream; whether one took it.
    pub fn push(&self, frame: Bytes) -> bool {
        let mut streams = lock(&self.streams);
        streams.retain(|s| !s.is_closed());
        for s in streams.iter().rev() {
            if s.try_send(frame.clone()).is_ok() {
                return true;
            }
        }
        false
    }

    /// The resources this session subscribed to: at 2026-07-28-only upstreams
    /// (bridged: Hawser watches them), and at others (sent again to an upstream
    /// session opened later).
    pub fn resource_subscriptions(&self) -> Vec<ResourceSubscription> {
        lock(&self.subscriptions).iter().cloned().collect()
    }

    /// Notes a change of the session's resource subscriptions made here or elsewhere.
    pub fn note_resource_subscription(&self, resource: &ResourceSubscription, subscribed: bool) {
        let mut held = lock(&self.subscriptions);
        if subscribed {
            held.insert(resource.clone());
        } else {
            held.remove(resource);
        }
    }

    /// Upstream sessions known to this replica.
    pub fn upstream_sessions(&self) -> Vec<(String, UpstreamSession)> {
        self.upstream_slots()
            .into_iter()
            .filter_map(|(k, v)| v.try_lock().ok().and_then(|g| g.clone()).map(|s| (k, s)))
            .collect()
    }

    /// The slot of each connection's upstream session on this replica (empty while
    /// none is open, locked while one is being opened).
    pub fn upstream_slots(
        &self,
    ) -> Vec<(String, Arc<tokio::sync::Mutex<Option<UpstreamSession>>>)> {
        lock(&self.upstreams)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Forgets this replica's copy of the upstream session to `connection`, so that the
    /// next use reads the one recorded in the store (another replica replaced it).
    pub async fn forget_local_upstream_session(&self, connection: &str) {
        let slot = self.slot(connection);
        *slot.lock().await = None;
    }

    fn slot(&self, connection: &str) -> Arc<tokio::sync::Mutex<Option<UpstreamSession>>> {
        let mut upstreams = lock(&self.upstreams);
        // Looked up before the name is copied: every call after a session's first finds it.
        if let Some(slot) = upstreams.get(connection) {
            return slot.clone();
        }
        upstreams.entry(connection.to_owned()).or_default().clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A request in flight; unregistered when dropped.
pub struct Inflight {
    session: Arc<ClientSession>,
    id: Id,
    pub token: CancellationToken,
}

impl Drop for Inflight {
    fn drop(&mut self) {
        lock(&self.session.inflight).remove(&self.id);
    }
}

/// Why a session lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Unknown, ended, or bound to someone else: the client must start over (404).
    #[error("session not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// Sessions this replica holds, by id (the hot path) and by id hash (events name
/// sessions by hash).
#[derive(Default)]
struct Cache {
    by_id: HashMap<Box<str>, Arc<ClientSession>>,
    ids: HashMap<IdHash, Box<str>>,
}

impl Cache {
    fn insert(&mut self, id: &str, session: Arc<ClientSession>) -> Arc<ClientSession> {
        let entry = self.by_id.entry(id.into()).or_insert(session).clone();
        self.ids.insert(entry.id_hash, id.into());
        entry
    }

    fn remove(&mut self, id_hash: &IdHash) -> Option<Arc<ClientSession>> {
        let id = self.ids.remove(id_hash)?;
        self.by_id.remove(&id)
    }

    fn get_by_hash(&self, id_hash: &IdHash) -> Option<&Arc<ClientSession>> {
        self.ids.get(id_hash).and_then(|id| self.by_id.get(id))
    }
}

/// Every session this replica has seen recently.
pub struct Sessions {
    store: Arc<dyn Store>,
    /// Store operations on a request's path go through it: fast failure when the
    /// store is away, never a wait longer than its budget.
    health: Arc<Health>,
    cache: RwLock<Cache>,
    /// Legacy upstream sessions borrowed by 2026-07-28 clients.
    pub pool: Arc<Pool>,
}

impl Sessions {
    pub fn new(
        store: Arc<dyn Store>,
        health: Arc<Health>,
        pool_idle: std::time::Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            health,
            cache: RwLock::new(Cache::default()),
            pool: Pool::new(pool_idle),
        })
    }

    /// Creates a session for `identity` on `endpoint`; returns its id.
    pub async fn create(
        &self,
        identity: &Identity,
        endpoint: &Endpoint,
        init: ClientInit,
    ) -> Result<(String, Arc<ClientSession>), store::Error> {
        let id = new_id();
        let record = SessionRecord {
            id_hash: IdHash::of(&id),
            subject: identity.subject.clone(),
            endpoint: endpoint.clone(),
            protocol_version: init.protocol_version.clone(),
            client_info: init.client_info.clone(),
            client_capabilities: init.capabilities.clone(),
            upstreams: Default::default(),
            log_level: None,
            resource_subscriptions: Default::default(),
        };
        self.health
            .within_budget(self.store.create_session(&record))
            .await?;
        let session = Arc::new(ClientSession::from_record(&record));
        let session = self.write_cache().insert(&id, session);
        Ok((id, session))
    }

    fn write_cache(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read_cache(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The live session `id` for `identity` on `endpoint`. The cache answers on the
    /// hot path; the store only the first time this replica sees the session.
    pub async fn get(
        &self,
        id: &str,
        identity: &Identity,
        endpoint: &Endpoint,
    ) -> Result<Arc<ClientSession>, SessionError> {
        let cached = self.read_cache().by_id.get(id).cloned();
        let session = match cached {
            Some(s) => s,
            None => {
                let key = IdHash::of(id);
                let record = self
                    .health
                    .within_budget(self.store.get_session(&key))
                    .await?
                    .ok_or(SessionError::NotFound)?;
                let fresh = Arc::new(ClientSession::from_record(&record));
                self.write_cache().insert(id, fresh)
            }
        };
        // Another identity presenting the id learns nothing: same answer as unknown.
        if session.subject != identity.subject
            || session.endpoint != *endpoint
            || session.ended.is_cancelled()
        {
            return Err(SessionError::NotFound);
        }
        session.used.store(true, Ordering::Relaxed);
        Ok(session)
    }

    /// Ends a session everywhere.
    pub async fn end(
        &self,
        session: &Arc<ClientSession>,
        registry: &Registry,
    ) -> Result<(), store::Error> {
        let ended = self
            .health
            .within_budget(self.store.end_session(&session.id_hash))
            .await?;
        self.forget(&session.id_hash);
        // The upstream sessions another replica opened for it are in the record only;
        // each is ended once, and only at the URL it lives at.
        let mut held: Vec<(String, UpstreamSession)> = ended
            .map(|r| r.upstreams.into_iter().collect())
            .unwrap_or_default();
        for (connection, local) in session.upstream_sessions() {
            if !held
                .iter()
                .any(|(c, h)| *c == connection && h.id == local.id)
            {
                held.push((connection, local));
            }
        }
        for (connection, upstream_session) in held {
            if let Some(upstream) = registry.upstream(&connection)
                && upstream_session.url == upstream.http_url()
            {
                upstream.close_session(upstream_session);
            }
        }
        Ok(())
    }

    /// Adds or removes a resource subscription of `session`, in the store
    /// first; `false` when the session already holds `max` others.
    pub async fn set_resource_subscription(
        &self,
        session: &ClientSession,
        resource: &ResourceSubscription,
        subscribed: bool,
        max: usize,
    ) -> Result<bool, store::Error> {
        let room = self
            .health
            .within_budget(self.store.set_resource_subscription(
                &session.id_hash,
                resource,
                subscribed,
                max,
            ))
            .await?;
        if room {
            session.note_resource_subscription(resource, subscribed);
        }
        Ok(room)
    }

    /// Keeps `level` as the log level of `session`, here and in the store, so that an
    /// upstream session opened for it later (on any replica) is told it.
    pub async fn set_log_level(
        &self,
        session: &ClientSession,
        level: &str,
    ) -> Result<(), store::Error> {
        *lock(&session.log_level) = Some(level.to_owned());
        self.health
            .within_budget(self.store.set_log_level(&session.id_hash, level))
            .await
    }

    /// Drops a session from this replica (it ended elsewhere).
    pub fn forget(&self, id_hash: &IdHash) {
        if let Some(s) = self.write_cache().remove(id_hash) {
            s.ended.cancel();
        }
    }

    /// A session held locally, if any.
    pub fn local_session(&self, id_hash: &IdHash) -> Option<Arc<ClientSession>> {
        self.read_cache().get_by_hash(id_hash).cloned()
    }

    /// Sessions held locally, for broadcasting list changes.
    pub fn local(&self) -> Vec<Arc<ClientSession>> {
        self.read_cache().by_id.values().cloned().collect()
    }

    /// Ids of sessions in use since the last call — a request arrived, a call is in
    /// flight or the client holds its GET stream — to refresh `last_seen_at` in
    /// batches; the others leave the cache (the store still has them).
    pub fn take_used(&self) -> Vec<IdHash> {
        let mut used = Vec::new();
        let mut idle = Vec::new();
        for s in self.read_cache().by_id.values() {
            let requested = s.used.swap(false, Ordering::Relaxed);
            if requested || s.has_stream() || !lock(&s.inflight).is_empty() {
                used.push(s.id_hash);
            } else {
                idle.push(s.id_hash);
            }
        }
        if !idle.is_empty() {
            let mut cache = self.write_cache();
            for k in idle {
                cache.remove(&k);
            }
        }
        used
    }

    /// The upstream session of `session` towards `upstream`: this replica's, else the
    /// one another replica recorded, else a new one (recorded for everyone; if another
    /// replica won the race, ours is closed and theirs used).
    pub async fn upstream_session(
        &self,
        session: &Arc<ClientSession>,
        upstream: &Arc<Upstream>,
    ) -> Result<UpstreamSession, UpstreamError> {
        // A 2026-07-28 upstream has no sessions; a 2026-07-28 client borrows one.
        if upstream.era_for(session.era()) == Era::Modern {
            return Ok(upstream.stateless_session(Some(session.subject.as_str())));
        }
        if let Some(envelope) = &session.modern
            && !upstream.is_shared()
        {
            return self
                .pool
                .get(upstream, &session.subject, envelope.client_info.as_deref())
                .await;
        }
        let slot = session.slot(upstream.name());
        let mut guard = slot.lock().await;
        if let Some(current) = guard.as_ref()
            && current.revision == upstream.revision()
        {
            return Ok(current.clone());
        }
        // The session of an older revision this one replaces, if any.
        let mut superseded = guard.clone();
        if upstream.is_shared() {
            let shared = upstream.open_session(&session.init, None).await?;
            *guard = Some(shared.clone());
            return Ok(shared);
        }
        // Another replica may have opened one already.
        let recorded = self
            .health
            .within_budget(self.store.get_session(&session.id_hash))
            .await;
        if let Ok(Some(record)) = &recorded
            && let Some(recorded) = record.upstreams.get(upstream.name())
        {
            if recorded.revision == upstream.revision() {
                *guard = Some(recorded.clone());
                return Ok(recorded.clone());
            }
            superseded = Some(recorded.clone());
        }
        let fresh = upstream
            .open_session(&session.init, Some(session.subject.as_str()))
            .await?;
        if recorded.is_err() {
            // The store is away: serve the call with an upstream session of this
            // replica's own, unrecorded (another replica may open a second one).
            tracing::warn!(session = %session.handle, connection = %upstream.name(), "store unreachable: upstream session not shared with other replicas");
            replay(session, upstream, &fresh, None).await;
            *guard = Some(fresh.clone());
            return Ok(fresh);
        }
        let winner = match self
            .health
            .within_budget(self.store.set_upstream_session(
                &session.id_hash,
                upstream.name(),
                &fresh,
            ))
            .await
        {
            Ok(winner) => winner,
            Err(error) => {
                tracing::warn!(session = %session.handle, connection = %upstream.name(), %error, "cannot record the upstream session; using it unshared");
                replay(session, upstream, &fresh, recorded.ok().flatten().as_ref()).await;
                *guard = Some(fresh.clone());
                return Ok(fresh);
            }
        };
        if winner != fresh {
            upstream.close_session(fresh);
        } else {
            replay(session, upstream, &winner, recorded.ok().flatten().as_ref()).await;
            // Ours replaced the old revision's session: end that one, if it lives at
            // the URL this revision uses (after a URL change it is another server's).
            if let Some(old) = superseded
                && old.id.is_some()
                && old.id != winner.id
                && old.url.is_some()
                && old.url == upstream.http_url()
            {
                upstream.close_session_after_calls(old);
            }
            // Whichever replica holds the client's GET stream follows this session's own stream.
            let note = BusMessage::UpstreamSession {
                session: session.id_hash,
                connection: upstream.name().to_owned(),
            };
            if let Err(error) = self.store.publish(None, &note).await {
                tracing::debug!(%error, "cannot announce a new upstream session");
            }
        }

        *guard = Some(winner.clone());
        Ok(winner)
    }

    /// Forgets an upstream session the upstream no longer knows (HTTP 404).
    pub async fn drop_upstream_session(
        &self,
        session: &Arc<ClientSession>,
        upstream: &Upstream,
        stale: &UpstreamSession,
    ) {
        if session.is_modern() {
            self.pool.forget(upstream, &session.subject, stale).await;
            return;
        }
        let slot = session.slot(upstream.name());
        let mut guard = slot.lock().await;
        if guard.as_ref() == Some(stale) {
            *guard = None;
        }
        if let Err(error) = self
            .health
            .within_budget(self.store.clear_upstream_session(
                &session.id_hash,
                upstream.name(),
                stale.id.as_deref(),
            ))
            .await
        {
            tracing::warn!(%error, "cannot clear expired upstream session");
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

/// Sends an upstream session just opened for `session` (its first, or one replacing
/// a session of an older revision or one the upstream forgot) what the client asked
/// of the upstream before: its log level and its subscriptions to this connection's
/// resources. Done before the session is handed out (at most [`REPLAY_FOR`]), so that
/// a request of the client's does not overtake it.
async fn replay(
    session: &ClientSession,
    upstream: &Arc<Upstream>,
    fresh: &UpstreamSession,
    record: Option<&SessionRecord>,
) {
    // The record was just read: what the client asked through other replicas since
    // this one loaded the session is in it.
    let (level, subscriptions) = match record {
        // (The local level is left as it is: it may have been set here since the
        // record was read, and a level set meanwhile is sent to this session after.)
        Some(record) => (
            record
                .log_level
                .clone()
                .or_else(|| lock(&session.log_level).clone()),
            record.resource_subscriptions.iter().cloned().collect(),
        ),
        None => (
            lock(&session.log_level).clone(),
            session.resource_subscriptions(),
        ),
    };
    let uris: Vec<String> = subscriptions
        .into_iter()
        .filter(|r| r.connection == upstream.name())
        .map(|r| r.uri)
        .collect();
    if level.is_none() && uris.is_empty() {
        return;
    }
    let timeout = upstream.config().call_timeout.min(REPLAY_FOR);
    let asks = level
        .map(|level| ("logging/setLevel", serde_json::json!({ "level": level })))
        .into_iter()
        .chain(
            uris.into_iter()
                .map(|uri| ("resources/subscribe", serde_json::json!({ "uri": uri }))),
        );
    let work = async {
        for (method, params) in asks {
            let params = params.to_string();
            if let Err(error) = upstream
                .request(fresh, method, Some(&params), timeout)
                .await
            {
                tracing::warn!(connection = %upstream.name(), method, %error, "cannot renew a client's request on a new upstream session");
            }
        }
    };
    if tokio::time::timeout(REPLAY_FOR, work).await.is_err() {
        tracing::warn!(connection = %upstream.name(), "renewing a client's subscriptions took too long; the rest are not renewed");
    }
}

/// The longest the call that opens an upstream session waits for [`replay`].
const REPLAY_FOR: std::time::Duration = std::time::Duration::from_secs(5);
