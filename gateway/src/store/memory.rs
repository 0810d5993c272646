//! The in-memory store of embedded mode: one replica, nothing outlives the process.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::{
    ApiKeyRecord, AuditEvent, BusMessage, ConnectionStatus, Lease, OAuthToken, PkceState,
    PutOutcome, Result, SessionRecord, SigningKeyRecord, Store, StoreEvent, StoreKind,
    StoredConnection, StoredPolicy, TokenHolder, TokenLock, UpstreamSession,
};
use crate::clock::Timestamp;
use crate::config::{ConnectionConfig, Source};
use crate::crypto::IdHash;

struct Row {
    source: Source,
    generation: Option<i64>,
    revision: i64,
    updated_at: Timestamp,
    spec: hawser_crds::McpConnectionSpec,
}

#[derive(Default)]
struct State {
    revision: i64,
    connections: BTreeMap<String, Row>,
    status: BTreeMap<(String, String), ConnectionStatus>,
    sessions: BTreeMap<IdHash, (SessionRecord, Instant)>,
    /// By (connection, subject).
    tokens: BTreeMap<(String, String), OAuthToken>,
    pkce: BTreeMap<IdHash, PkceState>,
    token_locks: BTreeMap<(String, String), Arc<tokio::sync::Mutex<()>>>,
    /// Consent links used, until they expire.
    consent_links: BTreeMap<IdHash, Timestamp>,
    api_keys: Vec<ApiKeyRecord>,
    console_revocations: Vec<super::ConsoleRevocation>,
    signing_keys: Vec<SigningKeyRecord>,
    policies: BTreeMap<String, StoredPolicy>,
    /// Rate-limit buckets: tokens and when they were last refilled.
    buckets: BTreeMap<String, (f64, Instant)>,
}

/// Embedded-mode store.
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<StoreEvent>,
}

/// The in-memory token lock: a per-connection mutex. Like the Postgres lock's
/// transaction, what is written under it becomes visible at `finish`, and a lock
/// dropped without `finish` changes nothing.
struct MemoryTokenLock {
    state: Arc<Mutex<State>>,
    key: (String, String),
    current: Option<OAuthToken>,
    /// What `finish` makes of the row (`None`: leave it as it was).
    staged: Option<Option<OAuthToken>>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

#[async_trait]
impl TokenLock for MemoryTokenLock {
    fn current(&self) -> Option<&OAuthToken> {
        self.current.as_ref()
    }

    async fn write(&mut self, token: &OAuthToken) -> Result<i64> {
        let version = self.current.as_ref().map(|t| t.version + 1).unwrap_or(1);
        let mut stored = token.clone();
        stored.version = version;
        stored.subject = self.key.1.clone();
        self.staged = Some(Some(stored.clone()));
        self.current = Some(stored);
        Ok(version)
    }

    async fn delete(&mut self) -> Result<()> {
        self.staged = Some(None);
        self.current = None;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<()> {
        if let Some(staged) = self.staged.take() {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            match staged {
                Some(token) => state.tokens.insert(self.key.clone(), token),
                None => state.tokens.remove(&self.key),
            };
        }
        Ok(())
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State::default())),
            events: broadcast::channel(1024).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn emit(&self, event: StoreEvent) {
        // No receivers is fine.
        let _ = self.events.send(event);
    }
}

fn stored(name: &str, row: &Row) -> StoredConnection {
    StoredConnection {
        name: name.to_owned(),
        source: row.source,
        revision: row.revision,
        generation: row.generation,
        updated_at: Some(row.updated_at),
        spec: Ok(row.spec.clone()),
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Memory
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }

    async fn publish(&self, _to: Option<&str>, message: &BusMessage) -> Result<()> {
        // One replica: every message is for this one.
        self.emit(StoreEvent::Bus(message.clone()));
        Ok(())
    }

    async fn list_connections(&self) -> Result<Vec<StoredConnection>> {
        let state = self.lock();
        Ok(state
            .connections
            .iter()
            .map(|(n, r)| stored(n, r))
            .collect())
    }

    async fn get_connection(&self, name: &str) -> Result<Option<StoredConnection>> {
        Ok(self.lock().connections.get(name).map(|r| stored(name, r)))
    }

    async fn put_connection(
        &self,
        conn: &ConnectionConfig,
        generation: Option<i64>,
    ) -> Result<PutOutcome> {
        let outcome = {
            let mut state = self.lock();
            let existing = state.connections.get(&conn.name);
            if let Some(row) = existing
                && row.spec == conn.spec
                && row.source == conn.source
                && row.generation == generation
            {
                return Ok(PutOutcome::Unchanged {
                    revision: row.revision,
                });
            }
            let created = existing.is_none();
            state.revision += 1;
            let revision = state.revision;
            state.connections.insert(
                conn.name.clone(),
                Row {
                    source: conn.source,
                    generation,
                    revision,
                    updated_at: Timestamp::now(),
                    spec: conn.spec.clone(),
                },
            );
            if created {
                PutOutcome::Created { revision }
            } else {
                PutOutcome::Updated { revision }
            }
        };
        self.emit(StoreEvent::ConnectionChanged {
            name: conn.name.clone(),
            revision: outcome.revision(),
        });
        Ok(outcome)
    }

    async fn delete_connection(&self, name: &str) -> Result<bool> {
        let existed = {
            let mut state = self.lock();
            state.tokens.retain(|(c, _), _| c != name);
            state.pkce.retain(|_, p| p.connection != name);
            state.connections.remove(name).is_some()
        };
        if existed {
            self.emit(StoreEvent::ConnectionDeleted {
                name: name.to_owned(),
            });
        }
        Ok(existed)
    }

    async fn prune_connections(&self, source: Source, keep: &[String]) -> Result<Vec<String>> {
        let removed: Vec<String> = {
            let mut state = self.lock();
            let doomed: Vec<String> = state
                .connections
                .iter()
                .filter(|(n, r)| r.source == source && !keep.contains(n))
                .map(|(n, _)| n.clone())
                .collect();
            for n in &doomed {
                state.connections.remove(n);
                // A connection's tokens and pending flows go with it.
                state.tokens.retain(|(c, _), _| c != n);
                state.pkce.retain(|_, p| &p.connection != n);
            }
            doomed
        };
        for name in &removed {
            self.emit(StoreEvent::ConnectionDeleted { name: name.clone() });
        }
        Ok(removed)
    }

    async fn write_status(&self, status: &ConnectionStatus) -> Result<()> {
        self.lock().status.insert(
            (status.connection.clone(), status.replica.clone()),
            status.clone(),
        );
        Ok(())
    }

    async fn read_status(&self, connection: &str) -> Result<Vec<ConnectionStatus>> {
        Ok(self
            .lock()
            .status
            .values()
            .filter(|s| s.connection == connection)
            .cloned()
            .collect())
    }

    async fn read_all_status(&self) -> Result<Vec<ConnectionStatus>> {
        Ok(self.lock().status.values().cloned().collect())
    }

    async fn clear_replica_status(&self, replica: &str) -> Result<()> {
        self.lock().status.retain(|(_, r), _| r != replica);
        Ok(())
    }

    async fn create_session(&self, session: &SessionRecord) -> Result<()> {
        self.lock()
            .sessions
            .insert(session.id_hash, (session.clone(), Instant::now()));
        Ok(())
    }

    async fn get_session(&self, id_hash: &IdHash) -> Result<Option<SessionRecord>> {
        Ok(self.lock().sessions.get(id_hash).map(|(s, _)| s.clone()))
    }

    async fn end_session(&self, id_hash: &IdHash) -> Result<Option<SessionRecord>> {
        let ended = self.lock().sessions.remove(id_hash).map(|(s, _)| s);
        if ended.is_some() {
            self.emit(StoreEvent::SessionEnded { id_hash: *id_hash });
        }
        Ok(ended)
    }

    async fn set_upstream_session(
        &self,
        id_hash: &IdHash,
        connection: &str,
        upstream: &UpstreamSession,
    ) -> Result<UpstreamSession> {
        let mut state = self.lock();
        let Some((session, _)) = state.sessions.get_mut(id_hash) else {
            return Ok(upstream.clone());
        };
        match session.upstreams.get(connection) {
            Some(current) if current.revision >= upstream.revision => Ok(current.clone()),
            _ => {
                session
                    .upstreams
                    .insert(connection.to_owned(), upstream.clone());
                Ok(upstream.clone())
            }
        }
    }

    async fn clear_upstream_session(
        &self,
        id_hash: &IdHash,
        connection: &str,
        stale_id: Option<&str>,
    ) -> Result<()> {
        if let Some((session, _)) = self.lock().sessions.get_mut(id_hash)
            && session
                .upstreams
                .get(connection)
                .is_some_and(|u| u.id.as_deref() == stale_id)
        {
            session.upstreams.remove(connection);
        }
        Ok(())
    }

    async fn set_resource_subscription(
        &self,
        id_hash: &IdHash,
        subscription: &super::ResourceSubscription,
        subscribed: bool,
        max: usize,
    ) -> Result<bool> {
        let mut state = self.lock();
        let Some((session, _)) = state.sessions.get_mut(id_hash) else {
            return Ok(true);
        };
        let held = &mut session.resource_subscriptions;
        if !subscribed {
            held.remove(subscription);
        } else if !held.contains(subscription) {
            if held.len() >= max {
                return Ok(false);
            }
            held.insert(subscription.clone());
        }
        Ok(true)
    }

    async fn set_log_level(&self, id_hash: &IdHash, level: &str) -> Result<()> {
        if let Some((session, _)) = self.lock().sessions.get_mut(id_hash) {
            session.log_level = Some(level.to_owned());
        }
        Ok(())
    }

    async fn touch_sessions(&self, id_hashes: &[IdHash]) -> Result<()> {
        let now = Instant::now();
        let mut state = self.lock();
        for id in id_hashes {
            if let Some((_, seen)) = state.sessions.get_mut(id) {
                *seen = now;
            }
        }
        Ok(())
    }

    async fn sweep_sessions(&self, idle: Duration) -> Result<Vec<SessionRecord>> {
        let swept: Vec<SessionRecord> = {
            let mut state = self.lock();
            let now = Instant::now();
            let doomed: Vec<IdHash> = state
                .sessions
                .iter()
                .filter(|(_, (_, seen))| now.duration_since(*seen) > idle)
                .map(|(id, _)| *id)
                .collect();
            doomed
                .iter()
                .filter_map(|id| state.sessions.remove(id).map(|(s, _)| s))
                .collect()
        };
        for s in &swept {
            self.emit(StoreEvent::SessionEnded { id_hash: s.id_hash });
        }
        Ok(swept)
    }

    async fn get_token(&self, connection: &str, subject: &str) -> Result<Option<OAuthToken>> {
        let key = (connection.to_owned(), subject.to_owned());
        Ok(self.lock().tokens.get(&key).cloned())
    }

    async fn lock_token(&self, connection: &str, subject: &str) -> Result<Box<dyn TokenLock>> {
        let key = (connection.to_owned(), subject.to_owned());
        let mutex = self
            .lock()
            .token_locks
            .entry(key.clone())
            .or_default()
            .clone();
        let guard = mutex.lock_owned().await;
        let current = self.lock().tokens.get(&key).cloned();
        Ok(Box::new(MemoryTokenLock {
            state: self.state.clone(),
            key,
            current,
            staged: None,
            _guard: guard,
        }))
    }

    async fn put_pkce(&self, state: &PkceState) -> Result<()> {
        let now = Timestamp::now();
        let mut s = self.lock();
        s.pkce.retain(|_, p| p.expires_at >= now);
        s.pkce.insert(state.state_hash, state.clone());
        Ok(())
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        self.lock().api_keys.push(key.clone());
        Ok(())
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let mut keys = self.lock().api_keys.clone();
        keys.reverse();
        Ok(keys)
    }

    async fn revoke_api_key(&self, id: &str) -> Result<bool> {
        let mut state = self.lock();
        let Some(key) = state
            .api_keys
            .iter_mut()
            .find(|k| k.id == id && k.revoked_at.is_none())
        else {
            return Ok(false);
        };
        key.revoked_at = Some(crate::clock::Timestamp::now().unix_secs());
        Ok(true)
    }

    async fn touch_api_keys(&self, used: &[(String, i64)]) -> Result<()> {
        let mut state = self.lock();
        for (id, at) in used {
            if let Some(k) = state.api_keys.iter_mut().find(|k| &k.id == id) {
                k.last_used_at = Some(k.last_used_at.map_or(*at, |t| t.max(*at)));
            }
        }
        Ok(())
    }

    async fn revoke_console_sessions(&self, revocation: &super::ConsoleRevocation) -> Result<()> {
        let now = Timestamp::now();
        let mut state = self.lock();
        state.console_revocations.retain(|r| r.expires_at() > now);
        state.console_revocations.push(revocation.clone());
        Ok(())
    }

    async fn console_revocations(&self) -> Result<Vec<super::ConsoleRevocation>> {
        let now = Timestamp::now();
        let state = self.lock();
        Ok(state
            .console_revocations
            .iter()
            .filter(|r| r.expires_at() > now)
            .cloned()
            .collect())
    }

    async fn lease_tokens(&self, key: &str, rate: f64, burst: f64, want: u32) -> Result<Lease> {
        let mut state = self.lock();
        let now = Instant::now();
        let (tokens, at) = state.buckets.entry(key.to_owned()).or_insert((burst, now));
        let available = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        let granted = f64::from(want).min(available.floor()).max(0.0);
        *tokens = available - granted;
        *at = now;
        Ok(Lease {
            granted: granted as u32,
            left: *tokens,
        })
    }

    async fn sweep_buckets(&self, age: Duration) -> Result<u64> {
        let mut state = self.lock();
        let before = state.buckets.len();
        state.buckets.retain(|_, (_, at)| at.elapsed() < age);
        Ok((before - state.buckets.len()) as u64)
    }

    async fn live_replicas(&self) -> Result<usize> {
        Ok(1)
    }

    async fn list_policies(&self) -> Result<Vec<StoredPolicy>> {
        Ok(self.lock().policies.values().cloned().collect())
    }

    async fn put_policy(
        &self,
        name: &str,
        spec: &hawser_crds::McpPolicySpec,
        source: Source,
        connections: &[String],
        generation: Option<i64>,
    ) -> Result<bool> {
        let existed = self
            .lock()
            .policies
            .insert(
                name.to_owned(),
                StoredPolicy {
                    name: name.to_owned(),
                    source,
                    generation,
                    connections: connections.to_vec(),
                    spec: Ok(spec.clone()),
                },
            )
            .is_some();
        self.emit(StoreEvent::Bus(BusMessage::PoliciesChanged));
        Ok(existed)
    }

    async fn delete_policy(&self, name: &str) -> Result<bool> {
        let existed = self.lock().policies.remove(name).is_some();
        if existed {
            self.emit(StoreEvent::Bus(BusMessage::PoliciesChanged));
        }
        Ok(existed)
    }

    async fn prune_policies(&self, source: Source, keep: &[String]) -> Result<Vec<String>> {
        let gone: Vec<String> = {
            let mut state = self.lock();
            let gone: Vec<String> = state
                .policies
                .values()
                .filter(|p| p.source == source && !keep.contains(&p.name))
                .map(|p| p.name.clone())
                .collect();
            for name in &gone {
                state.policies.remove(name);
            }
            gone
        };
        if !gone.is_empty() {
            self.emit(StoreEvent::Bus(BusMessage::PoliciesChanged));
        }
        Ok(gone)
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        let mut keys = self.lock().signing_keys.clone();
        keys.reverse();
        Ok(keys)
    }

    async fn rotate_signing_key(&self, key: &SigningKeyRecord) -> Result<()> {
        let mut state = self.lock();
        let now = Timestamp::now().unix_secs();
        state
            .signing_keys
            .retain(|k| k.retired_at.is_none_or(|t| t > now - 86_400));
        for k in &mut state.signing_keys {
            k.retired_at.get_or_insert(now);
        }
        state.signing_keys.push(key.clone());
        Ok(())
    }

    /// Embedded mode keeps no audit table: events become structured log lines
    /// (target `hawser::audit`), which log collectors can keep.
    async fn write_audit(&self, events: &[&AuditEvent]) -> Result<usize> {
        if !tracing::enabled!(target: "hawser::audit", tracing::Level::INFO) {
            return Ok(0);
        }
        for e in events {
            let line = serde_json::to_string(e).unwrap_or_default();
            tracing::info!(target: "hawser::audit", event = %line, "audit");
        }
        Ok(0)
    }

    async fn dead_letter_audit(&self, event: &AuditEvent, error: &str) -> Result<()> {
        let line = serde_json::to_string(event).unwrap_or_default();
        tracing::error!(target: "hawser::audit", event = %line, %error, "audit event not written");
        Ok(())
    }

    async fn sweep_audit(&self, _age: Duration) -> Result<u64> {
        Ok(0)
    }

    async fn audit_page(&self, _query: &super::AuditQuery) -> Result<Vec<super::AuditRow>> {
        Ok(Vec::new())
    }

    async fn audit_event(&self, _id: i64) -> Result<Option<super::AuditRow>> {
        Ok(None)
    }

    async fn audit_traffic(
        &self,
        _since: Timestamp,
        _bucket: Duration,
        _connection: Option<&str>,
    ) -> Result<Vec<super::TrafficBucket>> {
        Ok(Vec::new())
    }

    async fn token_holders(
        &self,
        connection: Option<&str>,
        subject: Option<&str>,
    ) -> Result<Vec<TokenHolder>> {
        Ok(self
            .lock()
            .tokens
            .iter()
            .filter(|((c, s), _)| {
                !s.is_empty()
                    && connection.is_none_or(|want| want == c)
                    && subject.is_none_or(|want| want == s)
            })
            .map(|((c, s), t)| TokenHolder {
                connection: c.clone(),
                subject: s.clone(),
                expires_at: t.expires_at.map(Timestamp::millis),
                updated_at: t.issued_at.map_or(0, Timestamp::millis),
                refreshable: t.refresh_token.is_some(),
            })
            .collect())
    }

    async fn claim_consent_link(&self, nonce: &IdHash, expires_at: Timestamp) -> Result<bool> {
        let now = Timestamp::now();
        let mut state = self.lock();
        state.consent_links.retain(|_, e| *e >= now);
        Ok(state.consent_links.insert(*nonce, expires_at).is_none())
    }

    async fn take_pkce(&self, state_hash: &IdHash) -> Result<Option<PkceState>> {
        let taken = self.lock().pkce.remove(state_hash);
        Ok(taken.filter(|p| p.expires_at >= Timestamp::now()))
    }
}
