//! The Postgres store of shared mode.
//!
//! Every table access of the project lives in this module (the operator writes
//! through it too). One background task holds a `LISTEN` connection and turns
//! notifications into [`StoreEvent`]s; after it reconnects it emits `Resync`, because
//! notifications sent while it was away are lost.

mod apikeys;
mod audit;
mod audit_read;
mod buckets;
mod bus;
mod connections;
mod console;
mod oauth;
mod policies;
mod sessions;
mod status;
pub mod storable;

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{PgPool, migrate::Migrator};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::{
    ApiKeyRecord, AuditEvent, BusMessage, ConnectionStatus, Lease, OAuthToken, PkceState,
    PutOutcome, Result, SessionRecord, SigningKeyRecord, Store, StoreEvent, StoreKind,
    StoredConnection, StoredPolicy, TokenHolder, TokenLock, UpstreamSession,
};
use crate::config::{ConnectionConfig, Source};
use crate::crypto::{IdHash, Keyring};

/// The schema, embedded at build time from `migrations/`. Migrations applied by a newer
/// release are tolerated (`ignore_missing`): during a rolling upgrade or a rollback,
/// replicas of the previous release restart against the newer, additive schema.
pub static MIGRATOR: Migrator = Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("../migrations")
};

/// Channel announcing connection writes (sent by a trigger on `connections`).
pub const CONNECTIONS_CHANNEL: &str = "hawser_connections";
/// Channel announcing ended sessions.
pub const SESSIONS_CHANNEL: &str = "hawser_sessions";

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Opens a pool.
pub async fn connect(url: &str, settings: &PoolSettings) -> Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect(url)
        .await?)
}

/// Applies pending migrations. sqlx holds a Postgres advisory lock while it runs, so
/// replicas starting together apply each migration once.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Shared-mode store.
pub struct PgStore {
    pool: PgPool,
    keyring: Keyring,
    events: broadcast::Sender<StoreEvent>,
    shutdown: CancellationToken,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl PgStore {
    /// Wraps a migrated pool and starts listening for notifications (connections,
    /// sessions; no replica bus: for the operator and tools).
    pub async fn start(pool: PgPool, keyring: Keyring) -> Result<Self> {
        Self::start_with(pool, keyring, None).await
    }

    /// Same, for a gateway replica with process token `token`: it also receives bus
    /// messages addressed to it or to every replica.
    pub async fn start_replica(pool: PgPool, keyring: Keyring, token: &str) -> Result<Self> {
        Self::start_with(pool, keyring, Some(token)).await
    }

    async fn start_with(pool: PgPool, keyring: Keyring, token: Option<&str>) -> Result<Self> {
        let (events, _) = broadcast::channel(4096);
        let shutdown = CancellationToken::new();
        let mut channels = vec![CONNECTIONS_CHANNEL.to_owned(), SESSIONS_CHANNEL.to_owned()];
        if let Some(token) = token {
            channels.push(bus::BROADCAST.to_owned());
            channels.push(bus::replica_channel(token));
        }
        let listener = open_listener(&pool, &channels).await?;
        tokio::spawn(listen_loop(
            pool.clone(),
            listener,
            channels,
            events.clone(),
            shutdown.clone(),
        ));
        let sweeper = pool.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(600));
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => {
                        if let Err(error) = bus::sweep(&sweeper).await {
                            tracing::debug!(%error, "bus sweep failed");
                        }
                    }
                }
            }
        });
        Ok(Self {
            pool,
            keyring,
            events,
            shutdown,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }
}

async fn open_listener(pool: &PgPool, channels: &[String]) -> Result<PgListener> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener
        .listen_all(channels.iter().map(String::as_str))
        .await?;
    Ok(listener)
}

async fn listen_loop(
    pool: PgPool,
    mut listener: PgListener,
    channels: Vec<String>,
    events: broadcast::Sender<StoreEvent>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            r = listener.try_recv() => r,
        };
        match received {
            Ok(Some(notification)) => {
                backoff = Duration::from_millis(100);
                let channel = notification.channel();
                let event = if channel == CONNECTIONS_CHANNEL || channel == SESSIONS_CHANNEL {
                    parse_notification(channel, notification.payload())
                } else {
                    bus::receive(&pool, notification.payload())
                        .await
                        .map(StoreEvent::Bus)
                };
                if let Some(event) = event {
                    let _ = events.send(event);
                }
            }
            // The connection dropped and sqlx reconnected (and re-LISTENed) before
            // returning: whatever was sent meanwhile is lost.
            Ok(None) => {
                tracing::warn!("store listener reconnected; resyncing");
                let _ = events.send(StoreEvent::Resync);
            }
            Err(error) => {
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "store listener failed; reconnecting");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                match open_listener(&pool, &channels).await {
                    Ok(fresh) => {
                        listener = fresh;
                        tracing::info!("store listener reconnected; resyncing");
                        let _ = events.send(StoreEvent::Resync);
                    }
                    Err(error) => tracing::warn!(%error, "store listener reconnect failed"),
                }
            }
        }
    }
}

fn parse_notification(channel: &str, payload: &str) -> Option<StoreEvent> {
    #[derive(serde::Deserialize)]
    struct Payload {
        op: String,
        name: Option<String>,
        revision: Option<i64>,
        id: Option<String>,
    }
    let p: Payload = match serde_json::from_str(payload) {
        Ok(p) => p,
        Err(error) => {
            tracing::warn!(channel, %error, "ignoring malformed notification");
            return None;
        }
    };
    match (channel, p.op.as_str()) {
        (CONNECTIONS_CHANNEL, "upsert") => Some(StoreEvent::ConnectionChanged {
            name: p.name?,
            revision: p.revision?,
        }),
        (CONNECTIONS_CHANNEL, "delete") => Some(StoreEvent::ConnectionDeleted { name: p.name? }),
        (SESSIONS_CHANNEL, "end") => {
            let id = IdHash::from_hex(&p.id?)?;
            Some(StoreEvent::SessionEnded { id_hash: id })
        }
        _ => None,
    }
}

#[async_trait]
impl Store for PgStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Postgres
    }

    fn pool_stats(&self) -> Option<(u32, u32)> {
        Some((
            self.pool.size(),
            u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
        ))
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }

    async fn publish(&self, to: Option<&str>, message: &BusMessage) -> Result<()> {
        bus::publish(&self.pool, to, message).await
    }

    async fn list_connections(&self) -> Result<Vec<StoredConnection>> {
        connections::list(&self.pool, &self.keyring).await
    }

    async fn get_connection(&self, name: &str) -> Result<Option<StoredConnection>> {
        connections::get(&self.pool, &self.keyring, name).await
    }

    async fn put_connection(
        &self,
        conn: &ConnectionConfig,
        generation: Option<i64>,
    ) -> Result<PutOutcome> {
        connections::put(&self.pool, &self.keyring, conn, generation).await
    }

    async fn delete_connection(&self, name: &str) -> Result<bool> {
        connections::delete(&self.pool, name).await
    }

    async fn prune_connections(&self, source: Source, keep: &[String]) -> Result<Vec<String>> {
        connections::prune(&self.pool, source, keep).await
    }

    async fn write_status(&self, s: &ConnectionStatus) -> Result<()> {
        status::write(&self.pool, s).await
    }

    async fn read_status(&self, connection: &str) -> Result<Vec<ConnectionStatus>> {
        status::read(&self.pool, Some(connection)).await
    }

    async fn read_all_status(&self) -> Result<Vec<ConnectionStatus>> {
        status::read(&self.pool, None).await
    }

    async fn clear_replica_status(&self, replica: &str) -> Result<()> {
        status::clear_replica(&self.pool, replica).await
    }

    async fn create_session(&self, session: &SessionRecord) -> Result<()> {
        sessions::create(&self.pool, session).await
    }

    async fn get_session(&self, id_hash: &IdHash) -> Result<Option<SessionRecord>> {
        sessions::get(&self.pool, id_hash).await
    }

    async fn end_session(&self, id_hash: &IdHash) -> Result<Option<SessionRecord>> {
        sessions::end(&self.pool, id_hash).await
    }

    async fn set_upstream_session(
        &self,
        id_hash: &IdHash,
        connection: &str,
        upstream: &UpstreamSession,
    ) -> Result<UpstreamSession> {
        sessions::set_upstream(&self.pool, id_hash, connection, upstream).await
    }

    async fn clear_upstream_session(
        &self,
        id_hash: &IdHash,
        connection: &str,
        stale_id: Option<&str>,
    ) -> Result<()> {
        sessions::clear_upstream(&self.pool, id_hash, connection, stale_id).await
    }

    async fn set_resource_subscription(
        &self,
        id_hash: &IdHash,
        subscription: &crate::store::ResourceSubscription,
        subscribed: bool,
        max: usize,
    ) -> Result<bool> {
        sessions::set_resource_subscription(&self.pool, id_hash, subscription, subscribed, max)
            .await
    }

    async fn set_log_level(&self, id_hash: &IdHash, level: &str) -> Result<()> {
        sessions::set_log_level(&self.pool, id_hash, level).await
    }

    async fn touch_sessions(&self, id_hashes: &[IdHash]) -> Result<()> {
        sessions::touch(&self.pool, id_hashes).await
    }

    async fn sweep_sessions(&self, idle: Duration) -> Result<Vec<SessionRecord>> {
        sessions::sweep(&self.pool, idle).await
    }

    async fn get_token(&self, connection: &str, subject: &str) -> Result<Option<OAuthToken>> {
        oauth::get(&self.pool, &self.keyring, connection, subject).await
    }

    async fn lock_token(&self, connection: &str, subject: &str) -> Result<Box<dyn TokenLock>> {
        Ok(Box::new(
            oauth::lock(&self.pool, &self.keyring, connection, subject).await?,
        ))
    }

    async fn token_holders(
        &self,
        connection: Option<&str>,
        subject: Option<&str>,
    ) -> Result<Vec<TokenHolder>> {
        oauth::holders(&self.pool, connection, subject).await
    }

    async fn claim_consent_link(
        &self,
        nonce: &IdHash,
        expires_at: crate::clock::Timestamp,
    ) -> Result<bool> {
        oauth::claim_consent_link(&self.pool, nonce, expires_at).await
    }

    async fn put_pkce(&self, state: &PkceState) -> Result<()> {
        oauth::put_pkce(&self.pool, &self.keyring, state).await
    }

    async fn take_pkce(&self, state_hash: &IdHash) -> Result<Option<PkceState>> {
        oauth::take_pkce(&self.pool, &self.keyring, state_hash).await
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        apikeys::create(&self.pool, key).await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        apikeys::list(&self.pool).await
    }

    async fn revoke_api_key(&self, id: &str) -> Result<bool> {
        apikeys::revoke(&self.pool, id).await
    }

    async fn touch_api_keys(&self, used: &[(String, i64)]) -> Result<()> {
        apikeys::touch(&self.pool, used).await
    }

    async fn revoke_console_sessions(&self, revocation: &super::ConsoleRevocation) -> Result<()> {
        console::revoke(&self.pool, revocation).await
    }

    async fn console_revocations(&self) -> Result<Vec<super::ConsoleRevocation>> {
        console::revocations(&self.pool).await
    }

    async fn lease_tokens(&self, key: &str, rate: f64, burst: f64, want: u32) -> Result<Lease> {
        buckets::lease(&self.pool, key, rate, burst, want).await
    }

    async fn sweep_buckets(&self, age: Duration) -> Result<u64> {
        buckets::sweep(&self.pool, age).await
    }

    async fn live_replicas(&self) -> Result<usize> {
        buckets::live_replicas(&self.pool).await
    }

    async fn list_policies(&self) -> Result<Vec<StoredPolicy>> {
        policies::list(&self.pool).await
    }

    async fn put_policy(
        &self,
        name: &str,
        spec: &hawser_crds::McpPolicySpec,
        source: Source,
        connections: &[String],
        generation: Option<i64>,
    ) -> Result<bool> {
        policies::put(&self.pool, name, spec, source, connections, generation).await
    }

    async fn delete_policy(&self, name: &str) -> Result<bool> {
        policies::delete(&self.pool, name).await
    }

    async fn prune_policies(&self, source: Source, keep: &[String]) -> Result<Vec<String>> {
        policies::prune(&self.pool, source, keep).await
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        apikeys::signing_keys(&self.pool, &self.keyring).await
    }

    async fn rotate_signing_key(&self, key: &SigningKeyRecord) -> Result<()> {
        apikeys::rotate_signing_key(&self.pool, &self.keyring, key).await
    }

    async fn write_audit(&self, events: &[&AuditEvent]) -> Result<usize> {
        audit::write(&self.pool, events).await
    }

    async fn dead_letter_audit(&self, event: &AuditEvent, error: &str) -> Result<()> {
        audit::dead_letter(&self.pool, event, error).await
    }

    async fn sweep_audit(&self, age: Duration) -> Result<u64> {
        audit::sweep(&self.pool, age).await
    }

    async fn audit_page(&self, query: &super::AuditQuery) -> Result<Vec<super::AuditRow>> {
        audit_read::page(&self.pool, query).await
    }

    async fn audit_event(&self, id: i64) -> Result<Option<super::AuditRow>> {
        audit_read::one(&self.pool, id).await
    }

    async fn audit_traffic(
        &self,
        since: crate::clock::Timestamp,
        bucket: Duration,
        connection: Option<&str>,
    ) -> Result<Vec<super::TrafficBucket>> {
        audit_read::traffic(&self.pool, since, bucket, connection).await
    }
}

/// Re-seals every sealed value in the database under the keyring's first key;
/// returns how many values were rewritten.
pub async fn reseal_all(pool: &PgPool, keyring: &Keyring) -> Result<usize> {
    Ok(connections::reseal(pool, keyring).await?
        + oauth::reseal(pool, keyring).await?
        + apikeys::reseal(pool, keyring).await?)
}
