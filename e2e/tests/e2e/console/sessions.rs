//! Signing out of the console ends the sign-in on every replica: a copied cookie
//! stops working, and "sign out everywhere" ends every sign-in of a subject.

use std::time::{Duration, Instant};

use hawser_e2e::harness::cluster::{ADMIN_TOKEN, Cluster};

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
