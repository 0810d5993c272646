//! The admin-token sign-in form: login CSRF (the form is bound to the browser's
//! pre-session cookie) and throttling of wrong tokens per client address.

use hawser_e2e::harness::cluster::ADMIN_TOKEN;
use hawser_e2e::harness::http;
use hawser_e2e::harness::stack::Gateway;

use super::web::Web;

async fn invalid_token_failures(base: &str) -> f64 {
    let text = http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("hawser_auth_failures_total{reason=\"invalid\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_sign_in_not_sent_from_the_browsers_own_form_is_refused() {
    let gw = Gateway::start("connections: []\n", &[("HAWSER_ADMIN_TOKEN", ADMIN_TOKEN)]);
    gw.wait_ready().await;
    let url = format!("{}/ui/signin", gw.base);

    // Another site posts the right token (its own, to sign the victim in as the
    // attacker): no pre-session cookie, no token.
    let mut victim = Web::default();
    let forged = victim.post(&url, &[("token", ADMIN_TOKEN)]).await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(
        !victim.cookies.contains_key("hawser_ui"),
        "signed in by another site"
    );
    assert!(forged.body.contains("stale or was sent from another site"));

    // The attacker's own form token does not fit the victim's pre-session cookie.
    let mut attacker = Web::default();
    let theirs = attacker.get(&url).await.csrf();
    let _ = victim.get(&url).await;
    let crossed = victim
        .post(&url, &[("token", ADMIN_TOKEN), ("csrf", &theirs)])
        .await;
    assert_eq!(crossed.status, 403, "{}", crossed.body);
    assert!(!victim.cookies.contains_key("hawser_ui"));

    // The browser's own form signs in.
    let mut web = Web::sign_in(&gw.base).await;
    assert!(web.signed_in_at(&gw.base).await);
}

#[tokio::test]
async fn wrong_admin_tokens_from_one_address_are_throttled() {
    let gw = Gateway::start(
        "http:\n  maxAuthFailuresPerMinute: 3\nconnections: []\n",
        &[("HAWSER_ADMIN_TOKEN", ADMIN_TOKEN)],
    );
    gw.wait_ready().await;
    let url = format!("{}/ui/signin", gw.base);
    let before = invalid_token_failures(&gw.base).await;
    let mut web = Web::default();
    let csrf = web.get(&url).await.csrf();
    for i in 0..3 {
        let wrong = web
            .post(&url, &[("token", "not-the-token"), ("csrf", &csrf)])
            .await;
        assert_eq!(wrong.status, 401, "wrong token {i}: {}", wrong.body);
        assert!(wrong.body.contains("That is not the admin token."));
    }
    // Over the allowance: refused before the token is even looked at, so a right
    // guess is not told apart from a wrong one.
    for token in ["still-not-it", ADMIN_TOKEN] {
        let refused = web.post(&url, &[("token", token), ("csrf", &csrf)]).await;
        assert_eq!(refused.status, 429, "{}", refused.body);
        let wait: u64 = refused
            .retry_after
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("429 without a Retry-After in seconds"));
        assert!((1..=60).contains(&wait), "Retry-After {wait}");
        assert!(
            refused.body.contains("Too many wrong admin tokens"),
            "{}",
            refused.body
        );
        assert!(!web.cookies.contains_key("hawser_ui"));
    }
    assert!(
        invalid_token_failures(&gw.base).await - before >= 3.0,
        "wrong admin tokens are counted in hawser_auth_failures_total{{reason=\"invalid\"}}"
    );
}

#[tokio::test]
async fn every_console_answer_forbids_framing_and_storing_even_a_404() {
    let gw = Gateway::start("connections: []\n", &[("HAWSER_ADMIN_TOKEN", ADMIN_TOKEN)]);
    gw.wait_ready().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    for (path, status) in [
        ("/ui/signin", 200),
        ("/ui/", 303),
        ("/ui/no-such-page", 404),
        ("/ui/audit/x/y", 404),
    ] {
        let r = client
            .get(format!("{}{path}", gw.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status().as_u16(), status, "{path}");
        let h = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert!(
            h("content-security-policy").contains("frame-ancestors 'none'"),
            "{path}: no CSP"
        );
        assert_eq!(h("x-frame-options"), "DENY", "{path}");
        assert_eq!(h("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(h("cache-control"), "no-store", "{path}");
        if status == 404 {
            let body = r.text().await.unwrap_or_default();
            assert!(body.contains("page not found"), "{path}: {body}");
        }
    }
}
