//! Who is calling: OIDC sign-in by the official SDK's OAuth client through three
//! replicas, the tokens a gateway must refuse, API keys revoked everywhere within a
//! second, and the caller's identity as each upstream identity mode carries it.

use std::time::{Duration, Instant};

use hawser_e2e::harness::cluster::{ADMIN_TOKEN, Cluster};
use hawser_e2e::harness::mcp::{McpClient, text};
use hawser_e2e::harness::stack::{Fixture, Gateway, python_script, run_python};
use hawser_e2e::harness::{free_port, http};
use hawser_e2e::oauth::{ClientConfig, Config, MintRequest, MintSign, MockOAuth};
use serde_json::{Value, json};

async fn provider(clients: Vec<ClientConfig>) -> MockOAuth {
    provider_with_ttl(clients, Duration::from_secs(600)).await
}

async fn provider_with_ttl(clients: Vec<ClientConfig>, access_ttl: Duration) -> MockOAuth {
    MockOAuth::start(Config {
        jwt: true,
        access_ttl,
        clients,
        groups: vec![
            ("alice".into(), "eng".into()),
            ("alice".into(), "ops".into()),
        ],
        ..Config::default()
    })
    .await
    .unwrap_or_else(|e| panic!("mock provider: {e}"))
}

fn sha256(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn sign_in(mcp_url: &str, tool: &str, mode: &str, pause: &str) -> Value {
    let out = run_python(
        &python_script("signin.py"),
        &[mcp_url, tool, mode, "alice", pause],
        Duration::from_secs(120),
    )
    .await;
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test]
async fn the_python_sdk_signs_in_by_itself_through_three_replicas_and_survives_key_rotation() {
    // Access tokens live 3 s: the client refreshes one (rotating its refresh token).
    let mock = provider_with_ttl(Vec::new(), Duration::from_secs(3)).await;
    let fixture = Fixture::start(&[]);
    let config = format!(
        "publicUrl: {{lb}}\nclientAuth:\n  oidc:\n    issuer: {}\n    jwksRefreshInterval: 1s\nconnections:\n  - name: fx\n    url: {}\n",
        mock.issuer(),
        fixture.mcp_url()
    );
    let cluster = Cluster::start(3, &config).await;
    let url = format!("{}/mcp", cluster.lb.base);
    for mode in ["auto", "legacy"] {
        let report = sign_in(&url, "fx__echo", mode, "0").await;
        assert!(
            report["echo"]
                .as_str()
                .unwrap_or_default()
                .contains("signed in"),
            "{mode}: {report}"
        );
    }
    // Each run registered a client and signed in once with the code flow.
    assert_eq!(mock.registered_clients().len(), 2);
    let code_grants = mock
        .token_log()
        .iter()
        .filter(|e| e.grant_type.as_deref() == Some("authorization_code") && e.outcome == "ok")
        .count();
    assert_eq!(code_grants, 2);
    // The provider rotates its key and stops publishing the old one; a new sign-in's
    // token (signed with a key no replica has seen) works on every replica.
    mock.rotate_key_and_retire()
        .unwrap_or_else(|e| panic!("rotate: {e}"));
    let report = sign_in(&url, "fx__echo", "auto", "4").await;
    assert!(
        report["echo"]
            .as_str()
            .unwrap_or_default()
            .contains("signed in"),
        "{report}"
    );
    assert_eq!(
        report["token_changed"], true,
        "refreshed after expiry: {report}"
    );
    let refreshes = mock
        .token_log()
        .iter()
        .filter(|e| e.grant_type.as_deref() == Some("refresh_token") && e.outcome == "ok")
        .count();
    assert!(refreshes >= 1, "the client refreshed its token");
    // Each of the three sign-ins began with a 401 for a request without a token.
    let mut refused = 0.0;
    for r in &cluster.replicas {
        let metrics = get_text(&format!("{}/metrics", r.base)).await;
        refused += metrics
            .lines()
            .find(|l| l.starts_with("hawser_auth_failures_total{reason=\"missing\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    }
    assert!(refused >= 3.0, "{refused} refusals counted");
}

async fn get_text(url: &str) -> String {
    http()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap_or_default()
}

async fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> T {
    let text = get_text(url).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: {e}: {text}"))
}

/// POSTs `initialize` with `token`; the status and `WWW-Authenticate`.
async fn try_token(url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = http()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}}));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap_or_else(|e| panic!("{e}"));
    let challenge = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (r.status().as_u16(), challenge)
}

#[tokio::test]
async fn bad_tokens_are_refused_with_the_right_answer() {
    let mock = provider(Vec::new()).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let config = format!(
        "publicUrl: {base}\nclientAuth:\n  oidc:\n    issuer: {}\n    scopesRequired: [mcp]\n",
        mock.issuer()
    );
    let gateway = Gateway::start_at(&format!("127.0.0.1:{port}"), &config, &[], &[]);
    gateway.wait_ready().await;
    let url = gateway.mcp_url();
    let metadata = format!("{base}/.well-known/oauth-protected-resource/mcp");

    // The metadata a client discovers.
    let prm: Value = get_json(&metadata).await;
    assert_eq!(prm["resource"], format!("{base}/mcp"));
    assert_eq!(prm["authorization_servers"], json!([mock.issuer()]));
    assert_eq!(prm["scopes_supported"], json!(["mcp"]));

    let (status, challenge) = try_token(&url, None).await;
    assert_eq!(status, 401);
    assert!(
        challenge.contains(&format!("resource_metadata=\"{metadata}\"")),
        "{challenge}"
    );
    assert!(!challenge.contains("error="), "{challenge}");

    let claims = |patch: Value| {
        let mut c = json!({"iss": mock.issuer(), "sub": "alice", "aud": format!("{base}/mcp"),
            "exp": now() + 300, "iat": now(), "scope": "mcp"});
        for (k, v) in patch.as_object().cloned().unwrap_or_default() {
            c[k] = v;
        }
        c
    };
    let mint = |claims: Value, sign: MintSign| {
        mock.mint(&MintRequest {
            claims,
            sign,
            ..MintRequest::default()
        })
        .unwrap_or_else(|e| panic!("mint: {e}"))
    };
    let good = mint(claims(json!({})), MintSign::Current);
    assert_eq!(try_token(&url, Some(&good)).await.0, 200);

    let refused = [
        (
            "another audience",
            mint(
                claims(json!({"aud": "https://other.example/mcp"})),
                MintSign::Current,
            ),
            "issued for another resource",
        ),
        (
            "expired",
            mint(claims(json!({"exp": now() - 600})), MintSign::Current),
            "expired",
        ),
        (
            "unknown key",
            mint(claims(json!({})), MintSign::UnknownKey),
            "unknown key",
        ),
        (
            "alg none",
            mint(claims(json!({})), MintSign::None),
            "algorithm",
        ),
        (
            "HS256 keyed with the public key",
            mint(claims(json!({})), MintSign::Hs256PublicKey),
            "algorithm",
        ),
        (
            "another issuer",
            mint(
                claims(json!({"iss": "https://evil.example"})),
                MintSign::Current,
            ),
            "another issuer",
        ),
    ];
    for (what, token, said) in refused {
        let (status, challenge) = try_token(&url, Some(&token)).await;
        assert_eq!(status, 401, "{what}");
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{what}: {challenge}"
        );
        assert!(challenge.contains(said), "{what}: {challenge}");
        assert!(challenge.contains(&metadata), "{what}: {challenge}");
    }
    let (status, challenge) = try_token(
        &url,
        Some(&mint(claims(json!({"scope": "other"})), MintSign::Current)),
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        challenge.contains("error=\"insufficient_scope\"") && challenge.contains("scope=\"mcp\""),
        "{challenge}"
    );
}

async fn admin(
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http()
        .request(method, format!("{base}{path}"))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap_or_else(|e| panic!("{e}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn api_keys_work_on_every_replica_and_a_revocation_reaches_all_within_a_second() {
    let cluster = Cluster::start(3, "clientAuth:\n  apiKeys: true\n").await;
    let bases: Vec<String> = cluster.replicas.iter().map(|r| r.base.clone()).collect();
    let (status, issued) = admin(
        &bases[0],
        reqwest::Method::POST,
        "/api/v1/apikeys",
        Some(json!({"subject": "ci-bot", "groups": ["ci"], "description": "pipeline"})),
    )
    .await;
    assert_eq!(status, 201, "{issued}");
    let key = issued["key"].as_str().unwrap_or_default().to_owned();
    assert!(key.starts_with("hwk_"), "{issued}");
    for base in &bases {
        assert_eq!(
            try_token(&format!("{base}/mcp"), Some(&key)).await.0,
            200,
            "{base}"
        );
    }
    // The list shows the key without the key.
    let (_, list) = admin(&bases[2], reqwest::Method::GET, "/api/v1/apikeys", None).await;
    let shown = &list["apiKeys"][0];
    assert_eq!(shown["prefix"], issued["prefix"]);
    assert_eq!(shown["subject"], "ci-bot");
    assert!(!list.to_string().contains(&key));
    // Revoked through one replica, refused by all within a second.
    let id = issued["id"].as_str().unwrap_or_default();
    let (status, _) = admin(
        &bases[1],
        reqwest::Method::DELETE,
        &format!("/api/v1/apikeys/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let revoked = Instant::now();
    let mut pending: Vec<&String> = bases.iter().collect();
    while !pending.is_empty() {
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "still accepted by {pending:?}"
        );
        let mut still = Vec::new();
        for base in pending {
            if try_token(&format!("{base}/mcp"), Some(&key)).await.0 != 401 {
                still.push(base);
            }
        }
        pending = still;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The CLI lists it as revoked.
    let out = tokio::process::Command::new(hawser_e2e::harness::tools::binary("hawser"))
        .args(["apikey", "list", "--gateway", &bases[0]])
        .env("HAWSER_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .await
        .unwrap_or_else(|e| panic!("hawser apikey: {e}"));
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains(issued["prefix"].as_str().unwrap_or("?")) && listed.contains("revoked"),
        "{listed}"
    );
}

#[tokio::test]
async fn upstreams_learn_the_caller_as_each_identity_mode_says() {
    let mock = provider(vec![
        ClientConfig::confidential("caller", "caller-secret"),
        ClientConfig::confidential("hawser-gw", "gw-secret"),
    ])
    .await;
    let fixture = Fixture::start(&[]);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let fx = fixture.mcp_url();
    let config = format!(
        "publicUrl: {base}\nclientAuth:\n  oidc:\n    issuer: {issuer}\nconnections:
  - name: hdr\n    url: {fx}\n    identity: {{mode: headers}}\n    forwardHeaders: [X-Tenant-Id]
  - name: sig\n    url: {fx}\n    identity: {{mode: jwt, audience: fixture-api}}
  - name: exc\n    url: {fx}\n    identity: {{mode: exchange, clientId: hawser-gw, clientSecret: gw-secret, audience: fixture-api, header: X-Upstream-Token}}\n",
        issuer = mock.issuer()
    );
    let gateway = Gateway::start_at(
        &format!("127.0.0.1:{port}"),
        &config,
        &[("HAWSER_ADMIN_TOKEN", ADMIN_TOKEN)],
        &[],
    );
    gateway.wait_ready().await;
    // A real token of the provider's (client_credentials: sub = the client id).
    let token: Value = http()
        .post(format!("{}/token", mock.base_url()))
        .basic_auth("caller", Some("caller-secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", &format!("{base}/mcp")),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let token = token["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{token}"))
        .to_owned();
    let mut client = McpClient::new(&gateway.mcp_url());
    client.token = Some(token.clone());
    client.headers = vec![
        ("x-tenant-id".into(), "acme".into()),
        ("cookie".into(), "session=secret".into()),
        ("x-forwarded-user".into(), "forged".into()),
    ];
    client.initialize().await;
    let seen = |reply: &hawser_e2e::harness::mcp::Reply| -> Value {
        serde_json::from_str(&text(reply.result())).unwrap_or_else(|e| panic!("{e}: {reply:?}"))
    };
    let caller_hash = sha256(&token);

    // headers: the subject in X-Forwarded-User (the client's forged one replaced), the
    // allowed client header passed on, the cookie and the client's token not.
    let h = seen(&client.call("hdr__headers", json!({})).await);
    assert_eq!(h["x-forwarded-user"], "caller", "{h}");
    assert_eq!(h["x-tenant-id"], "acme", "{h}");
    assert!(h.get("cookie").is_none(), "{h}");
    assert!(
        h["x-request-id"].is_string() && h["traceparent"].is_string(),
        "{h}"
    );
    assert_ne!(
        h["authorization"],
        json!(sha256(&format!("Bearer {token}"))),
        "the client's token passed through"
    );

    // jwt: an ES256 assertion that verifies with the published keys.
    let h = seen(&client.call("sig__headers", json!({})).await);
    let assertion = h["x-hawser-identity"]
        .as_str()
        .unwrap_or_else(|| panic!("{h}"));
    let jwks: jsonwebtoken::jwk::JwkSet = get_json(&format!("{base}/.well-known/jwks.json")).await;
    let header = jsonwebtoken::decode_header(assertion).unwrap_or_else(|e| panic!("{e}"));
    let jwk = jwks
        .find(header.kid.as_deref().unwrap_or_default())
        .unwrap_or_else(|| panic!("kid not published"));
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap_or_else(|e| panic!("{e}"));
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["fixture-api"]);
    validation.set_issuer(&[base.as_str()]);
    let claims = jsonwebtoken::decode::<Value>(assertion, &key, &validation)
        .unwrap_or_else(|e| panic!("assertion does not verify: {e}"))
        .claims;
    assert_eq!(claims["sub"], "caller");
    assert_eq!(claims["act"]["sub"], base);
    // Rotation: the next assertion is signed with a new key; both are published.
    let (status, rotated) = admin(
        &base,
        reqwest::Method::POST,
        "/api/v1/signing-keys/rotate",
        None,
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let h = seen(&client.call("sig__headers", json!({})).await);
    let next = h["x-hawser-identity"].as_str().unwrap_or_default();
    let next_kid = jsonwebtoken::decode_header(next)
        .unwrap_or_else(|e| panic!("{e}"))
        .kid;
    assert_eq!(next_kid.as_deref(), rotated["kid"].as_str());
    let jwks: jsonwebtoken::jwk::JwkSet = get_json(&format!("{base}/.well-known/jwks.json")).await;
    assert!(
        jwks.find(header.kid.as_deref().unwrap_or_default())
            .is_some(),
        "old key still published"
    );
    assert!(jwks.find(next_kid.as_deref().unwrap_or_default()).is_some());

    // exchange: the upstream gets the token the provider issued for it.
    let h = seen(&client.call("exc__headers", json!({})).await);
    let exchanges: Vec<_> = mock
        .token_log()
        .into_iter()
        .filter(|e| {
            e.grant_type
                .as_deref()
                .is_some_and(|g| g.ends_with("token-exchange"))
                && e.outcome == "ok"
        })
        .collect();
    assert_eq!(exchanges.len(), 1, "one exchange");
    let exchanged = h["x-upstream-token"].as_str().unwrap_or_default();
    let exchanged = exchanged
        .strip_prefix("Bearer ")
        .unwrap_or_else(|| panic!("{h}"));
    assert_eq!(Some(sha256(exchanged)), exchanges[0].access_sha256, "{h}");
    assert_eq!(
        exchanges[0].subject_token_sha256.as_deref(),
        Some(caller_hash.as_str())
    );
    // Cached per caller: a second call exchanges nothing more.
    client.call("exc__headers", json!({})).await;
    let again = mock
        .token_log()
        .into_iter()
        .filter(|e| {
            e.grant_type
                .as_deref()
                .is_some_and(|g| g.ends_with("token-exchange"))
        })
        .count();
    assert_eq!(again, 1);
}

#[tokio::test]
async fn a_session_is_its_callers_and_survives_the_token_expiring() {
    let mock = provider(Vec::new()).await;
    let fixture = Fixture::start(&[]);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let config = format!(
        "publicUrl: {base}\nclientAuth:\n  oidc:\n    issuer: {}\n    clockSkew: 1s\nconnections:\n  - name: fx\n    url: {}\n",
        mock.issuer(),
        fixture.mcp_url()
    );
    let gateway = Gateway::start_at(&format!("127.0.0.1:{port}"), &config, &[], &[]);
    gateway.wait_ready().await;
    let token = |sub: &str, ttl: u64| {
        mock.mint(&MintRequest {
            claims: json!({"iss": mock.issuer(), "sub": sub, "aud": format!("{base}/mcp"),
                "exp": now() + ttl, "iat": now()}),
            ..MintRequest::default()
        })
        .unwrap_or_else(|e| panic!("mint: {e}"))
    };
    let mut client = McpClient::connect_as(&gateway.mcp_url(), &token("alice", 2)).await;
    assert_eq!(
        client.call("fx__echo", json!({"text": "hi"})).await.status,
        200
    );
    tokio::time::sleep(Duration::from_millis(4200)).await;
    let expired = client.call("fx__echo", json!({"text": "hi"})).await;
    assert_eq!(expired.status, 401, "{expired:?}");
    // Signed in again as the same subject: the session goes on.
    client.token = Some(token("alice", 300));
    let again = client.call("fx__echo", json!({"text": "again"})).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert!(text(again.result()).contains("again"));
    // Another subject presenting the session id learns nothing about it.
    client.token = Some(token("mallory", 300));
    assert_eq!(
        client.call("fx__echo", json!({"text": "x"})).await.status,
        404
    );
}

/// Guessing the admin token on `/api/v1` is counted and throttled like guessing it at
/// the console's sign-in: after the allowance every answer is 429, the right token's
/// too, so the answers tell a guesser nothing. Callers' own routes are throttled as
/// `/mcp` is, and never refuse valid credentials.
#[tokio::test]
async fn wrong_admin_tokens_on_the_admin_api_are_counted_and_throttled() {
    let gateway = Gateway::start(
        "http: {maxAuthFailuresPerMinute: 4}\nclientAuth:\n  tokens:\n    - {subject: alice, token: a-token}\nconnections: []\n",
        &[("HAWSER_ADMIN_TOKEN", ADMIN_TOKEN)],
    );
    let get = |path: &'static str, token: &'static str| {
        let url = format!("{}{path}", gateway.base);
        async move {
            http()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    let failures = || async {
        gateway
            .metrics()
            .await
            .lines()
            .filter(|l| l.starts_with("hawser_auth_failures_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    assert_eq!(get("/api/v1/connections", ADMIN_TOKEN).await.status(), 200);
    let before = failures().await;
    for _ in 0..4 {
        assert_eq!(get("/api/v1/connections", "guess").await.status(), 401);
    }
    // A caller's own routes count too, against the address's allowance on `/mcp`,
    // not the admin token's.
    assert_eq!(get("/api/v1/me/connections", "guess").await.status(), 401);
    assert_eq!(failures().await - before, 5.0, "each failure counted");
    let refused = get("/api/v1/connections", "guess").await;
    assert_eq!(refused.status(), 429);
    assert!(
        refused.headers().contains_key("retry-after"),
        "{:?}",
        refused.headers()
    );
    assert_eq!(
        get("/api/v1/connections", ADMIN_TOKEN).await.status(),
        429,
        "the right token from an address over its allowance gets the same answer"
    );
    // Callers from the address are not locked out of their own routes.
    assert_eq!(get("/api/v1/me/connections", "a-token").await.status(), 200);
}

#[tokio::test]
async fn an_address_that_keeps_failing_gets_429_and_valid_callers_from_it_do_not() {
    let fixture = Fixture::start(&[]);
    let config = format!(
        "http: {{maxAuthFailuresPerMinute: 5}}\nclientAuth:\n  tokens:\n    - {{subject: alice, token: a-token}}\nconnections:\n  - name: fx\n    url: {}\n",
        fixture.mcp_url()
    );
    let gateway = Gateway::start(&config, &[]);
    let post = |token: &'static str| {
        let url = gateway.mcp_url();
        async move {
            http()
                .post(url)
                .bearer_auth(token)
                .header("accept", "application/json, text/event-stream")
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                    "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                               "clientInfo": {"name": "t", "version": "1"}}}))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    for _ in 0..5 {
        assert_eq!(post("wrong").await.status(), 401);
    }
    let refused = post("wrong").await;
    assert_eq!(refused.status(), 429);
    let wait: u64 = refused
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After: {:?}", refused.headers()));
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    // A caller with valid credentials from the same address is not refused.
    assert_eq!(post("a-token").await.status(), 200);
    let metrics = gateway.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("hawser_requests_total") && l.contains("rate_limited")),
        "{metrics}"
    );
}
