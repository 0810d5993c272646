//! The Postgres store: migrations, connection rows with sealed credentials,
//! notifications. What both stores must do alike (sessions among it) is in
//! `contract.rs`.

use std::time::Duration;

use hawser_e2e::harness::test_db;
use hawser_gateway::config::{InlineOnly, Policy, Source, resolve};
use hawser_gateway::crypto::Keyring;
use hawser_gateway::store::postgres::{self, PgStore};
use hawser_gateway::store::{PutOutcome, Store, StoreEvent};

fn keyring() -> Keyring {
    Keyring::parse(&Keyring::generate_entry()).expect("generated key parses")
}

async fn store() -> (PgStore, sqlx::PgPool) {
    let db = test_db().await;
    let pool = postgres::connect(&db.url, &Default::default())
        .await
        .expect("connect");
    postgres::migrate(&pool).await.expect("migrate");
    let store = PgStore::start(pool.clone(), keyring())
        .await
        .expect("start store");
    (store, pool)
}

fn connection(name: &str, json: serde_json::Value) -> hawser_gateway::config::ConnectionConfig {
    let spec = serde_json::from_value(json).expect("spec");
    resolve(name, spec, Source::Api, Policy::default(), &InlineOnly).expect("valid spec")
}

#[tokio::test]
async fn migrations_create_every_table_and_are_idempotent_under_concurrency() {
    let db = test_db().await;
    let pool = postgres::connect(&db.url, &Default::default())
        .await
        .unwrap();
    // Five replicas starting at once: the advisory lock lets each migration apply once.
    let runs = (0..5).map(|_| {
        let pool = pool.clone();
        tokio::spawn(async move { postgres::migrate(&pool).await })
    });
    for run in futures::future::join_all(runs).await {
        run.unwrap().expect("concurrent migrate succeeds");
    }
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for t in [
        "audit_events",
        "connection_status",
        "connections",
        "oauth_pkce_states",
        "oauth_tokens",
        "sessions",
    ] {
        assert!(
            tables.iter().any(|x| x == t),
            "missing table {t} in {tables:?}"
        );
    }
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(applied as usize, postgres::MIGRATOR.iter().count());

    // A newer release applied a migration this one does not know (rolling upgrade,
    // rollback): this release still starts.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99990101000000, 'from a newer release', true, '\\x00', 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    postgres::migrate(&pool)
        .await
        .expect("an unknown newer migration does not stop start-up");
}

#[tokio::test]
async fn a_connection_round_trips_with_its_secret_sealed_at_rest() {
    let (store, pool) = store().await;
    let conn = connection(
        "github",
        serde_json::json!({"url": "https://mcp.example.com/mcp", "auth": {"type": "bearer", "token": "ghp_s3cr3t-value"}}),
    );
    let first = store.put_connection(&conn, None).await.unwrap();
    assert!(matches!(first, PutOutcome::Created { .. }), "{first:?}");

    let got = store
        .get_connection("github")
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(got.source, Source::Api);
    assert_eq!(
        got.spec.as_ref().unwrap(),
        &conn.spec,
        "spec comes back with the secret"
    );

    // Nowhere in the table is the token in plain text.
    let dump: Vec<String> = sqlx::query_scalar("SELECT row_to_json(c)::text FROM connections c")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(dump.len(), 1);
    assert!(
        !dump[0].contains("ghp_s3cr3t-value"),
        "plaintext secret in {}",
        dump[0]
    );
    assert!(
        dump[0].contains("enc:v1:"),
        "sealed credentials expected in {}",
        dump[0]
    );

    // Writing the same spec again is a no-op: same revision, no notification storm.
    let again = store.put_connection(&conn, None).await.unwrap();
    assert_eq!(
        again,
        PutOutcome::Unchanged {
            revision: first.revision()
        }
    );

    let changed = connection(
        "github",
        serde_json::json!({"url": "https://mcp.example.com/v2/mcp"}),
    );
    let updated = store.put_connection(&changed, None).await.unwrap();
    assert!(matches!(updated, PutOutcome::Updated { .. }));
    assert!(
        updated.revision() > first.revision(),
        "every write bumps the revision"
    );

    assert!(store.delete_connection("github").await.unwrap());
    assert!(!store.delete_connection("github").await.unwrap());
    assert!(store.list_connections().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_row_sealed_with_an_unknown_key_is_reported_not_dropped() {
    let (store, pool) = store().await;
    let conn = connection(
        "svc",
        serde_json::json!({"url": "http://x", "auth": {"type": "bearer", "token": "t"}}),
    );
    store.put_connection(&conn, None).await.unwrap();
    let other = PgStore::start(pool, keyring()).await.unwrap();
    let listed = other.list_connections().await.unwrap();
    assert_eq!(listed.len(), 1);
    let err = listed[0].spec.as_ref().unwrap_err();
    assert!(err.contains("not in HAWSER_ENCRYPTION_KEYS"), "{err}");
}

#[tokio::test]
async fn writes_are_announced_to_every_listener() {
    let (a, pool) = store().await;
    let b = PgStore::start(pool, keyring()).await.unwrap();
    let mut events = b.subscribe();
    let conn = connection("notify-me", serde_json::json!({"url": "http://x"}));
    let rev = a.put_connection(&conn, None).await.unwrap().revision();
    let got = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("notified")
        .unwrap();
    assert_eq!(
        got,
        StoreEvent::ConnectionChanged {
            name: "notify-me".into(),
            revision: rev
        }
    );
    a.delete_connection("notify-me").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("notified")
        .unwrap();
    assert_eq!(
        got,
        StoreEvent::ConnectionDeleted {
            name: "notify-me".into()
        }
    );
}

#[tokio::test]
async fn listener_killed_by_the_server_reconnects_and_asks_for_a_resync() {
    let (store, pool) = store().await;
    let mut events = store.subscribe();
    // Terminate every other backend of this database: the listener's connection among them.
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE '%LISTEN%'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(15), events.recv())
        .await
        .expect("resync")
        .unwrap();
    assert_eq!(got, StoreEvent::Resync);
    // And it hears changes again afterwards.
    store
        .put_connection(
            &connection("after", serde_json::json!({"url": "http://x"})),
            None,
        )
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("notified")
        .unwrap();
    assert!(
        matches!(got, StoreEvent::ConnectionChanged { ref name, .. } if name == "after"),
        "{got:?}"
    );
}
