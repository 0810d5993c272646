//! The validator against a local provider serving discovery and a JWKS that tests
//! rotate, empty and break.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::routing::get;
use jsonwebtoken::{EncodingKey, Header};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::json;

use super::*;

const AUD: &str = "https://gw.example.com/mcp";

struct Provider {
    jwks: Mutex<Value>,
    fetches: AtomicUsize,
    down: AtomicBool,
    issuer: Mutex<String>,
}

struct EcKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn ec_key(kid: &str) -> EcKey {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let public = pair.public_key().as_ref();
    EcKey {
        kid: kid.to_owned(),
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": b64(&public[1..33]), "y": b64(&public[33..65])}),
    }
}

fn rsa_key() -> (EncodingKey, Value) {
    let der = include_bytes!("testdata/rsa-test-key.der");
    let n = include_str!("testdata/rsa-test-key.n");
    (
        EncodingKey::from_rsa_der(der),
        json!({"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256", "n": n.trim(), "e": "AQAB"}),
    )
}

async fn provider() -> (Arc<Provider>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let p = Arc::new(Provider {
        jwks: Mutex::new(json!({"keys": []})),
        fetches: AtomicUsize::new(0),
        down: AtomicBool::new(false),
        issuer: Mutex::new(base.clone()),
    });
    let (a, b) = (p.clone(), p.clone());
    let jwks_uri = format!("{base}/jwks");
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || {
                let a = a.clone();
                let jwks_uri = jwks_uri.clone();
                async move {
                    let issuer = a.issuer.lock().unwrap().clone();
                    axum::Json(json!({"issuer": issuer, "jwks_uri": jwks_uri}))
                }
            }),
        )
        .route(
            "/jwks",
            get(move || {
                let b = b.clone();
                async move {
                    b.fetches.fetch_add(1, Ordering::SeqCst);
                    if b.down.load(Ordering::SeqCst) {
                        return Err(http::StatusCode::SERVICE_UNAVAILABLE);
                    }
                    Ok(axum::Json(b.jwks.lock().unwrap().clone()))
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (p, base)
}

fn settings(issuer: &str) -> OidcSettings {
    OidcSettings {
        issuer: Url::parse(issuer).unwrap(),
        audiences: Vec::new(),
        jwks_uri: None,
        algorithms: crate::config::client_auth::DEFAULT_ALGORITHMS.to_vec(),
        clock_skew: Duration::from_secs(30),
        subject_claim: "sub".into(),
        groups_claim: "groups".into(),
        scopes_required: Vec::new(),
        scopes_supported: Vec::new(),
        authorization_servers: Vec::new(),
        jwks_refresh_interval: Duration::from_secs(60),
    }
}

fn claims(issuer: &str) -> Value {
    let now = now_secs();
    json!({"iss": issuer, "sub": "alice", "aud": AUD, "exp": now + 300, "iat": now,
        "groups": ["eng", "ops"], "scope": "mcp openid"})
}

fn sign(key: &EcKey, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&h, claims, &key.encoding).unwrap()
}

async fn check(oidc: &Oidc, token: &str) -> Result<Arc<Identity>, Reason> {
    oidc.verify(token, IdHash::of(token), |aud| aud == AUD)
        .await
}

#[tokio::test]
async fn a_good_token_names_its_caller_and_is_checked_once() {
    let (p, issuer) = provider().await;
    let key = ec_key("k1");
    *p.jwks.lock().unwrap() = json!({"keys": [key.jwk]});
    let oidc = Oidc::new(settings(&issuer));
    let token = sign(&key, &claims(&issuer));
    let id = check(&oidc, &token).await.unwrap();
    assert_eq!(id.subject, "alice");
    assert_eq!(id.method, AuthMethod::Oidc);
    assert_eq!(id.groups, ["eng", "ops"]);
    assert_eq!(id.scopes, ["mcp", "openid"]);
    assert!(
        !format!("{id:?}").contains(&token),
        "the token stays out of Debug"
    );
    // Cached: the provider going away and its keys vanishing change nothing.
    p.down.store(true, Ordering::SeqCst);
    *p.jwks.lock().unwrap() = json!({"keys": []});
    assert_eq!(check(&oidc, &token).await.unwrap().subject, "alice");
    assert_eq!(p.fetches.load(Ordering::SeqCst), 1);
    // The audience is checked on every use, cached or not.
    assert_eq!(
        oidc.verify(&token, IdHash::of(&token), |aud| aud == "https://other/mcp")
            .await
            .unwrap_err(),
        Reason::Audience
    );
}

#[tokio::test]
async fn rs256_tokens_verify_too() {
    let (p, issuer) = provider().await;
    let (encoding, jwk) = rsa_key();
    *p.jwks.lock().unwrap() = json!({"keys": [jwk]});
    let oidc = Oidc::new(settings(&issuer));
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("rsa-1".into());
    let token = jsonwebtoken::encode(&h, &claims(&issuer), &encoding).unwrap();
    assert_eq!(check(&oidc, &token).await.unwrap().subject, "alice");
}

#[tokio::test]
async fn bad_tokens_are_refused_for_the_right_reason() {
    let (p, issuer) = provider().await;
    let key = ec_key("k1");
    *p.jwks.lock().unwrap() = json!({"keys": [key.jwk]});
    let oidc = Oidc::new(settings(&issuer));
    let now = now_secs();
    let with = |patch: Value| {
        let mut c = claims(&issuer);
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        sign(&key, &c)
    };
    let good = with(json!({}));
    let tampered = {
        let parts: Vec<&str> = good.split('.').collect();
        let mut c = claims(&issuer);
        c["sub"] = json!("mallory");
        format!(
            "{}.{}.{}",
            parts[0],
            b64(c.to_string().as_bytes()),
            parts[2]
        )
    };
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#),
        b64(claims(&issuer).to_string().as_bytes())
    );
    // The classic key confusion: HMAC keyed with the provider's public key.
    let hs256 = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        let public = key.jwk.to_string();
        jsonwebtoken::encode(
            &h,
            &claims(&issuer),
            &EncodingKey::from_secret(public.as_bytes()),
        )
        .unwrap()
    };
    let stranger = sign(&ec_key("k-unknown"), &claims(&issuer));
    let cases = [
        (
            with(json!({"aud": "https://other.example/mcp"})),
            Reason::Audience,
        ),
        (with(json!({"exp": now - 120})), Reason::Expired),
        (with(json!({"nbf": now + 600})), Reason::NotYetValid),
        (
            with(json!({"nbf": (now + 600).to_string()})),
            Reason::Malformed,
        ),
        (with(json!({"nbf": [now + 600]})), Reason::Malformed),
        (with(json!({"nbf": 1e30})), Reason::NotYetValid),
        (
            with(json!({"nbf": (now + 600) as f64 + 0.5})),
            Reason::NotYetValid,
        ),
        (with(json!({"iss": "https://evil.example"})), Reason::Issuer),
        (with(json!({"sub": null})), Reason::NoSubject),
        (with(json!({"exp": null})), Reason::Malformed),
        (tampered, Reason::Signature),
        (none, Reason::Algorithm),
        (hs256, Reason::Algorithm),
        (stranger, Reason::UnknownKey),
        ("not.a.jwt".to_owned(), Reason::Malformed),
        ("garbage".to_owned(), Reason::Malformed),
    ];
    for (i, (token, reason)) in cases.into_iter().enumerate() {
        assert_eq!(check(&oidc, &token).await.unwrap_err(), reason, "case {i}");
    }
    assert!(check(&oidc, &good).await.is_ok());
    // An array audience naming this resource among others is fine.
    let array = with(json!({"aud": ["https://a.example/mcp", AUD]}));
    assert!(check(&oidc, &array).await.is_ok());
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_and_forged_key_ids_cost_nothing_more() {
    let (p, issuer) = provider().await;
    let old = ec_key("old");
    *p.jwks.lock().unwrap() = json!({"keys": [old.jwk]});
    let oidc = Oidc::new(settings(&issuer));
    check(&oidc, &sign(&old, &claims(&issuer))).await.unwrap();
    assert_eq!(p.fetches.load(Ordering::SeqCst), 1);
    // Rotation: the provider publishes a new key and signs with it.
    let new = ec_key("new");
    *p.jwks.lock().unwrap() = json!({"keys": [old.jwk, new.jwk]});
    *oidc.fetched.lock().await = Some(Instant::now() - Duration::from_secs(120));
    check(&oidc, &sign(&new, &claims(&issuer))).await.unwrap();
    assert_eq!(p.fetches.load(Ordering::SeqCst), 2);
    // Tokens with made-up key ids: at most one fetch per interval, whatever their number.
    for i in 0..20 {
        let forged = sign(&ec_key(&format!("forged-{i}")), &claims(&issuer));
        assert_eq!(check(&oidc, &forged).await.unwrap_err(), Reason::UnknownKey);
    }
    assert_eq!(p.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_outage_keeps_the_keys_and_a_start_without_keys_is_unavailable() {
    let (p, issuer) = provider().await;
    let key = ec_key("k1");
    *p.jwks.lock().unwrap() = json!({"keys": [key.jwk]});
    let oidc = Oidc::new(settings(&issuer));
    oidc.refresh(true).await.unwrap();
    p.down.store(true, Ordering::SeqCst);
    assert!(oidc.refresh(true).await.is_err());
    // A token not seen before still verifies with the kept key.
    check(&oidc, &sign(&key, &claims(&issuer))).await.unwrap();

    let (p2, issuer2) = provider().await;
    p2.down.store(true, Ordering::SeqCst);
    let cold = Oidc::new(settings(&issuer2));
    assert_eq!(
        check(&cold, &sign(&key, &claims(&issuer2)))
            .await
            .unwrap_err(),
        Reason::Unavailable
    );
}

#[tokio::test]
async fn discovery_must_name_the_configured_issuer() {
    let (p, issuer) = provider().await;
    *p.issuer.lock().unwrap() = "https://evil.example".into();
    let oidc = Oidc::new(settings(&issuer));
    let error = oidc.refresh(true).await.unwrap_err();
    assert!(error.contains("refusing its keys"), "{error}");
}

#[test]
fn claims_are_found_by_name_or_by_path() {
    let c: Map<String, Value> = serde_json::from_value(json!({
        "https://example.com/groups": ["a"],
        "realm_access": {"roles": ["admin"]},
    }))
    .unwrap();
    assert_eq!(strings(claim(&c, "https://example.com/groups")), ["a"]);
    assert_eq!(strings(claim(&c, "realm_access.roles")), ["admin"]);
    assert!(claim(&c, "realm_access.nothing").is_none());
}
