//! Reconcile scenarios: a mocked API server that asserts every call, and a real
//! Postgres whose rows are checked through the gateway's store.

use std::time::Duration;

use hawser_crds::{Auth, McpConnectionStatus, condition_types};
use hawser_gateway::store::{ConnectionStatus, StoredConnection};
use kube::runtime::reflector;
use kube::runtime::watcher;

use super::*;
use crate::fixtures::{
    CONNECTION, ConnectionFixture, Scenario, Seen, TestEnv, connection, secret, timeout_after_5s,
};
use crate::status::find;

/// Runs one reconciliation of `conn` against `scenario`.
async fn step(
    env: &TestEnv,
    conn: &McpConnection,
    scenario: Scenario,
) -> (Result<Action>, Seen, Arc<Context>) {
    let (ctx, verifier) = env.context();
    let server = verifier.run(scenario);
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        reconcile(Arc::new(conn.clone()), ctx.clone()),
    )
    .await
    .expect("reconcile timed out (an unexpected API call?)");
    let seen = timeout_after_5s(server).await;
    (result, seen, ctx)
}

fn apply(
    conn: &McpConnection,
    token: Option<&str>,
    status_patch: bool,
    events: Vec<&'static str>,
) -> Scenario {
    Scenario::Apply {
        conn: conn.clone(),
        secrets: vec![("gh", token.map(|t| secret("gh", &[("token", t)])))],
        status_patch,
        events,
    }
}

/// Creates the row the way a first reconciliation does; the status it reported.
async fn created(env: &TestEnv, conn: &McpConnection, token: &str) -> McpConnectionStatus {
    let (result, mut seen, _) =
        step(env, conn, apply(conn, Some(token), true, vec!["Created"])).await;
    assert_eq!(result.unwrap(), Action::requeue(status::REQUEUE_NOT_READY));
    seen.statuses.pop().expect("a status")
}

async fn stored(env: &TestEnv) -> StoredConnection {
    env.store
        .get_connection(CONNECTION)
        .await
        .unwrap()
        .expect("the connection's row")
}

fn token_of(row: &StoredConnection) -> String {
    let spec = row.spec.as_ref().expect("an unsealable spec");
    let Auth::Bearer { token } = &spec.auth else {
        panic!("bearer auth expected, got {:?}", spec.auth)
    };
    token.inline().expect("a resolved token").to_owned()
}

/// The row as Postgres holds it: spec JSON, sealed credentials, source.
async fn raw_row(env: &TestEnv) -> (String, Option<String>, String) {
    sqlx::query_as("SELECT spec::text, credentials, source FROM connections WHERE name = $1")
        .bind(CONNECTION)
        .fetch_one(env.store.pool())
        .await
        .unwrap()
}

fn condition<'a>(status: &'a McpConnectionStatus, type_: &str) -> (&'a str, &'a str, &'a str) {
    let c = find(status, type_).unwrap_or_else(|| panic!("no {type_} condition"));
    (c.status.as_str(), c.reason.as_str(), c.message.as_str())
}

fn replica_status(
    state: &str,
    tools: i32,
    last_error: Option<&str>,
    revision: i64,
) -> ConnectionStatus {
    ConnectionStatus {
        connection: CONNECTION.into(),
        replica: "gw-1".into(),
        state: hawser_crds::ConnectionState::parse(state).expect("a connection state"),
        tools,
        last_error: last_error.map(str::to_owned),
        problems: Vec::new(),
        auth_state: None,
        revision,
        updated_at: hawser_gateway::clock::Timestamp::now(),
    }
}

#[tokio::test]
async fn new_resource_gets_the_finalizer_then_its_row_then_status() {
    let env = TestEnv::new().await;
    let conn = connection();
    let (result, _, _) = step(&env, &conn, Scenario::FinalizerCreation(conn.clone())).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert!(
        env.store
            .get_connection(CONNECTION)
            .await
            .unwrap()
            .is_none(),
        "nothing written before the finalizer"
    );

    let conn = conn.finalized();
    let status = created(&env, &conn, "tok-v1").await;
    let row = stored(&env).await;
    assert_eq!(row.source, Source::Crd);
    assert_eq!(row.generation, Some(1));
    assert_eq!(token_of(&row), "tok-v1");
    let (spec, credentials, source) = raw_row(&env).await;
    assert_eq!(source, "crd");
    assert!(
        !spec.contains("tok-v1"),
        "plaintext in the stored spec: {spec}"
    );
    let credentials = credentials.expect("sealed credentials");
    assert!(credentials.starts_with("enc:v1:") && !credentials.contains("tok-v1"));

    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.ready_replicas, Some(0));
    let (s, reason, message) = condition(&status, condition_types::SYNCED);
    assert_eq!((s, reason), ("True", "Synced"));
    assert_eq!(
        message,
        format!("generation 1 is stored as revision {}", row.revision)
    );
    assert_eq!(condition(&status, condition_types::READY).1, "Pending");
    assert_eq!(condition(&status, condition_types::AUTHORIZED).0, "True");

    // A gateway replica loads it: the next reconciliation reports it ready.
    env.store
        .write_status(&replica_status("ready", 5, None, row.revision))
        .await
        .unwrap();
    let conn = conn.with_status(status);
    let (result, seen, _) = step(
        &env,
        &conn,
        apply(&conn, Some("tok-v1"), true, vec!["Ready"]),
    )
    .await;
    assert_eq!(result.unwrap(), Action::requeue(status::REQUEUE_READY));
    let status = &seen.statuses[0];
    assert_eq!(
        condition(status, condition_types::READY),
        ("True", "Ready", "1/1 gateway replicas ready")
    );
    assert_eq!((status.tools, status.ready_replicas), (Some(5), Some(1)));
    assert_eq!(seen.events[0].type_.as_deref(), Some("Normal"));
}

#[tokio::test]
async fn a_missing_secret_or_key_is_reported_and_nothing_is_written() {
    let env = TestEnv::new().await;
    let conn = connection().finalized();
    let (result, mut seen, ctx) = step(
        &env,
        &conn,
        apply(&conn, None, true, vec!["SecretNotFound"]),
    )
    .await;
    let error = result.unwrap_err();
    assert!(matches!(error.root(), Error::SecretNotFound(_)), "{error}");
    let status = seen.statuses.pop().unwrap();
    let expected = "auth.token: Secret \"gh\" not found";
    assert_eq!(
        condition(&status, condition_types::READY),
        ("False", "SecretNotFound", expected)
    );
    assert_eq!(
        condition(&status, condition_types::SYNCED),
        ("False", "SecretNotFound", expected)
    );
    assert_eq!(seen.events[0].type_.as_deref(), Some("Warning"));
    assert_eq!(seen.events[0].note.as_deref(), Some(expected));
    assert!(
        env.store.list_connections().await.unwrap().is_empty(),
        "nothing partial is written"
    );

    // Retried with backoff, counted by reason.
    assert_eq!(
        error_policy(Arc::new(conn.clone()), &error, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    assert_eq!(
        error_policy(Arc::new(conn.clone()), &error, ctx),
        Action::requeue(Duration::from_secs(10))
    );
    let failures = env
        .metrics
        .failures
        .get_or_create(&crate::metrics::FailureLabels {
            reason: "secret_not_found",
        })
        .get();
    assert_eq!(failures, 2);

    // The Secret appears without the key: a new message, a new Warning.
    let conn = conn.with_status(status);
    let scenario = Scenario::Apply {
        conn: conn.clone(),
        secrets: vec![("gh", Some(secret("gh", &[("other", "x")])))],
        status_patch: true,
        events: vec!["SecretNotFound"],
    };
    let (result, seen, _) = step(&env, &conn, scenario).await;
    assert!(result.is_err());
    assert_eq!(
        condition(&seen.statuses[0], condition_types::READY).2,
        "auth.token: key \"token\" not found in Secret \"gh\""
    );
    assert!(env.store.list_connections().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_rotated_secret_updates_the_row() {
    let env = TestEnv::new().await;
    let conn = connection().finalized();
    let status = created(&env, &conn, "tok-v1").await;
    let before = stored(&env).await;

    let conn = conn.with_status(status);
    let (result, seen, _) = step(
        &env,
        &conn,
        apply(&conn, Some("tok-v2"), true, vec!["Updated"]),
    )
    .await;
    result.unwrap();
    let after = stored(&env).await;
    assert_eq!(token_of(&after), "tok-v2");
    assert!(after.revision > before.revision);
    let (spec, credentials, _) = raw_row(&env).await;
    assert!(!spec.contains("tok-v2") && !credentials.unwrap_or_default().contains("tok-v2"));
    assert_eq!(
        condition(&seen.statuses[0], condition_types::SYNCED).2,
        format!("generation 1 is stored as revision {}", after.revision)
    );
}

#[tokio::test]
async fn a_changed_spec_updates_the_row_and_bumps_its_revision() {
    let env = TestEnv::new().await;
    let conn = connection().finalized();
    let status = created(&env, &conn, "tok-v1").await;
    let before = stored(&env).await;

    let conn = conn
        .with_status(status)
        .with_new_url("https://mcp2.example.com/mcp");
    let (result, seen, _) = step(
        &env,
        &conn,
        apply(&conn, Some("tok-v1"), true, vec!["Updated"]),
    )
    .await;
    result.unwrap();
    let after = stored(&env).await;
    assert!(after.revision > before.revision);
    assert_eq!(after.generation, Some(2));
    assert_eq!(
        after.spec.as_ref().unwrap().url.as_deref(),
        Some("https://mcp2.example.com/mcp")
    );
    let status = &seen.statuses[0];
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(
        condition(status, condition_types::SYNCED).2,
        format!("generation 2 is stored as revision {}", after.revision)
    );
    assert!(
        status
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(2))
    );
}

#[tokio::test]
async fn an_unchanged_status_is_not_patched() {
    let env = TestEnv::new().await;
    let conn = connection().finalized();
    let status = created(&env, &conn, "tok-v1").await;
    let revision = stored(&env).await.revision;

    // Same spec, same Secret, same status: Secret read, nothing else.
    let conn = conn.with_status(status);
    let (result, seen, _) = step(&env, &conn, apply(&conn, Some("tok-v1"), false, vec![])).await;
    assert_eq!(result.unwrap(), Action::requeue(status::REQUEUE_NOT_READY));
    assert!(seen.statuses.is_empty() && seen.events.is_empty());
    assert_eq!(
        stored(&env).await.revision,
        revision,
        "no write, no notification"
    );
}

#[tokio::test]
async fn deletion_removes_the_row_then_the_finalizer() {
    let env = TestEnv::new().await;
    let conn = connection().finalized();
    let status = created(&env, &conn, "tok-v1").await;

    let conn = conn.with_status(status).needs_delete();
    let scenario = Scenario::Cleanup {
        conn: conn.clone(),
        events: vec!["Deleted"],
    };
    let (result, seen, _) = step(&env, &conn, scenario).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert!(
        env.store
            .get_connection(CONNECTION)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        seen.events[0].note.as_deref(),
        Some("connection removed from the gateway store")
    );
}

#[tokio::test]
async fn an_invalid_spec_names_the_field_and_writes_nothing() {
    let env = TestEnv::new().await;
    let conn = connection().finalized();
    let (result, seen, ctx) = step(
        &env,
        &conn,
        apply(&conn, Some(""), true, vec!["InvalidSpec"]),
    )
    .await;
    let error = result.unwrap_err();
    assert_eq!(error.metric_label(), "invalid_spec");
    assert_eq!(
        condition(&seen.statuses[0], condition_types::READY),
        ("False", "InvalidSpec", "auth.token: must not be empty")
    );
    assert!(env.store.list_connections().await.unwrap().is_empty());
    assert_eq!(
        error_policy(Arc::new(conn), &error, ctx),
        Action::requeue(crate::backoff::INVALID_SPEC_DELAY)
    );
}

#[tokio::test]
async fn a_name_collision_is_surfaced_with_a_warning() {
    let env = TestEnv::new().await;
    let conn = connection().finalized();
    let status = created(&env, &conn, "tok-v1").await;
    let revision = stored(&env).await.revision;
    let collision = "tool \"github__search\" collides with connection \"team-b/github\", which keeps it; change toolPrefix to expose it";
    let mut row = replica_status("ready", 3, Some(collision), revision);
    row.problems = vec![hawser_crds::Problem {
        kind: hawser_crds::ProblemKind::NameCollision,
        message: collision.to_owned(),
    }];
    env.store.write_status(&row).await.unwrap();

    let conn = conn.with_status(status);
    let (result, seen, _) = step(
        &env,
        &conn,
        apply(&conn, Some("tok-v1"), true, vec!["NameCollision", "Ready"]),
    )
    .await;
    result.unwrap();
    let (s, reason, message) = condition(&seen.statuses[0], condition_types::READY);
    assert_eq!((s, reason), ("True", "NameCollision"));
    assert!(message.contains(collision), "{message}");
    assert_eq!(seen.events[0].type_.as_deref(), Some("Warning"));
}

#[tokio::test]
async fn a_store_failure_is_retried_with_a_warning_and_no_status_change() {
    let env = TestEnv::new().await;
    // Closing marks the pool closed at once; the wait for the store's LISTEN
    // connection to come back is not needed here.
    let _ = tokio::time::timeout(Duration::from_millis(200), env.store.pool().close()).await;
    assert!(env.store.pool().is_closed());
    let conn = connection().finalized();
    let (result, seen, ctx) = step(
        &env,
        &conn,
        apply(&conn, Some("tok-v1"), false, vec!["SyncFailed"]),
    )
    .await;
    let error = result.unwrap_err();
    assert_eq!(error.metric_label(), "store");
    assert_eq!(seen.events[0].type_.as_deref(), Some("Warning"));
    assert_eq!(
        seen.events[0].note.as_deref(),
        Some("cannot write the connection to the gateway store; retrying")
    );
    assert_eq!(
        error_policy(Arc::new(conn), &error, ctx),
        Action::requeue(Duration::from_secs(1))
    );
}

#[tokio::test]
async fn a_replica_that_does_not_lead_does_nothing() {
    let env = TestEnv::new().await;
    let (ctx, verifier) = env.context();
    let (_tx, not_leading) = watch::channel(false);
    let ctx = Arc::new(Context::new(
        ctx.client.clone(),
        ctx.store.clone(),
        ctx.metrics.clone(),
        ctx.policy,
        not_leading,
        "standby",
    ));
    let server = verifier.run(Scenario::RadioSilence);
    let action = reconcile(Arc::new(connection().finalized()), ctx)
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    timeout_after_5s(server).await;
    assert!(env.store.list_connections().await.unwrap().is_empty());
}

#[test]
fn a_secret_maps_to_the_connections_that_use_it() {
    let mut writer = reflector::store::Writer::<McpConnection>::default();
    let uses_gh = connection();
    let mut other_namespace = connection();
    other_namespace.metadata.namespace = Some("team-b".into());
    let mut no_secret = connection();
    no_secret.metadata.name = Some("plain".into());
    no_secret.spec.auth = Auth::None;
    for conn in [uses_gh, other_namespace, no_secret] {
        writer.apply_watcher_event(&watcher::Event::Apply(conn));
    }
    let cache = writer.as_reader();
    let meta = |ns: &str, name: &str| PartialObjectMeta::<Secret> {
        metadata: kube::api::ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let refs = connections_using(&cache, &meta("team-a", "gh"));
    assert_eq!(refs, [ObjectRef::new("github").within("team-a")]);
    assert!(connections_using(&cache, &meta("team-a", "unrelated")).is_empty());
}
