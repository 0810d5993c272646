//! HTTP-level tests: the mock provider and the OAuth-protected fixture, both
//! in-process on 127.0.0.1:0, driven with reqwest.

use std::{future::IntoFuture, sync::Arc, time::Duration};

use clap::Parser;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::{
    AuthMethod, ClientConfig, Config, MockOAuth, ResourceServer, basic_header, provider::s256,
};
use crate::fixture::{cli::Cli as FixtureCli, events::EventLog, state::Shared, util::sha256_hex};

pub(super) const REDIRECT: &str = "http://127.0.0.1:9/oauth/callback";
pub(super) const GW: &str = "gateway";
pub(super) const GW_SECRET: &str = "gateway-secret";
pub(super) const IDE: &str = "ide";
pub(super) const BASIC_ONLY: &str = "basic-only";
pub(super) const RS: &str = "fixture";
pub(super) const RS_SECRET: &str = "fixture-secret";

pub(super) fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

pub(super) fn config() -> Config {
    Config {
        clients: vec![
            ClientConfig::confidential(GW, GW_SECRET),
            ClientConfig::public(IDE),
            ClientConfig::confidential(BASIC_ONLY, "b-secret")
                .with_auth_methods(&[AuthMethod::ClientSecretBasic]),
        ],
        resource_servers: vec![ResourceServer {
            id: RS.to_owned(),
            secret: RS_SECRET.to_owned(),
        }],
        scopes: vec!["mcp".to_owned(), "mcp:admin".to_owned()],
        access_ttl: Duration::from_secs(60),
        ..Config::default()
    }
}

pub(super) async fn start(config: Config) -> MockOAuth {
    MockOAuth::start(config)
        .await
        .expect("mock provider starts")
}

/// A fresh PKCE verifier and its S256 challenge.
pub(super) fn pkce() -> (String, String) {
    let verifier = format!("v{}", sha256_hex(rand::random::<u64>().to_le_bytes()));
    let challenge = s256(&verifier);
    (verifier, challenge)
}

/// GETs `/authorize` and returns the `Location` query as pairs (or panics
/// when the answer is no redirect).
pub(super) async fn authorize(mock: &MockOAuth, params: &[(&str, &str)]) -> Vec<(String, String)> {
    let response = http()
        .get(format!("{}/authorize", mock.base_url()))
        .query(params)
        .send()
        .await
        .expect("authorize");
    assert_eq!(response.status(), StatusCode::FOUND, "authorize redirects");
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .expect("Location");
    let url = Url::parse(location).expect("absolute Location");
    assert!(location.starts_with(REDIRECT), "{location}");
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub(super) fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Runs `/authorize` for `client` and returns the code.
pub(super) async fn code_for(
    mock: &MockOAuth,
    client: &str,
    challenge: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", REDIRECT),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
        ("state", "st-123"),
    ];
    params.extend_from_slice(extra);
    let pairs = authorize(mock, &params).await;
    assert_eq!(param(&pairs, "state"), Some("st-123"));
    assert_eq!(param(&pairs, "iss"), Some(mock.issuer()));
    assert_eq!(param(&pairs, "error"), None, "{pairs:?}");
    param(&pairs, "code").expect("code").to_owned()
}

/// POSTs a token request; `basic` authenticates with HTTP Basic.
pub(super) async fn token(
    mock: &MockOAuth,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut request = http().post(format!("{}/token", mock.base_url())).form(form);
    if let Some((id, secret)) = basic {
        request = request.header(header::AUTHORIZATION, basic_header(id, secret));
    }
    let response = request.send().await.expect("token request");
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED {
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    }
    if status == StatusCode::OK {
        assert_eq!(
            response
                .headers()
                .get(header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok()),
            Some("no-store")
        );
    }
    (status, response.json().await.expect("JSON body"))
}

pub(super) async fn introspect_as(
    mock: &MockOAuth,
    id: &str,
    secret: &str,
    token: &str,
) -> (StatusCode, Value) {
    let response = http()
        .post(format!("{}/introspect", mock.base_url()))
        .header(header::AUTHORIZATION, basic_header(id, secret))
        .form(&[("token", token)])
        .send()
        .await
        .expect("introspect");
    let status = response.status();
    (status, response.json().await.expect("JSON"))
}

pub(super) async fn introspect(mock: &MockOAuth, token: &str) -> Value {
    let (status, body) = introspect_as(mock, RS, RS_SECRET, token).await;
    assert_eq!(status, StatusCode::OK);
    body
}

pub(super) fn error_of(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

pub(super) fn text<'a>(body: &'a Value, name: &str) -> &'a str {
    body[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} missing in {body}"))
}

/// Code flow for the confidential client; returns the token response.
pub(super) async fn code_flow(mock: &MockOAuth, extra: &[(&str, &str)]) -> Value {
    let (verifier, challenge) = pkce();
    let code = code_for(mock, GW, &challenge, extra).await;
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    form.extend_from_slice(extra);
    let (status, body) = token(mock, Some((GW, GW_SECRET)), &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

pub(super) async fn refresh(mock: &MockOAuth, refresh_token: &str) -> (StatusCode, Value) {
    token(
        mock,
        Some((GW, GW_SECRET)),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

#[tokio::test]
async fn metadata_endpoints() {
    let mock = start(config()).await;
    for (path, oidc) in [
        ("/.well-known/oauth-authorization-server", false),
        ("/.well-known/openid-configuration", true),
    ] {
        let body: Value = http()
            .get(format!("{}{path}", mock.base_url()))
            .send()
            .await
            .expect("metadata")
            .json()
            .await
            .expect("JSON");
        let base = mock.base_url();
        assert_eq!(body["issuer"], base);
        assert_eq!(body["authorization_endpoint"], format!("{base}/authorize"));
        assert_eq!(body["token_endpoint"], format!("{base}/token"));
        assert_eq!(body["introspection_endpoint"], format!("{base}/introspect"));
        assert_eq!(body["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(body["response_types_supported"], json!(["code"]));
        assert_eq!(
            body["grant_types_supported"],
            json!(["authorization_code", "refresh_token", "client_credentials"])
        );
        assert_eq!(
            body["token_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "client_secret_post", "none"])
        );
        assert_eq!(body["scopes_supported"], json!(["mcp", "mcp:admin"]));
        assert_eq!(body.get("subject_types_supported").is_some(), oidc);
    }
}

#[tokio::test]
async fn issuer_with_a_path_serves_rfc8414_locations() {
    let mock = start(Config {
        issuer: Some("http://auth.example/tenant-a/".to_owned()),
        ..config()
    })
    .await;
    let base = mock.base_url();
    assert_eq!(mock.issuer(), "http://auth.example/tenant-a");
    for path in [
        "/.well-known/oauth-authorization-server/tenant-a",
        "/tenant-a/.well-known/openid-configuration",
    ] {
        let body: Value = http()
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("metadata")
            .json()
            .await
            .expect("JSON");
        assert_eq!(body["issuer"], "http://auth.example/tenant-a");
        assert_eq!(body["token_endpoint"], "http://auth.example/tenant-a/token");
    }
    let response = http()
        .post(format!("{base}/tenant-a/token"))
        .header(header::AUTHORIZATION, basic_header(GW, GW_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn code_flow_with_pkce_and_single_use_codes() {
    let mock = start(config()).await;
    let (verifier, challenge) = pkce();
    let code = code_for(
        &mock,
        GW,
        &challenge,
        &[("scope", "mcp"), ("login_hint", "alice")],
    )
    .await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    let (status, body) = token(&mock, Some((GW, GW_SECRET)), &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 60);
    assert_eq!(body["scope"], "mcp");
    let access = text(&body, "access_token").to_owned();
    let refresh_token = text(&body, "refresh_token").to_owned();
    assert_ne!(access, refresh_token);

    let info = introspect(&mock, &access).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["sub"], "alice");
    assert_eq!(info["client_id"], GW);
    assert_eq!(info["scope"], "mcp");
    assert_eq!(info["token_type"], "Bearer");
    assert!(info["exp"].as_u64().is_some());

    // A second use of the code fails and revokes what it issued.
    let (status, body) = token(&mock, Some((GW, GW_SECRET)), &form).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&body), "invalid_grant");
    assert_eq!(introspect(&mock, &access).await["active"], false);
    let (_, body) = refresh(&mock, &refresh_token).await;
    assert_eq!(error_of(&body), "invalid_grant");

    let log = mock.token_log();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].outcome, "ok");
    assert_eq!(log[0].grant_type.as_deref(), Some("authorization_code"));
    assert_eq!(log[0].client_id.as_deref(), Some(GW));
    assert_eq!(log[0].access_sha256, Some(sha256_hex(&access)));
    assert_eq!(
        log[0].issued_refresh_sha256,
        Some(sha256_hex(&refresh_token))
    );
    assert_eq!(log[1].outcome, "invalid_grant");
    assert!(log[1].reuse_detected);
    assert_eq!(log[1].family, log[0].family);
    assert_eq!(
        log[2].refresh_token_sha256,
        Some(sha256_hex(&refresh_token))
    );

    // A public client: client_id in the form, no secret.
    let (verifier, challenge) = pkce();
    let code = code_for(&mock, IDE, &challenge, &[]).await;
    let (status, body) = token(
        &mock,
        None,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", IDE),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier.as_str()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["scope"], "mcp mcp:admin",
        "no scope asked: all granted"
    );
    let info = introspect(&mock, text(&body, "access_token")).await;
    assert_eq!(info["sub"], "mock-user");
    assert_eq!(info["client_id"], IDE);
}

#[tokio::test]
async fn code_exchange_rejections() {
    let mock = start(config()).await;
    let exchange = |code: String, redirect: &'static str, verifier: String| {
        let mock = &mock;
        async move {
            token(
                mock,
                Some((GW, GW_SECRET)),
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", redirect),
                    ("code_verifier", verifier.as_str()),
                ],
            )
            .await
        }
    };

    // Wrong verifier; the code is then burnt.
    let (verifier, challenge) = pkce();
    let code = code_for(&mock, GW, &challenge, &[]).await;
    let (other_verifier, _) = pkce();
    let (status, body) = exchange(code.clone(), REDIRECT, other_verifier).await;
    assert_eq!(
        (status, error_of(&body)),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    let (_, body) = exchange(code, REDIRECT, verifier).await;
    assert_eq!(error_of(&body), "invalid_grant");

    // Wrong redirect_uri.
    let (verifier, challenge) = pkce();
    let code = code_for(&mock, GW, &challenge, &[]).await;
    let (_, body) = exchange(code, "http://127.0.0.1:9/other", verifier).await;
    assert_eq!(error_of(&body), "invalid_grant");

    // A code of another client.
    let (verifier, challenge) = pkce();
    let code = code_for(&mock, IDE, &challenge, &[]).await;
    let (_, body) = exchange(code, REDIRECT, verifier).await;
    assert_eq!(error_of(&body), "invalid_grant");

    // Missing verifier.
    let (_, challenge) = pkce();
    let code = code_for(&mock, GW, &challenge, &[]).await;
    let (_, body) = token(
        &mock,
        Some((GW, GW_SECRET)),
        &[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(error_of(&body), "invalid_request");

    assert!(
        mock.token_log()
            .iter()
            .all(|entry| entry.outcome != "ok" && entry.access_sha256.is_none())
    );
}

#[tokio::test]
async fn authorization_request_errors() {
    let mock = start(config()).await;
    let (_, challenge) = pkce();
    let base = [
        ("response_type", "code"),
        ("client_id", GW),
        ("redirect_uri", REDIRECT),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("state", "s1"),
    ];
    let with = |name: &'static str, value: Option<&'static str>| {
        let mut params: Vec<(&str, &str)> =
            base.iter().copied().filter(|(k, _)| *k != name).collect();
        if let Some(value) = value {
            params.push((name, value));
        }
        params
    };
    for (name, value, error) in [
        ("code_challenge_method", Some("plain"), "invalid_request"),
        ("code_challenge_method", None, "invalid_request"),
        ("code_challenge", None, "invalid_request"),
        ("code_challenge", Some("too-short"), "invalid_request"),
        ("response_type", Some("token"), "unsupported_response_type"),
        ("scope", Some("mcp unknown"), "invalid_scope"),
        ("resource", Some("not a uri"), "invalid_target"),
    ] {
        let pairs = authorize(&mock, &with(name, value)).await;
        assert_eq!(param(&pairs, "error"), Some(error), "{name}={value:?}");
        assert_eq!(param(&pairs, "state"), Some("s1"));
        assert_eq!(param(&pairs, "code"), None);
    }

    // No redirect for an unknown client or an unusable redirect URI.
    for (name, value) in [
        ("client_id", Some("nobody")),
        ("client_id", None),
        ("redirect_uri", None),
        ("redirect_uri", Some("http://127.0.0.1:9/cb#fragment")),
        ("redirect_uri", Some("/relative")),
    ] {
        let response = http()
            .get(format!("{}/authorize", mock.base_url()))
            .query(&with(name, value))
            .send()
            .await
            .expect("authorize");
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{name}={value:?}"
        );
        assert!(!response.headers().contains_key(header::LOCATION));
    }

    // The deny switch refuses exactly the next authorization.
    let response = http()
        .post(format!("{}/control/deny-next", mock.base_url()))
        .send()
        .await
        .expect("deny-next");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let pairs = authorize(&mock, &base).await;
    assert_eq!(param(&pairs, "error"), Some("access_denied"));
    assert_eq!(param(&pairs, "state"), Some("s1"));
    let pairs = authorize(&mock, &base).await;
    assert!(param(&pairs, "code").is_some());
}

#[tokio::test]
async fn required_resource_is_enforced() {
    let resource = "http://127.0.0.1:9/mcp";
    let mock = start(Config {
        require_resource: Some(resource.to_owned()),
        ..config()
    })
    .await;
    let (_, challenge) = pkce();
    let pairs = authorize(
        &mock,
        &[
            ("response_type", "code"),
            ("client_id", GW),
            ("redirect_uri", REDIRECT),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    assert_eq!(param(&pairs, "error"), Some("invalid_target"));

    // With the resource at /authorize, the token request must repeat it.
    let (verifier, challenge) = pkce();
    let code = code_for(&mock, GW, &challenge, &[("resource", resource)]).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    let (_, body) = token(&mock, Some((GW, GW_SECRET)), &form).await;
    assert_eq!(error_of(&body), "invalid_target");

    let body = code_flow(&mock, &[("resource", resource)]).await;
    let info = introspect(&mock, text(&body, "access_token")).await;
    assert_eq!(info["aud"], resource);
    let refresh_token = text(&body, "refresh_token");
    let (_, answer) = refresh(&mock, refresh_token).await;
    assert_eq!(
        error_of(&answer),
        "invalid_target",
        "refresh must send resource"
    );
    let (status, answer) = token(
        &mock,
        Some((GW, GW_SECRET)),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("resource", resource),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    let (_, body) = token(
        &mock,
        Some((GW, GW_SECRET)),
        &[
            ("grant_type", "client_credentials"),
            ("resource", "http://127.0.0.1:9/other"),
        ],
    )
    .await;
    assert_eq!(error_of(&body), "invalid_target");
}

#[tokio::test]
async fn refresh_rotation_and_reuse_detection() {
    let mock = start(config()).await;
    let first = code_flow(&mock, &[]).await;
    let r1 = text(&first, "refresh_token").to_owned();

    let (status, second) = refresh(&mock, &r1).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let r2 = text(&second, "refresh_token").to_owned();
    assert_ne!(r1, r2, "rotation issues a new refresh token");
    let (status, third) = refresh(&mock, &r2).await;
    assert_eq!(status, StatusCode::OK, "{third}");
    let r3 = text(&third, "refresh_token").to_owned();
    let a3 = text(&third, "access_token").to_owned();
    assert_eq!(introspect(&mock, &a3).await["active"], true);
    assert_eq!(introspect(&mock, &r1).await["active"], false);
    assert_eq!(introspect(&mock, &r3).await["token_type"], "refresh_token");

    // Narrowing is allowed, widening is not.
    let (_, wider) = token(
        &mock,
        Some((GW, GW_SECRET)),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r3),
            ("scope", "mcp other"),
        ],
    )
    .await;
    assert_eq!(error_of(&wider), "invalid_scope");
    // Another client cannot use the token.
    let (_, stolen) = token(
        &mock,
        None,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r3),
            ("client_id", IDE),
        ],
    )
    .await;
    assert_eq!(error_of(&stolen), "invalid_grant");

    // Presenting the old (already rotated) refresh token: the whole family goes.
    let (status, reused) = refresh(&mock, &r1).await;
    assert_eq!(
        (status, error_of(&reused)),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    assert_eq!(
        introspect(&mock, &a3).await["active"],
        false,
        "latest access token revoked"
    );
    let (_, after) = refresh(&mock, &r3).await;
    assert_eq!(
        error_of(&after),
        "invalid_grant",
        "latest refresh token revoked"
    );

    let log = mock.token_log();
    let outcomes: Vec<(&str, bool)> = log
        .iter()
        .map(|e| (e.outcome.as_str(), e.reuse_detected))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("ok", false),
            ("ok", false),
            ("ok", false),
            ("invalid_scope", false),
            ("invalid_grant", false),
            ("invalid_grant", true),
            ("invalid_grant", false),
        ]
    );
    // Each successful refresh presented the refresh token the previous one issued.
    assert_eq!(log[1].refresh_token_sha256, log[0].issued_refresh_sha256);
    assert_eq!(log[2].refresh_token_sha256, log[1].issued_refresh_sha256);
    assert!(log.iter().all(|e| e.family == log[0].family));

    // Over HTTP, the same log.
    let over_http: Vec<Value> = http()
        .get(format!("{}/control/log", mock.base_url()))
        .send()
        .await
        .expect("log")
        .json()
        .await
        .expect("JSON");
    assert_eq!(over_http.len(), log.len());
    assert_eq!(over_http[5]["reuse_detected"], true);
    assert_eq!(over_http[1]["refresh_token_sha256"], sha256_hex(&r1));
    assert_eq!(over_http[0]["seq"], 1);
    assert!(over_http[0]["ts"].as_u64().is_some());
    let raw = serde_json::to_string(&over_http).expect("serializes");
    assert!(
        !raw.contains(&r1) && !raw.contains(&a3),
        "no raw token in the log"
    );
}

#[tokio::test]
async fn client_credentials_and_client_authentication() {
    let mock = start(config()).await;
    let grant = [("grant_type", "client_credentials")];

    let (status, body) = token(&mock, Some((GW, GW_SECRET)), &grant).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("refresh_token").is_none());
    assert_eq!(body["expires_in"], 60);
    let info = introspect(&mock, text(&body, "access_token")).await;
    assert_eq!(
        (info["active"].clone(), info["sub"].clone()),
        (json!(true), json!(GW))
    );

    let (status, body) = token(
        &mock,
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", GW),
            ("client_secret", GW_SECRET),
            ("scope", "mcp:admin"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "mcp:admin");

    for (basic, form) in [
        (Some((GW, "wrong")), vec![]),
        (None, vec![("client_id", GW), ("client_secret", "wrong")]),
        (None, vec![]),
        (None, vec![("client_id", GW)]),
        (Some(("nobody", "x")), vec![]),
        (
            None,
            vec![("client_id", BASIC_ONLY), ("client_secret", "b-secret")],
        ),
    ] {
        let mut all = grant.to_vec();
        all.extend(form);
        let (status, body) = token(&mock, basic, &all).await;
        assert_eq!(
            (status, error_of(&body)),
            (StatusCode::UNAUTHORIZED, "invalid_client"),
            "{all:?}"
        );
    }
    let (status, _) = token(&mock, Some((BASIC_ONLY, "b-secret")), &grant).await;
    assert_eq!(status, StatusCode::OK);

    // Public clients cannot use client_credentials.
    let (status, body) = token(
        &mock,
        None,
        &[("grant_type", "client_credentials"), ("client_id", IDE)],
    )
    .await;
    assert_eq!(
        (status, error_of(&body)),
        (StatusCode::BAD_REQUEST, "unauthorized_client")
    );
    // Both methods at once, duplicates, unknown grants, wrong framing.
    let (_, body) = token(
        &mock,
        Some((GW, GW_SECRET)),
        &[
            ("grant_type", "client_credentials"),
            ("client_secret", GW_SECRET),
        ],
    )
    .await;
    assert_eq!(error_of(&body), "invalid_request");
    let (_, body) = token(
        &mock,
        Some((GW, GW_SECRET)),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "mcp"),
            ("scope", "mcp"),
        ],
    )
    .await;
    assert_eq!(error_of(&body), "invalid_request");
    let (status, body) = token(&mock, Some((GW, GW_SECRET)), &[("grant_type", "password")]).await;
    assert_eq!(
        (status, error_of(&body)),
        (StatusCode::BAD_REQUEST, "unsupported_grant_type")
    );
    let response = http()
        .post(format!("{}/token", mock.base_url()))
        .header(header::AUTHORIZATION, basic_header(GW, GW_SECRET))
        .json(&json!({ "grant_type": "client_credentials" }))
        .send()
        .await
        .expect("token");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let log = mock.token_log();
    assert_eq!(log[2].outcome, "invalid_client");
    assert_eq!(log[2].client_id.as_deref(), Some(GW));
}

#[tokio::test]
async fn introspection_needs_authentication() {
    let mock = start(config()).await;
    let (_, body) = token(
        &mock,
        Some((GW, GW_SECRET)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    let access = text(&body, "access_token");
    // Any confidential client or resource server may introspect.
    let (status, info) = introspect_as(&mock, GW, GW_SECRET, access).await;
    assert_eq!(
        (status, info["active"].clone()),
        (StatusCode::OK, json!(true))
    );
    let (status, _) = introspect_as(&mock, RS, "wrong", access).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let response = http()
        .post(format!("{}/introspect", mock.base_url()))
        .form(&[("token", access), ("client_id", IDE)])
        .send()
        .await
        .expect("introspect");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        introspect(&mock, "made-up").await,
        json!({ "active": false })
    );
}

#[tokio::test]
async fn tokens_expire_after_their_ttl() {
    let mock = start(Config {
        access_ttl: Duration::from_secs(1),
        refresh_ttl: Duration::from_secs(1),
        ..config()
    })
    .await;
    let body = code_flow(&mock, &[]).await;
    assert_eq!(body["expires_in"], 1);
    let access = text(&body, "access_token");
    assert_eq!(introspect(&mock, access).await["active"], true);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(introspect(&mock, access).await["active"], false);
    let (_, answer) = refresh(&mock, text(&body, "refresh_token")).await;
    assert_eq!(error_of(&answer), "invalid_grant");
    assert!(!mock.token_log()[1].reuse_detected);
}

#[tokio::test]
async fn revocation_and_control_endpoints() {
    let mock = start(config()).await;
    let body = code_flow(&mock, &[]).await;
    let access = text(&body, "access_token");
    let refresh_token = text(&body, "refresh_token");
    // RFC 7009: revoking the refresh token revokes its family.
    let response = http()
        .post(format!("{}/revoke", mock.base_url()))
        .header(header::AUTHORIZATION, basic_header(GW, GW_SECRET))
        .form(&[("token", refresh_token)])
        .send()
        .await
        .expect("revoke");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(introspect(&mock, access).await["active"], false);

    let (_, body) = token(
        &mock,
        Some((GW, GW_SECRET)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    let access = text(&body, "access_token");
    let post = |path: &'static str| {
        let url = format!("{}{path}", mock.base_url());
        async move { http().post(url).send().await.expect("control").status() }
    };
    assert_eq!(post("/control/revoke-all").await, StatusCode::NO_CONTENT);
    assert_eq!(introspect(&mock, access).await["active"], false);
    assert_eq!(post("/control/reset").await, StatusCode::NO_CONTENT);
    assert!(mock.token_log().is_empty());
    let (status, _) = token(
        &mock,
        Some((GW, GW_SECRET)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        mock.token_log()[0].seq,
        3,
        "seq keeps growing across resets"
    );
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_trigger_reuse_detection() {
    let mock = Arc::new(start(config()).await);
    let body = code_flow(&mock, &[]).await;
    let refresh_token = text(&body, "refresh_token").to_owned();
    let attempts = (0..4).map(|_| {
        let mock = mock.clone();
        let refresh_token = refresh_token.clone();
        tokio::spawn(async move { refresh(&mock, &refresh_token).await.0 })
    });
    let mut statuses = Vec::new();
    for attempt in attempts {
        statuses.push(attempt.await.expect("task"));
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1);
    let log = mock.token_log();
    assert_eq!(log.iter().filter(|e| e.reuse_detected).count(), 3);
}

// ---- the OAuth-protected fixture ------------------------------------------

struct Fixture {
    base: String,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start_fixture(args: &[&str]) -> Fixture {
    let cli =
        FixtureCli::try_parse_from(std::iter::once("hawser-fixture").chain(args.iter().copied()))
            .expect("fixture flags");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let local = listener.local_addr().expect("address");
    let shared = Shared::new(
        "fixture".to_owned(),
        crate::fixture::cli::Era::Legacy,
        42,
        EventLog::new(None).expect("log"),
    );
    let shutdown = CancellationToken::new();
    let app = crate::fixture::http::app(&cli, shared.clone(), local, shutdown.clone())
        .await
        .expect("fixture app");
    let stop = shutdown.clone();
    tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .into_future(),
    );
    Fixture {
        base: format!("http://{local}"),
        shared,
        shutdown,
    }
}

/// POSTs one JSON-RPC message to the fixture's `/mcp`.
async fn mcp_post(
    fixture: &Fixture,
    token: Option<&str>,
    session: Option<&str>,
    message: Value,
) -> reqwest::Response {
    let mut request = http()
        .post(format!("{}/mcp", fixture.base))
        .header(header::ACCEPT, "application/json, text/event-stream")
        .json(&message);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(session) = session {
        request = request
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-06-18");
    }
    request.send().await.expect("MCP POST")
}

fn initialize() -> Value {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": { "name": "oauth-test", "version": "0" },
        },
    })
}

/// The JSON-RPC response with `id` in an SSE or JSON body.
fn rpc_result(body: &str, id: u64) -> Value {
    body.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .chain(std::iter::once(body))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .find(|message| message["id"] == id)
        .unwrap_or_else(|| panic!("no response {id} in {body}"))
}

fn challenge(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .expect("WWW-Authenticate")
        .to_owned()
}

#[tokio::test]
async fn protected_fixture_challenges_admits_and_expires() {
    let mock = start(Config {
        access_ttl: Duration::from_secs(1),
        ..config()
    })
    .await;
    let fixture = start_fixture(&[
        "--oauth-introspect",
        mock.base_url(),
        "--oauth-client",
        &format!("{RS}:{RS_SECRET}"),
    ])
    .await;
    let resource = format!("{}/mcp", fixture.base);
    let metadata_url = format!("{}/.well-known/oauth-protected-resource", fixture.base);

    // RFC 9728 metadata, at the root and the path-suffixed location.
    for url in [metadata_url.clone(), format!("{metadata_url}/mcp")] {
        let prm: Value = http()
            .get(&url)
            .send()
            .await
            .expect("PRM")
            .json()
            .await
            .expect("JSON");
        assert_eq!(prm["resource"], resource);
        assert_eq!(prm["authorization_servers"], json!([mock.issuer()]));
        assert_eq!(prm["bearer_methods_supported"], json!(["header"]));
        assert_eq!(prm["scopes_supported"], json!(["mcp"]));
    }

    // No token: 401 with the resource_metadata challenge.
    let response = mcp_post(&fixture, None, None, initialize()).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let header_value = challenge(&response);
    assert!(
        header_value.starts_with(&format!("Bearer resource_metadata=\"{metadata_url}\"")),
        "{header_value}"
    );
    assert!(!header_value.contains("error="), "{header_value}");

    // A valid token for this resource: 200, and whoami knows the holder.
    let body = code_flow(
        &mock,
        &[("resource", resource.as_str()), ("login_hint", "bob")],
    )
    .await;
    let access = text(&body, "access_token").to_owned();
    let response = mcp_post(&fixture, Some(&access), None, initialize()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("session id")
        .to_owned();
    let init = rpc_result(&response.text().await.expect("body"), 1);
    assert!(init["result"]["serverInfo"].is_object(), "{init}");
    let response = mcp_post(
        &fixture,
        Some(&access),
        Some(&session),
        json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }),
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let response = mcp_post(
        &fixture,
        Some(&access),
        Some(&session),
        json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "whoami", "arguments": {} } }),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer = rpc_result(&response.text().await.expect("body"), 2);
    let whoami: Value = serde_json::from_str(
        answer["result"]["content"][0]["text"]
            .as_str()
            .expect("text content"),
    )
    .expect("whoami JSON");
    assert_eq!(whoami["sub"], "bob");
    assert_eq!(whoami["clientId"], GW);

    // After the TTL the same token is refused with invalid_token.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let response = mcp_post(
        &fixture,
        Some(&access),
        Some(&session),
        json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/list" }),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let header_value = challenge(&response);
    assert!(
        header_value.contains("error=\"invalid_token\""),
        "{header_value}"
    );
    assert!(header_value.contains(&metadata_url));

    // Tokens for another audience, refresh tokens and garbage are refused too.
    let (_, other) = token(
        &mock,
        Some((GW, GW_SECRET)),
        &[
            ("grant_type", "client_credentials"),
            ("resource", "http://127.0.0.1:9/mcp"),
        ],
    )
    .await;
    let (_, no_audience) = token(
        &mock,
        Some((GW, GW_SECRET)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    for bad in [
        text(&other, "access_token"),
        text(&no_audience, "access_token"),
        text(&body, "refresh_token"),
        "garbage",
    ] {
        let response = mcp_post(&fixture, Some(bad), None, initialize()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }

    // One auth event per request, tokens only as hash prefixes.
    let events: Vec<Value> = fixture
        .shared
        .events
        .snapshot()
        .into_iter()
        .filter(|e| e["kind"] == "auth")
        .collect();
    assert_eq!(events.len(), 9);
    let rejected = events.iter().filter(|e| e["active"] == false).count();
    assert_eq!(rejected, 6);
    assert_eq!(events[1]["tokenSha256Prefix"], &sha256_hex(&access)[..16]);
    assert_eq!(events[1]["sub"], "bob");
    let reasons: Vec<&str> = events
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        reasons,
        vec![
            "missing_token",
            "active",
            "active",
            "active",
            "inactive",
            "wrong_audience",
            "wrong_audience",
            "not_access_token",
            "inactive",
        ]
    );
    let raw = serde_json::to_string(&events).expect("serializes");
    assert!(!raw.contains(&access));

    // The events API itself needs no token.
    let response = http()
        .get(format!("{}/fixture/events", fixture.base))
        .send()
        .await
        .expect("events");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn protected_fixture_flags() {
    // --oauth-introspect needs --oauth-client and excludes --require-bearer.
    assert!(
        FixtureCli::try_parse_from(["hawser-fixture", "--oauth-introspect", "http://x"]).is_err()
    );
    assert!(
        FixtureCli::try_parse_from([
            "hawser-fixture",
            "--oauth-introspect",
            "http://x",
            "--oauth-client",
            "a:b",
            "--require-bearer",
            "t",
        ])
        .is_err()
    );
    assert!(FixtureCli::try_parse_from(["hawser-fixture", "--resource", "http://x/mcp"]).is_err());

    // An explicit resource and the any-audience switch.
    let mock = start(config()).await;
    let fixture = start_fixture(&[
        "--oauth-introspect",
        mock.base_url(),
        "--oauth-client",
        &format!("{GW}:{GW_SECRET}"),
        "--resource",
        "https://mcp.example/api/mcp",
        "--oauth-any-audience",
        "--oauth-scope",
        "mcp:admin",
    ])
    .await;
    let prm: Value = http()
        .get(format!(
            "{}/.well-known/oauth-protected-resource/api/mcp",
            fixture.base
        ))
        .send()
        .await
        .expect("PRM")
        .json()
        .await
        .expect("JSON");
    assert_eq!(prm["resource"], "https://mcp.example/api/mcp");
    assert_eq!(prm["scopes_supported"], json!(["mcp:admin"]));
    let response = mcp_post(&fixture, None, None, initialize()).await;
    assert!(challenge(&response).contains(
        "resource_metadata=\"https://mcp.example/.well-known/oauth-protected-resource\""
    ));
    let (_, body) = token(
        &mock,
        Some((GW, GW_SECRET)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    let response = mcp_post(
        &fixture,
        Some(text(&body, "access_token")),
        None,
        initialize(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
}
