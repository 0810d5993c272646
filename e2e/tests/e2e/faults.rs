//! The fault suite: what Hawser promises when a replica dies, Postgres goes away or
//! an upstream restarts, checked under load. Each test prints the figures that
//! docs/reliability.md quotes (`FAULT …` lines). `HAWSER_FAULTS_LONG=1` runs every
//! fault longer, for release checks.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hawser_e2e::harness::cluster::Cluster;
use hawser_e2e::harness::mcp::McpClient;
use hawser_e2e::harness::stack::{Fixture, Gateway};
use hawser_e2e::harness::{TestCluster, env_var, http, pg};
use serde_json::{Value, json};

const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// How much longer the faults last in the long mode.
fn scale() -> u32 {
    if env_var("HAWSER_FAULTS_LONG").is_some() {
        4
    } else {
        1
    }
}

/// One call of the load: when it started, its request id, whether it succeeded.
#[derive(Debug, Clone)]
struct Call {
    started: Instant,
    request_id: String,
    ok: bool,
    /// What the client got, for failure messages.
    #[allow(dead_code)]
    detail: String,
}

/// `workers` clients calling `fx__echo` back to back through `url` for `run_for`,
/// each call with its own `X-Request-Id`. Every worker keeps its session.
async fn load(url: &str, sessions: Vec<String>, run_for: Duration) -> Vec<Call> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
    let deadline = Instant::now() + run_for;
    let mut tasks = Vec::new();
    for session in sessions {
        let (url, calls) = (url.to_owned(), calls.clone());
        tasks.push(tokio::spawn(async move {
            let client = http();
            while Instant::now() < deadline {
                let n = NEXT.fetch_add(1, Ordering::Relaxed);
                let request_id = format!("fault-{n}");
                let started = Instant::now();
                let sent = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-session-id", &session)
                    .header("x-request-id", &request_id)
                    .timeout(Duration::from_secs(10))
                    .json(&json!({"jsonrpc": "2.0", "id": n, "method": "tools/call",
                                  "params": {"name": "fx__echo", "arguments": {"text": "load"}}}))
                    .send()
                    .await;
                let (ok, detail) = match sent {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let body = r.text().await.unwrap_or_default();
                        (
                            status == 200 && body.contains("\"result\""),
                            format!("{status} {body}"),
                        )
                    }
                    Err(e) => (false, e.to_string()),
                };
                let mut calls = calls.lock().unwrap_or_else(|p| p.into_inner());
                calls.push(Call {
                    started,
                    request_id,
                    ok,
                    detail: detail.chars().take(300).collect(),
                });
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Request ids of the `tools/call` audit rows in `db`.
async fn audited(db: &str) -> HashSet<String> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(db)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query_scalar::<_, String>(
        "SELECT request_id FROM audit_events WHERE method = 'tools/call'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .into_iter()
    .collect()
}

/// Waits until every successful call of `calls` has its audit row; returns how many
/// have none then.
async fn missing_rows(db: &str, calls: &[Call], timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let rows = audited(db).await;
        let missing = calls
            .iter()
            .filter(|c| c.ok && !rows.contains(&c.request_id))
            .count();
        if missing == 0 || Instant::now() > deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sessions opened through `url`, with the fixture's tools listed.
async fn sessions(url: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut c = McpClient::connect(url).await;
        c.wait_for_tool("fx__echo").await;
        out.push(c.session.clone().unwrap_or_default());
    }
    out
}

#[tokio::test]
async fn kill_9_of_one_of_three_replicas_loses_no_session_and_no_audit_row() {
    let (mut cluster, _fixture) = Cluster::with_fixture(3).await;
    let url = cluster.lb.mcp_url();
    let sessions = sessions(&url, 4).await;
    let run_for = Duration::from_secs(9) * scale();
    let loader = tokio::spawn({
        let url = url.clone();
        async move { load(&url, sessions, run_for).await }
    });
    tokio::time::sleep(run_for / 3).await;
    let killed_at = Instant::now();
    cluster.replicas[1].child.kill();
    let calls = loader.await.unwrap_or_else(|e| panic!("{e}"));

    // Calls that started after the kill (and after nginx saw the replica gone)
    // succeed; only those in flight on the killed replica may fail.
    let settle = Duration::from_millis(500);
    let after: Vec<&Call> = calls
        .iter()
        .filter(|c| c.started > killed_at + settle)
        .collect();
    let failed_after: Vec<&&Call> = after.iter().filter(|c| !c.ok).collect();
    let in_flight = calls
        .iter()
        .filter(|c| !c.ok && c.started <= killed_at + settle)
        .count();
    assert!(
        after.len() > 50,
        "too few calls after the kill: {}",
        after.len()
    );
    assert!(
        failed_after.is_empty(),
        "{} of {} calls after the kill failed, e.g. {:?}",
        failed_after.len(),
        after.len(),
        failed_after.first()
    );

    // The killed replica comes back with its spool (as a pod's container restarts
    // with its emptyDir) and writes what it had not written yet.
    cluster.revive(1).await;
    let ok = calls.iter().filter(|c| c.ok).count();
    let missing = missing_rows(&cluster.db.url, &calls, Duration::from_secs(30)).await;
    println!(
        "FAULT kill -9 of 1 of 3 replicas: {ok} calls succeeded, {} failed while in flight on it, \
         {} of {} after it failed, {missing} audit rows missing after the spool replayed",
        in_flight,
        failed_after.len(),
        after.len()
    );
    assert_eq!(missing, 0, "successful calls without an audit row");
}

/// A gateway in shared mode on a Postgres cluster of its own, which the test stops.
async fn gateway_on_own_postgres(
    fixture: &Fixture,
    spool: &std::path::Path,
) -> (TestCluster, pg::TestDb, Gateway) {
    let cluster = tokio::task::spawn_blocking(TestCluster::start)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let db = pg::create_database(&cluster.url("postgres"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let gateway = start_gateway(fixture, &db.url, spool);
    gateway.wait_ready().await;
    (cluster, db, gateway)
}

fn start_gateway(fixture: &Fixture, db: &str, spool: &std::path::Path) -> Gateway {
    Gateway::start(
        &format!(
            "connections:\n  - name: fx\n    url: {url}\n  - name: fx2\n    url: {url}\n",
            url = fixture.mcp_url()
        ),
        &[
            ("DATABASE_URL", db),
            ("HAWSER_ENCRYPTION_KEYS", KEYS),
            ("HAWSER_REPLICA_ID", "solo"),
            ("HAWSER_AUDIT_SPOOL_DIR", &spool.to_string_lossy()),
        ],
    )
}

/// How long `/readyz` takes, and what it answers.
async fn readyz(gateway: &Gateway) -> (Duration, u16) {
    let started = Instant::now();
    let status = http()
        .get(format!("{}/readyz", gateway.base))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    (started.elapsed(), status)
}

#[tokio::test]
async fn without_postgres_answers_stay_fast_calls_go_on_and_no_audit_row_is_lost() {
    let fixture = Fixture::start(&[]);
    let spool = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (mut pg, db, gateway) = gateway_on_own_postgres(&fixture, spool.path()).await;
    let url = gateway.mcp_url();
    let sessions = sessions(&url, 2).await;
    let outage = Duration::from_secs(10) * scale();
    let run_for = outage + Duration::from_secs(6);
    let loader = tokio::spawn({
        let url = url.clone();
        async move { load(&url, sessions.clone(), run_for).await }
    });
    // A session that has not used the second connection yet.
    let mut late = McpClient::connect(&url).await;
    late.wait_for_tool("fx2__echo").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    pg = tokio::task::spawn_blocking(move || {
        pg.stop().unwrap_or_else(|e| panic!("{e}"));
        pg
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let stopped = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Readiness says so at once; a new session is refused at once, with a hint.
    let (took, status) = readyz(&gateway).await;
    assert_eq!(status, 503, "readiness while Postgres is away");
    assert!(took < Duration::from_secs(1), "/readyz took {took:?}");
    let started = Instant::now();
    let r = McpClient::new(&url).request("initialize", json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}})).await;
    let init_took = started.elapsed();
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        init_took < Duration::from_secs(2),
        "initialize took {init_took:?}"
    );
    // An existing session's first call to another connection works meanwhile.
    let started = Instant::now();
    let r = late.call("fx2__echo", json!({"text": "late"})).await;
    let first_call_took = started.elapsed();
    assert!(
        r.messages.iter().any(|m| m.get("result").is_some()),
        "{r:?}"
    );

    let remaining = outage.saturating_sub(stopped.elapsed());
    pg = tokio::task::spawn_blocking(move || {
        std::thread::sleep(remaining);
        pg.launch().unwrap_or_else(|e| panic!("{e}"));
        pg
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let calls = loader.await.unwrap_or_else(|e| panic!("{e}"));
    let failed: Vec<&Call> = calls.iter().filter(|c| !c.ok).collect();
    let missing = missing_rows(&db.url, &calls, Duration::from_secs(30)).await;
    println!(
        "FAULT Postgres away {outage:?}: {} calls, {} failed, {missing} audit rows missing; \
         /readyz answered in {took:?}, initialize refused in {init_took:?}, \
         a session's first call to a new connection took {first_call_took:?}",
        calls.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} calls failed: {:?}",
        failed.len(),
        failed.first()
    );
    assert_eq!(missing, 0);
    drop(pg);
}

#[tokio::test]
async fn sigterm_during_a_postgres_outage_keeps_every_event_for_the_next_start() {
    let fixture = Fixture::start(&[]);
    let spool = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (mut pg, db, mut gateway) = gateway_on_own_postgres(&fixture, spool.path()).await;
    let url = gateway.mcp_url();
    let sessions = sessions(&url, 1).await;
    pg = tokio::task::spawn_blocking(move || {
        pg.stop().unwrap_or_else(|e| panic!("{e}"));
        pg
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let calls = load(&url, sessions, Duration::from_secs(2)).await;
    let ok = calls.iter().filter(|c| c.ok).count();
    assert!(ok >= 20, "too few calls while Postgres was away: {ok}");

    let asked = Instant::now();
    gateway.child.terminate(Duration::from_secs(20));
    let stopped_in = asked.elapsed();
    // Within a pod's grace period (30 s by default), with room to spare.
    assert!(
        stopped_in < Duration::from_secs(10),
        "took {stopped_in:?} to stop"
    );
    let kept = gateway
        .child
        .lines()
        .iter()
        .any(|l| l.contains("kept in the spool"));
    assert!(
        kept,
        "no word of the events kept:\n{}",
        gateway.child.lines().join("\n")
    );

    pg = tokio::task::spawn_blocking(move || {
        pg.launch().unwrap_or_else(|e| panic!("{e}"));
        pg
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let again = start_gateway(&fixture, &db.url, spool.path());
    again.wait_ready().await;
    let missing = missing_rows(&db.url, &calls, Duration::from_secs(30)).await;
    println!(
        "FAULT SIGTERM while Postgres was away: stopped in {stopped_in:?}, {ok} events spooled, \
         {missing} missing after the next start"
    );
    assert_eq!(missing, 0);
    drop(pg);
}

#[tokio::test]
async fn calls_recover_within_a_second_of_a_restarted_upstream_listening() {
    let mut fixture = Fixture::start(&[]);
    let gateway = Gateway::in_front_of(&fixture).await;
    let mut client = McpClient::connect(&gateway.mcp_url()).await;
    client.wait_for_tool("fx__echo").await;
    async fn call(client: &mut McpClient) -> bool {
        let r = client.call("fx__echo", json!({"text": "up?"})).await;
        r.messages.iter().any(|m: &Value| m.get("result").is_some())
    }
    assert!(call(&mut client).await);
    fixture.kill();
    // Long enough for the gateway's re-dial back-off to have grown.
    let down = Duration::from_secs(4) * scale();
    let deadline = Instant::now() + down;
    while Instant::now() < deadline {
        assert!(
            !call(&mut client).await,
            "a call succeeded with the upstream down"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    fixture.restart();
    let listening = Instant::now();
    let recovered = loop {
        if call(&mut client).await {
            break listening.elapsed();
        }
        assert!(
            listening.elapsed() < Duration::from_secs(10),
            "calls did not recover"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "FAULT upstream restarted after {down:?} down: calls recovered {recovered:?} after it listened"
    );
    assert!(
        recovered < Duration::from_secs(1),
        "calls recovered only {recovered:?} after the upstream listened"
    );
}

#[tokio::test]
async fn without_postgres_a_rate_limit_holds_locally_and_says_so() {
    let fixture = Fixture::start(&[]);
    let spool = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut pg = tokio::task::spawn_blocking(TestCluster::start)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let db = pg::create_database(&pg.url("postgres"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let gateway = Gateway::start(
        &format!(
            "connections:\n  - name: fx\n    url: {}\npolicies:\n  - name: limited\n    targetRefs: [{{name: fx}}]\n    rules: [{{}}]\n    rateLimits: [{{tools: [echo], requests: 5, per: 1h}}]\n",
            fixture.mcp_url()
        ),
        &[
            ("DATABASE_URL", &db.url),
            ("HAWSER_ENCRYPTION_KEYS", KEYS),
            ("HAWSER_REPLICA_ID", "solo"),
            ("HAWSER_AUDIT_SPOOL_DIR", &spool.path().to_string_lossy()),
        ],
    );
    gateway.wait_ready().await;
    let mut client = McpClient::connect(&gateway.mcp_url()).await;
    client.wait_for_tool("fx__echo").await;
    pg = tokio::task::spawn_blocking(move || {
        pg.stop().unwrap_or_else(|e| panic!("{e}"));
        pg
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // The bucket is out of reach: the replica (the only one alive) limits on its own.
    let started = Instant::now();
    let mut admitted = 0;
    let mut codes = Vec::new();
    for _ in 0..12 {
        let r = client.call("fx__echo", json!({"text": "x"})).await;
        match r.response().get("result") {
            Some(_) => admitted += 1,
            None => codes.push(r.response()["error"]["code"].clone()),
        }
    }
    let took = started.elapsed();
    println!("FAULT rate limit without Postgres: {admitted} of 12 admitted in {took:?}");
    assert_eq!(admitted, 5, "the limit holds without the store");
    assert!(
        took < Duration::from_secs(10),
        "calls waited for the store: {took:?}"
    );
    assert!(codes.iter().all(|c| *c == json!(-32013)), "{codes:?}");
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains("hawser_rate_limit_fallback 1"),
        "the fallback is visible"
    );
    tokio::task::spawn_blocking(move || pg.launch().unwrap_or_else(|e| panic!("{e}")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}
