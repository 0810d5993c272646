//! The web console in a real browser (Debian's chromium, driven by playwright-core
//! from `e2e/console/console.test.mjs`): two replicas behind nginx with Postgres,
//! sign-in through the strict mock OIDC provider, one plain, one OAuth and one
//! per-user OAuth connection, axe-core on every page. Screenshots go to `docs/console/` when
//! `HAWSER_CONSOLE_SCREENSHOTS` names a directory.

use std::time::Duration;

use hawser_e2e::harness::cluster::{ADMIN_TOKEN, Cluster};
use hawser_e2e::harness::mcp::{McpClient, text};
use hawser_e2e::harness::stack::Fixture;
use hawser_e2e::harness::{env_var, http, tools};
use hawser_e2e::oauth::{ClientConfig, Config, MockOAuth, ResourceServer};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";

fn config(mock: &str, plain: &Fixture, secured: &Fixture) -> String {
    format!(
        r#"publicUrl: "{{lb}}"
clientAuth:
  apiKeys: true
  oidc:
    issuer: {mock}
console:
  adminGroups: [hawser-admins]
  oidc: {{clientId: console, clientSecret: console-secret, scopes: [openid]}}
connections:
  - name: plain
    url: {plain}
  - name: gh
    url: {secured}
    auth: {{type: oauth2, grant: authorization_code, clientId: hawser, clientSecret: hawser-client-secret, scopes: [mcp]}}
  - name: personal
    url: {secured}
    auth: {{type: oauth2, grant: authorization_code, tokens: perUser, clientId: hawser, clientSecret: hawser-client-secret, scopes: [mcp]}}
"#,
        plain = plain.mcp_url(),
        secured = secured.mcp_url(),
    )
}

/// An API key for `subject`, issued through the admin API.
async fn api_key(cluster: &Cluster, subject: &str) -> String {
    let r = http()
        .post(format!("{}/api/v1/apikeys", cluster.lb.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"subject": subject}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap_or_default();
    body["key"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_browser() {
    let node_modules = tools::e2e_dir().join("console/node_modules/playwright-core");
    assert!(
        node_modules.exists(),
        "playwright-core not installed: run scripts/setup-test-deps"
    );
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} missing: run scripts/setup-test-deps (installs Debian's chromium)"
    );
    let mock = MockOAuth::start(Config {
        access_ttl: Duration::from_secs(300),
        clients: vec![
            ClientConfig::confidential("hawser", "hawser-client-secret"),
            ClientConfig::confidential("console", "console-secret"),
        ],
        resource_servers: vec![ResourceServer {
            id: "fixture".into(),
            secret: "fixture-rs-secret".into(),
        }],
        scopes: vec!["mcp".into(), "openid".into()],
        groups: vec![("alice".into(), "hawser-admins".into())],
        ..Config::default()
    })
    .await
    .unwrap_or_else(|e| panic!("mock OAuth: {e}"));
    let plain = Fixture::start(&[]);
    let secured = Fixture::start(&[
        "--oauth-introspect",
        mock.base_url(),
        "--oauth-client",
        "fixture:fixture-rs-secret",
    ]);
    let cluster = Cluster::start_with_env(
        2,
        &config(mock.base_url(), &plain, &secured),
        &[("HAWSER_ADMIN_TOKEN", ADMIN_TOKEN)],
    )
    .await;
    let mcp = cluster.lb.mcp_url();

    // Calls by two people, one of them failing, for the audit pages.
    let (alice_key, bob_key) = (
        api_key(&cluster, "alice").await,
        api_key(&cluster, "bob").await,
    );
    for key in [&alice_key, &bob_key] {
        let mut client = McpClient::connect_as(&mcp, key).await;
        client.wait_for_tool("plain__echo").await;
        client.call("plain__echo", json!({"text": "hello"})).await;
    }
    McpClient::connect_as(&mcp, &bob_key)
        .await
        .call("plain__no_such_tool", json!({}))
        .await;

    let script = tools::e2e_dir().join("console/console.test.mjs");
    let mut cmd = tokio::process::Command::new(tools::node());
    cmd.arg(&script)
        .env("HAWSER_CONSOLE_URL", &cluster.lb.base)
        .env("HAWSER_CHROMIUM", CHROMIUM)
        .env("HAWSER_ALICE_KEY", &alice_key)
        .kill_on_drop(true);
    if let Some(dir) = env_var("HAWSER_CONSOLE_SCREENSHOTS") {
        cmd.env("HAWSER_CONSOLE_SCREENSHOTS", dir);
    }
    let out = tokio::time::timeout(Duration::from_secs(150), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("the browser test did not finish in 150 s"))
        .unwrap_or_else(|e| panic!("cannot run node: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser test failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    eprintln!("{stdout}");

    // The Authorize button left a token every replica uses: the upstream is callable.
    let mut client = McpClient::connect_as(&mcp, &alice_key).await;
    client.wait_for_tool("gh__whoami").await;
    let who = client.call("gh__whoami", json!({})).await;
    let who: Value = serde_json::from_str(&text(who.result()))
        .unwrap_or_else(|e| panic!("{e}: {}", who.response()));
    assert_eq!(who["clientId"], "hawser", "{who}");
}

mod charts;
mod sessions;
mod signin;
mod web;
