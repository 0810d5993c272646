//! HTTP-level tests of client registration: RFC 7591 dynamic registration,
//! client ID metadata documents and per-client redirect URIs.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use axum::{Json, Router, routing::get};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};

use super::{
    ClientConfig, JwtAlg, MockOAuth,
    tests::{
        IDE, REDIRECT, authorize, code_for, config, error_of, http, introspect, param, pkce, start,
        text, token,
    },
    tests_oidc::{RESOURCE, fetch_jwks, get_json, jwt_config, post_json, verify},
};

#[tokio::test]
async fn dynamic_client_registration() {
    let mock = start(config()).await;
    let register = format!("{}/register", mock.base_url());
    let (status, client) = post_json(
        register.clone(),
        &json!({
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "client_secret_post",
            "client_name": "Hawser test",
            "scope": "mcp",
            "unknown_field": 1,
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{client}");
    let id = text(&client, "client_id").to_owned();
    let secret = text(&client, "client_secret").to_owned();
    assert_eq!(client["client_secret_expires_at"], 0);
    assert!(client["client_id_issued_at"].as_u64().is_some());
    assert_eq!(client["redirect_uris"], json!([REDIRECT]));
    assert_eq!(client["token_endpoint_auth_method"], "client_secret_post");
    assert_eq!(client["client_name"], "Hawser test");
    assert_eq!(
        client["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(client["response_types"], json!(["code"]));
    let listed = get_json(&format!("{}/control/clients", mock.base_url())).await;
    assert_eq!(listed["count"], 1);
    assert_eq!(listed["clients"][0]["client_id"], id);
    assert!(listed["clients"][0].get("client_secret").is_none());
    assert_eq!(mock.registered_clients(), vec![id.clone()]);

    // Registered redirect URIs are enforced exactly.
    let (_, challenge) = pkce();
    for wrong in [
        "http://127.0.0.1:9/oauth/callback/",
        "http://127.0.0.1:9/oauth/callback?x=1",
    ] {
        let response = http()
            .get(format!("{}/authorize", mock.base_url()))
            .query(&[
                ("response_type", "code"),
                ("client_id", id.as_str()),
                ("redirect_uri", wrong),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ])
            .send()
            .await
            .expect("authorize");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{wrong}");
        assert!(response.headers().get(header::LOCATION).is_none());
    }
    let (verifier, challenge) = pkce();
    let code = code_for(&mock, &id, &challenge, &[]).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
        ("client_id", id.as_str()),
        ("client_secret", secret.as_str()),
    ];
    let (status, body) = token(&mock, None, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        introspect(&mock, text(&body, "access_token")).await["client_id"],
        id
    );
    // Only the registered method and grant types.
    let (status, body) = token(
        &mock,
        Some((&id, &secret)),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", text(&body, "refresh_token")),
        ],
    )
    .await;
    assert_eq!(
        (status, error_of(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
    let (status, body) = token(
        &mock,
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", id.as_str()),
            ("client_secret", secret.as_str()),
        ],
    )
    .await;
    assert_eq!(
        (status, error_of(&body)),
        (StatusCode::BAD_REQUEST, "unauthorized_client")
    );

    // A public client gets no secret and authenticates with client_id alone.
    let (status, public) = post_json(
        register.clone(),
        &json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{public}");
    assert!(public.get("client_secret").is_none());
    let public_id = text(&public, "client_id");
    let (verifier, challenge) = pkce();
    let code = code_for(&mock, public_id, &challenge, &[]).await;
    let (status, body) = token(
        &mock,
        None,
        &[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier.as_str()),
            ("client_id", public_id),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A confidential registration defaults to client_secret_basic.
    let (_, basic) = post_json(
        register.clone(),
        &json!({"redirect_uris": [REDIRECT], "grant_types": ["client_credentials"]}),
    )
    .await;
    assert_eq!(basic["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(basic["response_types"], json!([]));
    let (status, body) = token(
        &mock,
        Some((text(&basic, "client_id"), text(&basic, "client_secret"))),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(mock.registered_clients().len(), 3);

    for (body, error) in [
        (json!({}), "invalid_redirect_uri"),
        (json!({"redirect_uris": []}), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": ["http://a.example/cb#x"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["/relative"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": "http://a.example/cb"}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "grant_types": ["password"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "response_types": ["token"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "scope": "mcp unknown"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
                   "grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
        ),
        (json!([1]), "invalid_client_metadata"),
    ] {
        let (status, answer) = post_json(register.clone(), &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_of(&answer), error, "{body} → {answer}");
        assert!(answer["error_description"].as_str().is_some());
    }
    let response = http()
        .post(register)
        .header(header::CONTENT_TYPE, "text/plain")
        .body("{}")
        .send()
        .await
        .expect("register");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(mock.registered_clients().len(), 3);
}

/// A local server serving client ID metadata documents; counts fetches.
struct DocumentServer {
    base: String,
    fetches: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

async fn document_server() -> DocumentServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let fetches = Arc::new(AtomicUsize::new(0));
    let good = json!({
        "client_id": format!("{base}/client.json"),
        "client_name": "Doc client",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none",
    });
    let other = json!({
        "client_id": format!("{base}/client.json"),
        "redirect_uris": [REDIRECT],
    });
    let big = json!({
        "client_id": format!("{base}/big.json"),
        "redirect_uris": [REDIRECT],
        "padding": "x".repeat(70_000),
    });
    let counter = fetches.clone();
    let app = Router::new()
        .route(
            "/client.json",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                let good = good.clone();
                async move { Json(good) }
            }),
        )
        .route("/other.json", get(move || async move { Json(other) }))
        .route("/big.json", get(move || async move { Json(big) }));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    DocumentServer {
        base,
        fetches,
        _task: task,
    }
}

/// `/authorize` that must not redirect; the JSON error.
async fn authorize_rejected(mock: &MockOAuth, client_id: &str, redirect_uri: &str) -> Value {
    let (_, challenge) = pkce();
    let response = http()
        .get(format!("{}/authorize", mock.base_url()))
        .query(&[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .expect("authorize");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get(header::LOCATION).is_none());
    response.json().await.expect("JSON")
}

#[tokio::test]
async fn client_id_metadata_documents() {
    let docs = document_server().await;
    let mock = start(jwt_config(JwtAlg::Es256)).await;
    let client_id = format!("{}/client.json", docs.base);

    let (verifier, challenge) = pkce();
    let code = code_for(&mock, &client_id, &challenge, &[("resource", RESOURCE)]).await;
    let (status, body) = token(
        &mock,
        None,
        &[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier.as_str()),
            ("client_id", client_id.as_str()),
            ("resource", RESOURCE),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let jwks = fetch_jwks(&mock).await;
    let claims = verify(text(&body, "access_token"), &jwks, RESOURCE).expect("verifies");
    assert_eq!(claims["client_id"], client_id);
    // Refresh as the public document client.
    let (status, refreshed) = token(
        &mock,
        None,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", text(&body, "refresh_token")),
            ("client_id", client_id.as_str()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    assert_eq!(
        docs.fetches.load(Ordering::SeqCst),
        1,
        "the document is cached"
    );
    // A secret is refused: the client is public.
    let (status, body) = token(
        &mock,
        Some((&client_id, "guess")),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(
        (status, error_of(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );

    // redirect_uri not in the document.
    let body = authorize_rejected(&mock, &client_id, "http://127.0.0.1:9/elsewhere").await;
    assert_eq!(error_of(&body), "invalid_client");
    // The document's client_id differs from its URL.
    let other = format!("{}/other.json", docs.base);
    let body = authorize_rejected(&mock, &other, REDIRECT).await;
    assert_eq!(error_of(&body), "invalid_client", "{body}");
    let (status, body) = token(
        &mock,
        None,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_id", other.as_str()),
        ],
    )
    .await;
    assert_eq!(
        (status, error_of(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
    assert_eq!(
        mock.token_log().last().expect("logged").outcome,
        "invalid_client"
    );
    // Too large, missing, plain http on a non-loopback host, no path.
    for client in [
        format!("{}/big.json", docs.base),
        format!("{}/missing.json", docs.base),
        "http://example.invalid/client.json".to_owned(),
        docs.base.clone(),
    ] {
        let body = authorize_rejected(&mock, &client, REDIRECT).await;
        assert_eq!(error_of(&body), "invalid_client", "{client}: {body}");
    }
}

#[tokio::test]
async fn static_clients_may_pin_redirect_uris() {
    let mut config = config();
    config
        .clients
        .push(ClientConfig::public("pinned").with_redirect_uris(&[REDIRECT]));
    let mock = start(config).await;
    let (_, challenge) = pkce();
    let _code = code_for(&mock, "pinned", &challenge, &[]).await;
    let body = authorize_rejected(&mock, "pinned", "http://127.0.0.1:9/other").await;
    assert_eq!(error_of(&body), "invalid_request");
    let pairs = authorize(
        &mock,
        &[
            ("response_type", "code"),
            ("client_id", IDE),
            ("redirect_uri", REDIRECT),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    assert!(param(&pairs, "code").is_some());
}
