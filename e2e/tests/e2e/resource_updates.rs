//! Resource updates across the eras and replicas: a 2026-07-28 client's
//! `subscriptions/listen` asking for resources, and a legacy client's
//! `resources/subscribe` to a 2026-07-28-only upstream.

use std::time::Duration;

use hawser_e2e::harness::cluster::Cluster;
use hawser_e2e::harness::mcp::{McpClient, text};
use hawser_e2e::harness::stack::Fixture;
use serde_json::{Value, json};

use super::eras::{listen, listen_request, next_message, try_next_message};

const WATCHED: &str = "test://watched-resource";
const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
const UPDATED: &str = "notifications/resources/updated";

/// Two replicas in front of one fixture (`fx`), loaded everywhere.
async fn two_replicas(fixture: &Fixture) -> Cluster {
    let cluster = Cluster::start(2, "").await;
    let put = cluster
        .put_connection(0, "fx", json!({"url": fixture.mcp_url()}))
        .await;
    assert_eq!(put, 201);
    cluster
        .wait_all("fx loaded", Duration::from_secs(20), |names| {
            names.iter().any(|n| n == "fx__touch_resource")
        })
        .await;
    cluster
}

/// Makes the fixture announce an update of `uri` (through the gateway at `url`).
async fn touch(url: &str, tool: &str, uri: &str) -> String {
    let mut client = McpClient::connect(url).await;
    let reply = client.call(tool, json!({"uri": uri})).await;
    text(reply.result())
}

/// Waits until the fixture recorded an event `check` accepts.
async fn wait_event(fixture: &Fixture, what: &str, check: impl Fn(&Value) -> bool) {
    wait_events(fixture, what, 1, check).await;
}

/// Waits until the fixture has recorded `count` events that `check` accepts.
async fn wait_events(fixture: &Fixture, what: &str, count: usize, check: impl Fn(&Value) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if fixture.events().await.iter().filter(|e| check(e)).count() >= count {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "never saw {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A listen stream on each replica asks for the watched resource; an update the
/// upstream announces reaches both, tagged with each stream's subscription; when the
/// streams close, the upstream subscription ends.
async fn listeners_on_every_replica_hear_updates(era: &[&str]) {
    let fixture = Fixture::start(era);
    let cluster = two_replicas(&fixture).await;
    let mut streams = Vec::new();
    for replica in &cluster.replicas {
        let events = listening(&replica.mcp_url(), None, json!([WATCHED])).await;
        streams.push(events);
    }
    // The update is triggered through the load balancer, whichever replica that is.
    let answer = touch(&cluster.lb.mcp_url(), "fx__touch_resource", WATCHED).await;
    assert!(answer.starts_with("updated"), "{answer}");
    for events in &mut streams {
        let note = next_message(events, Duration::from_secs(10)).await;
        assert_eq!(note["method"], UPDATED, "{note}");
        assert_eq!(note["params"]["uri"], WATCHED, "{note}");
        assert_eq!(note["params"]["_meta"][SUBSCRIPTION_ID], "sub-1", "{note}");
    }
    // A resource nobody asked for is not announced.
    touch(
        &cluster.lb.mcp_url(),
        "fx__touch_resource",
        "test://static-text",
    )
    .await;
    for events in &mut streams {
        let extra = try_next_message(events, Duration::from_millis(500)).await;
        assert!(extra.is_none(), "unrequested update: {extra:?}");
    }
    drop(streams);
    // Both replicas let go of their upstream subscriptions.
    let (kind, what) = if era.is_empty() {
        ("session_deleted", "both watch sessions deleted")
    } else {
        ("listen_closed", "both upstream listen streams closed")
    };
    wait_events(&fixture, what, 2, |e| e["kind"] == kind).await;
}

#[tokio::test]
async fn listen_streams_hear_resource_updates_of_a_legacy_upstream_on_every_replica() {
    listeners_on_every_replica_hear_updates(&[]).await;
}

#[tokio::test]
async fn listen_streams_hear_resource_updates_of_a_2026_07_28_upstream_on_every_replica() {
    listeners_on_every_replica_hear_updates(&["--era", "modern"]).await;
}

/// A listen request for a resource no connection serves is refused, naming it.
#[tokio::test]
async fn a_listen_request_for_an_unknown_resource_is_refused() {
    let fixture = Fixture::start(&[]);
    let cluster = two_replicas(&fixture).await;
    let body = json!({
        "jsonrpc": "2.0", "id": "sub-1", "method": "subscriptions/listen",
        "params": {
            "notifications": {"resourceSubscriptions": ["nowhere://nothing"]},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    });
    let response = hawser_e2e::harness::http()
        .post(cluster.replicas[0].mcp_url())
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "subscriptions/listen")
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("listen: {e}"));
    let answer: Value = response
        .json()
        .await
        .unwrap_or_else(|e| panic!("listen answer: {e}"));
    assert_eq!(answer["error"]["code"], -32002, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nowhere://nothing")),
        "{answer}"
    );
}

/// The next message on a GET stream that `check` accepts, if one comes within `limit`.
async fn next_matching(
    stream: &mut tokio::sync::mpsc::UnboundedReceiver<Value>,
    limit: Duration,
    check: impl Fn(&Value) -> bool,
) -> Option<Value> {
    tokio::time::timeout(limit, async {
        while let Some(message) = stream.recv().await {
            if check(&message) {
                return Some(message);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

/// A listen stream at `url` (as `token`'s caller) asking for `uris`, once its
/// acknowledgement lists them (sorted, as the gateway lists them).
async fn listening(
    url: &str,
    token: Option<&str>,
    uris: Value,
) -> impl futures::Stream<Item = Result<sse_stream::Sse, sse_stream::Error>> + Unpin + use<> {
    let mut events = listen(url, token, json!({"resourceSubscriptions": uris.clone()})).await;
    let ack = next_message(&mut events, Duration::from_secs(30)).await;
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    assert_eq!(
        ack["params"]["notifications"]["resourceSubscriptions"], uris,
        "{ack}"
    );
    events
}

/// A session whose GET stream is on replica 1, subscribed to [`WATCHED`] through
/// replica 2: the client, its stream, and the client on replica 2.
async fn subscribed_through_the_other_replica(
    cluster: &Cluster,
) -> (
    McpClient,
    tokio::sync::mpsc::UnboundedReceiver<Value>,
    McpClient,
) {
    let client = McpClient::connect(&cluster.replicas[0].mcp_url()).await;
    let stream = client.listen().await;
    let mut elsewhere = McpClient::new(&cluster.replicas[1].mcp_url());
    elsewhere.session = client.session.clone();
    let reply = elsewhere
        .request("resources/subscribe", json!({"uri": WATCHED}))
        .await;
    assert_eq!(reply.result(), &json!({}), "{reply:?}");
    (client, stream, elsewhere)
}

/// Whether `stream` hears an update of [`WATCHED`], touched until it does (a follower
/// may still be opening its upstream stream) for at most about 10 s.
async fn hears_an_update(
    cluster: &Cluster,
    stream: &mut tokio::sync::mpsc::UnboundedReceiver<Value>,
) -> bool {
    let is_update = |m: &Value| m["method"] == UPDATED && m["params"]["uri"] == WATCHED;
    for _ in 0..20 {
        touch(&cluster.lb.mcp_url(), "fx__touch_resource", WATCHED).await;
        if next_matching(stream, Duration::from_millis(500), is_update)
            .await
            .is_some()
        {
            return true;
        }
    }
    false
}

/// A legacy client's `resources/subscribe` to an upstream that speaks only
/// 2026-07-28 (which has no such method), sent through the replica that does not hold
/// the client's GET stream: the update reaches the stream; `resources/unsubscribe`
/// ends the upstream subscription.
#[tokio::test]
async fn a_legacy_subscription_to_a_2026_07_28_upstream_reaches_the_stream_on_another_replica() {
    let fixture = Fixture::start(&["--era", "modern"]);
    let cluster = two_replicas(&fixture).await;
    let (_client, mut stream, mut elsewhere) = subscribed_through_the_other_replica(&cluster).await;
    wait_event(&fixture, "the upstream listen stream", |e| {
        e["kind"] == "listen" && e["resourceSubscriptions"] == json!([WATCHED])
    })
    .await;

    touch(&cluster.lb.mcp_url(), "fx__touch_resource", WATCHED).await;
    let is_update = |m: &Value| m["method"] == UPDATED;
    let note = next_matching(&mut stream, Duration::from_secs(10), is_update)
        .await
        .unwrap_or_else(|| panic!("no resource update on the GET stream"));
    assert_eq!(note["params"]["uri"], WATCHED, "{note}");

    let reply = elsewhere
        .request("resources/unsubscribe", json!({"uri": WATCHED}))
        .await;
    assert_eq!(reply.result(), &json!({}), "{reply:?}");
    wait_event(&fixture, "the upstream listen stream closed", |e| {
        e["kind"] == "listen_closed"
    })
    .await;
    touch(&cluster.lb.mcp_url(), "fx__touch_resource", WATCHED).await;
    let late = next_matching(&mut stream, Duration::from_secs(1), is_update).await;
    assert!(late.is_none(), "an update after unsubscribing: {late:?}");
}

/// A legacy upstream restarts and forgets the client's upstream session; the next
/// call (through the replica without the GET stream) opens a new one, which is
/// subscribed again, and the replica holding the GET stream follows the new one.
#[tokio::test]
async fn resource_updates_reach_the_stream_again_after_the_upstream_restarts() {
    let mut fixture = Fixture::start(&[]);
    let cluster = two_replicas(&fixture).await;
    let (_client, mut stream, mut elsewhere) = subscribed_through_the_other_replica(&cluster).await;
    assert!(
        hears_an_update(&cluster, &mut stream).await,
        "no update before the restart"
    );

    fixture.kill();
    fixture.restart();
    // The client's next call finds its upstream session gone and gets a new one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = elsewhere.call("fx__echo", json!({"text": "back?"})).await;
        if r.response().get("result").is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "calls never recovered: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        hears_an_update(&cluster, &mut stream).await,
        "no update after the upstream restarted"
    );
}

/// A client that opens a new GET stream before its old one is closed keeps hearing
/// its bridged subscriptions on the new one once the old one closes.
#[tokio::test]
async fn bridged_updates_move_to_the_newest_get_stream() {
    let fixture = Fixture::start(&["--era", "modern"]);
    let cluster = two_replicas(&fixture).await;
    let mut client = McpClient::connect(&cluster.replicas[0].mcp_url()).await;
    let (_first, first_task) = client.listen_closable().await;
    let reply = client
        .request("resources/subscribe", json!({"uri": WATCHED}))
        .await;
    assert_eq!(reply.result(), &json!({}), "{reply:?}");
    wait_event(&fixture, "the upstream listen stream", |e| {
        e["kind"] == "listen" && e["resourceSubscriptions"] == json!([WATCHED])
    })
    .await;
    let mut second = client.listen().await;
    first_task.abort();
    // Long enough for the gateway to see the first stream closed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        hears_an_update(&cluster, &mut second).await,
        "the newest stream never heard the update"
    );
}

/// A bridged subscription is kept with the session: a replica that was not running
/// when the client subscribed (here, restarted since) relays the updates to a GET
/// stream the client opens there.
#[tokio::test]
async fn a_legacy_subscription_reaches_a_stream_on_a_replica_started_after_it() {
    let fixture = Fixture::start(&["--era", "modern"]);
    let mut cluster = two_replicas(&fixture).await;
    let mut client = McpClient::connect(&cluster.replicas[0].mcp_url()).await;
    let reply = client
        .request("resources/subscribe", json!({"uri": WATCHED}))
        .await;
    assert_eq!(reply.result(), &json!({}), "{reply:?}");

    cluster.replicas[1].child.kill();
    cluster.revive(1).await;
    cluster
        .wait_all("fx loaded again", Duration::from_secs(20), |names| {
            names.iter().any(|n| n == "fx__touch_resource")
        })
        .await;
    let mut restarted = McpClient::new(&cluster.replicas[1].mcp_url());
    restarted.session = client.session.clone();
    let mut stream = restarted.listen().await;
    wait_event(&fixture, "the upstream listen stream", |e| {
        e["kind"] == "listen" && e["resourceSubscriptions"] == json!([WATCHED])
    })
    .await;
    touch(&cluster.lb.mcp_url(), "fx__touch_resource", WATCHED).await;
    let note = next_matching(&mut stream, Duration::from_secs(10), |m| {
        m["method"] == UPDATED
    })
    .await
    .unwrap_or_else(|| panic!("no resource update on the restarted replica's GET stream"));
    assert_eq!(note["params"]["uri"], WATCHED, "{note}");
}

/// At most 64 bridged subscriptions per session, counted across replicas: the 65th
/// is refused with a clear error, wherever it is sent.
#[tokio::test]
async fn bridged_subscriptions_per_session_are_bounded_across_replicas() {
    let fixture = Fixture::start(&["--era", "modern"]);
    let cluster = two_replicas(&fixture).await;
    let mut first = McpClient::connect(&cluster.replicas[0].mcp_url()).await;
    let mut second = McpClient::new(&cluster.replicas[1].mcp_url());
    second.session = first.session.clone();
    for i in 0..64 {
        let client = if i % 2 == 0 { &mut first } else { &mut second };
        let reply = client
            .request(
                "resources/subscribe",
                json!({"uri": format!("test://template/{i}/data")}),
            )
            .await;
        assert_eq!(reply.result(), &json!({}), "subscription {i}: {reply:?}");
    }
    let reply = first
        .request(
            "resources/subscribe",
            json!({"uri": "test://template/64/data"}),
        )
        .await;
    assert_eq!(reply.response()["error"]["code"], -32602, "{reply:?}");
    assert!(reply.error_message().contains("at most 64"), "{reply:?}");
    // Room again once one is given up, and a repeated one takes no more room.
    let reply = second
        .request(
            "resources/unsubscribe",
            json!({"uri": "test://template/0/data"}),
        )
        .await;
    assert_eq!(reply.result(), &json!({}), "{reply:?}");
    for uri in ["test://template/64/data", "test://template/64/data"] {
        let reply = first
            .request("resources/subscribe", json!({"uri": uri}))
            .await;
        assert_eq!(reply.result(), &json!({}), "{reply:?}");
    }
}

/// The official Python SDK, in both eras, against a legacy and a 2026-07-28-only
/// upstream, across three replicas behind the load balancer: a subscribed resource's
/// update reaches the client.
#[tokio::test]
async fn the_python_sdk_hears_resource_updates_in_both_eras_across_three_replicas() {
    use hawser_e2e::harness::stack::{python_script, run_python};
    let old = Fixture::start(&[]);
    let new = Fixture::start(&["--era", "modern"]);
    let cluster = Cluster::start(3, "").await;
    cluster
        .add_fixtures(&[("old", &old), ("new", &new)], "touch_resource")
        .await;
    let lb = cluster.lb.mcp_url();
    for mode in ["legacy", "2026-07-28"] {
        for connection in ["old", "new"] {
            let url = format!("{lb}/{connection}");
            let out = run_python(
                &python_script("resource_updates.py"),
                &[&url, mode, "-"],
                Duration::from_secs(60),
            )
            .await;
            let report: Value = serde_json::from_str(out.trim())
                .unwrap_or_else(|e| panic!("{mode} client on {url}: {e}: {out}"));
            assert_eq!(
                report["updated"],
                json!([WATCHED]),
                "{mode} on {url}: {report}"
            );
        }
    }
}

/// A resource a policy hides from the caller answers a listen request exactly like
/// an unknown one; the caller it is shown to gets the subscription.
#[tokio::test]
async fn a_listen_request_for_a_resource_the_caller_may_not_see_is_refused() {
    let fixture = Fixture::start(&[]);
    let config = format!(
        "clientAuth:\n  tokens:\n    - {{subject: alice, token: a-token}}\n    - {{subject: carol, token: c-token}}\nconnections:\n  - name: fx\n    url: {}\n",
        fixture.mcp_url()
    );
    let cluster = Cluster::start(1, &config).await;
    let policy = json!({"targetRefs": [{"name": "fx"}], "rules": [
        {"subjects": ["alice"], "resources": ["test://*"]},
    ]});
    assert_eq!(cluster.put_policy(0, "watchers", policy).await, 201);
    let url = cluster.replicas[0].mcp_url();
    let ask = |token: &'static str| {
        let url = url.clone();
        async move {
            let body = json!({
                "jsonrpc": "2.0", "id": "sub-1", "method": "subscriptions/listen",
                "params": {
                    "notifications": {"resourceSubscriptions": [WATCHED]},
                    "_meta": {
                        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                        "io.modelcontextprotocol/clientCapabilities": {},
                    },
                },
            });
            hawser_e2e::harness::http()
                .post(&url)
                .bearer_auth(token)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", "subscriptions/listen")
                .json(&body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("listen: {e}"))
        }
    };
    // The policy reaches the replica's memory a moment after the write.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let response = ask("c-token").await;
        let is_json = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        if is_json {
            break response
                .json::<Value>()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "carol may still subscribe"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(refused["error"]["code"], -32002, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(WATCHED)),
        "{refused}"
    );
    let _events = listening(&url, Some("a-token"), json!([WATCHED])).await;
}

/// How a client hears of [`WATCHED`] in [`a_policy_that_hides_a_subscribed_resource_stops_its_updates`].
#[derive(Clone, Copy, Debug)]
enum Hearing {
    /// A legacy client's `resources/subscribe`, relayed from a legacy upstream's stream.
    Subscribed,
    /// The same at a 2026-07-28-only upstream: Hawser watches the resource itself.
    Bridged,
    /// A 2026-07-28 client's `subscriptions/listen`.
    Listening,
}

/// Writes policy `watchers` for `fx`: alice may call every tool and see the
/// resources matching `resources`.
async fn alice_sees(cluster: &Cluster, resources: &str) {
    let policy = json!({"targetRefs": [{"name": "fx"}], "rules": [
        {"subjects": ["alice"], "tools": ["*"]},
        {"subjects": ["alice"], "resources": [resources]},
    ]});
    let status = cluster.put_policy(0, "watchers", policy).await;
    assert!(status == 200 || status == 201, "{status}");
}

/// Waits until reading [`WATCHED`] as alice succeeds (`true`) or is answered as
/// unknown (`false`): the policy written last has reached the replica.
async fn alice_reads(url: &str, readable: bool) {
    let mut client = McpClient::connect_as(url, "a-token").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = client
            .request("resources/read", json!({"uri": WATCHED}))
            .await;
        let read = reply.response().get("result").is_some();
        if read == readable {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "reading {WATCHED} never became {readable}: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether `stream` hears an update of [`WATCHED`] within `tries` touches by alice,
/// half a second apart.
async fn alice_hears(
    url: &str,
    stream: &mut tokio::sync::mpsc::UnboundedReceiver<Value>,
    tries: usize,
) -> bool {
    let is_update = |m: &Value| m["method"] == UPDATED && m["params"]["uri"] == WATCHED;
    let mut client = McpClient::connect_as(url, "a-token").await;
    for _ in 0..tries {
        let reply = client.call("touch_resource", json!({"uri": WATCHED})).await;
        assert!(
            text(reply.result()).starts_with("updated"),
            "touch: {reply:?}"
        );
        if next_matching(stream, Duration::from_millis(500), is_update)
            .await
            .is_some()
        {
            return true;
        }
    }
    false
}

/// A resource subscribed to while the caller could see it, then hidden from it by a
/// policy: its updates stop reaching the caller on every way of hearing them, and
/// resume once the policy shows it again.
async fn a_policy_that_hides_a_subscribed_resource_stops_its_updates(hearing: Hearing) {
    let fixture = match hearing {
        Hearing::Subscribed => Fixture::start(&[]),
        Hearing::Bridged | Hearing::Listening => Fixture::start(&["--era", "modern"]),
    };
    let config = format!(
        "clientAuth:\n  tokens:\n    - {{subject: alice, token: a-token}}\nconnections:\n  - name: fx\n    url: {}\n",
        fixture.mcp_url()
    );
    let cluster = Cluster::start(1, &config).await;
    alice_sees(&cluster, "test://*").await;
    // The per-connection endpoint: tools by their upstream names.
    let url = format!("{}/mcp/fx", cluster.replicas[0].base);
    alice_reads(&url, true).await;

    let mut stream = match hearing {
        Hearing::Subscribed | Hearing::Bridged => {
            let mut client = McpClient::connect_as(&url, "a-token").await;
            let stream = client.listen().await;
            let reply = client
                .request("resources/subscribe", json!({"uri": WATCHED}))
                .await;
            assert_eq!(reply.result(), &json!({}), "{reply:?}");
            // The client lives as long as the stream it listens on.
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let mut stream = stream;
            tokio::spawn(async move {
                let _client = client;
                while let Some(message) = stream.recv().await {
                    if tx.send(message).is_err() {
                        return;
                    }
                }
            });
            rx
        }
        Hearing::Listening => {
            let mut events = listening(&url, Some("a-token"), json!([WATCHED])).await;
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(async move {
                while let Some(message) =
                    try_next_message(&mut events, Duration::from_secs(3600)).await
                {
                    if tx.send(message).is_err() {
                        return;
                    }
                }
            });
            rx
        }
    };
    assert!(
        alice_hears(&url, &mut stream, 20).await,
        "{hearing:?}: no update while alice may see the resource"
    );

    alice_sees(&cluster, "test://other-*").await;
    alice_reads(&url, false).await;
    // Updates of the touches above that were relayed before the change may still be
    // on their way: let them arrive first.
    while next_matching(&mut stream, Duration::from_millis(500), |_| true)
        .await
        .is_some()
    {}
    assert!(
        !alice_hears(&url, &mut stream, 4).await,
        "{hearing:?}: an update of a resource the policy hides from alice"
    );

    alice_sees(&cluster, "test://*").await;
    alice_reads(&url, true).await;
    assert!(
        alice_hears(&url, &mut stream, 20).await,
        "{hearing:?}: no update once the resource is shown again"
    );
}

#[tokio::test]
async fn a_policy_that_hides_a_subscribed_resource_stops_its_updates_from_a_legacy_upstream() {
    a_policy_that_hides_a_subscribed_resource_stops_its_updates(Hearing::Subscribed).await;
}

#[tokio::test]
async fn a_policy_that_hides_a_subscribed_resource_stops_its_bridged_updates() {
    a_policy_that_hides_a_subscribed_resource_stops_its_updates(Hearing::Bridged).await;
}

#[tokio::test]
async fn a_policy_that_hides_a_resource_stops_its_updates_on_a_listen_stream() {
    a_policy_that_hides_a_subscribed_resource_stops_its_updates(Hearing::Listening).await;
}

/// One caller cannot take every resource watch of a replica: past its share (256
/// distinct resources) its listen requests are refused with a clear error, another
/// caller still subscribes, and a stream it closes gives its room back.
#[tokio::test]
async fn one_caller_cannot_take_every_resource_watch_of_a_replica() {
    let fixture = Fixture::start(&["--era", "modern"]);
    let config = format!(
        "clientAuth:\n  tokens:\n    - {{subject: alice, token: a-token}}\n    - {{subject: mallory, token: m-token}}\nconnections:\n  - name: fx\n    url: {}\n",
        fixture.mcp_url()
    );
    let cluster = Cluster::start(1, &config).await;
    let url = format!("{}/mcp/fx", cluster.replicas[0].base);
    alice_reads(&url, true).await;
    // Sorted, as the acknowledgement lists them.
    let uris = |stream: usize| -> Vec<String> {
        let mut uris: Vec<String> = (0..64)
            .map(|i| format!("test://mallory/{stream}/{i}"))
            .collect();
        uris.sort();
        uris
    };
    let mut held = Vec::new();
    for stream in 0..4 {
        held.push(listening(&url, Some("m-token"), json!(uris(stream))).await);
    }
    let refused = |response: reqwest::Response| async move {
        // Invalid params: 400 for a 2026-07-28 client.
        assert_eq!(response.status(), 400);
        response
            .json::<Value>()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let answer = refused(
        listen_request(
            &url,
            Some("m-token"),
            json!({"resourceSubscriptions": [WATCHED]}),
            json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("already subscribes to 256 resources on this replica")),
        "{answer}"
    );

    let _alice = listening(&url, Some("a-token"), json!([WATCHED])).await;

    // Closing a stream gives its handles back (once the gateway sees it closed).
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let response = listen_request(
            &url,
            Some("m-token"),
            json!({"resourceSubscriptions": [WATCHED]}),
            json!({}),
        )
        .await;
        let is_stream = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if is_stream {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "mallory never got her room back: {}",
            refused(response).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
