//! One contract, two stores: every assertion here runs against the in-memory store of
//! embedded mode and the Postgres store of shared mode, because everything above the
//! `Store` trait runs unchanged on both. A failure names the store that broke it
//! (`contract::memory::…` or `contract::postgres::…`).
//!
//! Contracts about replicas take two stores: for Postgres two replicas on one
//! database, for memory the same store twice (embedded mode has one replica).
//! Postgres announces changes asynchronously (LISTEN/NOTIFY), so events are awaited
//! with a timeout, never expected at once.

use std::collections::BTreeMap;
use std::time::Duration;

use hawser_e2e::harness::test_db;
use hawser_gateway::clock::Timestamp;
use hawser_gateway::config::{ConnectionConfig, InlineOnly, Policy, Source, resolve};
use hawser_gateway::crypto::{IdHash, Keyring, Secret};
use hawser_gateway::endpoint::Endpoint;
use hawser_gateway::store::postgres::{PgStore, connect, migrate};
use hawser_gateway::store::{
    AuditEvent, AuthState, BusMessage, ConnectionState, ConnectionStatus, MemoryStore, OAuthToken,
    PkceState, Problem, ProblemKind, PutOutcome, SessionRecord, Store, StoreEvent, UpstreamSession,
};
use serde_json::json;
use tokio::sync::{Notify, broadcast};

/// One `#[tokio::test]` per store for each contract: `name(one)` takes a store,
/// `name(two)` two replicas. `#[memory(...)]` puts an attribute on the memory test only.
macro_rules! contracts {
    (@run one $f:path, $a:expr, $b:expr) => { $f($a).await };
    (@run two $f:path, $a:expr, $b:expr) => { $f($a, $b).await };
    ($($(#[memory($attr:meta)])? $name:ident($arity:ident);)*) => {
        mod memory {
            $(
                #[tokio::test]
                $(#[$attr])?
                async fn $name() {
                    let store = super::MemoryStore::new();
                    contracts!(@run $arity super::$name, &store, &store);
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let replicas = super::replicas().await;
                    contracts!(@run $arity super::$name, &replicas.0, &replicas.1);
                }
            )*
        }
    };
}

contracts! {
    connection_writes_report_created_updated_or_unchanged(one);
    prune_removes_only_that_sources_connections_not_kept(one);
    connection_writes_are_announced_to_every_replica(two);
    deleting_a_connection_forgets_its_token_and_pending_flows(one);
    status_round_trips_and_a_second_write_replaces_the_first(one);
    clearing_a_replica_removes_only_its_status(one);
    sessions_are_shared_and_end_exactly_once(two);
    the_first_upstream_session_of_a_revision_wins(two);
    resource_subscriptions_stay_with_the_session_and_are_bounded(two);
    idle_sessions_are_swept_once_and_announced(two);
    the_token_lock_serializes_lockers_across_replicas(two);
    deleting_a_token_under_the_lock_removes_it(one);
    an_unfinished_token_write_is_not_visible(one);
    a_dropped_token_lock_discards_its_write(one);
    pkce_states_are_single_use_and_expire(two);
    audit_batches_and_dead_letters_are_accepted(one);
    bus_messages_reach_the_replicas_they_are_for(two);
    api_keys_round_trip_revoke_once_and_keep_the_latest_use(one);
    signing_keys_rotate_and_the_old_one_stays_published(one);
    policies_are_shared_replaced_pruned_and_announced(two);
    per_user_tokens_are_kept_apart(two);
    a_users_token_lock_does_not_wait_for_another_user(one);
    consent_links_open_once(two);
    pkce_states_carry_whose_token_and_which_browser(two);
    console_revocations_are_shared_and_forgotten_once_expired(two);
}

mod console;
mod identity;
mod per_user;
mod policies;
use console::*;
use identity::*;
use per_user::*;
use policies::*;

fn keyring() -> Keyring {
    Keyring::parse(&Keyring::generate_entry()).expect("generated key parses")
}

/// Two gateway replicas on a fresh database, with one key as a deployment's share.
async fn replicas() -> (PgStore, PgStore) {
    let db = test_db().await;
    let pool = connect(&db.url, &Default::default())
        .await
        .expect("connect");
    migrate(&pool).await.expect("migrate");
    let keys = keyring();
    let a = PgStore::start_replica(pool.clone(), keys.clone(), "replicaa");
    let b = PgStore::start_replica(pool, keys, "replicab");
    (a.await.expect("start a"), b.await.expect("start b"))
}

fn connection(name: &str, source: Source, spec: serde_json::Value) -> ConnectionConfig {
    let spec = serde_json::from_value(spec).expect("spec");
    resolve(name, spec, source, Policy::default(), &InlineOnly).expect("valid spec")
}

fn plain(name: &str, source: Source) -> ConnectionConfig {
    connection(
        name,
        source,
        json!({"url": format!("http://{name}.example/mcp")}),
    )
}

/// Writes a plain connection; its revision.
async fn put(store: &dyn Store, name: &str, source: Source) -> i64 {
    let conn = plain(name, source);
    store.put_connection(&conn, None).await.unwrap().revision()
}

async fn names(store: &dyn Store) -> Vec<String> {
    let list = store.list_connections().await.unwrap();
    list.into_iter().map(|c| c.name).collect()
}

/// The next event, allowing for Postgres' notification to travel.
async fn next_event(events: &mut broadcast::Receiver<StoreEvent>) -> StoreEvent {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("an event within 5 s")
        .expect("event channel open")
}

/// Written by this process (or the database next to it) just now.
fn assert_recent(t: Timestamp) {
    let skew = Duration::from_secs(10);
    assert!(
        t.elapsed() < skew && t.remaining() < skew,
        "{t:?} is not close to now"
    );
}

fn session(id: &str, endpoint: Endpoint) -> SessionRecord {
    SessionRecord {
        id_hash: IdHash::of(id),
        subject: "alice".into(),
        endpoint,
        protocol_version: "2025-11-25".into(),
        // Parsed into whatever the record holds the client's JSON as.
        client_info: Some(serde_json::from_str(r#"{"name": "t", "version": "1"}"#).unwrap()),
        client_capabilities: Some(serde_json::from_str(r#"{"elicitation": {}}"#).unwrap()),
        upstreams: BTreeMap::new(),
        log_level: None,
        resource_subscriptions: Default::default(),
    }
}

fn upstream(id: Option<&str>, revision: i64) -> UpstreamSession {
    UpstreamSession {
        id: id.map(str::to_owned),
        protocol_version: "2025-11-25".into(),
        revision,
        url: Some("http://gh.example/mcp".into()),
        subject: None,
    }
}

fn status(connection: &str, replica: &str, state: ConnectionState) -> ConnectionStatus {
    ConnectionStatus {
        connection: connection.into(),
        replica: replica.into(),
        state,
        tools: 0,
        last_error: None,
        problems: Vec::new(),
        auth_state: None,
        revision: 1,
        // As the registry writes it; Postgres stamps the row with its own clock instead.
        updated_at: Timestamp::now(),
    }
}

/// `got` without its `updated_at`, which the store may set itself.
fn without_time(got: &ConnectionStatus, like: &ConnectionStatus) -> ConnectionStatus {
    ConnectionStatus {
        updated_at: like.updated_at,
        ..got.clone()
    }
}

fn token(access: &str, refresh: Option<&str>) -> OAuthToken {
    let now = Timestamp::now();
    OAuthToken {
        connection: "oauth".into(),
        subject: String::new(),
        access_token: Secret::new(access),
        refresh_token: refresh.map(Secret::new),
        token_type: "Bearer".into(),
        expires_at: Some(now.plus(Duration::from_secs(3600))),
        issued_at: Some(now),
        scope: Some("read write".into()),
        version: 0,
    }
}

/// Writes `token` under the lock; its version.
async fn write_token(store: &dyn Store, token: &OAuthToken) -> i64 {
    let mut lock = store
        .lock_token(&token.connection, &token.subject)
        .await
        .unwrap();
    let version = lock.write(token).await.unwrap();
    lock.finish().await.unwrap();
    version
}

fn pkce(state: &str, expires_at: Timestamp) -> PkceState {
    PkceState {
        state_hash: IdHash::of(state),
        connection: "oauth".into(),
        subject: String::new(),
        browser: None,
        verifier: Secret::new(format!("verifier-of-{state}")),
        redirect_uri: "https://gw.example/oauth/callback".into(),
        expires_at,
    }
}

fn audit_event(i: usize) -> AuditEvent {
    AuditEvent {
        event_id: format!("contract-{i}"),
        ts: Timestamp::now(),
        request_id: format!("req-{i}"),
        session: Some("0123abcd".into()),
        replica: "r1".into(),
        subject: Some("alice".into()),
        auth_type: Some("bearer".into()),
        groups: Vec::new(),
        remote_addr: Some("10.0.0.1".into()),
        user_agent: Some("t/1".into()),
        method: "tools/call".into(),
        connection: Some("svc".into()),
        target: Some("echo".into()),
        params: Some(hawser_gateway::store::AuditParams::value(&json!({"x": i}))),
        success: i != 1,
        error_category: (i == 1).then(|| "upstream".into()),
        error_message: (i == 1).then(|| "refused".into()),
        duration_ms: 1.5,
        request_bytes: Some(100),
        response_bytes: Some(200),
        content_blocks: Some(1),
        progress_count: Some(0),
        token_subject: (i == 2).then(|| "alice".into()),
    }
}

// --- connections

async fn connection_writes_report_created_updated_or_unchanged(store: &dyn Store) {
    let v1 = connection(
        "svc",
        Source::Api,
        json!({"url": "http://one.example/mcp", "auth": {"type": "bearer", "token": "t-1"}}),
    );
    let created = store.put_connection(&v1, None).await.unwrap();
    assert!(matches!(created, PutOutcome::Created { .. }), "{created:?}");
    let got = store.get_connection("svc").await.unwrap().expect("stored");
    assert_eq!(got.spec.as_ref().unwrap(), &v1.spec, "with its secret");
    assert_eq!(got.revision, created.revision());
    assert_recent(got.updated_at.expect("updated_at"));

    // Same spec, source and generation: nothing written, the stored revision reported.
    let (again, revision) = (store.put_connection(&v1, None).await, created.revision());
    assert_eq!(again.unwrap(), PutOutcome::Unchanged { revision });
    // Each of generation, source and spec alone makes it a change.
    let regenerated = store.put_connection(&v1, Some(2)).await.unwrap();
    let resourced = connection("svc", Source::File, serde_json::to_value(&v1.spec).unwrap());
    let moved = store.put_connection(&resourced, Some(2)).await.unwrap();
    let v2 = plain("svc", Source::File);
    let updated = store.put_connection(&v2, Some(2)).await.unwrap();
    for outcome in [regenerated, moved, updated] {
        assert!(matches!(outcome, PutOutcome::Updated { .. }), "{outcome:?}");
    }
    let other = put(store, "other", Source::Api).await;
    let revisions = [created, regenerated, moved, updated].map(PutOutcome::revision);
    let revisions = [revisions.as_slice(), &[other]].concat();
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "every write takes a higher revision: {revisions:?}"
    );

    let got = store.get_connection("svc").await.unwrap().expect("stored");
    assert_eq!(
        (got.source, got.generation, got.revision),
        (Source::File, Some(2), updated.revision())
    );
    assert_eq!(got.spec.as_ref().unwrap(), &v2.spec);
    assert_eq!(names(store).await, ["other", "svc"], "listed by name");

    assert!(store.get_connection("missing").await.unwrap().is_none());
    assert!(store.delete_connection("svc").await.unwrap());
    let again = store.delete_connection("svc").await.unwrap();
    assert!(!again, "deleted already");
    assert!(store.get_connection("svc").await.unwrap().is_none());
}

async fn prune_removes_only_that_sources_connections_not_kept(store: &dyn Store) {
    for name in ["f1", "f2", "f3"] {
        put(store, name, Source::File).await;
    }
    put(store, "a1", Source::Api).await;
    let keep = ["f2".to_owned(), "a1".to_owned()];
    let mut pruned = store.prune_connections(Source::File, &keep).await.unwrap();
    pruned.sort();
    assert_eq!(pruned, ["f1", "f3"]);
    assert_eq!(names(store).await, ["a1", "f2"]);
    let again = store.prune_connections(Source::File, &keep).await.unwrap();
    assert!(again.is_empty(), "nothing left to prune: {again:?}");
    // Keeping nothing prunes the whole source, and only it.
    let pruned = store.prune_connections(Source::Api, &[]).await.unwrap();
    assert_eq!(pruned, ["a1"]);
    assert_eq!(names(store).await, ["f2"]);
}

/// Writes on one replica reach the other's subscribers in order; no-op writes (an
/// unchanged put, deleting what is gone) announce nothing, which the order shows.
async fn connection_writes_are_announced_to_every_replica(a: &dyn Store, b: &dyn Store) {
    let mut events = b.subscribe();
    let v1 = plain("notify", Source::Api);
    let created = a.put_connection(&v1, None).await.unwrap().revision();
    a.put_connection(&v1, None).await.unwrap();
    let v2 = connection("notify", Source::Api, json!({"url": "http://v2.example"}));
    let updated = a.put_connection(&v2, None).await.unwrap().revision();
    assert!(a.delete_connection("notify").await.unwrap());
    assert!(!a.delete_connection("notify").await.unwrap());
    let kept = put(a, "kept", Source::File).await;
    let pruned = put(a, "pruned", Source::File).await;
    let keep = ["kept".to_owned()];
    a.prune_connections(Source::File, &keep).await.unwrap();

    let changed = |name: &str, revision| StoreEvent::ConnectionChanged {
        name: name.into(),
        revision,
    };
    let deleted = |name: &str| StoreEvent::ConnectionDeleted { name: name.into() };
    let want = [
        changed("notify", created),
        changed("notify", updated),
        deleted("notify"),
        changed("kept", kept),
        changed("pruned", pruned),
        deleted("pruned"),
    ];
    let mut got = Vec::new();
    for _ in 0..want.len() {
        got.push(next_event(&mut events).await);
    }
    assert_eq!(got, want);
}

async fn deleting_a_connection_forgets_its_token_and_pending_flows(store: &dyn Store) {
    put(store, "oauth", Source::Api).await;
    write_token(store, &token("at", Some("rt"))).await;
    let flow = pkce("pending", Timestamp::now().plus(Duration::from_secs(600)));
    store.put_pkce(&flow).await.unwrap();

    assert!(store.delete_connection("oauth").await.unwrap());
    assert_eq!(store.get_token("oauth", "").await.unwrap(), None);
    assert!(store.take_pkce(&flow.state_hash).await.unwrap().is_none());

    // A connection pruned from the config file loses them the same way.
    put(store, "oauth", Source::File).await;
    write_token(store, &token("at", Some("rt"))).await;
    let flow = pkce("pending-2", Timestamp::now().plus(Duration::from_secs(600)));
    store.put_pkce(&flow).await.unwrap();
    assert_eq!(
        store.prune_connections(Source::File, &[]).await.unwrap(),
        ["oauth"]
    );
    assert_eq!(store.get_token("oauth", "").await.unwrap(), None);
    assert!(store.take_pkce(&flow.state_hash).await.unwrap().is_none());
}

// --- status

async fn status_round_trips_and_a_second_write_replaces_the_first(store: &dyn Store) {
    let ready = ConnectionStatus {
        tools: 3,
        last_error: Some("tool `echo` is also served by `other`".into()),
        problems: vec![Problem {
            kind: ProblemKind::NameCollision,
            message: "tool `echo` is also served by `other`".into(),
        }],
        auth_state: Some(AuthState::Authorized),
        revision: 7,
        ..status("svc", "r1", ConnectionState::Ready)
    };
    store.write_status(&ready).await.unwrap();
    let got = store.read_status("svc").await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(without_time(&got[0], &ready), ready);
    assert_recent(got[0].updated_at);

    let down = ConnectionStatus {
        last_error: Some("connection refused".into()),
        auth_state: Some(AuthState::AwaitingAuthorization),
        revision: 8,
        ..status("svc", "r1", ConnectionState::Down)
    };
    store.write_status(&down).await.unwrap();
    let got = store.read_status("svc").await.unwrap();
    assert_eq!(got.len(), 1, "replaced, not added: {got:?}");
    assert_eq!(without_time(&got[0], &down), down);
    assert!(store.read_status("other").await.unwrap().is_empty());
}

async fn clearing_a_replica_removes_only_its_status(store: &dyn Store) {
    let rows = [
        status("svc", "r1", ConnectionState::Ready),
        status("svc", "r2", ConnectionState::Connecting),
        status("other", "r1", ConnectionState::Invalid),
    ];
    for row in &rows {
        store.write_status(row).await.unwrap();
    }
    assert_eq!(store.read_status("svc").await.unwrap().len(), 2);
    store.clear_replica_status("r1").await.unwrap();
    let svc = store.read_status("svc").await.unwrap();
    assert_eq!(svc.len(), 1, "{svc:?}");
    assert_eq!(without_time(&svc[0], &rows[1]), rows[1]);
    assert!(store.read_status("other").await.unwrap().is_empty());
}

// --- sessions

async fn sessions_are_shared_and_end_exactly_once(a: &dyn Store, b: &dyn Store) {
    let aggregated = session("agg", Endpoint::Aggregated);
    let mut scoped = session("scoped", Endpoint::Connection("ns/name".into()));
    scoped
        .upstreams
        .insert("ns/name".into(), upstream(Some("up-1"), 3));
    a.create_session(&aggregated).await.unwrap();
    a.create_session(&scoped).await.unwrap();
    for s in [&aggregated, &scoped] {
        assert_eq!(b.get_session(&s.id_hash).await.unwrap().as_ref(), Some(s));
    }
    assert_eq!(b.get_session(&IdHash::of("unknown")).await.unwrap(), None);

    a.set_log_level(&scoped.id_hash, "debug").await.unwrap();
    let got = b.get_session(&scoped.id_hash).await.unwrap().unwrap();
    assert_eq!(got.log_level.as_deref(), Some("debug"));

    let mut events = b.subscribe();
    assert!(a.end_session(&aggregated.id_hash).await.unwrap().is_some());
    assert!(
        b.end_session(&aggregated.id_hash).await.unwrap().is_none(),
        "ended already"
    );
    assert_eq!(b.get_session(&aggregated.id_hash).await.unwrap(), None);
    assert!(b.get_session(&scoped.id_hash).await.unwrap().is_some());
    // What it held comes back, for a replica that did not open it to close it.
    let ended = b.end_session(&scoped.id_hash).await.unwrap().expect("live");
    assert_eq!(
        ended.upstreams.get("ns/name").and_then(|u| u.id.as_deref()),
        Some("up-1")
    );
    // One announcement per session that ended: the repeated end announced nothing.
    for ended in [&aggregated, &scoped] {
        assert_eq!(
            next_event(&mut events).await,
            StoreEvent::SessionEnded {
                id_hash: ended.id_hash
            }
        );
    }
}

async fn resource_subscriptions_stay_with_the_session_and_are_bounded(
    a: &dyn Store,
    b: &dyn Store,
) {
    use hawser_gateway::store::ResourceSubscription;
    let sub = |connection: &str, uri: &str| ResourceSubscription {
        connection: connection.into(),
        uri: uri.into(),
    };
    let held = |r: &SessionRecord| r.resource_subscriptions.iter().cloned().collect::<Vec<_>>();
    let s = session("subscriber", Endpoint::Aggregated);
    a.create_session(&s).await.unwrap();
    let id = &s.id_hash;
    // Whether `store` took the change (a limit of two per session).
    let change = |store: &'static str, connection: &'static str, uri: &'static str, on: bool| {
        let store = if store == "a" { a } else { b };
        let wanted = sub(connection, uri);
        async move {
            store
                .set_resource_subscription(id, &wanted, on, 2)
                .await
                .unwrap()
        }
    };
    assert!(change("a", "fx", "test://a", true).await);
    // A connection and a URI that swap places are another subscription.
    assert!(change("b", "test://a", "fx", true).await);
    // Again: already held, so there is room for it.
    assert!(change("b", "fx", "test://a", true).await);
    let got = b.get_session(id).await.unwrap().unwrap();
    assert_eq!(held(&got), [sub("fx", "test://a"), sub("test://a", "fx")]);

    assert!(
        !change("a", "fx", "test://c", true).await,
        "a third one is over the limit of two"
    );
    assert_eq!(held(&b.get_session(id).await.unwrap().unwrap()).len(), 2);

    assert!(change("a", "test://a", "fx", false).await);
    assert!(change("a", "fx", "test://zzz", false).await);
    assert!(change("b", "fx", "test://c", true).await);
    let got = a.get_session(id).await.unwrap().unwrap();
    assert_eq!(held(&got), [sub("fx", "test://a"), sub("fx", "test://c")]);

    // An ended session keeps nothing, and a change to it is no error.
    assert!(a.end_session(id).await.unwrap().is_some());
    assert!(change("b", "fx", "test://d", true).await);
    assert_eq!(b.get_session(id).await.unwrap(), None);
}

async fn the_first_upstream_session_of_a_revision_wins(a: &dyn Store, b: &dyn Store) {
    let id = IdHash::of("seven");
    a.create_session(&session("seven", Endpoint::Aggregated))
        .await
        .unwrap();
    let mine = upstream(Some("up-a"), 3);
    let theirs = upstream(Some("up-b"), 3);
    assert_eq!(set(a, &id, &mine).await, mine);
    assert_eq!(
        set(b, &id, &theirs).await,
        mine,
        "the first one of revision 3 stays"
    );
    let older = upstream(Some("up-old"), 2);
    assert_eq!(set(b, &id, &older).await, mine);
    let newer = upstream(Some("up-b"), 4);
    assert_eq!(
        set(b, &id, &newer).await,
        newer,
        "a newer revision replaces it"
    );
    assert_eq!(upstreams(a, &id).await.get("gh"), Some(&newer));

    // Only the session that expired is forgotten, not one recorded meanwhile.
    a.clear_upstream_session(&id, "gh", Some("up-a"))
        .await
        .unwrap();
    assert_eq!(upstreams(b, &id).await.get("gh"), Some(&newer));
    a.clear_upstream_session(&id, "gh", Some("up-b"))
        .await
        .unwrap();
    assert!(upstreams(b, &id).await.is_empty());
    // A stateless upstream (no id) is cleared by a stale id of none.
    let stateless = upstream(None, 5);
    set(a, &id, &stateless).await;
    b.clear_upstream_session(&id, "gh", None).await.unwrap();
    assert!(upstreams(a, &id).await.is_empty());

    // For a session that is gone nothing is recorded; the caller gets its own back.
    let ghost = IdHash::of("ghost");
    assert_eq!(set(b, &ghost, &mine).await, mine);
    assert_eq!(a.get_session(&ghost).await.unwrap(), None);
}

async fn set(store: &dyn Store, id: &IdHash, u: &UpstreamSession) -> UpstreamSession {
    store.set_upstream_session(id, "gh", u).await.unwrap()
}

async fn upstreams(store: &dyn Store, id: &IdHash) -> BTreeMap<String, UpstreamSession> {
    store
        .get_session(id)
        .await
        .unwrap()
        .expect("live")
        .upstreams
}

/// 1 s idle timeout with a real sleep: sessions are timed by the store's own clock.
async fn idle_sessions_are_swept_once_and_announced(a: &dyn Store, b: &dyn Store) {
    let idle = session("idle", Endpoint::Aggregated);
    let used = session("used", Endpoint::Connection("svc".into()));
    a.create_session(&idle).await.unwrap();
    a.create_session(&used).await.unwrap();
    let timeout = Duration::from_secs(1);
    assert!(a.sweep_sessions(timeout).await.unwrap().is_empty(), "fresh");

    tokio::time::sleep(Duration::from_millis(1300)).await;
    b.touch_sessions(&[used.id_hash, IdHash::of("unknown")])
        .await
        .unwrap();
    let mut events = b.subscribe();
    // Two replicas sweep at once: the idle session goes to exactly one of them.
    let (x, y) = tokio::join!(a.sweep_sessions(timeout), b.sweep_sessions(timeout));
    let swept: Vec<SessionRecord> = x.unwrap().into_iter().chain(y.unwrap()).collect();
    assert_eq!(swept.len(), 1, "only the unused session, once: {swept:?}");
    assert_eq!(swept[0], idle);
    assert_eq!(a.get_session(&idle.id_hash).await.unwrap(), None);
    assert_eq!(b.get_session(&used.id_hash).await.unwrap(), Some(used));
    assert_eq!(
        next_event(&mut events).await,
        StoreEvent::SessionEnded {
            id_hash: idle.id_hash
        }
    );
}

// --- OAuth

/// The second locker queues behind the first and then sees what it wrote. It locks
/// only once the first holds the lock, so nothing depends on timing.
async fn the_token_lock_serializes_lockers_across_replicas(a: &dyn Store, b: &dyn Store) {
    let locked = Notify::new();
    let written = token("at-2", None);
    let first = async {
        let mut lock = a.lock_token("oauth", "").await.unwrap();
        assert_eq!(lock.current(), None, "no token yet");
        locked.notify_one();
        // Give the second locker time to queue (what is asserted holds regardless).
        tokio::time::sleep(Duration::from_millis(200)).await;
        let version = lock.write(&token("at-1", Some("rt-1"))).await.unwrap();
        assert_eq!(lock.current().map(|t| t.version), Some(version));
        lock.finish().await.unwrap();
        version
    };
    let second = async {
        locked.notified().await;
        let mut lock = b.lock_token("oauth", "").await.unwrap();
        let seen = lock.current().cloned();
        let version = lock.write(&written).await.unwrap();
        lock.finish().await.unwrap();
        (seen, version)
    };
    let (first, (seen, second)) = tokio::join!(first, second);

    let seen = seen.expect("the second locker sees the first one's token");
    let refresh = seen.refresh_token.as_ref().map(Secret::expose);
    assert_eq!((seen.version, seen.access_token.expose()), (first, "at-1"));
    assert_eq!(refresh, Some("rt-1"));
    assert!(second > first, "every write bumps the version");
    // Once committed, every replica reads it as written.
    let stored = Some(OAuthToken {
        version: second,
        ..written.clone()
    });
    assert_eq!(a.get_token("oauth", "").await.unwrap(), stored);
    assert_eq!(b.get_token("oauth", "").await.unwrap(), stored);
}

async fn deleting_a_token_under_the_lock_removes_it(store: &dyn Store) {
    let version = write_token(store, &token("at", Some("rt"))).await;
    let mut lock = store.lock_token("oauth", "").await.unwrap();
    assert_eq!(lock.current().map(|t| t.version), Some(version));
    lock.delete().await.unwrap();
    assert_eq!(lock.current(), None);
    lock.finish().await.unwrap();
    assert_eq!(store.get_token("oauth", "").await.unwrap(), None);
    let lock = store.lock_token("oauth", "").await.unwrap();
    assert_eq!(lock.current(), None);
    lock.finish().await.unwrap();
    assert_eq!(store.get_token("other", "").await.unwrap(), None);
}

/// `finish` commits: until then everyone else reads the row as it was.
async fn an_unfinished_token_write_is_not_visible(store: &dyn Store) {
    let committed = write_token(store, &token("at-1", None)).await;
    let mut lock = store.lock_token("oauth", "").await.unwrap();
    lock.write(&token("at-2", None)).await.unwrap();
    let seen = store
        .get_token("oauth", "")
        .await
        .unwrap()
        .map(|t| t.version);
    assert_eq!(seen, Some(committed), "get_token sees the committed row");
    lock.finish().await.unwrap();
    let seen = store.get_token("oauth", "").await.unwrap().unwrap();
    assert_eq!(seen.access_token.expose(), "at-2");
}

/// A lock dropped without `finish` (an error path) is released, and what it wrote
/// is discarded: nobody goes on with a write that was abandoned.
async fn a_dropped_token_lock_discards_its_write(store: &dyn Store) {
    let committed = write_token(store, &token("at-1", None)).await;
    let mut lock = store.lock_token("oauth", "").await.unwrap();
    lock.write(&token("at-2", None)).await.unwrap();
    drop(lock);
    let lock = tokio::time::timeout(Duration::from_secs(5), store.lock_token("oauth", ""))
        .await
        .expect("a dropped lock is released")
        .unwrap();
    let current = lock.current().map(|t| (t.access_token.expose(), t.version));
    assert_eq!(current, Some(("at-1", committed)), "the write is gone");
    lock.finish().await.unwrap();
}

async fn pkce_states_are_single_use_and_expire(a: &dyn Store, b: &dyn Store) {
    let pending = pkce("s-1", Timestamp::now().plus(Duration::from_secs(600)));
    a.put_pkce(&pending).await.unwrap();
    let taken = b.take_pkce(&pending.state_hash).await.unwrap();
    // No `Debug` (it holds the verifier): compared whole.
    assert!(taken.as_ref() == Some(&pending), "taken as put");
    assert!(
        a.take_pkce(&pending.state_hash).await.unwrap().is_none(),
        "single use"
    );

    let past = Timestamp::from_millis(Timestamp::now().millis() - 1000);
    let expired = pkce("s-2", past);
    a.put_pkce(&expired).await.unwrap();
    assert!(
        b.take_pkce(&expired.state_hash).await.unwrap().is_none(),
        "expired"
    );
    assert!(b.take_pkce(&IdHash::of("unknown")).await.unwrap().is_none());
}

// --- audit

/// Postgres writes rows; memory writes log lines (and has nothing to escape, so it
/// always answers 0). Clean text needs no escaping in either, so both answer 0.
async fn audit_batches_and_dead_letters_are_accepted(store: &dyn Store) {
    assert_eq!(store.write_audit(&[]).await.unwrap(), 0);
    let events: Vec<AuditEvent> = (0..3).map(audit_event).collect();
    let refs: Vec<&AuditEvent> = events.iter().collect();
    assert_eq!(store.write_audit(&refs).await.unwrap(), 0);
    // Written again (a spool replayed after a crash): the store keeps one of each.
    assert_eq!(store.write_audit(&refs).await.unwrap(), 0);
    store
        .dead_letter_audit(&events[1], "value too long")
        .await
        .unwrap();
    let swept = store.sweep_audit(Duration::from_secs(3600)).await.unwrap();
    assert_eq!(swept, 0, "nothing is an hour old yet");
}

// --- replica bus

/// Memory has one replica, so every message reaches it; Postgres delivers by channel,
/// and a message too large for NOTIFY travels through a table.
async fn bus_messages_reach_the_replicas_they_are_for(a: &dyn Store, b: &dyn Store) {
    let mut events = b.subscribe();
    let broadcast = BusMessage::TokenChanged {
        connection: "oauth".into(),
        subject: Some("alice".into()),
    };
    a.publish(None, &broadcast).await.unwrap();
    assert_eq!(next_event(&mut events).await, StoreEvent::Bus(broadcast));
    let large = BusMessage::Answer {
        session: IdHash::of("s"),
        message: "x".repeat(20_000),
    };
    a.publish(Some("replicab"), &large).await.unwrap();
    assert_eq!(next_event(&mut events).await, StoreEvent::Bus(large));
}
