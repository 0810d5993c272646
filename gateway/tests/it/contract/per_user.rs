//! Per-user upstream tokens on both stores: rows kept apart by subject, locks per
//! user, single-use consent links, flows that say whose token they obtain.

use std::time::Duration;

use hawser_gateway::clock::Timestamp;
use hawser_gateway::crypto::{IdHash, Secret};
use hawser_gateway::store::{OAuthToken, PkceState, Store};

fn users_token(subject: &str, access: &str) -> OAuthToken {
    let now = Timestamp::now();
    OAuthToken {
        connection: "gh".into(),
        subject: subject.into(),
        access_token: Secret::new(access),
        refresh_token: Some(Secret::new(format!("rt-of-{subject}"))),
        token_type: "Bearer".into(),
        expires_at: Some(now.plus(Duration::from_secs(60))),
        issued_at: Some(now),
        scope: None,
        version: 0,
    }
}

async fn write(store: &dyn Store, token: &OAuthToken) {
    let mut lock = store
        .lock_token(&token.connection, &token.subject)
        .await
        .unwrap();
    lock.write(token).await.unwrap();
    lock.finish().await.unwrap();
}

pub(super) async fn per_user_tokens_are_kept_apart(a: &dyn Store, b: &dyn Store) {
    write(a, &users_token("", "shared-at")).await;
    write(a, &users_token("alice", "alice-at")).await;
    write(a, &users_token("bob", "bob-at")).await;
    let read = |s: &'static str| async move {
        b.get_token("gh", s)
            .await
            .unwrap()
            .map(|t| (t.subject.clone(), t.access_token.expose().to_owned()))
    };
    assert_eq!(
        read("alice").await,
        Some(("alice".into(), "alice-at".into()))
    );
    assert_eq!(read("bob").await, Some(("bob".into(), "bob-at".into())));
    assert_eq!(read("").await, Some((String::new(), "shared-at".into())));
    assert_eq!(read("carol").await, None);

    // Who holds one: users only, never the shared token, and no token material.
    let holders = b.token_holders(Some("gh"), None).await.unwrap();
    let subjects: Vec<_> = holders.iter().map(|h| h.subject.as_str()).collect();
    assert_eq!(subjects, ["alice", "bob"]);
    assert!(holders.iter().all(|h| h.refreshable));
    let alices = b.token_holders(None, Some("alice")).await.unwrap();
    assert_eq!(alices.len(), 1);
    assert_eq!(alices[0].connection, "gh");

    // Deleting Alice's token leaves Bob's and the shared one.
    let mut lock = a.lock_token("gh", "alice").await.unwrap();
    lock.delete().await.unwrap();
    lock.finish().await.unwrap();
    assert_eq!(read("alice").await, None);
    assert!(read("bob").await.is_some());
    assert!(read("").await.is_some());
}

/// One user's refresh does not wait for another's: the locks are per user.
pub(super) async fn a_users_token_lock_does_not_wait_for_another_user(store: &dyn Store) {
    let alice = store.lock_token("gh", "alice").await.unwrap();
    let bob = tokio::time::timeout(Duration::from_secs(5), store.lock_token("gh", "bob"))
        .await
        .expect("bob's lock is not alice's")
        .unwrap();
    bob.finish().await.unwrap();
    // The same user's lock is exclusive.
    let again =
        tokio::time::timeout(Duration::from_millis(300), store.lock_token("gh", "alice")).await;
    assert!(again.is_err(), "a second lock on alice's token must wait");
    alice.finish().await.unwrap();
}

pub(super) async fn consent_links_open_once(a: &dyn Store, b: &dyn Store) {
    let nonce = IdHash::of("nonce-1");
    let expires = Timestamp::now().plus(Duration::from_secs(600));
    assert!(a.claim_consent_link(&nonce, expires).await.unwrap());
    assert!(
        !b.claim_consent_link(&nonce, expires).await.unwrap(),
        "a link opens one flow, on any replica"
    );
    assert!(
        b.claim_consent_link(&IdHash::of("nonce-2"), expires)
            .await
            .unwrap()
    );
}

pub(super) async fn pkce_states_carry_whose_token_and_which_browser(a: &dyn Store, b: &dyn Store) {
    let pending = PkceState {
        state_hash: IdHash::of("state-u"),
        connection: "gh".into(),
        subject: "alice".into(),
        browser: Some(IdHash::of("cookie")),
        verifier: Secret::new("v"),
        redirect_uri: "https://gw.example/oauth/callback".into(),
        expires_at: Timestamp::now().plus(Duration::from_secs(600)),
    };
    a.put_pkce(&pending).await.unwrap();
    let taken = b.take_pkce(&pending.state_hash).await.unwrap();
    assert!(taken.as_ref() == Some(&pending), "taken as put");
}
