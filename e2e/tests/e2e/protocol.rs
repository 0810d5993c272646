//! Sessions, errors, timeouts, identity and list changes at the HTTP level.

use std::time::Duration;

use hawser_e2e::harness::mcp::{McpClient, text};
use hawser_e2e::harness::stack::{Fixture, Gateway};
use serde_json::json;

#[tokio::test]
async fn sessions_are_required_known_and_end_with_delete() {
    let fixture = Fixture::start(&[]);
    let gateway = Gateway::in_front_of(&fixture).await;

    let mut anonymous = McpClient::new(&gateway.mcp_url());
    let r = anonymous.request("tools/list", json!({})).await;
    assert_eq!(
        r.status, 400,
        "a request without a session is a bad request: {r:?}"
    );

    anonymous.session = Some("not-a-session".into());
    let r = anonymous.request("tools/list", json!({})).await;
    assert_eq!(r.status, 404, "an unknown session is not found: {r:?}");

    let mut client = McpClient::connect(&gateway.mcp_url()).await;
    assert_eq!(client.request("ping", json!({})).await.status, 200);
    assert_eq!(client.delete().await, 204);
    let r = client.request("ping", json!({})).await;
    assert_eq!(r.status, 404, "a deleted session is gone: {r:?}");

    // Bad input gets an answer, not a hang.
    let r = client
        .send(json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"}]))
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.messages[0]["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("batch"),
        "{r:?}"
    );
}

#[tokio::test]
async fn timeouts_and_dead_upstreams_fail_with_errors_naming_the_connection() {
    let fixture = Fixture::start(&[]);
    let dead = format!("http://127.0.0.1:{}/mcp", hawser_e2e::harness::free_port());
    let config = format!(
        "connections:
  - name: quick
    url: {}
    timeouts: {{ connect: 1s, call: 1s }}
  - name: gone
    url: {dead}
    timeouts: {{ connect: 1s, call: 1s }}
",
        fixture.mcp_url()
    );
    let gateway = Gateway::start(&config, &[]);
    gateway.wait_ready().await;
    let mut client = McpClient::connect(&gateway.mcp_url()).await;
    client.wait_for_tool("quick__slow").await;

    let started = std::time::Instant::now();
    let r = client.call("quick__slow", json!({"ms": 10000})).await;
    let message = r.error_message();
    assert!(
        message.contains("\"quick\"") && message.contains("no response within"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "timeout took {:?}",
        started.elapsed()
    );

    // The dead connection contributes nothing, and the live one is unaffected.
    let names = client.tool_names().await;
    assert!(names.iter().all(|n| !n.starts_with("gone__")), "{names:?}");
    let r = client.call("quick__echo", json!({"text": "fine"})).await;
    assert_eq!(text(r.result()), "fine");
    // Never reached, so its names are not known to be unknown: retry, naming it.
    let r = client.call("gone__echo", json!({"text": "x"})).await;
    assert_eq!(r.response()["error"]["code"], -32010, "{r:?}");
    assert!(r.error_message().contains("\"gone\""), "{r:?}");

    // Its own endpoint says why it is unavailable.
    let mut direct = McpClient::new(&format!("{}/gone", gateway.mcp_url()));
    let r = direct
        .request("initialize", json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}))
        .await;
    assert!(r.error_message().contains("gone"), "{r:?}");
}

#[tokio::test]
async fn an_upstream_list_change_reaches_open_client_streams() {
    let fixture = Fixture::start(&[]);
    let gateway = Gateway::in_front_of(&fixture).await;
    let mut client = McpClient::connect(&gateway.mcp_url()).await;
    client.wait_for_tool("fx__add_tool").await;
    let mut stream = client.listen().await;

    let r = client
        .call("fx__add_tool", json!({"name": "brand_new"}))
        .await;
    assert!(r.result().get("content").is_some(), "{r:?}");
    let note = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(m) = stream.recv().await {
            if m["method"] == "notifications/tools/list_changed" {
                return m;
            }
        }
        panic!("stream ended");
    })
    .await
    .unwrap_or_else(|_| panic!("no tools/list_changed within 10s"));
    assert_eq!(note["jsonrpc"], "2.0");
    assert!(
        client
            .tool_names()
            .await
            .iter()
            .any(|n| n == "fx__brand_new")
    );
    let r = client.call("fx__brand_new", json!({})).await;
    assert_eq!(text(r.result()), "dynamic brand_new");
}

#[tokio::test]
async fn callers_are_authenticated_sessions_bound_and_their_token_never_forwarded() {
    let fixture = Fixture::start(&[]);
    let config = format!(
        "clientAuth:
  type: bearer
  tokens:
    - {{ subject: alice, token: alice-secret-token }}
    - {{ subject: bob, token: bob-secret-token }}
connections:
  - name: plain
    url: {url}
  - name: keyed
    url: {url}
    auth: {{ type: bearer, token: upstream-token }}
",
        url = fixture.mcp_url()
    );
    let gateway = Gateway::start(&config, &[]);
    gateway.wait_ready().await;

    let mut nobody = McpClient::new(&gateway.mcp_url());
    let r = nobody
        .request("initialize", json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}))
        .await;
    assert_eq!(r.status, 401, "{r:?}");

    let mut alice = McpClient::connect_as(&gateway.mcp_url(), "alice-secret-token").await;
    alice.wait_for_tool("keyed__whoami").await;

    // Bob cannot use Alice's session: same answer as an unknown one.
    let mut bob = McpClient::new(&gateway.mcp_url());
    bob.token = Some("bob-secret-token".into());
    bob.session = alice.session.clone();
    assert_eq!(bob.request("tools/list", json!({})).await.status, 404);

    // The upstream never sees Alice's token; it sees the connection's own, or none.
    let who = |r: hawser_e2e::harness::mcp::Reply| -> serde_json::Value {
        serde_json::from_str(&text(r.result())).unwrap_or_default()
    };
    let plain = who(alice.call("plain__whoami", json!({})).await);
    assert!(plain["authorizationSha256"].is_null(), "{plain}");
    let keyed = who(alice.call("keyed__whoami", json!({})).await);
    use sha2::Digest as _;
    let expected: String = sha2::Sha256::digest(b"Bearer upstream-token")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(keyed["authorizationSha256"], expected, "{keyed}");
}

#[tokio::test]
async fn foreign_hosts_and_origins_are_refused() {
    let fixture = Fixture::start(&[]);
    let gateway = Gateway::in_front_of(&fixture).await;
    let http = hawser_e2e::harness::http();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    for (header, value) in [
        ("host", "evil.example.com"),
        ("origin", "http://evil.example.com"),
    ] {
        let r = http
            .post(gateway.mcp_url())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header(header, value)
            .json(&init)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status(), 403, "{header}: {value}");
    }
}

#[tokio::test]
async fn idle_sessions_end_and_close_their_upstream_sessions() {
    let fixture = Fixture::start(&[]);
    let gateway = Gateway::start(
        &format!(
            "sessions: {{idleTimeout: 2s}}\nconnections:\n  - name: fx\n    url: {}\n",
            fixture.mcp_url()
        ),
        &[],
    );
    gateway.wait_ready().await;

    // Three sessions, each with an upstream session: one goes quiet, one keeps
    // calling, one only holds its GET stream open.
    let mut idle = McpClient::connect(&gateway.mcp_url()).await;
    let mut busy = McpClient::connect(&gateway.mcp_url()).await;
    let mut streaming = McpClient::connect(&gateway.mcp_url()).await;
    for c in [&mut idle, &mut busy, &mut streaming] {
        let r = c.call("fx__echo", json!({"text": "hi"})).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    let _stream = streaming.listen().await;

    let until = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < until {
        assert_eq!(busy.request("ping", json!({})).await.status, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let r = idle.request("ping", json!({})).await;
    assert_eq!(r.status, 404, "the idle session ended: {r:?}");
    assert_eq!(busy.request("ping", json!({})).await.status, 200);
    let r = streaming.request("ping", json!({})).await;
    assert_eq!(
        r.status, 200,
        "a session holding its stream is in use: {r:?}"
    );

    // The ended session's upstream session was closed (exactly one DELETE upstream).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let deletes = fixture
            .events()
            .await
            .into_iter()
            .filter(|e| e["kind"] == "session_deleted")
            .count();
        if deletes == 1 {
            break;
        }
        assert!(
            deletes == 0 && std::time::Instant::now() < deadline,
            "expected one upstream session DELETE, saw {deletes}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_changed_connection_keeps_serving_until_its_new_revision_is_ready() {
    const ADMIN: &str = "make-before-break-admin-token";
    let gateway = Gateway::start(
        &format!("adminToken: {ADMIN}\nsecurity: {{allowStdioFromApi: true}}\n"),
        &[],
    );
    gateway.wait_ready().await;
    let fixture = hawser_e2e::harness::tools::binary("hawser-fixture");
    // A stdio upstream whose start takes `delay` seconds, named `name`.
    let put = |delay: &str, name: &str| {
        let spec = json!({
            "transport": "stdio",
            "command": "/bin/sh",
            "args": ["-c", format!("sleep {delay}; exec {} --transport stdio --name {name}", fixture.display())],
        });
        let url = format!("{}/api/v1/connections/local", gateway.base);
        async move {
            hawser_e2e::harness::http()
                .put(url)
                .bearer_auth(ADMIN)
                .json(&spec)
                .send()
                .await
                .expect("admin PUT")
                .status()
                .as_u16()
        }
    };
    assert!(matches!(put("0", "v1").await, 200 | 201));
    let mut client = McpClient::connect(&gateway.mcp_url()).await;
    let whoami = |r: &hawser_e2e::harness::mcp::Reply| -> String {
        serde_json::from_str::<serde_json::Value>(&text(r.result())).unwrap_or_default()["server"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = client.call("local__whoami", json!({})).await;
        if r.response().get("result").is_some() && whoami(&r) == "v1" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "v1 never served: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The change takes 1.5 s to dial; meanwhile every list and call is still served.
    assert!(matches!(put("1.5", "v2").await, 200 | 201));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut served_by_v1 = 0;
    loop {
        let names = client.tool_names().await;
        assert!(
            names.iter().any(|n| n == "local__whoami"),
            "the connection's tools vanished during the change: {names:?}"
        );
        let r = client.call("local__whoami", json!({})).await;
        assert!(
            r.response().get("result").is_some(),
            "a call failed during the change: {r:?}"
        );
        match whoami(&r).as_str() {
            "v1" => served_by_v1 += 1,
            "v2" => break,
            other => panic!("served by {other:?}"),
        }
        assert!(std::time::Instant::now() < deadline, "v2 never took over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        served_by_v1 > 0,
        "the old revision bridged the change (else this test saw nothing)"
    );
}

#[tokio::test]
async fn sigterm_ends_get_streams_and_lets_calls_finish() {
    let fixture = Fixture::start(&[]);
    let gateway = Gateway::in_front_of(&fixture).await;
    let mut client = McpClient::connect(&gateway.mcp_url()).await;
    client.wait_for_tool("fx__slow").await;
    let r = client.call("fx__echo", json!({"text": "x"})).await;
    assert_eq!(text(r.result()), "x");
    let mut stream = client.listen().await;
    let slow = call_beside(&gateway, &client, "fx__slow", json!({"ms": 1500}));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stopped = stop_like_a_pod(gateway);
    let r = slow.await.expect("call task");
    assert!(
        r.response().get("result").is_some(),
        "the call in flight finished: {r:?}"
    );
    let status = stopped.await.expect("terminate").expect("exited");
    assert!(
        status.success(),
        "the gateway stopped by itself, not by SIGKILL: {status:?}"
    );
    // The client's GET stream was ended, so it can re-open it on another replica.
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while stream.recv().await.is_some() {}
    })
    .await;
    assert!(end.is_ok(), "the GET stream ended");
}

/// A 2026-07-28 request (no session): the response message.
async fn modern(url: &str, method: &str, mut params: serde_json::Value) -> serde_json::Value {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "1"}});
    let mut request = hawser_e2e::harness::http()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    if let Some(name) = params["name"].as_str() {
        request = request.header("mcp-name", name);
    }
    request
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON")
}

#[tokio::test]
async fn a_connection_not_yet_discovered_asks_for_a_retry_not_unknown() {
    // An upstream that takes connections and never answers: its lists are never read.
    let quiet = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let quiet_addr = quiet.local_addr().expect("address");
    let holding = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = quiet.accept().await {
            open.push(socket);
        }
    });
    let fixture = Fixture::start(&[]);
    let gateway = Gateway::start(
        &format!(
            "connections:\n  - name: fx\n    url: {}\n  - name: quiet\n    url: http://{quiet_addr}/mcp\n    timeouts: {{connect: 60s, call: 60s}}\n    tools: {{exclude: [\"delete_*\"]}}\n",
            fixture.mcp_url()
        ),
        &[],
    );
    // Unready while a connection of the first load is still dialling (at most 10 s).
    let said = loop {
        let r = hawser_e2e::harness::http()
            .get(format!("{}/readyz", gateway.base))
            .send()
            .await
            .expect("readyz");
        let said = (r.status().as_u16(), r.text().await.unwrap_or_default());
        if said.1 != "loading connections" {
            break said;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(said, (503, "dialling connections".to_owned()));
    gateway.wait_ready().await;
    let mut client = McpClient::connect(&gateway.mcp_url()).await;
    client.wait_for_tool("fx__echo").await;

    // A name of the connection not discovered yet is not known to be unknown.
    let r = client.call("quiet__search", json!({})).await;
    assert_eq!(r.response()["error"]["code"], -32010, "{r:?}");
    assert_eq!(
        r.response()["error"]["data"]["connection"],
        "quiet",
        "{r:?}"
    );
    assert!(r.error_message().contains("retry"), "{r:?}");
    // The same on the connection's own endpoint, asked by a 2026-07-28 client.
    let own = format!("{}/mcp/quiet", gateway.base);
    let r = modern(
        &own,
        "tools/call",
        json!({"name": "search", "arguments": {}}),
    )
    .await;
    assert_eq!(r["error"]["code"], -32010, "{r}");
    // So is a URI no discovered connection lists, and a completion for its prompts.
    let r = client
        .request("resources/read", json!({"uri": "quiet://notes/1"}))
        .await;
    assert_eq!(r.response()["error"]["code"], -32010, "{r:?}");
    let r = client
        .request(
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": "quiet__greet"},
                   "argument": {"name": "who", "value": "a"}}),
        )
        .await;
    assert_eq!(r.response()["error"]["code"], -32010, "{r:?}");
    // A name no connection could serve is unknown, as is one the other connection
    // lacks and one the connection's tool filter leaves out.
    for name in ["nobody__search", "fx__search", "quiet__delete_all"] {
        let r = client.call(name, json!({})).await;
        assert!(r.error_message().contains("unknown tool"), "{name}: {r:?}");
    }
    // A list missing a connection's items is not to be reused.
    let list = modern(&gateway.mcp_url(), "tools/list", json!({})).await;
    assert_eq!(list["result"]["ttlMs"], 0, "{list}");
    assert!(
        list["result"]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "fx's tools are listed: {list}"
    );
    holding.abort();
}

#[tokio::test]
async fn sigterm_lets_a_stdio_upstream_finish_what_it_was_asked() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = format!(
        "connections:\n  - name: local\n    transport: stdio\n    command: {}\n    args: [\"--transport\", \"stdio\"]\n",
        hawser_e2e::harness::tools::binary("hawser-fixture").display()
    );
    let gateway = Gateway::start(&config, &[]);
    gateway.wait_ready().await;
    let mut client = McpClient::connect(&gateway.mcp_url()).await;
    client.wait_for_tool("local__slow").await;
    // A call the upstream is working on when the signal comes...
    let slow = call_beside(&gateway, &client, "local__slow", json!({"ms": 1500}));
    // ...and one whose head has arrived, with its body still on the way.
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                      "params": {"name": "local__echo", "arguments": {"text": "late"}}})
    .to_string();
    let url = reqwest::Url::parse(&gateway.mcp_url()).expect("gateway URL");
    let host = format!(
        "{}:{}",
        url.host_str().expect("host"),
        url.port().expect("port")
    );
    let mut tcp = tokio::net::TcpStream::connect(&host)
        .await
        .expect("connect");
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMcp-Session-Id: {}\r\n\
         Content-Length: {}\r\n\r\n",
        url.path(),
        client.session.as_deref().expect("session"),
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.expect("head");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stopped = stop_like_a_pod(gateway);
    let r = slow.await.expect("call task");
    assert_eq!(
        text(r.result()),
        "done after 1500ms",
        "the call in flight finished: {r:?}"
    );
    tcp.write_all(body.as_bytes()).await.expect("body");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer))
        .await
        .expect("the answer came")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("late") && !answer.contains("error"),
        "the request still arriving finished with its upstream's answer: {answer}"
    );
    let status = stopped.await.expect("terminate").expect("exited");
    assert!(
        status.success(),
        "the gateway stopped by itself: {status:?}"
    );
}

#[tokio::test]
async fn a_change_that_cannot_run_lets_a_stdio_call_in_flight_finish() {
    const ADMIN: &str = "failed-change-admin-token";
    let gateway = Gateway::start(
        &format!("adminToken: {ADMIN}\nsecurity:\n  allowStdioFromApi: true\n"),
        &[],
    );
    gateway.wait_ready().await;
    let put = |spec| put_connection(&gateway, ADMIN, "local", spec);
    let fixture = hawser_e2e::harness::tools::binary("hawser-fixture");
    put(
        json!({"transport": "stdio", "command": fixture, "args": ["--transport", "stdio"],
               "timeouts": {"call": "10s"}}),
    )
    .await;
    let mut client = McpClient::connect(&gateway.mcp_url()).await;
    client.wait_for_tool("local__slow").await;
    let slow = call_beside(&gateway, &client, "local__slow", json!({"ms": 2000}));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A new revision whose server cannot start: new calls get its error, the call the
    // old server is working on still gets its answer.
    put(json!({"transport": "stdio", "command": "/nonexistent/mcp-server"})).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = client.call("local__echo", json!({"text": "x"})).await;
        if r.response()["error"]["code"] == -32010 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new revision never took over: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = slow.await.expect("call task");
    assert_eq!(
        text(r.result()),
        "done after 2000ms",
        "the call in flight finished: {r:?}"
    );
}

#[tokio::test]
async fn a_superseded_upstream_session_is_closed_at_its_own_url_only() {
    const ADMIN: &str = "superseded-sessions-admin-token";
    let a = Fixture::start(&["--name", "a"]);
    let b = Fixture::start(&["--name", "b"]);
    let gateway = Gateway::start(&format!("adminToken: {ADMIN}\n"), &[]);
    gateway.wait_ready().await;
    let put = |spec| put_connection(&gateway, ADMIN, "fx", spec);
    let server = |r: &hawser_e2e::harness::mcp::Reply| {
        serde_json::from_str::<serde_json::Value>(&text(r.result())).unwrap_or_default()["server"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let mut client = McpClient::connect(&gateway.mcp_url()).await;
    // Calls until `check` holds, or fail after 20 s.
    async fn until(
        client: &mut McpClient,
        what: &str,
        mut check: impl AsyncFnMut(&hawser_e2e::harness::mcp::Reply) -> bool,
    ) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let r = client.call("fx__whoami", json!({})).await;
            if r.response().get("result").is_some() && check(&r).await {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {r:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let session_of = |r: &hawser_e2e::harness::mcp::Reply| {
        serde_json::from_str::<serde_json::Value>(&text(r.result())).unwrap_or_default()["session"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    put(json!({"url": a.mcp_url(), "timeouts": {"call": "3s"}})).await;
    until(&mut client, "a serves", async |r| server(r) == "a").await;
    let first = session_of(&client.call("fx__whoami", json!({})).await);
    assert!(!first.is_empty());
    assert!(!deleted(&a, &first).await);
    let r = client
        .request(
            "resources/subscribe",
            json!({"uri": "test://watched-resource"}),
        )
        .await;
    assert!(r.response().get("result").is_some(), "{r:?}");
    let r = client
        .request("logging/setLevel", json!({"level": "warning"}))
        .await;
    assert!(r.response().get("result").is_some(), "{r:?}");
    // A call in flight on that session when the connection changes...
    let slow = call_beside(&gateway, &client, "fx__slow", json!({"ms": 1500}));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Same URL, new revision: the client's old upstream session is ended there, once
    // the calls it carries are done.
    put(json!({"url": a.mcp_url(), "timeouts": {"call": "4s"}})).await;
    until(&mut client, "new upstream session", async |r| {
        session_of(r) != first
    })
    .await;
    let r = slow.await.expect("call task");
    assert_eq!(
        text(r.result()),
        "done after 1500ms",
        "the call in flight finished: {r:?}"
    );
    // What the client asked of the old upstream session holds on the new one.
    let second = session_of(&client.call("fx__whoami", json!({})).await);
    for (kind, what) in [
        ("set_level", json!({"level": "warning"})),
        (
            "resource_subscribed",
            json!({"uri": "test://watched-resource"}),
        ),
    ] {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let seen = a.events().await.iter().any(|e| {
                e["kind"] == kind
                    && e["session"] == second.as_str()
                    && what
                        .as_object()
                        .is_some_and(|w| w.iter().all(|(k, v)| &e[k] == v))
            });
            if seen {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{kind} {what} not renewed on {second}: {:?}",
                a.events().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !deleted(&a, &first).await {
        assert!(std::time::Instant::now() < deadline, "{first} never closed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = session_of(&client.call("fx__whoami", json!({})).await);

    // New URL: the old session's id is not sent to the other server.
    put(json!({"url": b.mcp_url()})).await;
    until(&mut client, "b serves", async |r| server(r) == "b").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !deleted(&b, &second).await,
        "b got a DELETE for a's session"
    );
}

/// A pod being stopped: SIGTERM, and up to 10 s before SIGKILL; how it exited.
fn stop_like_a_pod(gateway: Gateway) -> tokio::task::JoinHandle<Option<std::process::ExitStatus>> {
    let mut child = gateway.child;
    tokio::task::spawn_blocking(move || {
        child.terminate(Duration::from_secs(10));
        child.exit_status()
    })
}

/// Puts connection `name` through the admin API; it must be accepted.
async fn put_connection(gateway: &Gateway, admin: &str, name: &str, spec: serde_json::Value) {
    let r = hawser_e2e::harness::http()
        .put(format!("{}/api/v1/connections/{name}", gateway.base))
        .bearer_auth(admin)
        .json(&spec)
        .send()
        .await
        .expect("admin PUT");
    assert!(r.status().is_success(), "{}", r.status());
}

/// Calls `tool` in `client`'s session from a second client, in the background.
fn call_beside(
    gateway: &Gateway,
    client: &McpClient,
    tool: &'static str,
    arguments: serde_json::Value,
) -> tokio::task::JoinHandle<hawser_e2e::harness::mcp::Reply> {
    let mut c = McpClient::new(&gateway.mcp_url());
    c.session = client.session.clone();
    tokio::spawn(async move { c.call(tool, arguments).await })
}

/// Whether `f` saw its session `id` ended with DELETE.
async fn deleted(f: &Fixture, id: &str) -> bool {
    f.events()
        .await
        .iter()
        .any(|e| e["kind"] == "session_deleted" && e["session"] == id)
}

#[tokio::test]
async fn admin_routes_name_plain_and_namespaced_connections() {
    const ADMIN: &str = "namespaced-routes-admin-token";
    let gateway = Gateway::start(&format!("adminToken: {ADMIN}\n"), &[]);
    gateway.wait_ready().await;
    for (path, name) in [
        ("fx", "fx"),
        ("fx/status", "fx"),
        ("team-a/github", "team-a/github"),
        ("team-a/github/status", "team-a/github"),
    ] {
        let r = hawser_e2e::harness::http()
            .get(format!("{}/api/v1/connections/{path}", gateway.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("admin GET");
        assert_eq!(r.status(), 404, "{path}");
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        assert_eq!(
            body["error"],
            format!("connection {name} not found"),
            "{path}"
        );
    }
}

/// A log level set through a connection's own endpoint (passed on as it is) is kept
/// with the session too: the upstream session a new revision opens is told it.
#[tokio::test]
async fn a_log_level_set_on_a_connection_endpoint_reaches_the_next_upstream_session() {
    const ADMIN: &str = "connection-endpoint-level-admin-token";
    let fixture = Fixture::start(&[]);
    let gateway = Gateway::start(&format!("adminToken: {ADMIN}\n"), &[]);
    gateway.wait_ready().await;
    let spec = |call: &str| json!({"url": fixture.mcp_url(), "timeouts": {"call": call}});
    put_connection(&gateway, ADMIN, "fx", spec("3s")).await;
    McpClient::connect(&gateway.mcp_url())
        .await
        .wait_for_tool("fx__whoami")
        .await;
    let mut client = McpClient::connect(&format!("{}/mcp/fx", gateway.base)).await;
    let session_of = |r: &hawser_e2e::harness::mcp::Reply| {
        serde_json::from_str::<serde_json::Value>(&text(r.result())).unwrap_or_default()["session"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let first = session_of(&client.call("whoami", json!({})).await);
    assert!(!first.is_empty());
    let reply = client
        .request("logging/setLevel", json!({"level": "critical"}))
        .await;
    assert_eq!(reply.result(), &json!({}), "{reply:?}");

    put_connection(&gateway, ADMIN, "fx", spec("4s")).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let second = loop {
        let reply = client.call("whoami", json!({})).await;
        let session = session_of(&reply);
        if !session.is_empty() && session != first {
            break session;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no new upstream session: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let told = fixture.events().await.iter().any(|e| {
            e["kind"] == "set_level" && e["session"] == second.as_str() && e["level"] == "critical"
        });
        if told {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new upstream session {second} was never told the level"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
