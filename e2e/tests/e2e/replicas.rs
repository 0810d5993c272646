//! Many replicas, one Postgres, a round-robin load balancer: sessions valid
//! everywhere, answers routed to the replica that waits for them, hot reload on
//! every replica, recovery from a lost listener and from a killed replica.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use hawser_e2e::harness::cluster::Cluster;
use hawser_e2e::harness::mcp::{McpClient, text};
use hawser_e2e::harness::stack::{Fixture, python_script, run_python};
use serde_json::json;

#[tokio::test]
async fn a_python_session_spread_over_three_replicas_works_end_to_end() {
    let (cluster, fixture) = Cluster::with_fixture(3).await;
    let out = run_python(
        &python_script("replicas.py"),
        &[&cluster.lb.mcp_url(), "fx"],
        Duration::from_secs(120),
    )
    .await;
    let report: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(report["elicitations"], 4, "{report}");
    // Answers reached replicas that did not hold the call and were forwarded to it.
    let forwarded = cluster.log_lines_containing("answer forwarded to its replica");
    assert!(
        forwarded >= 1,
        "no elicitation answer crossed replicas (4 tries over 3 replicas)"
    );
    // The upstream saw one session for the client, not one per replica.
    let sessions: HashSet<String> = fixture
        .events()
        .await
        .iter()
        .filter(|e| e["kind"] == "request" && e["tool"] == "elicit")
        .filter_map(|e| e["session"].as_str().map(String::from))
        .collect();
    assert_eq!(
        sessions.len(),
        1,
        "upstream sessions for one client session: {sessions:?}"
    );
}

#[tokio::test]
async fn a_session_is_valid_on_every_replica_and_delete_ends_it_everywhere() {
    let (cluster, _fixture) = Cluster::with_fixture(3).await;
    let client = McpClient::connect(&cluster.replicas[0].mcp_url()).await;
    for r in &cluster.replicas {
        let mut c = McpClient::new(&r.mcp_url());
        c.session = client.session.clone();
        let reply = c.call("fx__echo", json!({"text": "here"})).await;
        assert_eq!(text(reply.result()), "here", "replica {}", r.base);
    }
    let mut on_other = McpClient::new(&cluster.replicas[2].mcp_url());
    on_other.session = client.session.clone();
    assert_eq!(on_other.delete().await, 204);
    let deadline = Instant::now() + Duration::from_secs(1);
    for r in &cluster.replicas {
        let mut c = McpClient::new(&r.mcp_url());
        c.session = client.session.clone();
        loop {
            let status = c.request("ping", json!({})).await.status;
            if status == 404 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "replica {} still accepts the deleted session",
                r.base
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn delete_on_a_replica_that_never_called_upstream_ends_the_upstream_session() {
    let (cluster, fixture) = Cluster::with_fixture(2).await;
    // The session starts on replica 2, which caches it with no upstream session...
    let on_b = McpClient::connect(&cluster.replicas[1].mcp_url()).await;
    // ...and its calls reach the upstream through replica 1.
    let mut on_a = McpClient::new(&cluster.replicas[0].mcp_url());
    on_a.session = on_b.session.clone();
    let reply = on_a.call("fx__whoami", json!({})).await;
    let seen: serde_json::Value = serde_json::from_str(&text(reply.result())).expect("whoami");
    let upstream = seen["session"]
        .as_str()
        .expect("upstream session")
        .to_owned();
    assert_eq!(on_b.delete().await, 204);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ended = fixture
            .events()
            .await
            .iter()
            .any(|e| e["kind"] == "session_deleted" && e["session"] == upstream.as_str());
        if ended {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the upstream session {upstream} outlived the client's session"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn admin_changes_reach_every_replica_and_open_sessions_hear_about_them() {
    let fixture = Fixture::start(&[]);
    let cluster = Cluster::start(3, "").await;
    let mut watcher = McpClient::connect(&cluster.lb.mcp_url()).await;
    let mut stream = watcher.listen().await;

    assert_eq!(
        cluster
            .put_connection(0, "fx", json!({"url": fixture.mcp_url()}))
            .await,
        201
    );
    cluster
        .wait_all("added", Duration::from_secs(20), |n| {
            n.iter().any(|t| t == "fx__echo")
        })
        .await;
    let note = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.recv().await {
                Some(m) if m["method"] == "notifications/tools/list_changed" => return m,
                Some(_) => continue,
                None => panic!("stream closed"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no list_changed on the open session"));
    assert_eq!(note["jsonrpc"], "2.0");
    assert!(watcher.tool_names().await.iter().any(|t| t == "fx__echo"));

    // Changed: echo hidden everywhere.
    assert_eq!(
        cluster
            .put_connection(
                1,
                "fx",
                json!({"url": fixture.mcp_url(), "tools": {"exclude": ["echo"]}})
            )
            .await,
        200
    );
    cluster
        .wait_all("changed", Duration::from_secs(20), |n| {
            !n.iter().any(|t| t == "fx__echo") && n.iter().any(|t| t == "fx__whoami")
        })
        .await;

    // Every replica reports its view.
    let status = cluster.admin_get(2, "/api/v1/connections/fx/status").await;
    let replicas = status["replicas"].as_array().cloned().unwrap_or_default();
    assert_eq!(replicas.len(), 3, "{status}");
    assert!(
        replicas
            .iter()
            .all(|r| r["state"] == "ready" && r["current"] == true),
        "{status}"
    );

    // Removed everywhere.
    assert_eq!(cluster.delete_connection(2, "fx").await, 204);
    cluster
        .wait_all("removed", Duration::from_secs(20), |n| {
            !n.iter().any(|t| t.starts_with("fx__"))
        })
        .await;

    // Validation errors name the field.
    let r = hawser_e2e::harness::http()
        .put(format!(
            "{}/api/v1/connections/bad",
            cluster.replicas[0].base
        ))
        .bearer_auth(hawser_e2e::harness::cluster::ADMIN_TOKEN)
        .json(&json!({"url": fixture.mcp_url(), "timeouts": {"call": "soon"}}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    assert_eq!(body["field"], "timeouts.call", "{body}");
}

#[tokio::test]
async fn a_replica_whose_listener_is_killed_still_converges() {
    let fixture = Fixture::start(&[]);
    let cluster = Cluster::start(3, "").await;
    use sqlx::Connection as _;
    let mut admin = sqlx::PgConnection::connect(&cluster.db.url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Cut every replica's LISTEN connection, and change a connection while they reconnect.
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        killed.len() >= 3,
        "expected a listener per replica, terminated {}",
        killed.len()
    );
    assert_eq!(
        cluster
            .put_connection(0, "fx", json!({"url": fixture.mcp_url()}))
            .await,
        201
    );
    cluster
        .wait_all(
            "converged after listener loss",
            Duration::from_secs(20),
            |n| n.iter().any(|t| t == "fx__echo"),
        )
        .await;
}

#[tokio::test]
async fn killing_a_replica_under_load_loses_no_session_and_no_call() {
    let (mut cluster, _fixture) = Cluster::with_fixture(3).await;
    let lb = cluster.lb.mcp_url();
    let stop = Instant::now() + Duration::from_secs(6);
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let lb = lb.clone();
            tokio::spawn(async move {
                let mut client = McpClient::connect(&lb).await;
                let (mut calls, mut retries, mut lost_session) = (0u32, 0u32, false);
                while Instant::now() < stop {
                    let text_sent = format!("w{w}-{calls}");
                    let mut attempt = 0;
                    loop {
                        attempt += 1;
                        let reply = client.call("fx__echo", json!({"text": text_sent})).await;
                        if reply.status == 404 {
                            lost_session = true;
                        }
                        if reply.status == 200
                            && reply.messages.iter().any(|m| m.get("result").is_some())
                        {
                            assert_eq!(text(reply.result()), text_sent);
                            break;
                        }
                        retries += 1;
                        assert!(attempt < 20, "call never succeeded: {reply:?}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    calls += 1;
                }
                (calls, retries, lost_session)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.replicas[1].child.kill();
    let mut total = 0;
    let mut retried = 0;
    for w in futures::future::join_all(workers).await {
        let (calls, retries, lost) = w.unwrap_or_else(|e| panic!("worker panicked: {e}"));
        assert!(!lost, "a session was lost when a replica died");
        total += calls;
        retried += retries;
    }
    assert!(total > 50, "too few calls completed: {total}");
    eprintln!("{total} calls completed, {retried} retried after the kill");
}

/// The upstream session `reply` (of the fixture's `whoami`) was served in.
fn upstream_session_of(reply: &hawser_e2e::harness::mcp::Reply) -> String {
    serde_json::from_str::<serde_json::Value>(&text(reply.result())).unwrap_or_default()["session"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Waits until the fixture saw `logging/setLevel` with `level` in upstream session
/// `session`.
async fn wait_set_level(fixture: &Fixture, session: &str, level: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen =
            fixture.events().await.iter().any(|e| {
                e["kind"] == "set_level" && e["session"] == session && e["level"] == level
            });
        if seen {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "upstream session {session} was never told level {level}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A log level set through one replica reaches the upstream session another replica
/// opens later for the same client (here after the connection changed), although
/// that replica had loaded the session before the level was set.
#[tokio::test]
async fn a_log_level_set_through_one_replica_reaches_upstream_sessions_another_opens() {
    let fixture = Fixture::start(&[]);
    let cluster = Cluster::start(2, "").await;
    let put = |call: &'static str| {
        cluster.put_connection(
            0,
            "fx",
            json!({"url": fixture.mcp_url(), "timeouts": {"call": call}}),
        )
    };
    assert_eq!(put("3s").await, 201);
    cluster
        .wait_all("fx loaded", Duration::from_secs(20), |names| {
            names.iter().any(|n| n == "fx__whoami")
        })
        .await;
    let mut on_b = McpClient::connect(&cluster.replicas[1].mcp_url()).await;
    let first = upstream_session_of(&on_b.call("fx__whoami", json!({})).await);
    assert!(!first.is_empty());

    let mut on_a = McpClient::new(&cluster.replicas[0].mcp_url());
    on_a.session = on_b.session.clone();
    let reply = on_a
        .request("logging/setLevel", json!({"level": "error"}))
        .await;
    assert_eq!(reply.result(), &json!({}), "{reply:?}");
    wait_set_level(&fixture, &first, "error").await;

    // A new revision: replica 2 opens the client's next upstream session.
    assert_eq!(put("4s").await, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    let second = loop {
        let reply = on_b.call("fx__whoami", json!({})).await;
        let session = upstream_session_of(&reply);
        if !session.is_empty() && session != first {
            break session;
        }
        assert!(
            Instant::now() < deadline,
            "no new upstream session: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    wait_set_level(&fixture, &second, "error").await;
}
