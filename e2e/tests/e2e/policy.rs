//! McpPolicy through three replicas behind nginx: each caller sees exactly what the
//! policies allow, on /mcp and /mcp/{connection}, in both protocol eras; a condition on
//! arguments decides calls; hidden tools answer like unknown ones; a change reaches
//! every replica; refusals are audited.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hawser_e2e::harness::cluster::{ADMIN_TOKEN, Cluster};
use hawser_e2e::harness::http;
use hawser_e2e::harness::mcp::McpClient;
use hawser_e2e::harness::stack::Fixture;
use serde_json::{Value, json};

const CALLERS: [(&str, &str); 3] = [
    ("alice", "a-token"),
    ("bob", "b-token"),
    ("carol", "c-token"),
];

fn config(fixture: &Fixture) -> String {
    format!(
        "clientAuth:
  tokens:
    - {{subject: alice, token: a-token, groups: [team-a]}}
    - {{subject: bob, token: b-token, groups: [on-call]}}
    - {{subject: carol, token: c-token}}
connections:
  - name: fx
    url: {}
",
        fixture.mcp_url()
    )
}

fn policy() -> Value {
    json!({"targetRefs": [{"name": "fx"}], "rules": [
        {"groups": ["team-a"], "tools": ["echo", "whoami", "sl*"]},
        {"tools": ["slow"], "effect": "deny"},
        {"groups": ["on-call"], "tools": ["echo"], "when": "args.text == 'staging' || 'sre' in caller.groups"},
    ]})
}

async fn put_policy(base: &str, name: &str, spec: &Value) -> (u16, Value) {
    let r = http()
        .put(format!("{base}/api/v1/policies/{name}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(spec)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Tools a legacy session of `token` lists at `url`.
async fn tools(url: &str, token: &str) -> BTreeSet<String> {
    let mut c = McpClient::connect_as(url, token).await;
    c.tool_names().await.into_iter().collect()
}

/// Tools a 2026-07-28 request lists (no session).
async fn modern_tools(url: &str, token: &str) -> (BTreeSet<String>, Value) {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "1"}}}});
    let r: Value = http()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/list")
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let names = r["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    (names, r["result"].clone())
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[tokio::test]
async fn callers_see_and_call_exactly_what_policies_allow_on_every_replica() {
    let fixture = Fixture::start(&[]);
    let cluster = Cluster::start(3, &config(&fixture)).await;
    let lb = cluster.lb.base.clone();
    let all_before = tools(&format!("{lb}/mcp"), "c-token").await;
    assert!(
        all_before.len() > 10,
        "no policy yet: carol sees everything ({all_before:?})"
    );

    let (status, body) = put_policy(&cluster.replicas[0].base, "fx-access", &policy()).await;
    assert_eq!(status, 201, "{body}");
    let expected = [
        ("alice", set(&["echo", "whoami"])),
        ("bob", set(&["echo"])),
        ("carol", set(&[])),
    ];
    // Every replica, on both endpoints and in both eras.
    let deadline = Instant::now() + Duration::from_secs(5);
    for r in &cluster.replicas {
        for ((subject, token), (_, want)) in CALLERS.iter().zip(&expected) {
            let prefixed: BTreeSet<String> = want.iter().map(|t| format!("fx__{t}")).collect();
            loop {
                let got = tools(&format!("{}/mcp", r.base), token).await;
                if got == prefixed || Instant::now() > deadline {
                    assert_eq!(got, prefixed, "{subject} on {} /mcp", r.base);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(
                &tools(&format!("{}/mcp/fx", r.base), token).await,
                want,
                "{subject} /mcp/fx"
            );
            let (modern, result) = modern_tools(&format!("{}/mcp", r.base), token).await;
            assert_eq!(modern, prefixed, "{subject} 2026-07-28");
            assert_eq!(
                result["cacheScope"], "private",
                "per-caller lists are private"
            );
        }
    }

    // A hidden tool answers exactly like an unknown one.
    let mut carol = McpClient::connect_as(&format!("{lb}/mcp"), "c-token").await;
    let hidden = carol.call("fx__echo", json!({"text": "x"})).await;
    let unknown = carol.call("fx__no_such_tool", json!({"text": "x"})).await;
    let shape = |r: &hawser_e2e::harness::mcp::Reply, name: &str| {
        let mut e = r.response()["error"].clone();
        e["message"] = json!(
            e["message"]
                .as_str()
                .unwrap_or_default()
                .replace(name, "NAME")
        );
        (r.status, e)
    };
    assert_eq!(
        shape(&hidden, "fx__echo"),
        shape(&unknown, "fx__no_such_tool")
    );
    // The deny wins over team-a's allow of sl*.
    let mut alice = McpClient::connect_as(&format!("{lb}/mcp"), "a-token").await;
    let slow = alice.call("fx__slow", json!({"ms": 1})).await;
    assert!(slow.error_message().contains("unknown tool"), "{slow:?}");

    // A condition on arguments: bob may echo to staging only.
    let mut bob = McpClient::connect_as(&format!("{lb}/mcp"), "b-token").await;
    let ok = bob.call("fx__echo", json!({"text": "staging"})).await;
    assert!(ok.response().get("result").is_some(), "{ok:?}");
    let refused = bob.call("fx__echo", json!({"text": "prod"})).await;
    let error = &refused.response()["error"];
    assert_eq!(error["code"], -32012, "{error}");
    assert_eq!(error["data"]["policy"], "fx-access", "{error}");
    assert!(
        !error.to_string().contains("args.text"),
        "the condition is not shown: {error}"
    );

    // The explain endpoint says who decided.
    let explained: Value = http()
        .get(format!(
            "{}/api/v1/policies/explain",
            cluster.replicas[2].base
        ))
        .query(&[
            ("subject", "alice"),
            ("groups", "team-a"),
            ("tool", "fx__slow"),
        ])
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(explained["allowed"], false, "{explained}");
    assert_eq!(explained["policy"], "fx-access", "{explained}");
    assert_eq!(explained["rule"], 1, "{explained}");

    // A change reaches every replica: carol gains echo.
    let mut changed = policy();
    changed["rules"]
        .as_array_mut()
        .unwrap_or_else(|| panic!("rules"))
        .push(json!({"subjects": ["carol"], "tools": ["echo"]}));
    let written = Instant::now();
    assert_eq!(
        put_policy(&cluster.replicas[1].base, "fx-access", &changed)
            .await
            .0,
        200
    );
    let mut slowest = Duration::ZERO;
    for r in &cluster.replicas {
        loop {
            if tools(&format!("{}/mcp", r.base), "c-token")
                .await
                .contains("fx__echo")
            {
                slowest = slowest.max(written.elapsed());
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(2),
                "{} did not see the change",
                r.base
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    println!("policy change visible on all 3 replicas after {slowest:?}");

    // A broken condition is refused with the field and position; nothing changes.
    let mut broken = policy();
    broken["rules"][2]["when"] = json!("args.text ==");
    let (status, body) = put_policy(&cluster.replicas[0].base, "fx-access", &broken).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "rules[2].when", "{body}");

    // Refusals are audited with the policy and rule.
    use sqlx::Connection as _;
    let deadline = Instant::now() + Duration::from_secs(10);
    let row: Value = loop {
        let mut conn = sqlx::PgConnection::connect(&cluster.db.url)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let rows: Vec<Value> = sqlx::query_scalar(
            "SELECT row_to_json(a) FROM audit_events a WHERE error_category = 'denied'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        if let Some(r) = rows.into_iter().next() {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "no audit row for the denied call"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(row["subject"], "bob", "{row}");
    assert_eq!(row["target"], "fx__echo", "{row}");
    assert_eq!(
        row["error_message"], "denied by policy fx-access (rule 2)",
        "{row}"
    );
}

#[tokio::test]
async fn a_rate_limit_holds_across_three_replicas_under_load() {
    let fixture = Fixture::start(&[]);
    let cluster = Cluster::start(3, &config(&fixture)).await;
    let spec = json!({"targetRefs": [{"name": "fx"}], "rules": [{}],
        "rateLimits": [{"tools": ["echo"], "requests": 100, "per": "1m"}]});
    assert_eq!(
        put_policy(&cluster.replicas[0].base, "fx-rate", &spec)
            .await
            .0,
        201
    );
    // Every replica has the policy before the load starts.
    for r in &cluster.replicas {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got: Value = http()
                .get(format!("{}/api/v1/policies/fx-rate", r.base))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .json()
                .await
                .unwrap_or(Value::Null);
            if got["loaded"] == true {
                break;
            }
            assert!(Instant::now() < deadline, "{} has no policy", r.base);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Six clients through nginx for three seconds, as fast as they can.
    let started = Instant::now();
    let mut workers = Vec::new();
    for (i, (_, token)) in CALLERS.iter().cycle().take(6).enumerate() {
        let url = format!("{}/mcp", cluster.lb.base);
        workers.push(tokio::spawn(async move {
            let mut c = McpClient::connect_as(&url, token).await;
            let (mut ok, mut limited, mut retry_ms) = (0u32, 0u32, 0u64);
            while started.elapsed() < Duration::from_secs(3) {
                let r = c.call("fx__echo", json!({"text": format!("w{i}")})).await;
                let m = r.response();
                if m.get("result").is_some() {
                    ok += 1;
                } else {
                    assert_eq!(m["error"]["code"], -32013, "{m}");
                    retry_ms = m["error"]["data"]["retryAfterMs"].as_u64().unwrap_or(0);
                    limited += 1;
                }
            }
            (ok, limited, retry_ms)
        }));
    }
    let (mut ok, mut limited, mut retry) = (0, 0, 0);
    for w in workers {
        let (o, l, r) = w.await.unwrap_or_else(|e| panic!("{e}"));
        ok += o;
        limited += l;
        retry = retry.max(r);
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The burst, what refills meanwhile (100/min), and at most one lease per replica
    // (an eighth of the burst each).
    let bound = 100.0 + elapsed * 100.0 / 60.0 + 3.0 * 12.0;
    println!(
        "rate limit 100/min over 3 replicas: {ok} admitted, {limited} limited in {elapsed:.1}s (bound {bound:.0})"
    );
    assert!(f64::from(ok) <= bound, "{ok} admitted, more than {bound}");
    assert!(ok >= 90, "only {ok} admitted: the burst should be usable");
    assert!(limited > 0 && retry > 0, "limited calls say when to retry");
}

/// A listen stream hears of a change only when its caller's list changed: a policy
/// change that hides a tool from Bob tells Bob, not Alice; one that shows Alice a tool
/// tells Alice.
#[tokio::test]
async fn listen_streams_hear_only_of_changes_to_what_their_caller_sees() {
    use crate::eras::{listen, next_message, try_next_message};
    let fixture = Fixture::start(&[]);
    let cluster = Cluster::start(1, &config(&fixture)).await;
    let base = cluster.replicas[0].base.clone();
    let both = json!({"targetRefs": [{"name": "fx"}], "rules": [
        {"groups": ["team-a", "on-call"], "tools": ["echo"]},
    ]});
    assert_eq!(put_policy(&base, "fx-listen", &both).await.0, 201);
    let url = cluster.replicas[0].mcp_url();
    let wants = json!({"toolsListChanged": true});
    let mut alice = listen(&url, Some("a-token"), wants.clone()).await;
    let mut bob = listen(&url, Some("b-token"), wants).await;
    for s in [&mut alice, &mut bob] {
        let ack = next_message(s, Duration::from_secs(5)).await;
        assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    }

    // Bob loses echo; Alice's list is unchanged.
    let alice_only = json!({"targetRefs": [{"name": "fx"}], "rules": [
        {"groups": ["team-a"], "tools": ["echo"]},
    ]});
    assert_eq!(put_policy(&base, "fx-listen", &alice_only).await.0, 200);
    let heard = next_message(&mut bob, Duration::from_secs(10)).await;
    assert_eq!(
        heard["method"], "notifications/tools/list_changed",
        "{heard}"
    );
    // The same pass told Bob: anything for Alice would be here already.
    let spurious = try_next_message(&mut alice, Duration::from_millis(500)).await;
    assert!(
        spurious.is_none(),
        "alice heard of bob's change: {spurious:?}"
    );

    // Alice gains whoami: she hears of it, Bob does not.
    let more = json!({"targetRefs": [{"name": "fx"}], "rules": [
        {"groups": ["team-a"], "tools": ["echo", "whoami"]},
    ]});
    assert_eq!(put_policy(&base, "fx-listen", &more).await.0, 200);
    let heard = next_message(&mut alice, Duration::from_secs(10)).await;
    assert_eq!(
        heard["method"], "notifications/tools/list_changed",
        "{heard}"
    );
    let spurious = try_next_message(&mut bob, Duration::from_millis(500)).await;
    assert!(
        spurious.is_none(),
        "bob heard of alice's change: {spurious:?}"
    );
}
