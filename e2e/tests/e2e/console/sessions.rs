//! Signing out of the console ends the sign-in on every replica: a copied cookie
//! stops working, and "sign out everywhere" ends every sign-in of a subject.

use std::time::{Duration, Instant};

use hawser_e2e::harness::cluster::{ADMIN_TOKEN, Cluster};
use hawser_e2e::oauth::{ClientConfig, Config, MockOAuth};

use super::web::Web;

/// Waits (up to `within`) until `web` is signed out at `base`; how long it took.
async fn signed_out_within(web: &mut Web, base: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if !web.signed_in_at(base).await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{base} still accepts the sign-in after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_ends_the_sign_in_on_every_replica() {
    let cluster = Cluster::start_with_env(
        2,
        "connections: []\n",
        &[("HAWSER_ADMIN_TOKEN", ADMIN_TOKEN)],
    )
    .await;
    let (r1, r2) = (&cluster.replicas[0].base, &cluster.replicas[1].base);

    // Signed in on replica 1; the cookie works on replica 2 too.
    let mut web = Web::sign_in(r1).await;
    assert!(web.signed_in_at(r2).await);
    let mut copy = web.clone();
    let mut other_browser = Web::sign_in(r2).await;

    // Sign out on replica 1: the copied cookie stops working on both replicas.
    let csrf = web.get(&format!("{r1}/ui/")).await.csrf();
    let out = web
        .post(&format!("{r1}/ui/signout"), &[("csrf", &csrf)])
        .await;
    assert_eq!(out.location.as_deref(), Some("/ui/signin"));
    assert!(
        !web.cookies.contains_key("hawser_ui"),
        "the cookie is cleared"
    );
    assert!(
        !copy.signed_in_at(r1).await,
        "the copied cookie still works here"
    );
    let took = signed_out_within(&mut copy, r2, Duration::from_secs(1)).await;
    eprintln!("the other replica refused the signed-out cookie after {took:?}");
    // Only that sign-in ended.
    assert!(other_browser.signed_in_at(r1).await);

    // "Sign out everywhere" on replica 2 ends every sign-in of the subject.
    let mut third = Web::sign_in(r1).await;
    let page = other_browser.get(&format!("{r2}/ui/sessions")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let everywhere = other_browser
        .post(
            &format!("{r2}/ui/sessions/revoke"),
            &[("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(everywhere.location.as_deref(), Some("/ui/signin"));
    signed_out_within(&mut third, r1, Duration::from_secs(1)).await;
    assert!(!third.signed_in_at(r2).await);

    // Signing in afterwards works again.
    let mut again = Web::sign_in(r2).await;
    assert!(again.signed_in_at(r1).await);
}

/// An admin signs another person out of every browser; that person cannot do it to
/// anyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_signs_someone_else_out_everywhere() {
    let mock = MockOAuth::start(Config {
        clients: vec![ClientConfig::confidential("console", "console-secret")],
        scopes: vec!["openid".into()],
        groups: vec![("alice".into(), "hawser-admins".into())],
        ..Config::default()
    })
    .await
    .unwrap_or_else(|e| panic!("mock OAuth: {e}"));
    let config = format!(
        r#"publicUrl: "{{lb}}"
clientAuth:
  oidc:
    issuer: {}
console:
  adminGroups: [hawser-admins]
  oidc: {{clientId: console, clientSecret: console-secret, scopes: [openid]}}
connections: []
"#,
        mock.base_url()
    );
    let cluster = Cluster::start(2, &config).await;
    let (r1, r2) = (&cluster.replicas[0].base, &cluster.replicas[1].base);
    let lb = &cluster.lb.base;
    let mut bob = Web::sign_in_with_provider(lb, "bob").await;
    let mut bobs_phone = Web::sign_in_with_provider(lb, "bob").await;
    let mut alice = Web::sign_in_with_provider(lb, "alice").await;

    // Bob is no admin: no form for others, and posting one anyway is refused.
    let page = bob.get(&format!("{r1}/ui/sessions")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(!page.body.contains("Sign someone out"), "{}", page.body);
    let refused = bob
        .post(
            &format!("{r1}/ui/sessions/revoke"),
            &[("subject", "alice"), ("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(alice.signed_in_at(r1).await && alice.signed_in_at(r2).await);

    // Alice, an admin, signs Bob out everywhere from replica 2.
    let page = alice.get(&format!("{r2}/ui/sessions")).await;
    assert!(
        page.body.contains("Sign someone out everywhere"),
        "{}",
        page.body
    );
    let done = alice
        .post(
            &format!("{r2}/ui/sessions/revoke"),
            &[("subject", "bob"), ("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(done.location.as_deref(), Some("/ui/sessions?revoked=bob"));
    signed_out_within(&mut bob, r1, Duration::from_secs(1)).await;
    signed_out_within(&mut bobs_phone, r1, Duration::from_secs(1)).await;
    assert!(!bob.signed_in_at(r2).await);
    assert!(alice.signed_in_at(r1).await, "the admin signed herself out");
    // Bob may sign in again.
    let mut again = Web::sign_in_with_provider(lb, "bob").await;
    assert!(again.signed_in_at(r1).await && again.signed_in_at(r2).await);
}
