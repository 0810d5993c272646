//! Shared state behind one trait: the in-memory store of embedded mode and the
//! Postgres store of shared mode implement the same operations, so everything above
//! this module runs unchanged in both.

mod audit_query;
pub mod health;
mod memory;
pub mod postgres;

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use hawser_crds::McpConnectionSpec;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

pub use audit_query::{AuditQuery, AuditRow, MAX_PAGE, TrafficBucket};
pub use health::Health;
pub use memory::MemoryStore;
pub use postgres::PgStore;

pub use hawser_crds::{AuthState, ConnectionState, Problem, ProblemKind};

use crate::clock::Timestamp;
use crate::config::{ConnectionConfig, Source};
use crate::crypto::{CryptoError, IdHash};
use crate::endpoint::Endpoint;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A store operation that failed. `Display` is safe to log; it is not shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// Known to be down, or did not answer within a request's budget.
    #[error("the store is unreachable")]
    Unavailable,
}

impl Error {
    /// Whether the data was refused (a value the database cannot take), as opposed
    /// to the store being unreachable: retrying the same data cannot succeed.
    pub fn is_data(&self) -> bool {
        match self {
            Self::Database(sqlx::Error::Database(e)) => e.code().is_some_and(|code| {
                // 22: data exception, 23: integrity constraint, 54: program limit
                // exceeded (e.g. a value too large).
                ["22", "23", "54"]
                    .iter()
                    .any(|class| code.starts_with(class))
            }),
            Self::Database(
                sqlx::Error::Encode(_) | sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_),
            ) => true,
            Self::Corrupt(_) => true,
            _ => false,
        }
    }

    /// Short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Database(_) => "database",
            Self::Migrate(_) => "migrate",
            Self::Corrupt(_) => "corrupt",
            Self::Crypto(_) => "crypto",
            Self::Unavailable => "unavailable",
        }
    }
}

/// The two stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// Embedded mode: one replica, nothing outlives the process.
    Memory,
    /// Shared mode.
    Postgres,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Postgres => "postgres",
        }
    }
}

/// A connection as stored, secrets unsealed.
#[derive(Debug, Clone)]
pub struct StoredConnection {
    pub name: String,
    pub source: Source,
    pub revision: i64,
    pub generation: Option<i64>,
    /// When the row was last written.
    pub updated_at: Option<Timestamp>,
    /// The spec, or why it could not be read (e.g. sealed with a key this replica
    /// does not have); the connection is then reported in error, not dropped.
    pub spec: Result<McpConnectionSpec, String>,
}

/// Outcome of writing a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created {
        revision: i64,
    },
    Updated {
        revision: i64,
    },
    /// Same spec, source and generation as stored: nothing written, nobody notified.
    Unchanged {
        revision: i64,
    },
}

impl PutOutcome {
    pub fn revision(self) -> i64 {
        match self {
            Self::Created { revision }
            | Self::Updated { revision }
            | Self::Unchanged { revision } => revision,
        }
    }
}

/// One replica's view of one connection (a row of `connection_status`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionStatus {
    pub connection: String,
    pub replica: String,
    pub state: ConnectionState,
    pub tools: i32,
    /// Why it is not ready, or the problems below in words.
    pub last_error: Option<String>,
    /// Problems with its names that do not stop it from serving (collisions).
    pub problems: Vec<Problem>,
    pub auth_state: Option<AuthState>,
    pub revision: i64,
    pub updated_at: Timestamp,
}

/// A client session as shared between replicas.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// SHA-256 of the session id; the id itself is never stored.
    pub id_hash: IdHash,
    /// Identity the session is bound to.
    pub subject: String,
    pub endpoint: Endpoint,
    pub protocol_version: String,
    /// What the client sent in `initialize`, as sent (bounded by the front).
    pub client_info: Option<Box<serde_json::value::RawValue>>,
    pub client_capabilities: Option<Box<serde_json::value::RawValue>>,
    /// Upstream sessions opened for this client session, by connection name.
    pub upstreams: BTreeMap<String, UpstreamSession>,
    pub log_level: Option<String>,
    /// Resources subscribed to at 2026-07-28-only upstreams (bridged subscriptions).
    pub resource_subscriptions: BTreeSet<ResourceSubscription>,
}

/// A bridged resource subscription of a session: a connection and a resource URI.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourceSubscription {
    pub connection: String,
    pub uri: String,
}

/// Equal when they say the same: the client's JSON is compared as values (a store
/// may re-space or reorder it).
impl PartialEq for SessionRecord {
    fn eq(&self, other: &Self) -> bool {
        let value = |v: &Option<Box<serde_json::value::RawValue>>| {
            v.as_ref()
                .and_then(|r| serde_json::from_str::<serde_json::Value>(r.get()).ok())
        };
        self.id_hash == other.id_hash
            && self.subject == other.subject
            && self.endpoint == other.endpoint
            && self.protocol_version == other.protocol_version
            && value(&self.client_info) == value(&other.client_info)
            && value(&self.client_capabilities) == value(&other.client_capabilities)
            && self.upstreams == other.upstreams
            && self.log_level == other.log_level
            && self.resource_subscriptions == other.resource_subscriptions
    }
}

/// The session an upstream issued for one (client session, connection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamSession {
    /// The upstream's `Mcp-Session-Id`; `None` when it issued none (stateless server).
    pub id: Option<String>,
    pub protocol_version: String,
    /// Revision of the connection this session was opened against; a session from an
    /// older revision is replaced after the connection changes.
    pub revision: i64,
    /// The URL it was opened at: a superseded session is closed (`DELETE`) when the
    /// new revision still points there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Whose upstream token the session uses, on a connection with per-user tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// An upstream OAuth token set, unsealed.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthToken {
    pub connection: String,
    /// Whose token: `""` for the connection's shared token, else the caller's subject.
    pub subject: String,
    pub access_token: crate::crypto::Secret,
    pub refresh_token: Option<crate::crypto::Secret>,
    pub token_type: String,
    pub expires_at: Option<Timestamp>,
    /// When the token was issued, to know its lifetime.
    pub issued_at: Option<Timestamp>,
    pub scope: Option<String>,
    /// Increases with every write of the row.
    pub version: i64,
}

impl std::fmt::Debug for OAuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthToken")
            .field("connection", &self.connection)
            .field("subject", &self.subject)
            .field("expires_at", &self.expires_at)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A pending authorization_code flow (PKCE), unsealed.
#[derive(Clone, PartialEq, Eq)]
pub struct PkceState {
    pub state_hash: IdHash,
    pub connection: String,
    /// Whose token the flow obtains (`""`: the shared one).
    pub subject: String,
    /// Hash of the cookie of the browser that must complete the flow, when a consent
    /// link started it.
    pub browser: Option<IdHash>,
    pub verifier: crate::crypto::Secret,
    pub redirect_uri: String,
    pub expires_at: Timestamp,
}

/// Who holds a per-user token for a connection (no token material).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenHolder {
    pub connection: String,
    pub subject: String,
    /// When the access token expires (unix ms), if it says.
    pub expires_at: Option<i64>,
    /// When the row was last written (unix ms).
    pub updated_at: i64,
    /// Whether a refresh token is held.
    pub refreshable: bool,
}

/// Exclusive access to one connection's token row, across replicas, until
/// [`TokenLock::finish`] (or drop). Whoever refreshes a rotating refresh token holds it,
/// and re-reads the row after taking it, so the token is used exactly once.
#[async_trait]
pub trait TokenLock: Send {
    /// The row as it is now (after the lock was taken).
    fn current(&self) -> Option<&OAuthToken>;
    /// Replaces the row (bumping its version); returns the new version.
    async fn write(&mut self, token: &OAuthToken) -> Result<i64>;
    /// Deletes the row (the grant is gone).
    async fn delete(&mut self) -> Result<()>;
    /// Commits and releases the lock.
    async fn finish(self: Box<Self>) -> Result<()>;
}

/// Audited parameters, as JSON text (redacted where needed): written into the row,
/// the spool and log lines as they are, never decoded again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AuditParams(Box<serde_json::value::RawValue>);

impl AuditParams {
    /// Parameters as the client sent them (valid JSON text).
    pub fn raw(json: String) -> Self {
        Self(crate::jsonrpc::raw_or_null(json))
    }

    /// Parameters already read as JSON (a request's params), kept without checking
    /// them again.
    pub fn parsed(json: Box<serde_json::value::RawValue>) -> Self {
        Self(json)
    }

    /// Parameters made of a value (after redaction, or a summary).
    pub fn value(value: &serde_json::Value) -> Self {
        Self::raw(value.to_string())
    }

    /// The JSON text.
    pub fn to_json(&self) -> &str {
        self.0.get()
    }
}

/// Equal when they hold the same JSON value.
impl PartialEq for AuditParams {
    fn eq(&self, other: &Self) -> bool {
        serde_json::from_str::<serde_json::Value>(self.0.get()).ok()
            == serde_json::from_str::<serde_json::Value>(other.0.get()).ok()
    }
}

/// One audited request (a row of `audit_events`). As JSON (spool lines, log lines,
/// dead letters) members that are `None` are left out.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Unique per event: written once however often it is retried or replayed.
    pub event_id: String,
    #[serde(rename = "tsMs")]
    pub ts: Timestamp,
    pub request_id: String,
    /// A non-secret handle of the session (a prefix of its id hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    pub replica: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_type: Option<String>,
    /// The caller's groups (from the token, the API key or the config file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// Tool, prompt or resource as the upstream names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Parameters with secrets redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<AuditParams>,
    pub success: bool,
    /// auth, upstream, timeout, cancelled, policy, protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    pub duration_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_blocks: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_count: Option<i32>,
    /// Whose upstream token the call used, on a connection with per-user tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_subject: Option<String>,
}

/// A message between replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum BusMessage {
    /// A client's answer to a server→client request waiting on the addressed replica.
    Answer { session: IdHash, message: String },
    /// Cancel a client request in flight, wherever it runs.
    Cancel { session: IdHash, request_id: String },
    /// An upstream session was opened for a client session: the replica holding the
    /// client's GET stream follows the upstream's own stream too.
    UpstreamSession { session: IdHash, connection: String },
    /// A legacy session subscribed to (or unsubscribed from) a resource of a
    /// 2026-07-28 upstream: the replica holding its GET stream watches it.
    ResourceSubscription {
        session: IdHash,
        connection: String,
        uri: String,
        subscribed: bool,
    },
    /// A connection's OAuth token was stored or removed: re-read it, re-dial. For a
    /// per-user token, `subject` says whose (every replica forgets its copy).
    TokenChanged {
        connection: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
    },
    /// An API key was issued or revoked: re-read the keys.
    ApiKeysChanged,
    /// Hawser's signing keys were rotated: re-read them.
    SigningKeysChanged,
    /// A policy was written or deleted (sent by the `policies` table's trigger).
    PoliciesChanged,
    /// Console sign-ins were revoked: re-read the revocations.
    ConsoleSessionsRevoked,
}

/// Console sign-ins revoked before their cookie expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleRevocation {
    /// One sign-in, by the hash of its id.
    Session { id: IdHash, expires_at: Timestamp },
    /// Every sign-in of `subject` made at or before `at`.
    Subject {
        subject: String,
        at: Timestamp,
        expires_at: Timestamp,
    },
}

impl ConsoleRevocation {
    /// When the sign-ins it revokes have expired anyway.
    pub fn expires_at(&self) -> Timestamp {
        match self {
            Self::Session { expires_at, .. } | Self::Subject { expires_at, .. } => *expires_at,
        }
    }
}

/// Tokens taken from a shared bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lease {
    pub granted: u32,
    /// Tokens left in the bucket (fractional: it refills continuously).
    pub left: f64,
}

/// A policy as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPolicy {
    pub name: String,
    pub source: Source,
    pub generation: Option<i64>,
    /// The connections it targets, resolved by its writer.
    pub connections: Vec<String>,
    /// The spec, or why the stored JSON could not be read.
    pub spec: Result<hawser_crds::McpPolicySpec, String>,
}

/// One of Hawser's own signing keys (ES256, PKCS#8); sealed at rest.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub pkcs8: Vec<u8>,
    /// Unix seconds.
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// An API key as stored: its SHA-256, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Public id (what `revoke` takes).
    pub id: String,
    /// The key's first characters (`hwk_1a2b3c4d`), to recognise it in a list.
    pub prefix: String,
    pub hash: IdHash,
    pub subject: String,
    pub groups: Vec<String>,
    pub description: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Something another replica (or this one) changed.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreEvent {
    /// A connection was written.
    ConnectionChanged { name: String, revision: i64 },
    /// A connection was deleted.
    ConnectionDeleted { name: String },
    /// Notifications may have been missed (listener reconnected, receiver lagged):
    /// compare everything.
    Resync,
    /// A client session ended.
    SessionEnded { id_hash: IdHash },
    /// A message for this replica (or for every replica).
    Bus(BusMessage),
}

/// The operations every store provides.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which store this is.
    fn kind(&self) -> StoreKind;

    /// Checks the store is reachable (readiness).
    async fn ping(&self) -> Result<()>;

    /// Connection pool (size, idle), when there is one.
    fn pool_stats(&self) -> Option<(u32, u32)> {
        None
    }

    /// Events from every replica. A lagging receiver sees `Resync`.
    fn subscribe(&self) -> broadcast::Receiver<StoreEvent>;

    // --- replica bus
    /// Sends `message` to the replica whose process token is `to`, or to every replica.
    async fn publish(&self, to: Option<&str>, message: &BusMessage) -> Result<()>;

    // --- connections
    async fn list_connections(&self) -> Result<Vec<StoredConnection>>;
    async fn get_connection(&self, name: &str) -> Result<Option<StoredConnection>>;
    /// Creates or replaces a connection; `generation` is the resource's
    /// `metadata.generation` for source `crd`.
    async fn put_connection(
        &self,
        conn: &ConnectionConfig,
        generation: Option<i64>,
    ) -> Result<PutOutcome>;
    /// Deletes a connection; whether it existed.
    async fn delete_connection(&self, name: &str) -> Result<bool>;
    /// Deletes the connections of `source` whose names are not in `keep`.
    async fn prune_connections(&self, source: Source, keep: &[String]) -> Result<Vec<String>>;

    // --- status
    async fn write_status(&self, status: &ConnectionStatus) -> Result<()>;
    async fn read_status(&self, connection: &str) -> Result<Vec<ConnectionStatus>>;
    /// Every replica's status of every connection (one read for the console).
    async fn read_all_status(&self) -> Result<Vec<ConnectionStatus>>;
    /// Removes this replica's status rows (graceful shutdown).
    async fn clear_replica_status(&self, replica: &str) -> Result<()>;

    // --- sessions
    async fn create_session(&self, session: &SessionRecord) -> Result<()>;
    /// A live (not ended) session.
    async fn get_session(&self, id_hash: &IdHash) -> Result<Option<SessionRecord>>;
    /// Ends a session everywhere; what it held, if it was live.
    async fn end_session(&self, id_hash: &IdHash) -> Result<Option<SessionRecord>>;
    /// Records the upstream session for `(session, connection)` unless one was recorded
    /// for the same revision meanwhile; returns the one that is recorded now.
    async fn set_upstream_session(
        &self,
        id_hash: &IdHash,
        connection: &str,
        upstream: &UpstreamSession,
    ) -> Result<UpstreamSession>;
    /// Forgets an upstream session (it expired upstream) if it is still `stale_id`.
    async fn clear_upstream_session(
        &self,
        id_hash: &IdHash,
        connection: &str,
        stale_id: Option<&str>,
    ) -> Result<()>;
    async fn set_log_level(&self, id_hash: &IdHash, level: &str) -> Result<()>;
    /// Adds (`subscribed`) or removes a session's bridged resource subscription.
    /// Adding answers `false`, and changes nothing, when the session already holds
    /// `max` others; everything else answers `true` (also for an ended session: the
    /// request fails on its own).
    async fn set_resource_subscription(
        &self,
        id_hash: &IdHash,
        subscription: &ResourceSubscription,
        subscribed: bool,
        max: usize,
    ) -> Result<bool>;
    /// Marks sessions as used; sessions unused for the idle timeout are swept.
    async fn touch_sessions(&self, id_hashes: &[IdHash]) -> Result<()>;
    /// Ends sessions idle for longer than `idle`; returns them.
    async fn sweep_sessions(&self, idle: std::time::Duration) -> Result<Vec<SessionRecord>>;

    // --- OAuth
    /// The token of `subject` (`""`: the shared one) for `connection`.
    async fn get_token(&self, connection: &str, subject: &str) -> Result<Option<OAuthToken>>;
    /// Takes the lock of one token row (see [`TokenLock`]).
    async fn lock_token(&self, connection: &str, subject: &str) -> Result<Box<dyn TokenLock>>;
    /// Per-user tokens (never the shared ones), of one connection and/or one subject.
    async fn token_holders(
        &self,
        connection: Option<&str>,
        subject: Option<&str>,
    ) -> Result<Vec<TokenHolder>>;
    /// Marks a consent link used; `false` when it was used already.
    async fn claim_consent_link(&self, nonce: &IdHash, expires_at: Timestamp) -> Result<bool>;
    async fn put_pkce(&self, state: &PkceState) -> Result<()>;
    /// Takes a PKCE state exactly once; `None` when unknown, used or expired.
    async fn take_pkce(&self, state_hash: &IdHash) -> Result<Option<PkceState>>;

    // --- audit
    /// Writes a batch of audit events (one round trip); returns how many had text
    /// the store could not hold as given and were written escaped (and marked so).
    /// Stores a new API key.
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()>;
    /// Every API key, revoked ones included, newest first.
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>>;
    /// Marks key `id` revoked; whether it existed and was not revoked already.
    async fn revoke_api_key(&self, id: &str) -> Result<bool>;
    /// Records when keys were last used (`(id, unix seconds)`), in one write.
    async fn touch_api_keys(&self, used: &[(String, i64)]) -> Result<()>;

    /// Records a console revocation (and forgets expired ones).
    async fn revoke_console_sessions(&self, revocation: &ConsoleRevocation) -> Result<()>;
    /// Every console revocation that has not expired.
    async fn console_revocations(&self) -> Result<Vec<ConsoleRevocation>>;

    /// Every policy, by name.
    async fn list_policies(&self) -> Result<Vec<StoredPolicy>>;
    /// Creates or replaces a policy; whether it existed.
    async fn put_policy(
        &self,
        name: &str,
        spec: &hawser_crds::McpPolicySpec,
        source: Source,
        connections: &[String],
        generation: Option<i64>,
    ) -> Result<bool>;
    /// Deletes a policy; whether it existed.
    async fn delete_policy(&self, name: &str) -> Result<bool>;
    /// Deletes the policies of `source` not in `keep`; their names.
    async fn prune_policies(&self, source: Source, keep: &[String]) -> Result<Vec<String>>;

    /// Takes up to `want` tokens from bucket `key` (refilled at `rate` per second up
    /// to `burst`; a new bucket starts full).
    async fn lease_tokens(&self, key: &str, rate: f64, burst: f64, want: u32) -> Result<Lease>;
    /// Deletes buckets unused for `age`.
    async fn sweep_buckets(&self, age: std::time::Duration) -> Result<u64>;
    /// How many replicas are alive (reported status lately); at least 1.
    async fn live_replicas(&self) -> Result<usize>;

    /// Hawser's signing keys retired less than a day ago or not at all, newest first.
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>>;
    /// Adds a signing key and retires every other one.
    async fn rotate_signing_key(&self, key: &SigningKeyRecord) -> Result<()>;

    async fn write_audit(&self, events: &[&AuditEvent]) -> Result<usize>;
    /// Keeps an event that could not be written (its batch was split down to it and
    /// it still failed) where it blocks nothing and can be inspected.
    async fn dead_letter_audit(&self, event: &AuditEvent, error: &str) -> Result<()>;
    /// Deletes audit events older than `age`; returns how many.
    async fn sweep_audit(&self, age: std::time::Duration) -> Result<u64>;
    /// A page of audit events, newest first (empty in embedded mode).
    async fn audit_page(&self, query: &AuditQuery) -> Result<Vec<AuditRow>>;
    /// One audit event by row id.
    async fn audit_event(&self, id: i64) -> Result<Option<AuditRow>>;
    /// Calls per `bucket` since `since` (of `connection`, or of all), oldest first;
    /// buckets without calls are left out.
    async fn audit_traffic(
        &self,
        since: Timestamp,
        bucket: std::time::Duration,
        connection: Option<&str>,
    ) -> Result<Vec<TrafficBucket>>;
}
