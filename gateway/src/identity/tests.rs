//! The authenticator with static tokens and API keys (OIDC has its own tests).

use super::*;
use crate::config::StaticToken;
use crate::headers::test_map;
use crate::store::MemoryStore;
use crate::store::Store;

fn bearer(token: &str) -> HeaderMap {
    test_map(&[
        ("authorization", &format!("Bearer {token}")),
        ("host", "gw:8080"),
    ])
}

fn auth(tokens: Vec<StaticToken>, api_keys: bool) -> ClientAuth {
    ClientAuth {
        tokens,
        oidc: None,
        api_keys,
    }
}

#[tokio::test]
async fn static_tokens_name_their_subject_whatever_the_scheme_case() {
    let a = Authenticator::new(
        &auth(
            vec![
                StaticToken {
                    subject: "alice".into(),
                    digest: IdHash::of("a-token"),
                    groups: vec!["ops".into()],
                },
                StaticToken {
                    subject: "bob".into(),
                    digest: IdHash::of("b-token"),
                    groups: vec![],
                },
            ],
            false,
        ),
        None,
        None,
        None,
    );
    let e = Endpoint::Aggregated;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let h = test_map(&[("authorization", &format!("{scheme} a-token"))]);
        let id = a.authenticate(&h, &e).await.unwrap();
        assert_eq!(
            (id.subject.as_str(), id.method),
            ("alice", AuthMethod::StaticToken)
        );
        assert_eq!(id.groups, ["ops"]);
    }
    let refused = a.authenticate(&bearer("nope"), &e).await.unwrap_err();
    assert_eq!(refused.reason, Reason::Invalid);
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(
        refused.challenge.to_str().unwrap().contains(
            "resource_metadata=\"http://gw:8080/.well-known/oauth-protected-resource/mcp\""
        )
    );
    let missing = a.authenticate(&HeaderMap::new(), &e).await.unwrap_err();
    assert_eq!(missing.reason, Reason::Missing);
    let open = Authenticator::new(&ClientAuth::default(), None, None, None);
    assert_eq!(
        open.authenticate(&HeaderMap::new(), &e)
            .await
            .unwrap()
            .subject,
        "anonymous"
    );
}

#[tokio::test]
async fn api_keys_work_until_revoked_or_expired_and_are_kept_as_hashes() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let keys = ApiKeys::new(store.clone());
    let a = Authenticator::new(&auth(vec![], true), None, Some(keys.clone()), None);
    let e = Endpoint::Aggregated;
    let issued = keys
        .issue(apikeys::NewKey {
            subject: "ci-bot".into(),
            groups: vec!["ci".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let key = issued.key.expose().to_owned();
    assert!(key.starts_with("hwk_") && key.len() == 68, "{key}");
    assert!(key.starts_with(&issued.record.prefix));
    let id = a.authenticate(&bearer(&key), &e).await.unwrap();
    assert_eq!(
        (id.subject.as_str(), id.method),
        ("ci-bot", AuthMethod::ApiKey)
    );
    assert_eq!(id.groups, ["ci"]);
    // Stored as a hash; last use is written by the flush, not per call.
    let stored = store.list_api_keys().await.unwrap();
    assert_eq!(stored[0].hash, IdHash::of(&key));
    assert_eq!(stored[0].last_used_at, None);
    keys.flush().await;
    assert!(
        store.list_api_keys().await.unwrap()[0]
            .last_used_at
            .is_some()
    );
    // A near miss is invalid; a revoked key says so.
    let mut wrong = key.clone();
    wrong.pop();
    wrong.push('x');
    assert_eq!(
        a.authenticate(&bearer(&wrong), &e)
            .await
            .unwrap_err()
            .reason,
        Reason::Invalid
    );
    assert!(keys.revoke(&issued.record.id).await.unwrap());
    assert!(
        !keys.revoke(&issued.record.id).await.unwrap(),
        "revoked once"
    );
    assert_eq!(
        a.authenticate(&bearer(&key), &e).await.unwrap_err().reason,
        Reason::Revoked
    );
    // Expiry.
    let short = keys
        .issue(apikeys::NewKey {
            subject: "tmp".into(),
            expires_in: Some(hawser_crds::Duration::from_secs(1)),
            ..Default::default()
        })
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        a.authenticate(&bearer(short.key.expose()), &e)
            .await
            .unwrap_err()
            .reason,
        Reason::Expired
    );
    // Bad requests for a key.
    assert!(keys.issue(apikeys::NewKey::default()).await.is_err());
}

#[tokio::test]
async fn api_keys_are_refused_when_client_auth_does_not_enable_them() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let keys = ApiKeys::new(store);
    let issued = keys
        .issue(apikeys::NewKey {
            subject: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let tokens = vec![StaticToken {
        subject: "alice".into(),
        digest: IdHash::of("a-token"),
        groups: vec![],
    }];
    let a = Authenticator::new(&auth(tokens, false), None, Some(keys), None);
    let refused = a
        .authenticate(&bearer(issued.key.expose()), &Endpoint::Aggregated)
        .await
        .unwrap_err();
    assert_eq!(refused.reason, Reason::Invalid);
}
