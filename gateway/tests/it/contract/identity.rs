//! API keys and signing keys, on both stores.

use hawser_gateway::crypto::IdHash;
use hawser_gateway::store::{ApiKeyRecord, SigningKeyRecord, Store};

fn key(id: &str, created_at: i64) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.into(),
        prefix: format!("hwk_{id}"),
        hash: IdHash::of(&format!("hwk_secret_{id}")),
        subject: "ci-bot".into(),
        groups: vec!["ci".into(), "deploy".into()],
        description: Some("pipeline".into()),
        created_at,
        expires_at: Some(created_at + 3600),
        last_used_at: None,
        revoked_at: None,
    }
}

pub async fn api_keys_round_trip_revoke_once_and_keep_the_latest_use(store: &dyn Store) {
    let now = hawser_gateway::clock::Timestamp::now().unix_secs();
    store.create_api_key(&key("a1", now - 10)).await.unwrap();
    store.create_api_key(&key("b2", now)).await.unwrap();
    let listed = store.list_api_keys().await.unwrap();
    assert_eq!(
        listed.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        ["b2", "a1"],
        "newest first"
    );
    assert_eq!(listed[1], key("a1", now - 10), "round trip");
    // A second key with the same hash is refused (the hash is the lookup key).
    let mut twin = key("c3", now);
    twin.hash = IdHash::of("hwk_secret_a1");
    if store.kind() == hawser_gateway::store::StoreKind::Postgres {
        assert!(store.create_api_key(&twin).await.is_err());
    }
    assert!(store.revoke_api_key("a1").await.unwrap());
    assert!(!store.revoke_api_key("a1").await.unwrap(), "revoked once");
    assert!(!store.revoke_api_key("nope").await.unwrap());
    store
        .touch_api_keys(&[("b2".into(), now), ("a1".into(), now - 5)])
        .await
        .unwrap();
    store
        .touch_api_keys(&[("b2".into(), now - 100)])
        .await
        .unwrap();
    let listed = store.list_api_keys().await.unwrap();
    let b2 = listed.iter().find(|k| k.id == "b2").unwrap();
    assert_eq!(
        b2.last_used_at,
        Some(now),
        "an older use never moves it back"
    );
    let a1 = listed.iter().find(|k| k.id == "a1").unwrap();
    assert!(a1.revoked_at.is_some_and(|t| (t - now).abs() < 60));
}

pub async fn signing_keys_rotate_and_the_old_one_stays_published(store: &dyn Store) {
    let now = hawser_gateway::clock::Timestamp::now().unix_secs();
    let k = |kid: &str, at: i64| SigningKeyRecord {
        kid: kid.into(),
        pkcs8: format!("pkcs8-of-{kid}").into_bytes(),
        created_at: at,
        retired_at: None,
    };
    assert!(store.signing_keys().await.unwrap().is_empty());
    store.rotate_signing_key(&k("k1", now - 60)).await.unwrap();
    store.rotate_signing_key(&k("k2", now)).await.unwrap();
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!((keys[0].kid.as_str(), keys[0].retired_at), ("k2", None));
    assert_eq!(keys[0].pkcs8, b"pkcs8-of-k2", "sealed and unsealed intact");
    assert_eq!(keys[1].kid, "k1");
    assert!(
        keys[1].retired_at.is_some(),
        "the old key is retired, still listed"
    );
    assert!(
        !format!("{:?}", keys[0]).contains("pkcs8-of"),
        "Debug hides the key"
    );
}
