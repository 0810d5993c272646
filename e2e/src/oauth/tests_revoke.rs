//! HTTP-level tests of RFC 7009 revocation at `/revoke` and its log.

use std::time::Duration;

use reqwest::{StatusCode, header};
use serde_json::{Value, json};

use super::{
    ClientConfig, Config, MockOAuth, RevocationLogEntry, TokenKind, basic_header,
    tests::{
        BASIC_ONLY, GW, GW_SECRET, IDE, code_flow, config, error_of, http, introspect, refresh,
        start, text, token,
    },
};
use crate::fixture::util::sha256_hex;

const OTHER: &str = "other";
const OTHER_SECRET: &str = "other-secret";

/// [`config`] plus a second confidential client.
fn two_clients() -> Config {
    let mut config = config();
    config
        .clients
        .push(ClientConfig::confidential(OTHER, OTHER_SECRET));
    config
}

/// POSTs `/revoke`; `basic` authenticates with HTTP Basic. Returns the
/// status and the body as text (empty on success).
async fn revoke(
    mock: &MockOAuth,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut request = http()
        .post(format!("{}/revoke", mock.base_url()))
        .form(form);
    if let Some((id, secret)) = basic {
        request = request.header(header::AUTHORIZATION, basic_header(id, secret));
    }
    let response = request.send().await.expect("revoke");
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED {
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    }
    (status, response.text().await.expect("body"))
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:?}"))
}

fn last_revocation(mock: &MockOAuth) -> RevocationLogEntry {
    mock.revocation_log()
        .pop()
        .expect("a revocation was logged")
}

#[tokio::test]
async fn metadata_advertises_revocation() {
    let mock = start(config()).await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let body: Value = http()
            .get(format!("{}{path}", mock.base_url()))
            .send()
            .await
            .expect("metadata")
            .json()
            .await
            .expect("JSON");
        assert_eq!(
            body["revocation_endpoint"],
            format!("{}/revoke", mock.base_url())
        );
        assert_eq!(
            body["revocation_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "client_secret_post", "none"])
        );
    }
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_its_whole_grant() {
    let mock = start(config()).await;
    let first = code_flow(&mock, &[]).await;
    let (status, second) = refresh(&mock, text(&first, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let (a1, a2) = (text(&first, "access_token"), text(&second, "access_token"));
    let r2 = text(&second, "refresh_token");

    let (status, body) = revoke(
        &mock,
        Some((GW, GW_SECRET)),
        &[("token", r2), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    for token in [a1, a2, r2] {
        assert_eq!(introspect(&mock, token).await, json!({ "active": false }));
    }
    let (status, refused) = refresh(&mock, r2).await;
    assert_eq!(
        (status, error_of(&refused)),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    let token_log = mock.token_log();
    assert!(
        !token_log[2].reuse_detected,
        "revoked, not reused: {token_log:?}"
    );
    let seqs: Vec<u64> = token_log.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        [1, 2, 3],
        "revocations do not use the token log's seq"
    );

    let entry = last_revocation(&mock);
    assert!(entry.ts > 0);
    assert_eq!(
        entry,
        RevocationLogEntry {
            seq: 1,
            ts: entry.ts,
            client_id: Some(GW.to_owned()),
            token_type_hint: Some("refresh_token".to_owned()),
            token_sha256: Some(sha256_hex(r2)),
            token_type: TokenKind::Refresh,
            family: token_log[0].family,
            other_client: false,
            revoked: true,
            outcome: "ok".to_owned(),
        }
    );

    // Again (client_secret_post this time): still 200, nothing left to revoke.
    let (status, body) = revoke(
        &mock,
        None,
        &[
            ("token", r2),
            ("client_id", GW),
            ("client_secret", GW_SECRET),
        ],
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    let entry = last_revocation(&mock);
    assert_eq!(
        (entry.seq, entry.token_type, entry.revoked),
        (2, TokenKind::Refresh, false)
    );

    // Over HTTP, the same log, without raw tokens.
    let over_http: Vec<RevocationLogEntry> = http()
        .get(format!("{}/control/revocation-log", mock.base_url()))
        .send()
        .await
        .expect("log")
        .json()
        .await
        .expect("JSON");
    assert_eq!(over_http, mock.revocation_log());
    let raw: Value = serde_json::to_value(&over_http).expect("serializes");
    assert_eq!(raw[0]["token_type"], "refresh");
    let raw = raw.to_string();
    assert!(!raw.contains(r2) && !raw.contains(GW_SECRET));
}

#[tokio::test]
async fn revoking_an_access_token_leaves_its_refresh_token() {
    let mock = start(config()).await;
    let grant = code_flow(&mock, &[]).await;
    let access = text(&grant, "access_token");
    // A wrong hint only orders the search.
    let (status, body) = revoke(
        &mock,
        Some((GW, GW_SECRET)),
        &[("token", access), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    assert_eq!(introspect(&mock, access).await["active"], false);
    let entry = last_revocation(&mock);
    assert_eq!(
        (entry.token_type, entry.revoked, entry.family),
        (TokenKind::Access, true, mock.token_log()[0].family)
    );
    let refresh_token = text(&grant, "refresh_token");
    assert_eq!(introspect(&mock, refresh_token).await["active"], true);
    let (status, renewed) = refresh(&mock, refresh_token).await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    assert_eq!(
        introspect(&mock, text(&renewed, "access_token")).await["active"],
        true
    );

    // An expired access token: 200, found, nothing revoked.
    let expired = start(Config {
        access_ttl: Duration::ZERO,
        ..config()
    })
    .await;
    let (_, body) = token(
        &expired,
        Some((GW, GW_SECRET)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    let access = text(&body, "access_token");
    assert_eq!(introspect(&expired, access).await["active"], false);
    let (status, _) = revoke(
        &expired,
        Some((GW, GW_SECRET)),
        &[("token", access), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let entry = last_revocation(&expired);
    assert_eq!(
        (entry.token_type, entry.revoked),
        (TokenKind::Access, false)
    );
}

#[tokio::test]
async fn another_clients_token_is_not_revoked() {
    let mock = start(two_clients()).await;
    let grant = code_flow(&mock, &[]).await;
    let (access, refresh_token) = (text(&grant, "access_token"), text(&grant, "refresh_token"));
    // A confidential client and a public one, each with a token of GW.
    let (status, body) = revoke(
        &mock,
        Some((OTHER, OTHER_SECRET)),
        &[("token", refresh_token)],
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    let (status, body) = revoke(&mock, None, &[("token", access), ("client_id", IDE)]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));

    assert_eq!(introspect(&mock, access).await["active"], true);
    assert_eq!(introspect(&mock, refresh_token).await["active"], true);
    let (status, renewed) = refresh(&mock, refresh_token).await;
    assert_eq!(status, StatusCode::OK, "{renewed}");

    let seen: Vec<_> = mock
        .revocation_log()
        .into_iter()
        .map(|e| {
            (
                e.client_id,
                e.token_type,
                e.other_client,
                e.revoked,
                e.outcome,
            )
        })
        .collect();
    let ok = || "ok".to_owned();
    assert_eq!(
        seen,
        [
            (
                Some(OTHER.to_owned()),
                TokenKind::Refresh,
                true,
                false,
                ok()
            ),
            (Some(IDE.to_owned()), TokenKind::Access, true, false, ok()),
        ]
    );
}

#[tokio::test]
async fn unknown_missing_and_malformed_tokens() {
    let mock = start(config()).await;
    let gw = Some((GW, GW_SECRET));

    let (status, body) = revoke(&mock, gw, &[("token", "made-up")]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    let entry = last_revocation(&mock);
    assert_eq!(
        (
            entry.token_type,
            entry.revoked,
            entry.family,
            entry.token_sha256
        ),
        (TokenKind::Unknown, false, None, Some(sha256_hex("made-up")))
    );

    // Missing (or empty, which RFC 6749 §3.1 treats as omitted) token.
    for form in [vec![], vec![("token", "")]] {
        let (status, body) = revoke(&mock, gw, &form).await;
        assert_eq!(
            (status, error_of(&json_of(&body))),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{form:?}"
        );
    }
    let entry = last_revocation(&mock);
    assert_eq!(
        (
            entry.client_id.as_deref(),
            entry.token_sha256,
            entry.outcome.as_str()
        ),
        (Some(GW), None, "invalid_request")
    );

    let (status, body) = revoke(
        &mock,
        gw,
        &[("token", "made-up"), ("token_type_hint", "id_token")],
    )
    .await;
    assert_eq!(
        (status, error_of(&json_of(&body))),
        (StatusCode::BAD_REQUEST, "unsupported_token_type")
    );
    assert_eq!(
        last_revocation(&mock).token_type_hint.as_deref(),
        Some("id_token")
    );
    let (status, body) = revoke(&mock, gw, &[("token", "a"), ("token", "b")]).await;
    assert_eq!(
        (status, error_of(&json_of(&body))),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let response = http()
        .post(format!("{}/revoke", mock.base_url()))
        .header(header::AUTHORIZATION, basic_header(GW, GW_SECRET))
        .json(&json!({ "token": "made-up" }))
        .send()
        .await
        .expect("revoke");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(mock.revocation_log().len(), 6);

    // A reset forgets the log but not its sequence.
    let response = http()
        .post(format!("{}/control/reset", mock.base_url()))
        .send()
        .await
        .expect("reset");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(mock.revocation_log().is_empty());
    revoke(&mock, gw, &[("token", "made-up")]).await;
    assert_eq!(last_revocation(&mock).seq, 7);
}

#[tokio::test]
async fn revocation_authenticates_clients_like_the_token_endpoint() {
    let mock = start(config()).await;
    let grant = code_flow(&mock, &[]).await;
    let refresh_token = text(&grant, "refresh_token");

    let cases = [
        (Some((GW, "wrong")), vec![]),
        (None, vec![("client_id", GW), ("client_secret", "wrong")]),
        (None, vec![]),
        (None, vec![("client_id", GW)]),
        (Some(("nobody", "x")), vec![]),
        (
            None,
            vec![("client_id", BASIC_ONLY), ("client_secret", "b-secret")],
        ),
    ];
    for (basic, credentials) in cases {
        let mut form = vec![("token", refresh_token)];
        form.extend(credentials.iter().copied());
        let (status, body) = revoke(&mock, basic, &form).await;
        let body = json_of(&body);
        assert_eq!(
            (status, error_of(&body)),
            (StatusCode::UNAUTHORIZED, "invalid_client"),
            "{basic:?} {credentials:?}"
        );
        // The same answer, word for word, as the token endpoint's.
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend(credentials.iter().copied());
        let (token_status, token_body) = token(&mock, basic, &form).await;
        assert_eq!((status, &body), (token_status, &token_body));
    }
    // Basic and client_secret together.
    let (status, body) = revoke(
        &mock,
        Some((GW, GW_SECRET)),
        &[("token", refresh_token), ("client_secret", GW_SECRET)],
    )
    .await;
    assert_eq!(
        (status, error_of(&json_of(&body))),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    // The registered method works.
    let (status, _) = revoke(
        &mock,
        Some((BASIC_ONLY, "b-secret")),
        &[("token", "made-up")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Nothing was revoked; failures are logged with the claimed client and
    // without looking the token up.
    assert_eq!(introspect(&mock, refresh_token).await["active"], true);
    let log = mock.revocation_log();
    assert_eq!(log.len(), 8);
    assert_eq!(
        (log[0].client_id.as_deref(), log[0].outcome.as_str()),
        (Some(GW), "invalid_client")
    );
    assert_eq!(log[4].client_id.as_deref(), Some("nobody"));
    assert!(
        log[..7]
            .iter()
            .all(|e| e.token_type == TokenKind::Unknown && !e.revoked)
    );
    assert_eq!(log[7].outcome, "ok");
}
