//! Upstream OAuth with a strict mock provider and a token-checking upstream: the
//! authorization_code dance across replicas, tokens sealed at rest, restarts,
//! refreshes under load with rotation, client_credentials, invalid_grant, and key
//! rotation.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use hawser_e2e::harness::cluster::{ADMIN_TOKEN, Cluster};
use hawser_e2e::harness::mcp::{McpClient, text};
use hawser_e2e::harness::stack::Fixture;
use hawser_e2e::harness::{http, pg};
use hawser_e2e::oauth::{ClientConfig, Config, MockOAuth, ResourceServer, TokenLogEntry};
use serde_json::json;

pub(crate) struct Setup {
    pub(crate) mock: MockOAuth,
    pub(crate) fixture: Fixture,
}

/// The strict provider (client `hawser`) and an upstream that introspects its tokens.
pub(crate) async fn setup(access_ttl: Duration) -> Setup {
    let mock = MockOAuth::start(Config {
        access_ttl,
        clients: vec![ClientConfig::confidential("hawser", "hawser-client-secret")],
        resource_servers: vec![ResourceServer {
            id: "fixture".into(),
            secret: "fixture-rs-secret".into(),
        }],
        ..Config::default()
    })
    .await
    .unwrap_or_else(|e| panic!("mock OAuth: {e}"));
    let fixture = Fixture::start(&[
        "--oauth-introspect",
        mock.base_url(),
        "--oauth-client",
        "fixture:fixture-rs-secret",
    ]);
    Setup { mock, fixture }
}

fn oauth_spec(fixture: &Fixture, grant: &str) -> serde_json::Value {
    // No endpoints given: Hawser discovers them from the upstream (RFC 9728 → RFC 8414).
    json!({"url": fixture.mcp_url(), "auth": {"type": "oauth2", "grant": grant, "clientId": "hawser",
           "clientSecret": "hawser-client-secret", "scopes": ["mcp"]}})
}

/// Starts the flow on replica 1 and completes it like a browser would; the redirect
/// URI points at replica 2.
async fn authorize(cluster: &Cluster, name: &str) {
    let (browser, callback) = redirected(cluster, name).await;
    let (status, html) = fetch(&browser, &callback).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Connection authorized"), "{html}");
    // The state is single-use.
    let (again, _) = fetch(&browser, &callback).await;
    assert_eq!(again, 400);
}

/// A GET of `url` in `browser`: its status and page.
async fn fetch(browser: &reqwest::Client, url: &str) -> (u16, String) {
    let page = browser
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (
        page.status().as_u16(),
        page.text().await.unwrap_or_default(),
    )
}

/// Starts the flow on replica 1 and follows the authorization server's redirect: the
/// "browser" and the callback URL it was sent to (on replica 2).
async fn redirected(cluster: &Cluster, name: &str) -> (reqwest::Client, String) {
    let started = http()
        .post(format!(
            "{}/api/v1/connections/{name}/oauth/start",
            cluster.replicas[0].base
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(started.status(), 200, "{:?}", started.text().await);
    let body: serde_json::Value = started.json().await.unwrap_or_default();
    let authorize_url = body["authorizationUrl"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"));
    assert!(
        authorize_url.contains("code_challenge_method=S256"),
        "{authorize_url}"
    );
    assert!(authorize_url.contains("resource="), "{authorize_url}");

    // The "browser": follow the authorization server's redirect to the callback.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let redirect = browser
        .get(authorize_url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(redirect.status(), 302);
    let callback = redirect
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no redirect"))
        .to_owned();
    assert!(
        callback.starts_with(&cluster.replicas[1].base),
        "callback must land on replica 2: {callback}"
    );
    (browser, callback)
}

/// RFC 9207: the provider promises `iss` in its responses; a response naming another
/// issuer (a mix-up), or none, is refused and its code never exchanged.
async fn mixed_up_responses_are_refused(cluster: &Cluster, mock: &MockOAuth, name: &str) {
    for iss in [Some("https://evil.example"), None] {
        let (browser, callback) = redirected(cluster, name).await;
        let mut url = reqwest::Url::parse(&callback).unwrap_or_else(|e| panic!("{e}"));
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "iss")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert!(
            callback.contains(&format!(
                "iss={}",
                url::form_urlencoded::byte_serialize(mock.issuer().as_bytes()).collect::<String>()
            )),
            "the provider sends iss: {callback}"
        );
        {
            let mut query = url.query_pairs_mut();
            query.clear().extend_pairs(&pairs);
            if let Some(iss) = iss {
                query.append_pair("iss", iss);
            }
        }
        let codes_before = codes_exchanged(mock);
        let (status, html) = fetch(&browser, url.as_str()).await;
        assert_eq!(status, 400, "iss {iss:?}: {html}");
        assert!(html.contains("Authorization refused"), "{html}");
        assert!(
            html.contains(if iss.is_some() {
                "names issuer https://evil.example"
            } else {
                "lacks the iss parameter"
            }),
            "{html}"
        );
        assert_eq!(
            codes_exchanged(mock),
            codes_before,
            "a mixed-up code was sent"
        );
    }
}

fn codes_exchanged(mock: &MockOAuth) -> usize {
    mock.token_log()
        .iter()
        .filter(|e| e.grant_type.as_deref() == Some("authorization_code"))
        .count()
}

/// Joins load workers that each return (calls that succeeded, what went wrong).
pub(crate) async fn gather(
    workers: Vec<tokio::task::JoinHandle<(u32, Vec<String>)>>,
) -> (u32, Vec<String>) {
    let mut calls = 0;
    let mut failures = Vec::new();
    for w in futures::future::join_all(workers).await {
        let (ok, failed) = w.unwrap_or_else(|e| panic!("{e}"));
        calls += ok;
        failures.extend(failed);
    }
    (calls, failures)
}

/// The refreshes in `log`, after checking that no token request failed and that no
/// refresh token was presented twice.
pub(crate) fn refreshed_exactly_once(log: &[TokenLogEntry]) -> Vec<&TokenLogEntry> {
    let bad: Vec<_> = log.iter().filter(|e| e.outcome != "ok").collect();
    assert!(bad.is_empty(), "token requests failed: {bad:?}");
    let refreshes: Vec<_> = log
        .iter()
        .filter(|e| e.grant_type.as_deref() == Some("refresh_token"))
        .collect();
    let presented: HashSet<_> = refreshes
        .iter()
        .filter_map(|e| e.refresh_token_sha256.clone())
        .collect();
    assert_eq!(
        presented.len(),
        refreshes.len(),
        "a refresh token was presented twice"
    );
    refreshes
}

async fn cluster(env_ttl: &[(&str, &str)]) -> Cluster {
    let mut env = vec![("HAWSER_PUBLIC_URL", "{r2}/")];
    env.extend_from_slice(env_ttl);
    Cluster::start_with_env(3, "", &env).await
}

async fn status_of(cluster: &Cluster, name: &str) -> serde_json::Value {
    cluster
        .admin_get(0, &format!("/api/v1/connections/{name}/status"))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_code_across_replicas_sealed_at_rest_and_surviving_restarts() {
    let s = setup(Duration::from_secs(30)).await;
    let mut cluster = cluster(&[]).await;
    assert_eq!(
        cluster
            .put_connection(0, "secure", oauth_spec(&s.fixture, "authorization_code"))
            .await,
        201
    );

    // Without a token: awaiting authorization, no tools, and the status says so.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = status_of(&cluster, "secure").await;
        let replicas = st["replicas"].as_array().cloned().unwrap_or_default();
        if replicas.len() == 3
            && replicas
                .iter()
                .all(|r| r["state"] == "awaiting_authorization")
        {
            assert!(
                replicas[0]["lastError"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("oauth/start"),
                "{st}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never awaiting authorization: {st}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut client = McpClient::connect(&cluster.lb.mcp_url()).await;
    assert!(client.tool_names().await.is_empty());

    // A refusal at the authorization server is shown, not swallowed.
    s.mock.deny_next();
    let started: serde_json::Value = http()
        .post(format!(
            "{}/api/v1/connections/secure/oauth/start",
            cluster.replicas[0].base
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(2))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let page = browser
        .get(started["authorizationUrl"].as_str().unwrap_or_default())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.status(), 400);
    let html = page.text().await.unwrap_or_default();
    assert!(
        html.contains("access_denied") && html.contains("secure"),
        "{html}"
    );

    mixed_up_responses_are_refused(&cluster, &s.mock, "secure").await;
    authorize(&cluster, "secure").await;
    cluster
        .wait_all("authorized", Duration::from_secs(20), |n| {
            n.iter().any(|t| t == "secure__whoami")
        })
        .await;
    let r = client
        .call("secure__echo", json!({"text": "with a token"}))
        .await;
    assert_eq!(text(r.result()), "with a token");
    // Every replica's status comes to say so. (A replica that found the token on its
    // own retry re-dials once more when the token's announcement reaches it, and is
    // `connecting` for that moment.)
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = status_of(&cluster, "secure").await;
        if st["replicas"]
            .as_array()
            .is_some_and(|r| r.iter().all(|x| x["authState"] == "authorized"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "not authorized everywhere: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Nothing in the database is a usable token (mock tokens are mat_…, mrt_…, codes mac_…).
    let dump = pg::dump(&cluster.db.url);
    for prefix in ["mat_", "mrt_", "mac_", "hawser-client-secret"] {
        assert!(
            !dump.contains(prefix),
            "plaintext {prefix}… in the database dump"
        );
    }
    assert!(
        dump.contains("enc:v1:k1:"),
        "sealed values expected in the dump"
    );

    // Every replica restarts: the first call works with the stored token.
    cluster.restart_all(None).await;
    cluster
        .wait_all("after restart", Duration::from_secs(20), |n| {
            n.iter().any(|t| t == "secure__echo")
        })
        .await;
    let mut client = McpClient::connect(&cluster.lb.mcp_url()).await;
    let r = client
        .call("secure__echo", json!({"text": "after restart"}))
        .await;
    assert_eq!(text(r.result()), "after restart");
    let codes: usize = s
        .mock
        .token_log()
        .iter()
        .filter(|e| e.grant_type.as_deref() == Some("authorization_code"))
        .count();
    assert_eq!(codes, 1, "the restart must not need a new authorization");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_tokens_under_load_rotate_exactly_once_without_a_storm() {
    let ttl = Duration::from_secs(2);
    let s = setup(ttl).await;
    let cluster = cluster(&[]).await;
    assert_eq!(
        cluster
            .put_connection(0, "rot", oauth_spec(&s.fixture, "authorization_code"))
            .await,
        201
    );
    authorize(&cluster, "rot").await;
    cluster
        .wait_all("authorized", Duration::from_secs(20), |n| {
            n.iter().any(|t| t == "rot__echo")
        })
        .await;
    let first = s.mock.token_log().len();

    let run_for = Duration::from_secs(20);
    let started = Instant::now();
    let lb = cluster.lb.mcp_url();
    let workers: Vec<_> = (0..50)
        .map(|w| {
            let lb = lb.clone();
            tokio::spawn(async move {
                let mut client = McpClient::connect(&lb).await;
                let (mut ok, mut failed) = (0u32, Vec::new());
                while started.elapsed() < run_for {
                    let r = client
                        .call("rot__echo", json!({"text": format!("w{w}")}))
                        .await;
                    if r.status == 200 && r.messages.iter().any(|m| m.get("result").is_some()) {
                        ok += 1;
                    } else {
                        failed.push(format!("{r:?}"));
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let (calls, failures) = gather(workers).await;
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        failures.is_empty(),
        "{} of {} calls failed, first: {}",
        failures.len(),
        calls,
        failures[0]
    );
    assert!(calls > 200, "too few calls: {calls}");

    let log: Vec<_> = s.mock.token_log().into_iter().skip(first).collect();
    let refreshes = refreshed_exactly_once(&log);
    let expected = elapsed / ttl.as_secs_f64();
    assert!(
        refreshes.len() as f64 >= expected * 0.5 && refreshes.len() as f64 <= expected * 2.0,
        "{} refreshes in {elapsed:.1}s with a {}s TTL (expected about {expected:.0})",
        refreshes.len(),
        ttl.as_secs()
    );
    eprintln!(
        "{calls} calls, {} refreshes in {elapsed:.1}s",
        refreshes.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_work_and_survive_a_restart() {
    let s = setup(Duration::from_secs(30)).await;
    let mut cluster = cluster(&[]).await;
    assert_eq!(
        cluster
            .put_connection(0, "m2m", oauth_spec(&s.fixture, "client_credentials"))
            .await,
        201
    );
    cluster
        .wait_all("m2m ready", Duration::from_secs(20), |n| {
            n.iter().any(|t| t == "m2m__whoami")
        })
        .await;
    let mut client = McpClient::connect(&cluster.lb.mcp_url()).await;
    let who: serde_json::Value =
        serde_json::from_str(&text(client.call("m2m__whoami", json!({})).await.result()))
            .unwrap_or_default();
    assert_eq!(who["clientId"], "hawser", "{who}");
    cluster.restart_all(None).await;
    let mut client = McpClient::connect(&cluster.lb.mcp_url()).await;
    cluster
        .wait_all("after restart", Duration::from_secs(20), |n| {
            n.iter().any(|t| t == "m2m__echo")
        })
        .await;
    assert_eq!(
        text(
            client
                .call("m2m__echo", json!({"text": "again"}))
                .await
                .result()
        ),
        "again"
    );
    // The token was fetched once and shared: replicas and restarts reuse the stored one.
    let grants = s
        .mock
        .token_log()
        .iter()
        .filter(|e| e.grant_type.as_deref() == Some("client_credentials"))
        .count();
    assert_eq!(
        grants, 1,
        "client_credentials tokens requested {grants} times"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_leaves_the_connection_awaiting_authorization_without_looping() {
    let s = setup(Duration::from_secs(2)).await;
    let cluster = cluster(&[]).await;
    assert_eq!(
        cluster
            .put_connection(0, "gone", oauth_spec(&s.fixture, "authorization_code"))
            .await,
        201
    );
    authorize(&cluster, "gone").await;
    cluster
        .wait_all("authorized", Duration::from_secs(20), |n| {
            n.iter().any(|t| t == "gone__echo")
        })
        .await;
    s.mock.revoke_all();
    let before = s.mock.token_log().len();
    // Calls fail with an authorization error once the token expires and the refresh
    // is refused; the connection goes back to awaiting authorization.
    let mut client = McpClient::connect(&cluster.lb.mcp_url()).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut refused = None;
    loop {
        let r = client.call("gone__echo", json!({"text": "x"})).await;
        if r.messages.iter().any(|m| m.get("error").is_some()) {
            refused.get_or_insert(r.error_message());
        }
        let st = status_of(&cluster, "gone").await;
        if st["replicas"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x["state"] == "awaiting_authorization"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never back to awaiting authorization: {st}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let refused = refused.unwrap_or_default();
    assert!(
        refused.contains("gone") && refused.contains("authoriz"),
        "error must say why: {refused}"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after: Vec<_> = s.mock.token_log().into_iter().skip(before).collect();
    let invalid = after
        .iter()
        .filter(|e| e.outcome == "invalid_grant")
        .count();
    assert!(
        (1..=3).contains(&invalid),
        "{invalid} invalid_grant answers: the gateway must not loop ({after:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_without_downtime() {
    let s = setup(Duration::from_secs(30)).await;
    let mut cluster = cluster(&[]).await;
    assert_eq!(
        cluster
            .put_connection(0, "rotkey", oauth_spec(&s.fixture, "client_credentials"))
            .await,
        201
    );
    cluster
        .wait_all("ready", Duration::from_secs(20), |n| {
            n.iter().any(|t| t == "rotkey__echo")
        })
        .await;
    let old = cluster.keys.clone();
    let new = format!(
        "k2:{}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            rand::random::<[u8; 32]>()
        )
    );
    // 1. New key first (it seals), old key still unseals.
    cluster.restart_all(Some(&format!("{new},{old}"))).await;
    // 2. Re-seal everything under the new key.
    let out = std::process::Command::new(hawser_e2e::harness::tools::binary("hawser"))
        .arg("reseal")
        .env("DATABASE_URL", &cluster.db.url)
        .env("HAWSER_ENCRYPTION_KEYS", format!("{new},{old}"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "reseal failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = pg::dump(&cluster.db.url);
    assert!(
        !dump.contains("enc:v1:k1:"),
        "values still sealed with the old key"
    );
    // 3. Drop the old key: everything still works.
    cluster.restart_all(Some(&new)).await;
    cluster
        .wait_all("after rotation", Duration::from_secs(20), |n| {
            n.iter().any(|t| t == "rotkey__echo")
        })
        .await;
    let mut client = McpClient::connect(&cluster.lb.mcp_url()).await;
    assert_eq!(
        text(
            client
                .call("rotkey__echo", json!({"text": "rotated"}))
                .await
                .result()
        ),
        "rotated"
    );
}
