//! The audit writer against a real PostgreSQL: text Postgres cannot store is escaped
//! and marked, and an event the store refuses never blocks the events behind it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hawser_e2e::harness::test_db;
use hawser_gateway::audit::{Auditor, Record};
use hawser_gateway::config::AuditSettings;
use hawser_gateway::crypto::Keyring;
use hawser_gateway::metrics::Metrics;
use hawser_gateway::store::postgres::{self, PgStore};
use hawser_gateway::store::{AuditEvent, Store};
use tokio_util::sync::CancellationToken;

fn event(i: usize, target: &str) -> AuditEvent {
    AuditEvent {
        event_id: String::new(),
        ts: hawser_gateway::clock::Timestamp::now(),
        request_id: format!("req-{i}"),
        session: None,
        replica: "r1".into(),
        subject: Some("alice".into()),
        auth_type: Some("bearer".into()),
        groups: Vec::new(),
        remote_addr: None,
        user_agent: None,
        method: "tools/call".into(),
        connection: Some("fx".into()),
        target: Some(target.into()),
        params: None,
        success: true,
        error_category: None,
        error_message: None,
        duration_ms: 1.0,
        request_bytes: None,
        response_bytes: None,
        content_blocks: None,
        progress_count: None,
        token_subject: None,
    }
}

/// A migrated database of the test's own.
async fn migrated() -> sqlx::PgPool {
    let db = test_db().await;
    let pool = postgres::connect(&db.url, &Default::default())
        .await
        .unwrap();
    postgres::migrate(&pool).await.unwrap();
    pool
}

/// The store on `pool`, with a fresh keyring.
async fn store_on(pool: &sqlx::PgPool) -> PgStore {
    let keyring = Keyring::parse(&Keyring::generate_entry()).unwrap();
    PgStore::start(pool.clone(), keyring).await.unwrap()
}

async fn count(pool: &sqlx::PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

async fn wait_for(pool: &sqlx::PgPool, sql: &'static str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n = count(pool, sql).await;
        if n >= want {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: {n} of {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn nul_is_escaped_and_a_refused_event_is_dead_lettered_without_blocking_the_others() {
    let pool = migrated().await;
    // A rule the writer knows nothing about makes one event unstorable: the kind of
    // refusal no escaping can cure.
    sqlx::query("ALTER TABLE audit_events ADD CONSTRAINT no_poison CHECK (target <> 'poison')")
        .execute(&pool)
        .await
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(store_on(&pool).await);
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let spool = tempfile::tempdir().unwrap();
    let auditor = Auditor::start(
        AuditSettings::default(),
        store,
        hawser_gateway::store::Health::always_up(),
        Some(spool.path().to_owned()),
        metrics.clone(),
        shutdown.clone(),
    );

    let mut nul = event(0, "bad\0name");
    nul.params = Some(hawser_gateway::store::AuditParams::raw(
        r#"{"name":"bad\u0000name","arguments":{"text":"\u0000"}}"#.into(),
    ));
    auditor.record(Record {
        event: Box::new(nul),
        params: None,
        response: None,
    });
    for i in 1..=50 {
        let target = if i == 20 { "poison" } else { "echo" };
        let mut e = event(i, target);
        if i == 7 {
            e.groups = vec!["eng".into(), "on-call".into()];
        }
        auditor.record(Record {
            event: Box::new(e),
            params: None,
            response: None,
        });
    }
    wait_for(&pool, "SELECT count(*) FROM audit_events", 50).await;
    wait_for(&pool, "SELECT count(*) FROM audit_dead_letters", 1).await;

    let (target, params, escaped): (String, serde_json::Value, bool) = sqlx::query_as(
        "SELECT target, params, escaped FROM audit_events WHERE request_id = 'req-0'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(target, "bad\\u0000name", "NUL kept as its visible escape");
    assert_eq!(params["arguments"]["text"], "\\u0000");
    assert!(escaped, "the row says it was escaped");
    let (groups,): (Option<serde_json::Value>,) =
        sqlx::query_as("SELECT groups FROM audit_events WHERE request_id = 'req-7'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(groups, Some(serde_json::json!(["eng", "on-call"])));
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM audit_events WHERE groups ? 'eng'"
        )
        .await,
        1,
        "queryable by group"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM audit_events WHERE escaped").await,
        1
    );
    let (error, kept): (String, String) =
        sqlx::query_as("SELECT error, event FROM audit_dead_letters")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(error.contains("no_poison"), "{error}");
    assert!(kept.contains("\"req-20\""), "{kept}");

    let text = metrics.render();
    for line in [
        "hawser_audit_events_escaped_total 1",
        "hawser_audit_events_dead_lettered_total 1",
        "hawser_audit_events_written_total 50",
        "hawser_audit_queue_depth 0",
        "hawser_audit_events_dropped_total{reason=\"unwritable\"} 0",
    ] {
        assert!(text.contains(line), "{line} missing in\n{text}");
    }
    shutdown.cancel();
}

#[tokio::test]
async fn events_that_do_not_fit_in_the_queue_wait_on_disk_and_are_all_written_in_order() {
    let pool = migrated().await;
    let store: Arc<dyn Store> = Arc::new(store_on(&pool).await);
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let spool = tempfile::tempdir().unwrap();
    let settings = AuditSettings {
        buffer: 5,
        ..AuditSettings::default()
    };
    let auditor = Auditor::start(
        settings,
        store,
        hawser_gateway::store::Health::always_up(),
        Some(spool.path().to_owned()),
        metrics.clone(),
        shutdown.clone(),
    );
    // Far more than the queue holds, and gaps longer than one batch.
    for i in 0..1_200 {
        auditor.record(Record {
            event: Box::new(event(i, "echo")),
            params: None,
            response: None,
        });
    }
    wait_for(&pool, "SELECT count(*) FROM audit_events", 1_200).await;
    let distinct: i64 = sqlx::query_scalar("SELECT count(DISTINCT request_id) FROM audit_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(distinct, 1_200, "each event once");
    let text = metrics.render();
    let spilled: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("hawser_audit_events_spilled_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(spilled > 0.0, "nothing waited on disk:\n{text}");
    assert!(
        text.contains("hawser_audit_events_dropped_total{reason=\"buffer_full\"} 0"),
        "{text}"
    );
    shutdown.cancel();
}

/// Every column reads back as it was written (the batch goes to PostgreSQL in its
/// binary COPY format), and a batch written again keeps one row per event.
#[tokio::test]
async fn every_column_reads_back_and_a_batch_written_again_is_kept_once() {
    let pool = migrated().await;
    let store = store_on(&pool).await;

    let mut full = event(1, "deploy");
    full.event_id = "spool-1".into();
    full.ts = hawser_gateway::clock::Timestamp::from_millis(1_796_601_600_123);
    full.session = Some("5e55".into());
    full.groups = vec!["eng".into(), "on-call".into()];
    full.remote_addr = Some("10.1.2.3".into());
    full.user_agent = Some("python-httpx/0.28.1 ünïcode".into());
    full.params = Some(hawser_gateway::store::AuditParams::raw(
        r#"{"name":"deploy","arguments":{"to":"prod","n":[1,2.5,null]}}"#.into(),
    ));
    full.success = false;
    full.error_category = Some("upstream".into());
    full.error_message = Some("error -32000: it broke".into());
    full.duration_ms = 12.625;
    full.request_bytes = Some(1 << 40);
    full.response_bytes = Some(0);
    full.content_blocks = Some(3);
    full.progress_count = Some(7);
    full.token_subject = Some("alice@upstream".into());
    let mut sparse = event(2, "echo");
    sparse.event_id = "spool-2".into();
    sparse.subject = None;
    sparse.auth_type = None;
    sparse.connection = None;
    // Before 2000-01-01 (PostgreSQL's epoch): a negative offset in the binary form.
    sparse.ts = hawser_gateway::clock::Timestamp::from_millis(915_148_800_001);

    let batch = [&full, &sparse];
    assert_eq!(store.write_audit(&batch).await.unwrap(), 0);
    assert_eq!(store.write_audit(&batch).await.unwrap(), 0);
    let third = AuditEvent {
        event_id: "spool-3".into(),
        ..event(3, "echo")
    };
    // One new event among two already stored.
    assert_eq!(store.write_audit(&[&full, &third]).await.unwrap(), 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM audit_events").await, 3);

    let page = store
        .audit_page(&hawser_gateway::store::AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let read = |id: &str| {
        page.iter()
            .find(|r| r.event.event_id == id)
            .map(|r| r.event.clone())
            .unwrap_or_else(|| panic!("{id} not read back: {page:?}"))
    };
    assert_eq!(read("spool-1"), full);
    assert_eq!(read("spool-2"), sparse);
    assert_eq!(read("spool-3"), third);
}
