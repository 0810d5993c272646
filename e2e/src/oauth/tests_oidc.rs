//! HTTP-level tests of the OpenID Connect additions: JWT access tokens and
//! the JWKS, key rotation, token exchange and `/control/mint`. Client
//! registration and metadata documents are in `tests_clients.rs`.

use std::collections::HashSet;

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};

use super::{
    Config, JwtAlg, MintRequest, MintSign, MockOAuth, basic_header,
    tests::{
        GW, GW_SECRET, IDE, RS, RS_SECRET, code_flow, config, error_of, http, introspect,
        introspect_as, start, text, token,
    },
};

pub(super) const RESOURCE: &str = "http://127.0.0.1:9/mcp";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

pub(super) fn jwt_config(alg: JwtAlg) -> Config {
    Config {
        jwt: true,
        jwt_alg: alg,
        groups: vec![
            ("alice".to_owned(), "admins".to_owned()),
            ("alice".to_owned(), "devs".to_owned()),
        ],
        ..config()
    }
}

pub(super) async fn get_json(url: &str) -> Value {
    http()
        .get(url)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON")
}

pub(super) async fn fetch_jwks(mock: &MockOAuth) -> JwkSet {
    let response = http()
        .get(format!("{}/jwks", mock.base_url()))
        .send()
        .await
        .expect("jwks");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok()),
        Some("max-age=60")
    );
    response.json().await.expect("a JWK set")
}

/// The decoded JSON of a token's header (part 0) or claims (part 1).
pub(super) fn part(token: &str, index: usize) -> Value {
    let encoded = token.split('.').nth(index).expect("JWS part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).expect("base64url")).expect("JSON")
}

/// Verifies `token` against the served JWKS (by `kid`) for audience `aud`.
pub(super) fn verify(token: &str, jwks: &JwkSet, aud: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks.find(&kid).ok_or("kid not in the JWKS")?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[aud]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

pub(super) async fn post_json(url: String, body: &Value) -> (StatusCode, Value) {
    let response = http().post(url).json(body).send().await.expect("POST");
    let status = response.status();
    (status, response.json().await.expect("JSON"))
}

#[tokio::test]
async fn jwt_access_tokens_verify_against_the_jwks() {
    for (alg, jose, kty) in [
        (JwtAlg::Es256, Algorithm::ES256, "EC"),
        (JwtAlg::EdDsa, Algorithm::EdDSA, "OKP"),
    ] {
        let mock = start(jwt_config(alg)).await;
        let base = mock.base_url();
        for path in [
            "/.well-known/openid-configuration",
            "/.well-known/oauth-authorization-server",
        ] {
            let metadata = get_json(&format!("{base}{path}")).await;
            assert_eq!(metadata["jwks_uri"], format!("{base}/jwks"));
            assert_eq!(
                metadata["registration_endpoint"],
                format!("{base}/register")
            );
            assert_eq!(metadata["client_id_metadata_document_supported"], true);
            assert_eq!(
                metadata["id_token_signing_alg_values_supported"],
                json!([alg.as_str()])
            );
            let grants = metadata["grant_types_supported"].as_array().expect("list");
            assert!(grants.contains(&json!(EXCHANGE)), "{metadata}");
        }
        let oidc = get_json(&format!("{base}/.well-known/openid-configuration")).await;
        assert_eq!(oidc["subject_types_supported"], json!(["public"]));

        let jwks = fetch_jwks(&mock).await;
        assert_eq!(jwks.keys.len(), 1);
        let raw = serde_json::to_value(&jwks).expect("JSON");
        assert_eq!(raw["keys"][0]["kty"], kty);
        assert_eq!(raw["keys"][0]["use"], "sig");
        assert_eq!(raw["keys"][0]["alg"], alg.as_str());
        assert_eq!(raw["keys"][0]["kid"], mock.current_kid());

        let body = code_flow(&mock, &[("login_hint", "alice"), ("resource", RESOURCE)]).await;
        let access = text(&body, "access_token");
        assert_eq!(
            jsonwebtoken::decode_header(access).expect("header").alg,
            jose
        );
        let header = part(access, 0);
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["alg"], alg.as_str());
        assert_eq!(header["kid"], mock.current_kid());
        let claims = verify(access, &jwks, RESOURCE).expect("verifies");
        assert_eq!(claims["iss"], mock.issuer());
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["aud"], RESOURCE);
        assert_eq!(claims["client_id"], GW);
        assert_eq!(claims["scope"], "mcp mcp:admin");
        assert_eq!(claims["groups"], json!(["admins", "devs"]));
        assert_eq!(claims["nbf"], claims["iat"]);
        let lifetime = claims["exp"].as_u64().expect("exp") - claims["iat"].as_u64().expect("iat");
        assert!((59..=61).contains(&lifetime), "{claims}");
        assert!(claims["jti"].as_str().is_some_and(|jti| jti.len() >= 16));
        assert!(verify(access, &jwks, "http://other.example/mcp").is_err());

        // Still stored as a hash: introspection and family revocation work.
        assert_eq!(introspect(&mock, access).await["active"], true);
        let (status, refreshed) = token(
            &mock,
            Some((GW, GW_SECRET)),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", text(&body, "refresh_token")),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{refreshed}");
        let renewed = text(&refreshed, "access_token");
        assert_eq!(
            verify(renewed, &jwks, RESOURCE).expect("verifies")["sub"],
            "alice"
        );
        let response = http()
            .post(format!("{base}/revoke"))
            .header(header::AUTHORIZATION, basic_header(GW, GW_SECRET))
            .form(&[("token", text(&refreshed, "refresh_token"))])
            .send()
            .await
            .expect("revoke");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(introspect(&mock, renewed).await["active"], false);
        assert_eq!(introspect(&mock, access).await["active"], false);

        // Without a resource the audience is the client; no groups for the client.
        let (_, body) = token(
            &mock,
            Some((GW, GW_SECRET)),
            &[("grant_type", "client_credentials"), ("scope", "mcp")],
        )
        .await;
        let claims = verify(text(&body, "access_token"), &jwks, GW).expect("verifies");
        assert_eq!(claims["sub"], GW);
        assert_eq!(claims["scope"], "mcp");
        assert!(claims.get("groups").is_none());
    }
}

#[tokio::test]
async fn opaque_tokens_stay_the_default() {
    let mock = start(config()).await;
    let body = code_flow(&mock, &[]).await;
    assert!(text(&body, "access_token").starts_with("mat_"));
    let metadata = get_json(&format!(
        "{}/.well-known/openid-configuration",
        mock.base_url()
    ))
    .await;
    assert!(
        !metadata["grant_types_supported"]
            .as_array()
            .expect("list")
            .contains(&json!(EXCHANGE))
    );
    assert_eq!(metadata["jwks_uri"], format!("{}/jwks", mock.base_url()));
    assert_eq!(fetch_jwks(&mock).await.keys.len(), 1);
}

#[tokio::test]
async fn key_rotation_keeps_the_old_key_until_retired() {
    let mock = start(jwt_config(JwtAlg::Es256)).await;
    let first = mock.current_kid();
    let (_, body) = token(
        &mock,
        Some((GW, GW_SECRET)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    let old_token = text(&body, "access_token").to_owned();

    let (status, rotated) = post_json(
        format!("{}/control/rotate-key", mock.base_url()),
        &json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let second = text(&rotated, "kid").to_owned();
    assert_ne!(second, first);
    assert_eq!(mock.current_kid(), second);
    let jwks = fetch_jwks(&mock).await;
    let kids: HashSet<_> = jwks
        .keys
        .iter()
        .filter_map(|k| k.common.key_id.clone())
        .collect();
    assert_eq!(kids, HashSet::from([first.clone(), second.clone()]));
    // Old tokens still verify; new ones are signed with the new key.
    verify(&old_token, &jwks, GW).expect("old token verifies");
    let (_, body) = token(
        &mock,
        Some((GW, GW_SECRET)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    let new_token = text(&body, "access_token");
    assert_eq!(part(new_token, 0)["kid"], second);
    verify(new_token, &jwks, GW).expect("new token verifies");

    // The Rust method keeps the previous keys too.
    let third = mock.rotate_key().expect("rotates");
    assert_eq!(fetch_jwks(&mock).await.keys.len(), 3);

    // retire=true publishes only the new key.
    let response = http()
        .post(format!(
            "{}/control/rotate-key?retire=true",
            mock.base_url()
        ))
        .send()
        .await
        .expect("rotate");
    assert_eq!(response.status(), StatusCode::OK);
    let fourth = text(&response.json::<Value>().await.expect("JSON"), "kid").to_owned();
    let jwks = fetch_jwks(&mock).await;
    assert_eq!(jwks.keys.len(), 1);
    assert_eq!(jwks.keys[0].common.key_id.as_deref(), Some(fourth.as_str()));
    assert!(
        verify(&old_token, &jwks, GW).is_err(),
        "retired key is gone"
    );
    let fifth = mock.rotate_key_and_retire().expect("rotates");
    assert_eq!(fetch_jwks(&mock).await.keys.len(), 1);
    let all: HashSet<_> = [&first, &second, &third, &fourth, &fifth]
        .into_iter()
        .collect();
    assert_eq!(all.len(), 5, "key ids are distinct");
    assert!(all.iter().all(|kid| kid.len() >= 16));
    let response = http()
        .post(format!(
            "{}/control/rotate-key?retire=maybe",
            mock.base_url()
        ))
        .send()
        .await
        .expect("rotate");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn token_exchange_issues_act_and_the_target_audience() {
    let mock = start(jwt_config(JwtAlg::Es256)).await;
    let jwks = fetch_jwks(&mock).await;
    let user = code_flow(&mock, &[("login_hint", "alice"), ("resource", RESOURCE)]).await;
    let subject = text(&user, "access_token");
    let exchange = |extra: Vec<(&'static str, &'static str)>| {
        let mut form = vec![
            ("grant_type", EXCHANGE),
            ("subject_token", subject),
            ("subject_token_type", ACCESS_TYPE),
        ];
        form.extend(extra);
        let mock = &mock;
        async move { token(mock, Some((GW, GW_SECRET)), &form).await }
    };

    let (status, body) = exchange(vec![("audience", "upstream-api"), ("scope", "mcp")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["issued_token_type"], ACCESS_TYPE);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "mcp");
    assert_eq!(body["expires_in"], 60);
    assert!(body.get("refresh_token").is_none());
    let exchanged = text(&body, "access_token");
    let claims = verify(exchanged, &jwks, "upstream-api").expect("verifies");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "upstream-api");
    assert_eq!(claims["act"], json!({"sub": GW}));
    assert_eq!(claims["client_id"], GW);
    assert_eq!(claims["groups"], json!(["admins", "devs"]));
    let info = introspect(&mock, exchanged).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["act"], json!({"sub": GW}));
    let entry = mock.token_log().last().cloned().expect("logged");
    assert_eq!(entry.grant_type.as_deref(), Some(EXCHANGE));
    assert_eq!(entry.outcome, "ok");
    assert_eq!(
        entry.subject_token_sha256,
        Some(crate::fixture::util::sha256_hex(subject))
    );

    // resource wins over audience; without scope the subject's scope carries over.
    let (status, body) = exchange(vec![
        ("audience", "upstream-api"),
        ("resource", "https://upstream.example/mcp"),
    ])
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "mcp mcp:admin");
    let claims = verify(
        text(&body, "access_token"),
        &jwks,
        "https://upstream.example/mcp",
    )
    .expect("verifies");
    assert_eq!(claims["aud"], "https://upstream.example/mcp");

    for (extra, error) in [
        (vec![], "invalid_target"),
        (
            vec![("audience", "x"), ("scope", "unknown")],
            "invalid_scope",
        ),
        (
            vec![("audience", "x"), ("actor_token", "a")],
            "invalid_request",
        ),
        (vec![("resource", "not-a-uri")], "invalid_target"),
        (
            vec![
                ("audience", "x"),
                (
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:id_token",
                ),
            ],
            "invalid_request",
        ),
    ] {
        let (status, body) = exchange(extra.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{extra:?}");
        assert_eq!(error_of(&body), error, "{extra:?}: {body}");
    }
    let (status, body) = token(
        &mock,
        Some((GW, GW_SECRET)),
        &[
            ("grant_type", EXCHANGE),
            ("subject_token", subject),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:refresh_token",
            ),
            ("audience", "x"),
        ],
    )
    .await;
    assert_eq!(
        (status, error_of(&body)),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    for bad_subject in [text(&user, "refresh_token"), "garbage"] {
        let (_, body) = token(
            &mock,
            Some((GW, GW_SECRET)),
            &[
                ("grant_type", EXCHANGE),
                ("subject_token", bad_subject),
                ("subject_token_type", ACCESS_TYPE),
                ("audience", "x"),
            ],
        )
        .await;
        assert_eq!(error_of(&body), "invalid_request", "{body}");
    }
    // Public clients may not exchange.
    let (_, body) = token(
        &mock,
        None,
        &[
            ("grant_type", EXCHANGE),
            ("client_id", IDE),
            ("subject_token", subject),
            ("subject_token_type", ACCESS_TYPE),
            ("audience", "x"),
        ],
    )
    .await;
    assert_eq!(error_of(&body), "unauthorized_client");
    // Revoked subject tokens cannot be exchanged.
    mock.revoke_all();
    let (_, body) = exchange(vec![("audience", "x")]).await;
    assert_eq!(error_of(&body), "invalid_request");
}

#[tokio::test]
async fn token_exchange_without_jwt_issues_opaque_tokens() {
    let mock = start(config()).await;
    let (_, user) = token(
        &mock,
        Some((GW, GW_SECRET)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    let (status, body) = token(
        &mock,
        Some((GW, GW_SECRET)),
        &[
            ("grant_type", EXCHANGE),
            ("subject_token", text(&user, "access_token")),
            ("subject_token_type", ACCESS_TYPE),
            ("audience", "upstream-api"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let exchanged = text(&body, "access_token");
    assert!(exchanged.starts_with("mat_"));
    let (_, info) = introspect_as(&mock, RS, RS_SECRET, exchanged).await;
    assert_eq!(info["aud"], "upstream-api");
    assert_eq!(info["act"], json!({"sub": GW}));
}

#[tokio::test]
async fn mint_modes_produce_the_intended_tokens() {
    for alg in [JwtAlg::Es256, JwtAlg::EdDsa] {
        let mock = start(jwt_config(alg)).await;
        let jwks = fetch_jwks(&mock).await;
        let kid = mock.current_kid();
        let exp = jsonwebtoken::get_current_timestamp() + 300;
        let claims = json!({"iss": mock.issuer(), "sub": "mallory", "aud": RESOURCE, "exp": exp});
        let mint = |sign: MintSign, kid: Option<&str>| {
            mock.mint(&MintRequest {
                claims: claims.clone(),
                sign,
                kid: kid.map(str::to_owned),
                typ: None,
            })
            .expect("mints")
        };

        let good = mint(MintSign::Current, None);
        assert_eq!(part(&good, 0)["alg"], alg.as_str());
        assert_eq!(part(&good, 0)["kid"], kid);
        assert_eq!(part(&good, 0)["typ"], "at+jwt");
        assert_eq!(verify(&good, &jwks, RESOURCE).expect("verifies"), claims);
        let wrong_kid = mint(MintSign::Current, Some("no-such-kid"));
        assert_eq!(part(&wrong_kid, 0)["kid"], "no-such-kid");
        assert!(verify(&wrong_kid, &jwks, RESOURCE).is_err());

        let unknown = mint(MintSign::UnknownKey, None);
        let unknown_kid = part(&unknown, 0)["kid"].as_str().expect("kid").to_owned();
        assert_ne!(unknown_kid, kid);
        assert!(jwks.find(&unknown_kid).is_none());
        assert_eq!(part(&unknown, 0)["alg"], alg.as_str());
        assert!(verify(&unknown, &jwks, RESOURCE).is_err());
        let spoofed = mint(MintSign::UnknownKey, Some(&kid));
        assert_eq!(part(&spoofed, 0)["kid"], kid);
        assert!(
            verify(&spoofed, &jwks, RESOURCE).is_err(),
            "signature does not match"
        );

        let none = mint(MintSign::None, None);
        assert_eq!(
            part(&none, 0),
            json!({"alg": "none", "typ": "JWT", "kid": kid})
        );
        assert_eq!(part(&none, 1), claims);
        assert!(none.ends_with('.'));
        assert_eq!(none.split('.').count(), 3);
        assert!(verify(&none, &jwks, RESOURCE).is_err());

        let confused = mint(MintSign::Hs256PublicKey, None);
        assert_eq!(part(&confused, 0)["alg"], "HS256");
        assert_eq!(part(&confused, 0)["kid"], kid);
        let pem = mock.public_key_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(pem.ends_with("-----END PUBLIC KEY-----\n"));
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[RESOURCE]);
        let decoded = jsonwebtoken::decode::<Value>(
            &confused,
            &DecodingKey::from_secret(pem.as_bytes()),
            &validation,
        )
        .expect("HMAC keyed with the public key PEM");
        assert_eq!(decoded.claims, claims);
        // The PEM is the SPKI of the published key.
        let body: String = pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let der = STANDARD.decode(body).expect("base64");
        let jwk = serde_json::to_value(&jwks.keys[0]).expect("JSON");
        let mut public = if alg == JwtAlg::Es256 {
            vec![4u8]
        } else {
            Vec::new()
        };
        for coordinate in ["x", "y"] {
            if let Some(value) = jwk[coordinate].as_str() {
                public.extend(URL_SAFE_NO_PAD.decode(value).expect("base64url"));
            }
        }
        assert!(der.ends_with(&public), "SPKI carries the JWK's key");
        assert_eq!(
            der.len(),
            public.len() + if alg == JwtAlg::Es256 { 26 } else { 12 }
        );
        assert!(verify(&confused, &jwks, RESOURCE).is_err());

        // Over HTTP; minted tokens are not stored.
        let url = format!("{}/control/mint", mock.base_url());
        let (status, body) =
            post_json(url.clone(), &json!({"claims": claims, "sign": "none"})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(part(text(&body, "token"), 0)["alg"], "none");
        let (status, body) = post_json(url.clone(), &json!({"claims": claims})).await;
        assert_eq!(status, StatusCode::OK);
        verify(text(&body, "token"), &jwks, RESOURCE).expect("current by default");
        assert_eq!(
            introspect(&mock, text(&body, "token")).await["active"],
            false
        );
        for bad in [
            json!({"claims": claims, "sign": "rsa"}),
            json!({"claims": "x"}),
            json!({"sign": "current"}),
        ] {
            let (status, body) = post_json(url.clone(), &bad).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(error_of(&body), "invalid_request");
        }
    }
}
