//! The tasks extension on the aggregated endpoint: a task made by a connection's tool
//! is named like its tools (`<prefix>__<id>`), and `tasks/get` and `tasks/cancel`
//! with that name reach the connection, through any replica.

use std::time::Duration;

use hawser_e2e::harness::cluster::Cluster;
use hawser_e2e::harness::stack::Fixture;
use serde_json::{Value, json};

/// A 2026-07-28 request declaring the tasks extension; the response message.
async fn modern(url: &str, id: u64, method: &str, name: Option<&str>, params: Value) -> Value {
    modern_as(None, url, id, method, name, params).await
}

/// [`modern`] with the caller's bearer token.
async fn modern_as(
    token: Option<&str>,
    url: &str,
    id: u64,
    method: &str,
    name: Option<&str>,
    params: Value,
) -> Value {
    let mut params = params;
    let mut meta = params.get("_meta").cloned().unwrap_or_else(|| json!({}));
    meta["io.modelcontextprotocol/protocolVersion"] = json!("2026-07-28");
    meta["io.modelcontextprotocol/clientCapabilities"] =
        json!({"extensions": {"io.modelcontextprotocol/tasks": {}}});
    params["_meta"] = meta;
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let mut request = hawser_e2e::harness::http()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method)
        .json(&body);
    if let Some(name) = name {
        request = request.header("mcp-name", name);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method}: {e}"));
    let text = response.text().await.unwrap_or_default();
    // Plain JSON, or SSE whose last data line is the response.
    let json = if text.trim_start().starts_with('{') {
        text.clone()
    } else {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .rfind(|d| d.contains("\"id\""))
            .unwrap_or_default()
            .to_owned()
    };
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{method}: {e}: {text}"))
}

/// Polls `tasks/get` until the task leaves `working`; its last state.
async fn settled(url: &str, task: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    for id in 100.. {
        let state = modern(url, id, "tasks/get", Some(task), json!({"taskId": task})).await;
        let result = &state["result"];
        assert_eq!(result["taskId"], task, "{state}");
        if result["status"] != "working" {
            return result.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still working: {state}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!()
}

/// A 2025-11-25 session at `url` declaring the tasks extension, as `token`'s caller.
async fn session_with_tasks(url: &str, token: Option<&str>) -> hawser_e2e::harness::mcp::McpClient {
    let mut client = hawser_e2e::harness::mcp::McpClient::new(url);
    client.token = token.map(str::to_owned);
    let init = client
        .request(
            "initialize",
            json!({
                "protocolVersion": "2025-11-25",
                "capabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}},
                "clientInfo": {"name": "hawser-e2e", "version": "1"},
            }),
        )
        .await;
    assert_eq!(init.status, 200, "{init:?}");
    client.session = init.session.clone();
    client.notify("notifications/initialized", json!({})).await;
    client
}

/// The task ids of a `tasks/list` answer, sorted.
fn listed_ids(listed: &hawser_e2e::harness::mcp::Reply) -> Vec<String> {
    let mut ids: Vec<String> = listed.result()["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed:?}"))
        .iter()
        .filter_map(|t| t["taskId"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn tasks_on_the_aggregated_endpoint_are_named_and_routed_like_tools() {
    let fixture = Fixture::start(&["--era", "modern"]);
    let cluster = Cluster::start(2, "").await;
    let put = cluster
        .put_connection(0, "fx", json!({"url": fixture.mcp_url()}))
        .await;
    assert_eq!(put, 201);
    cluster
        .wait_all("fx loaded", Duration::from_secs(20), |names| {
            names.iter().any(|n| n == "fx__background")
        })
        .await;
    let lb = cluster.lb.mcp_url();

    // The endpoint says it takes tasks.
    let discovered = modern(&lb, 1, "server/discover", None, json!({})).await;
    assert!(
        discovered["result"]["capabilities"]["extensions"]
            .get("io.modelcontextprotocol/tasks")
            .is_some(),
        "{discovered}"
    );

    // A call that became a task: its id names the connection.
    let created = modern(
        &cluster.replicas[0].mcp_url(),
        2,
        "tools/call",
        Some("fx__background"),
        json!({"name": "fx__background", "arguments": {"ms": 300}}),
    )
    .await;
    let result = &created["result"];
    assert_eq!(result["resultType"], "task", "{created}");
    let task = result["taskId"].as_str().unwrap_or_default().to_owned();
    let own = task
        .strip_prefix("fx__")
        .unwrap_or_else(|| panic!("task id not prefixed: {created}"));
    // The upstream made the task under its own id.
    let events = fixture.events().await;
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "task_created" && e["taskId"] == own),
        "the upstream's task is not {own}"
    );
    // Polled through the other replica (and the load balancer): completed.
    let done = settled(&cluster.replicas[1].mcp_url(), &task).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["result"]["content"][0]["text"], "background done after 300ms",
        "{done}"
    );

    // Cancelling reaches the upstream's task.
    let long = modern(
        &lb,
        3,
        "tools/call",
        Some("fx__background"),
        json!({"name": "fx__background", "arguments": {"ms": 60000}}),
    )
    .await;
    let long_task = long["result"]["taskId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let cancelled = modern(
        &lb,
        4,
        "tasks/cancel",
        Some(&long_task),
        json!({"taskId": long_task}),
    )
    .await;
    assert!(cancelled.get("result").is_some(), "{cancelled}");
    let state = settled(&lb, &long_task).await;
    assert_eq!(state["status"], "cancelled", "{state}");
    let events = fixture.events().await;
    let own_long = long_task.strip_prefix("fx__").unwrap_or_default();
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "task_cancel" && e["taskId"] == own_long),
        "the upstream never saw the cancel"
    );

    // An id no connection's prefix names is an unknown task.
    for unknown in ["nope__abc", "abc"] {
        let answer = modern(
            &lb,
            5,
            "tasks/get",
            Some(unknown),
            json!({"taskId": unknown}),
        )
        .await;
        assert_eq!(answer["error"]["code"], -32602, "{answer}");
    }
}

/// With client authentication on, a task is its caller's: the id a caller is shown is
/// bound to them (on a connection's endpoint and on the aggregated one), any replica
/// takes it back from them, and another caller who presents it, or the upstream's own
/// id, is told the task is unknown, and nothing reaches the upstream.
#[tokio::test]
async fn a_task_is_its_callers_only() {
    let fixture = Fixture::start(&["--era", "modern"]);
    let cluster = Cluster::start(
        2,
        "clientAuth:\n  type: bearer\n  tokens:\n    - {subject: alice, token: alice-task-token}\n    - {subject: bob, token: bob-task-token}\n",
    )
    .await;
    let put = cluster
        .put_connection(0, "fx", json!({"url": fixture.mcp_url()}))
        .await;
    assert_eq!(put, 201);
    let (alice, bob) = (Some("alice-task-token"), Some("bob-task-token"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for replica in &cluster.replicas {
        loop {
            let listed =
                modern_as(alice, &replica.mcp_url(), 1, "tools/list", None, json!({})).await;
            if listed.to_string().contains("fx__background") {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "fx not loaded: {listed}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let scoped = |i: usize| format!("{}/fx", cluster.replicas[i].mcp_url());
    let aggregated = |i: usize| cluster.replicas[i].mcp_url();

    for (made_at, taken_at, tool, prefix) in [
        (scoped(0), scoped(1), "background", ""),
        (aggregated(0), aggregated(1), "fx__background", "fx__"),
    ] {
        let created = modern_as(
            alice,
            &made_at,
            1,
            "tools/call",
            Some(tool),
            json!({"name": tool, "arguments": {"ms": 60000}}),
        )
        .await;
        let task = created["result"]["taskId"]
            .as_str()
            .unwrap_or_else(|| panic!("no task: {created}"))
            .to_owned();
        let events = fixture.events().await;
        let own = events
            .iter()
            .rev()
            .find(|e| e["kind"] == "task_created")
            .and_then(|e| e["taskId"].as_str())
            .unwrap_or_else(|| panic!("the upstream made no task"))
            .to_owned();
        // Shown bound to alice, not as the upstream named it.
        assert!(task.starts_with(prefix), "{task}");
        assert!(task.ends_with(&format!(".{own}")), "{task} for {own}");
        assert_ne!(task, format!("{prefix}{own}"));

        // Alice, through the other replica: her task.
        let state = modern_as(
            alice,
            &taken_at,
            2,
            "tasks/get",
            Some(&task),
            json!({"taskId": task}),
        )
        .await;
        assert_eq!(state["result"]["taskId"], task.as_str(), "{state}");
        assert_eq!(state["result"]["status"], "working", "{state}");

        // Bob, with alice's name for it or the upstream's own: unknown, and the
        // upstream hears nothing of it.
        // Alice too cannot name it by the upstream's id.
        let own_name = format!("{prefix}{own}");
        for (who, token, method, name) in [
            ("bob", bob, "tasks/get", &task),
            ("bob", bob, "tasks/cancel", &task),
            ("bob", bob, "tasks/get", &own_name),
            ("bob", bob, "tasks/cancel", &own_name),
            ("alice", alice, "tasks/get", &own_name),
            ("alice", alice, "tasks/cancel", &own_name),
        ] {
            let refused = modern_as(
                token,
                &taken_at,
                3,
                method,
                Some(name),
                json!({"taskId": name}),
            )
            .await;
            assert_eq!(
                refused["error"]["code"], -32602,
                "{who} {method} {name}: {refused}"
            );
        }
        // Nor does a method of the upstream's own that names it, on a connection's
        // endpoint (on /mcp such a method is unknown), or a request that says it
        // relates to it.
        if prefix.is_empty() {
            let refused = modern_as(
                bob,
                &taken_at,
                6,
                "tasks/delete",
                None,
                json!({"taskId": own_name}),
            )
            .await;
            assert_eq!(
                refused["error"]["code"], -32602,
                "bob tasks/delete: {refused}"
            );
        }
        let echo = if prefix.is_empty() {
            "echo"
        } else {
            "fx__echo"
        };
        for related in [&task, &own_name, &own] {
            let text = format!("bob relating to {related}");
            let refused = modern_as(
                bob,
                &taken_at,
                7,
                "tools/call",
                Some(echo),
                json!({"name": echo, "arguments": {"text": text},
                       "_meta": {"io.modelcontextprotocol/related-task": {"taskId": related}}}),
            )
            .await;
            assert_eq!(refused["error"]["code"], -32602, "bob relating: {refused}");
        }
        let events = fixture.events().await;
        assert!(
            !events
                .iter()
                .any(|e| e["kind"] == "task_cancel" && e["taskId"] == own.as_str()),
            "a refused cancel reached the upstream"
        );
        assert!(
            !events.iter().any(|e| e["kind"] == "request"
                && e["arguments"]["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("bob relating"))),
            "a refused request reached the upstream"
        );
        // Alice's request that relates to her task reaches the upstream, naming it by
        // the upstream's id.
        let text = format!("alice relating through {taken_at}");
        let related = modern_as(
            alice,
            &taken_at,
            8,
            "tools/call",
            Some(echo),
            json!({"name": echo, "arguments": {"text": text},
                   "_meta": {"io.modelcontextprotocol/related-task": {"taskId": task}}}),
        )
        .await;
        assert!(related["result"].get("content").is_some(), "{related}");
        let events = fixture.events().await;
        let seen = events
            .iter()
            .rev()
            .find(|e| e["kind"] == "request" && e["arguments"]["text"] == text.as_str())
            .unwrap_or_else(|| panic!("the upstream never saw alice's request"));
        assert_eq!(seen["metaRelatedTask"]["taskId"], own.as_str(), "{seen}");

        // A listen stream follows the task for alice, not for bob.
        for (who, token, follows) in [("alice", alice, true), ("bob", bob, false)] {
            let response = super::eras::listen_request(
                &taken_at,
                token,
                json!({"taskIds": [task]}),
                json!({"extensions": {"io.modelcontextprotocol/tasks": {}}}),
            )
            .await;
            assert_eq!(response.status(), 200, "{who}");
            let mut stream = sse_stream::SseStream::from_bytes_stream(response.bytes_stream());
            let ack = super::eras::next_message(&mut stream, Duration::from_secs(10)).await;
            let followed = ack["params"]["notifications"]["taskIds"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|id| id == task.as_str()));
            assert_eq!(followed, follows, "{who}: {ack}");
        }

        // Alice cancels her task.
        let cancelled = modern_as(
            alice,
            &taken_at,
            5,
            "tasks/cancel",
            Some(&task),
            json!({"taskId": task}),
        )
        .await;
        assert!(cancelled.get("result").is_some(), "{cancelled}");
        let events = fixture.events().await;
        assert!(
            events
                .iter()
                .any(|e| e["kind"] == "task_cancel" && e["taskId"] == own.as_str()),
            "alice's cancel never reached the upstream"
        );
    }
}

/// The same in 2025-11-25 sessions on a connection's endpoint, and `tasks/list` shows
/// a caller only a list that holds their tasks alone: from an upstream that knows who
/// the caller is (here, told by headers), named as the calls that made them did. An
/// upstream that sees every caller as one (a shared credential, or a stdio upstream
/// every client shares) may list anyone's tasks: its `tasks/list` is refused.
#[tokio::test]
async fn in_sessions_tasks_are_listed_and_named_for_their_caller_only() {
    use hawser_e2e::harness::stack::Gateway;
    let shared = Fixture::start(&[]);
    let told = Fixture::start(&[]);
    let config = format!(
        "clientAuth:\n  type: bearer\n  tokens:\n    - {{subject: alice, token: alice-task-token}}\n    - {{subject: bob, token: bob-task-token}}\nconnections:\n  - name: fx\n    url: {}\n  - name: told\n    url: {}\n    identity: {{mode: headers}}\n  - name: local\n    transport: stdio\n    command: {}\n    args: [\"--transport\", \"stdio\"]\n",
        shared.mcp_url(),
        told.mcp_url(),
        hawser_e2e::harness::tools::binary("hawser-fixture").display()
    );
    let gateway = Gateway::start(&config, &[]);
    gateway.wait_ready().await;
    let open = |connection: &'static str, token: &'static str| {
        let url = format!("{}/{connection}", gateway.mcp_url());
        async move {
            let mut client = session_with_tasks(&url, Some(token)).await;
            client.wait_for_tool("background").await;
            client
        }
    };
    for connection in ["fx", "told"] {
        let mut alice = open(connection, "alice-task-token").await;
        let mut made = Vec::new();
        for _ in 0..2 {
            let reply = alice.call("background", json!({"ms": 10_000})).await;
            let task = reply.result()["taskId"]
                .as_str()
                .unwrap_or_else(|| panic!("{connection}: no task: {reply:?}"))
                .to_owned();
            made.push(task);
        }
        let listed = alice.request("tasks/list", json!({})).await;
        if connection == "fx" {
            assert_eq!(listed.response()["error"]["code"], -32601, "{listed:?}");
        } else {
            made.sort();
            assert_eq!(listed_ids(&listed), made, "{listed:?}");
        }
        let task = &made[0];
        let state = alice.request("tasks/get", json!({"taskId": task})).await;
        assert_eq!(state.result()["taskId"], task.as_str(), "{state:?}");
        // The upstream's own id is not a name alice was given.
        let own = task
            .rsplit_once('.')
            .map(|(_, own)| own)
            .unwrap_or_default();
        let refused = alice.request("tasks/get", json!({"taskId": own})).await;
        assert_eq!(refused.response()["error"]["code"], -32602, "{refused:?}");

        let mut bob = open(connection, "bob-task-token").await;
        for method in ["tasks/get", "tasks/result", "tasks/cancel"] {
            let refused = bob.request(method, json!({"taskId": task})).await;
            assert_eq!(
                refused.response()["error"]["code"],
                -32602,
                "{connection} {method}: {refused:?}"
            );
        }
        let state = alice.request("tasks/get", json!({"taskId": task})).await;
        assert_eq!(
            state.result()["status"],
            "working",
            "bob cancelled it: {state:?}"
        );
    }

    let mut local = open("local", "alice-task-token").await;
    let refused = local.request("tasks/list", json!({})).await;
    assert_eq!(refused.response()["error"]["code"], -32601, "{refused:?}");
}

/// A 2025-11-25 client's task at a 2026-07-28 upstream, which has no `tasks/result`:
/// Hawser waits for the task and answers its result, tied to the task, on the
/// connection's endpoint and on `/mcp`; a cancelled task's `tasks/result` is an error.
#[tokio::test]
async fn tasks_result_waits_for_a_2026_upstreams_task() {
    use hawser_e2e::harness::stack::Gateway;
    let fixture = Fixture::start(&["--era", "modern"]);
    let gateway = Gateway::in_front_of(&fixture).await;
    for (url, tool) in [
        (format!("{}/fx", gateway.mcp_url()), "background"),
        (gateway.mcp_url(), "fx__background"),
    ] {
        let mut client = session_with_tasks(&url, None).await;
        client.wait_for_tool(tool).await;
        let made = client.call(tool, json!({"ms": 600})).await;
        let task = made.result()["taskId"]
            .as_str()
            .or_else(|| made.result()["task"]["taskId"].as_str())
            .unwrap_or_else(|| panic!("no task: {made:?}"))
            .to_owned();
        let started = std::time::Instant::now();
        let result = client
            .request("tasks/result", json!({"taskId": task}))
            .await;
        assert_eq!(
            result.result()["content"][0]["text"],
            "background done after 600ms",
            "{result:?}"
        );
        assert_eq!(
            result.result()["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
            task.as_str(),
            "{result:?}"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "answered before the task ended"
        );

        let long = client.call(tool, json!({"ms": 60_000})).await;
        let long = long.result()["taskId"]
            .as_str()
            .or_else(|| long.result()["task"]["taskId"].as_str())
            .unwrap_or_default()
            .to_owned();
        let cancelled = client
            .request("tasks/cancel", json!({"taskId": long}))
            .await;
        assert!(cancelled.response().get("error").is_none(), "{cancelled:?}");
        let result = client
            .request("tasks/result", json!({"taskId": long}))
            .await;
        assert!(
            result.response()["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("cancelled")),
            "{result:?}"
        );
        let unknown = client
            .request("tasks/result", json!({"taskId": format!("{task}x")}))
            .await;
        assert_eq!(unknown.response()["error"]["code"], -32602, "{unknown:?}");
    }
}

/// The wait of `tasks/result` at a 2026-07-28 upstream lasts the connection's call
/// timeout, with a last look at its end: a task that ends between the last poll
/// interval and the deadline is answered; one that outlasts it times out.
#[tokio::test]
async fn tasks_result_waits_until_the_call_timeout() {
    use hawser_e2e::harness::stack::Gateway;
    let fixture = Fixture::start(&["--era", "modern"]);
    let config = format!(
        "connections:\n  - name: fx\n    url: {}\n    timeouts: {{call: 2500ms}}\n",
        fixture.mcp_url()
    );
    let gateway = Gateway::start(&config, &[]);
    gateway.wait_ready().await;
    let url = format!("{}/fx", gateway.mcp_url());
    let mut client = session_with_tasks(&url, None).await;
    client.wait_for_tool("background").await;
    // The fixture asks to be polled every second: looks at 0, 1 and 2 s, then 2.5 s.
    for (ms, answered) in [(2200, true), (4000, false)] {
        let made = client.call("background", json!({"ms": ms})).await;
        let task = made.result()["taskId"]
            .as_str()
            .or_else(|| made.result()["task"]["taskId"].as_str())
            .unwrap_or_else(|| panic!("no task: {made:?}"))
            .to_owned();
        let result = client
            .request("tasks/result", json!({"taskId": task}))
            .await;
        if answered {
            assert_eq!(
                result.result()["content"][0]["text"],
                format!("background done after {ms}ms"),
                "{result:?}"
            );
        } else {
            assert_eq!(result.response()["error"]["code"], -32001, "{result:?}");
        }
    }
}

/// A 2025-11-25 session on the aggregated endpoint: tasks made by two connections'
/// tools are listed together by `tasks/list`, each named by its connection (all of
/// them, though one connection lists its tasks over two pages), and `tasks/get` in
/// the session reaches the right one.
#[tokio::test]
async fn tasks_list_in_a_session_merges_the_connections_tasks() {
    let one = Fixture::start(&[]);
    let two = Fixture::start(&[]);
    let cluster = Cluster::start(2, "").await;
    cluster
        .add_fixtures(&[("one", &one), ("two", &two)], "background")
        .await;
    let mut client = session_with_tasks(&cluster.lb.mcp_url(), None).await;

    let mut made = Vec::new();
    // The fixture lists five tasks a page: "one" makes seven.
    for prefix in ["one", "one", "one", "one", "one", "one", "one", "two"] {
        let reply = client
            .call(&format!("{prefix}__background"), json!({"ms": 10_000}))
            .await;
        let task = reply.result()["taskId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            task.starts_with(&format!("{prefix}__")),
            "{prefix}: {reply:?}"
        );
        made.push(task);
    }
    let listed = client.request("tasks/list", json!({})).await;
    made.sort();
    assert_eq!(listed_ids(&listed), made, "{listed:?}");
    assert!(listed.result().get("nextCursor").is_none(), "{listed:?}");

    let two = made.last().cloned().unwrap_or_default();
    assert!(two.starts_with("two__"), "{made:?}");
    let state = client.request("tasks/get", json!({"taskId": two})).await;
    assert_eq!(state.result()["taskId"], two.as_str(), "{state:?}");
}

/// A task a client's request says it belongs to (`_meta`'s
/// `io.modelcontextprotocol/related-task`) reaches the upstream by the upstream's own
/// id when the client names it as `/mcp` showed it (`fx__<id>`); the client's own task
/// ids, and everything on `/mcp/{connection}`, pass unchanged.
#[tokio::test]
async fn a_related_task_in_a_clients_request_reaches_the_upstream_by_its_own_id() {
    use hawser_e2e::harness::mcp::McpClient;
    use hawser_e2e::harness::stack::Gateway;
    let fixture = Fixture::start(&[]);
    let gateway = Gateway::in_front_of(&fixture).await;
    let aggregated = gateway.mcp_url();
    let scoped = format!("{aggregated}/fx");
    // Ready is not yet discovered: wait until the connection's tools are served.
    McpClient::connect(&aggregated)
        .await
        .wait_for_tool("fx__echo")
        .await;
    for (url, tool, sent, seen) in [
        (&aggregated, "fx__echo", "fx__t-1", "t-1"),
        (&aggregated, "fx__echo", "mine-1", "mine-1"),
        (&scoped, "echo", "fx__t-1", "fx__t-1"),
    ] {
        let mut client = McpClient::connect(url).await;
        let text = format!("{sent} through {url}");
        let related = json!({"io.modelcontextprotocol/related-task": {"taskId": sent}});
        let reply = client
            .request(
                "tools/call",
                json!({"name": tool, "arguments": {"text": text}, "_meta": related}),
            )
            .await;
        assert!(reply.result().get("content").is_some(), "{reply:?}");
        let events = fixture.events().await;
        let request = events
            .iter()
            .rev()
            .find(|e| e["kind"] == "request" && e["arguments"]["text"] == text)
            .unwrap_or_else(|| panic!("the upstream never saw {text:?}"));
        assert_eq!(request["metaRelatedTask"]["taskId"], seen, "{request}");
    }
}

/// A 2026-07-28 listen stream that names tasks (`notifications.taskIds`, the tasks
/// extension) hears `notifications/tasks` with each state the task goes through, named
/// as the client knows it, until it ends: on the aggregated endpoint and on the
/// connection's own. An id Hawser cannot route is left out of the acknowledgement, and
/// naming tasks without declaring the extension is refused with -32021.
#[tokio::test]
async fn a_listen_stream_hears_the_status_of_the_tasks_it_names() {
    use super::eras::{listen_request, next_message, try_next_message};
    use hawser_e2e::harness::stack::Gateway;
    let fixture = Fixture::start(&["--era", "modern"]);
    let gateway = Gateway::in_front_of(&fixture).await;
    let aggregated = gateway.mcp_url();
    let scoped = format!("{aggregated}/fx");
    // Ready is not yet discovered: wait until the connection's tools are served.
    hawser_e2e::harness::mcp::McpClient::connect(&aggregated)
        .await
        .wait_for_tool("fx__background")
        .await;
    let tasks_extension = json!({"extensions": {"io.modelcontextprotocol/tasks": {}}});
    for (url, tool, unknown) in [
        (&aggregated, "fx__background", "nowhere__t-9"),
        (&scoped, "background", "t-does-not-exist"),
    ] {
        let created = modern(
            url,
            1,
            "tools/call",
            Some(tool),
            json!({"name": tool, "arguments": {"ms": 1200}}),
        )
        .await;
        assert_eq!(created["result"]["resultType"], "task", "{created}");
        let task = created["result"]["taskId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let response = listen_request(
            url,
            None,
            json!({"taskIds": [task, unknown]}),
            tasks_extension.clone(),
        )
        .await;
        assert_eq!(response.status(), 200);
        let mut events = sse_stream::SseStream::from_bytes_stream(response.bytes_stream());
        let ack = next_message(&mut events, Duration::from_secs(10)).await;
        assert_eq!(
            ack["params"]["notifications"]["taskIds"],
            json!([task]),
            "{ack}"
        );
        let mut seen = Vec::new();
        let last = loop {
            let note = next_message(&mut events, Duration::from_secs(15)).await;
            assert_eq!(note["method"], "notifications/tasks", "{note}");
            let params = &note["params"];
            assert_eq!(params["taskId"], task, "{note}");
            assert_eq!(
                params["_meta"]["io.modelcontextprotocol/subscriptionId"], "sub-1",
                "{note}"
            );
            assert!(params.get("resultType").is_none(), "{note}");
            seen.push(params["status"].as_str().unwrap_or_default().to_owned());
            if params["status"] != "working" {
                break params.clone();
            }
        };
        assert_eq!(
            seen.first().map(String::as_str),
            Some("working"),
            "{seen:?}"
        );
        assert_eq!(
            seen.iter().filter(|s| *s == "working").count(),
            1,
            "an unchanged state is sent once: {seen:?}"
        );
        assert_eq!(last["status"], "completed", "{last}");
        assert_eq!(
            last["result"]["content"][0]["text"], "background done after 1200ms",
            "{last}"
        );
        let more = try_next_message(&mut events, Duration::from_millis(1500)).await;
        assert!(more.is_none(), "a note after the task ended: {more:?}");
    }

    // Naming tasks needs the extension.
    let refused = listen_request(
        &aggregated,
        None,
        json!({"taskIds": ["fx__t-1"]}),
        json!({}),
    )
    .await;
    let text = refused.text().await.unwrap_or_default();
    let answer: Value = serde_json::from_str(
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .next()
            .unwrap_or(&text),
    )
    .unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(answer["error"]["code"], -32021, "{answer}");
    assert_eq!(
        answer["error"]["data"]["requiredCapabilities"]["extensions"],
        json!({"io.modelcontextprotocol/tasks": {}}),
        "{answer}"
    );
}
