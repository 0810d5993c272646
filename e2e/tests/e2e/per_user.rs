//! Per-user upstream tokens (`auth.tokens: perUser`) through three replicas behind
//! nginx, against the strict mock provider and an upstream that introspects every
//! token: consent from the official SDK in both eras, each user acting as themselves,
//! disconnecting one user, and refreshes of many users at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hawser_e2e::harness::cluster::{ADMIN_TOKEN, Cluster};
use hawser_e2e::harness::mcp::{McpClient, text};
use hawser_e2e::harness::stack::{Fixture, python_script, run_python};
use hawser_e2e::harness::{http, pg};
use serde_json::{Value, json};

use crate::audit::audit_rows;
use crate::oauth::{gather, refreshed_exactly_once, setup};

/// Static client tokens: `<subject>-token` for each subject.
fn config(subjects: &[String]) -> String {
    let mut out = String::from("clientAuth:\n  tokens:\n");
    for s in subjects {
        out.push_str(&format!("    - {{subject: {s}, token: {s}-token}}\n"));
    }
    out
}

fn per_user_spec(fixture: &Fixture) -> Value {
    json!({"url": fixture.mcp_url(), "auth": {"type": "oauth2", "grant": "authorization_code",
           "tokens": "perUser", "clientId": "hawser", "clientSecret": "hawser-client-secret",
           "scopes": ["mcp"]}})
}

/// Consent and callback land on replica 3; calls go through nginx to any replica.
async fn cluster(subjects: &[String]) -> Cluster {
    Cluster::start_with_env(3, &config(subjects), &[("HAWSER_PUBLIC_URL", "{r3}/")]).await
}

async fn consent_in_python(lb: &str, mode: &str, subject: &str) -> Value {
    let out = run_python(
        &python_script("consent.py"),
        &[
            &format!("{lb}/mcp"),
            mode,
            &format!("{subject}-token"),
            "gh__whoami",
            &format!("{subject}@upstream"),
        ],
        Duration::from_secs(120),
    )
    .await;
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The link in a tool error (a client without URL elicitation).
fn link_in(reply: &Value) -> String {
    assert_eq!(reply["isError"], true, "{reply}");
    let said = text(reply);
    let at = said
        .find("http")
        .unwrap_or_else(|| panic!("no link in {said}"));
    said[at..].trim().to_owned()
}

/// Follows a consent link as a browser: the page's button, the provider (signing in
/// `login`), the callback with the cookie the button set.
async fn consent_in_browser(link: &str, login: &str) {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    // The page names the caller the link was made for (`carol` for `carol@upstream`).
    let subject = login.split('@').next();
    let started = press_continue(&browser, link, true, subject).await;
    assert_eq!(started.status(), 303, "{:?}", started.text().await);
    let cookie = header(&started, "set-cookie");
    let cookie = cookie.split(';').next().unwrap_or_default().to_owned();
    let authorize = format!(
        "{}&login_hint={}",
        header(&started, "location"),
        urlencoding(login)
    );
    let approved = browser
        .get(&authorize)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(approved.status(), 302, "{:?}", approved.text().await);
    let callback = header(&approved, "location");
    // Without the cookie (another browser), the callback is refused and the flow spent.
    let done = browser
        .get(&callback)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = done.status();
    let page = done.text().await.unwrap_or_default();
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Account connected"), "{page}");
}

/// A response header's value (empty when absent).
fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Opens consent `link` as a browser and presses the page's Continue button: the
/// form's token, with the cookie the page set. `refusals`: first checks that the same
/// POST without the cookie, or without the token (a page of another site submitting
/// the link), is refused. `subject`: the caller the page must name.
async fn press_continue(
    browser: &reqwest::Client,
    link: &str,
    refusals: bool,
    subject: Option<&str>,
) -> reqwest::Response {
    let sealed = url::Url::parse(link)
        .unwrap_or_else(|e| panic!("{e}"))
        .query_pairs()
        .find(|(k, _)| k == "link")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no link parameter in {link}"));
    let action = link.split('?').next().unwrap_or_default();
    let shown = browser
        .get(link)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let cookie = header(&shown, "set-cookie");
    let cookie = cookie.split(';').next().unwrap_or_default().to_owned();
    let page = shown.text().await.unwrap_or_default();
    if let Some(subject) = subject {
        assert!(
            page.contains(&format!(
                "for its caller <strong><bdi>{subject}</bdi></strong>"
            )),
            "{page}"
        );
    }
    let token = field(&page, "form");
    let post = |cookie: &str, form: &str| {
        browser
            .post(action)
            .header("cookie", cookie)
            .form(&[("link", sealed.as_str()), ("form", form)])
            .send()
    };
    if refusals {
        for (cookie, form) in [("", token.as_str()), (cookie.as_str(), "")] {
            let refused = post(cookie, form).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(refused.status(), 403, "{:?}", refused.text().await);
        }
        // Both right, from a page the browser says is another site's (one that could
        // plant the cookie, such as a sibling subdomain).
        let refused = browser
            .post(action)
            .header("cookie", &cookie)
            .header("sec-fetch-site", "same-site")
            .form(&[("link", sealed.as_str()), ("form", token.as_str())])
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(refused.status(), 403, "{:?}", refused.text().await);
    }
    post(&cookie, &token)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn urlencoding(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Declares the per-user connection `gh` and waits until every replica has loaded it
/// (it lists nothing yet, so tool names cannot tell).
async fn declare(cluster: &Cluster, fixture: &Fixture) {
    assert_eq!(
        cluster
            .put_connection(0, "gh", per_user_spec(fixture))
            .await,
        201
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = cluster.admin_get(0, "/api/v1/connections/gh/status").await;
        let loaded = st["replicas"]
            .as_array()
            .map_or(0, |r| r.iter().filter(|x| x["current"] == true).count());
        if loaded == cluster.replicas.len() {
            return;
        }
        assert!(Instant::now() < deadline, "not loaded everywhere: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn as_user(cluster: &Cluster, subject: &str) -> McpClient {
    McpClient::connect_as(&cluster.lb.mcp_url(), &format!("{subject}-token")).await
}

/// The `sub` of the upstream token a `whoami` call carried, or why there is none.
async fn upstream_sub(client: &mut McpClient) -> Result<String, Value> {
    let r = client.call("gh__whoami", json!({})).await;
    let result = r.result().clone();
    if result["isError"] == true || result.is_null() {
        return Err(r.response().clone());
    }
    let who: Value = serde_json::from_str(&text(&result)).map_err(|_| result.clone())?;
    who["sub"].as_str().map(str::to_owned).ok_or(result)
}

async fn me(cluster: &Cluster, subject: &str) -> Value {
    http()
        .get(format!("{}/api/v1/me/connections", cluster.lb.base))
        .bearer_auth(format!("{subject}-token"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_consents_from_their_client_and_acts_upstream_as_themselves() {
    let s = setup(Duration::from_secs(60)).await;
    let users: Vec<String> = ["alice", "bob", "carol"].map(String::from).to_vec();
    let cluster = cluster(&users).await;
    declare(&cluster, &s.fixture).await;
    let lb = cluster.lb.base.clone();
    let r3 = cluster.replicas[2]
        .base
        .trim_start_matches("http://")
        .to_owned();

    // Alice (2025-11-25, URL elicitation) and Bob (2026-07-28) at the same time; nobody
    // has connected yet, so the tool is not even listed.
    let (alice, bob) = tokio::join!(
        consent_in_python(&lb, "legacy", "alice"),
        consent_in_python(&lb, "2026-07-28", "bob"),
    );
    for (report, who) in [(&alice, "alice"), (&bob, "bob")] {
        assert_eq!(report["links"], 1, "{who}: one consent link: {report}");
        assert_eq!(report["callback_host"], r3, "{report}");
        assert_eq!(
            report["whoami"]["sub"],
            format!("{who}@upstream"),
            "{report}"
        );
        assert_eq!(
            report["subs"],
            json!([format!("{who}@upstream")]),
            "{report}"
        );
        assert_eq!(report["calls"], 6, "{report}");
    }

    // Who is connected: the owner sees their own; an operator sees who (no tokens).
    let mine = me(&cluster, "alice").await;
    assert_eq!(mine["connections"][0]["name"], "gh", "{mine}");
    assert_eq!(mine["connections"][0]["state"], "connected", "{mine}");
    let carols = me(&cluster, "carol").await;
    assert_eq!(carols["connections"][0]["state"], "consent_required");
    let link = carols["connections"][0]["consentUrl"]
        .as_str()
        .unwrap_or_else(|| panic!("{carols}"));
    assert!(link.contains("/oauth/consent?link="), "{link}");
    let holders = cluster.admin_get(1, "/api/v1/connections/gh/users").await;
    let subjects: Vec<&str> = holders["users"]
        .as_array()
        .map(|u| u.iter().filter_map(|x| x["subject"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(subjects, ["alice", "bob"], "{holders}");
    assert!(!holders.to_string().contains("mat_"), "{holders}");

    // Carol's client declares no URL elicitation: a tool error carries her link.
    let mut carol = as_user(&cluster, "carol").await;
    let r = carol.call("gh__whoami", json!({})).await;
    let link = link_in(r.result());
    consent_in_browser(&link, "carol@upstream").await;
    assert_eq!(upstream_sub(&mut carol).await, Ok("carol@upstream".into()));
    // Her link is spent: a second use is refused.
    let again = press_continue(&http(), &link, false, None).await;
    assert_eq!(again.status(), 410);

    // Alice disconnects: revoked at the provider, and her next call asks again, on
    // every replica; Bob goes on.
    let gone = http()
        .delete(format!("{lb}/api/v1/me/connections/gh"))
        .bearer_auth("alice-token")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let gone: Value = gone.json().await.unwrap_or_default();
    assert_eq!(gone["revokedAtProvider"], true, "{gone}");
    let revoked = s.mock.revocation_log();
    assert!(
        revoked
            .iter()
            .any(|e| e.revoked && e.client_id.as_deref() == Some("hawser")),
        "{revoked:?}"
    );
    let mut alice = as_user(&cluster, "alice").await;
    for _ in 0..3 {
        let r = alice.call("gh__whoami", json!({})).await;
        assert!(link_in(r.result()).contains("/oauth/consent"));
    }
    let mut bob = as_user(&cluster, "bob").await;
    for _ in 0..3 {
        assert_eq!(upstream_sub(&mut bob).await, Ok("bob@upstream".into()));
    }

    // Nothing usable at rest, nothing in the logs.
    let dump = pg::dump(&cluster.db.url);
    for secret in ["mat_", "mrt_", "mac_", "hawser-client-secret"] {
        assert!(!dump.contains(secret), "plaintext {secret}… in the dump");
        assert_eq!(cluster.log_lines_containing(secret), 0, "{secret}… logged");
    }

    // Consent is audited: started and completed for each, Alice's revocation.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = audit_rows(&cluster.db.url).await;
        let count = |method: &str, subject: &str| {
            rows.iter()
                .filter(|r| r["method"] == method && r["subject"] == subject)
                .count()
        };
        let done = ["alice", "bob", "carol"]
            .iter()
            .all(|u| count("consent/started", u) == 1 && count("consent/completed", u) == 1)
            && count("consent/revoked", "alice") == 1;
        if done {
            let asked = rows
                .iter()
                .filter(|r| r["method"] == "tools/call" && r["error_category"] == "consent")
                .count();
            assert!(asked >= 6, "consent answers audited: {asked}");
            // Every call records whose upstream token it used: the caller's own.
            let calls: Vec<_> = rows
                .iter()
                .filter(|r| r["method"] == "tools/call" && r["success"] == true)
                .collect();
            assert!(calls.len() >= 12, "{calls:?}");
            for r in calls {
                assert_eq!(r["token_subject"], r["subject"], "{r}");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "consent events missing: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// 20 users, 5 concurrent clients each, 2-second access tokens for 20 s: every
/// refresh token is presented once, none is refused, every call carries its own
/// user's token; revoking one user leaves the others working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_users_refresh_exactly_once_each_and_never_use_each_others_tokens() {
    let ttl = Duration::from_secs(2);
    let s = setup(ttl).await;
    let users: Vec<String> = (0..20).map(|i| format!("user{i:02}")).collect();
    let cluster = cluster(&users).await;
    declare(&cluster, &s.fixture).await;
    for u in &users {
        let mut client = as_user(&cluster, u).await;
        let r = client.call("gh__whoami", json!({})).await;
        consent_in_browser(&link_in(r.result()), &format!("{u}@upstream")).await;
    }
    let first = s.mock.token_log().len();

    let run_for = Duration::from_secs(20);
    let started = Instant::now();
    let lb = cluster.lb.mcp_url();
    let workers: Vec<_> = users
        .iter()
        .flat_map(|u| (0..5).map(move |w| (u.clone(), w)))
        .map(|(u, _)| {
            let lb = lb.clone();
            tokio::spawn(async move {
                let mut client = McpClient::connect_as(&lb, &format!("{u}-token")).await;
                let (mut ok, mut wrong) = (0u32, Vec::new());
                while started.elapsed() < run_for {
                    match upstream_sub(&mut client).await {
                        Ok(sub) if sub == format!("{u}@upstream") => ok += 1,
                        other => wrong.push(format!("{u}: {other:?}")),
                    }
                }
                (ok, wrong)
            })
        })
        .collect();
    let (calls, failures) = gather(workers).await;
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        failures.is_empty(),
        "{} of {} calls failed or carried another token, first: {}\nprovider: {:?}\nreplicas: {:#?}",
        failures.len(),
        calls + failures.len() as u32,
        failures[0],
        s.mock
            .token_log()
            .iter()
            .filter(|e| e.outcome != "ok")
            .take(5)
            .collect::<Vec<_>>(),
        cluster
            .replicas
            .iter()
            .flat_map(|r| r.child.lines())
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .take(20)
            .collect::<Vec<_>>()
    );
    assert!(calls > 400, "too few calls: {calls}");

    let log: Vec<_> = s.mock.token_log().into_iter().skip(first).collect();
    let refreshes = refreshed_exactly_once(&log);
    // Every user's grant (one token family each) refreshed about once per lifetime,
    // none far more (no storm).
    let mut per_user: HashMap<u64, usize> = HashMap::new();
    for e in &refreshes {
        *per_user.entry(e.family.unwrap_or_default()).or_default() += 1;
    }
    assert_eq!(per_user.len(), users.len(), "{per_user:?}");
    let expected = elapsed / ttl.as_secs_f64();
    for (family, n) in &per_user {
        assert!(
            *n as f64 >= expected * 0.4 && *n as f64 <= expected * 2.0,
            "grant {family}: {n} refreshes in {elapsed:.1}s with a {}s TTL: {per_user:?}",
            ttl.as_secs()
        );
    }
    eprintln!(
        "{calls} calls, {} refreshes for {} users in {elapsed:.1}s",
        refreshes.len(),
        users.len()
    );

    // The provider withdraws one user's grant: once their access token expires, the
    // refresh gets invalid_grant, they are asked to consent again, nobody else notices.
    assert!(s.mock.revoke_subject("user01@upstream") >= 1);
    tokio::time::sleep(ttl + Duration::from_millis(500)).await;
    let mut withdrawn = as_user(&cluster, "user01").await;
    let r = withdrawn.call("gh__whoami", json!({})).await;
    assert!(link_in(r.result()).contains("/oauth/consent"));
    let refused = s
        .mock
        .token_log()
        .iter()
        .filter(|e| e.outcome == "invalid_grant")
        .count();
    assert_eq!(refused, 1, "one refresh refused, and not retried");
    for u in &users[2..] {
        let mut client = as_user(&cluster, u).await;
        assert_eq!(upstream_sub(&mut client).await, Ok(format!("{u}@upstream")));
    }

    // Revoking one user (admin API) leaves everyone else working.
    let revoked = http()
        .delete(format!(
            "{}/api/v1/connections/gh/users?subject=user00",
            cluster.replicas[0].base
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(revoked.status(), 200);
    let mut gone = as_user(&cluster, "user00").await;
    let r = gone.call("gh__whoami", json!({})).await;
    assert!(link_in(r.result()).contains("/oauth/consent"));
    for u in &users[2..] {
        let mut client = as_user(&cluster, u).await;
        assert_eq!(upstream_sub(&mut client).await, Ok(format!("{u}@upstream")));
    }
}

/// A browser for the consent tests: keeps cookies (by name; paths ignored), follows
/// redirects itself, and signs in at the mock provider as `login`.
struct Browser {
    http: reqwest::Client,
    jar: HashMap<String, String>,
    provider: String,
    login: String,
}

impl Browser {
    fn new(provider: &str, login: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
            jar: HashMap::new(),
            provider: provider.to_owned(),
            login: login.to_owned(),
        }
    }

    /// Sends `form` (POST) or a GET to `url`, follows redirects; the final URL, status
    /// and page.
    async fn go(&mut self, url: &str, form: Option<&[(&str, &str)]>) -> (String, u16, String) {
        let mut url = url::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        let mut form = form.map(|f| f.to_vec());
        for _ in 0..12 {
            if url.as_str().starts_with(&self.provider) && url.path().ends_with("/authorize") {
                url.query_pairs_mut().append_pair("login_hint", &self.login);
            }
            let cookies: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let request = match form.take() {
                Some(f) => self.http.post(url.clone()).form(&f),
                None => self.http.get(url.clone()),
            };
            let r = request
                .header("cookie", cookies.join("; "))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            for c in r.headers().get_all("set-cookie") {
                let c = c.to_str().unwrap_or_default();
                let pair = c.split(';').next().unwrap_or_default();
                if let Some((name, value)) = pair.split_once('=') {
                    if value.is_empty() || c.contains("Max-Age=0") {
                        self.jar.remove(name);
                    } else {
                        self.jar.insert(name.to_owned(), value.to_owned());
                    }
                }
            }
            let status = r.status().as_u16();
            if (300..400).contains(&status) {
                let location = r
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                url = url
                    .join(&location)
                    .unwrap_or_else(|e| panic!("{location}: {e}"));
                continue;
            }
            let page = r.text().await.unwrap_or_default();
            return (url.to_string(), status, page);
        }
        panic!("too many redirects from {url}");
    }
}

/// The value of hidden field `name` in a page.
fn field(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name} in {page}"))
        + marker.len();
    page[at..]
        .split('"')
        .next()
        .unwrap_or_default()
        .replace("&amp;", "&")
}

/// Where people sign in to the console with the company's provider, a consent link is
/// completed only by a browser signed in as the user it was made for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_console_sign_in_only_the_links_own_user_can_complete_it() {
    use hawser_e2e::oauth::{ClientConfig, Config, MockOAuth, ResourceServer};
    let mock = MockOAuth::start(Config {
        access_ttl: Duration::from_secs(300),
        clients: vec![
            ClientConfig::confidential("hawser", "hawser-client-secret"),
            ClientConfig::confidential("console", "console-secret"),
        ],
        resource_servers: vec![ResourceServer {
            id: "fixture".into(),
            secret: "fixture-rs-secret".into(),
        }],
        scopes: vec!["mcp".into(), "openid".into()],
        ..Config::default()
    })
    .await
    .unwrap_or_else(|e| panic!("mock OAuth: {e}"));
    let fixture = Fixture::start(&[
        "--oauth-introspect",
        mock.base_url(),
        "--oauth-client",
        "fixture:fixture-rs-secret",
    ]);
    let users: Vec<String> = ["alice", "bob"].map(String::from).to_vec();
    let config = format!(
        "{}  oidc:\n    issuer: {}\nconsole:\n  oidc: {{clientId: console, clientSecret: console-secret, scopes: [openid]}}\n",
        config(&users),
        mock.base_url()
    );
    let cluster = Cluster::start_with_env(2, &config, &[("HAWSER_PUBLIC_URL", "{lb}/")]).await;
    declare(&cluster, &fixture).await;
    let link_of = |subject: &'static str| {
        let cluster = &cluster;
        async move {
            let mut client = as_user(cluster, subject).await;
            let r = client.call("gh__whoami", json!({})).await;
            link_in(r.result())
        }
    };
    let alices_link = link_of("alice").await;
    let bobs_link = link_of("bob").await;

    // Alice opens her link: she signs in to the console first, then confirms.
    let mut alice = Browser::new(mock.base_url(), "alice");
    let (at, status, page) = alice.go(&alices_link, None).await;
    assert_eq!(status, 200, "{at}: {page}");
    assert!(at.contains("/ui/consent"), "{at}");
    assert!(page.contains("Connect gh"), "{page}");
    // Bob's link in Alice's signed-in browser is refused, and stays usable for Bob.
    let (_, status, page) = alice.go(&bobs_link, None).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("another user"), "{page}");
    // Posting a link to the public consent route does not get around the sign-in.
    let sealed = url::Url::parse(&bobs_link)
        .unwrap_or_else(|e| panic!("{e}"))
        .query_pairs()
        .find(|(k, _)| k == "link")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let public = format!("{}/oauth/consent", cluster.lb.base);
    let (_, status, page) = alice.go(&public, Some(&[("link", &sealed)])).await;
    assert_eq!(status, 403, "{page}");

    // Alice confirms: her own upstream account is connected.
    let (csrf, link) = (field(&page_of(&mut alice, &alices_link).await, "csrf"), {
        url::Url::parse(&alices_link)
            .unwrap_or_else(|e| panic!("{e}"))
            .query_pairs()
            .find(|(k, _)| k == "link")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    });
    alice.login = "alice@upstream".into();
    let confirm = format!("{}/ui/consent", cluster.lb.base);
    let (at, status, page) = alice
        .go(&confirm, Some(&[("link", &link), ("csrf", &csrf)]))
        .await;
    assert_eq!(status, 200, "{at}: {page}");
    assert!(page.contains("Account connected"), "{page}");
    let mut client = as_user(&cluster, "alice").await;
    assert_eq!(upstream_sub(&mut client).await, Ok("alice@upstream".into()));

    // Bob, in his own browser, completes his.
    let mut bob = Browser::new(mock.base_url(), "bob");
    let page = page_of(&mut bob, &bobs_link).await;
    bob.login = "bob@upstream".into();
    let (_, status, page) = bob
        .go(
            &confirm,
            Some(&[("link", &sealed), ("csrf", &field(&page, "csrf"))]),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let mut client = as_user(&cluster, "bob").await;
    assert_eq!(upstream_sub(&mut client).await, Ok("bob@upstream".into()));
}

/// The console's confirmation page for `link`, signed in.
async fn page_of(browser: &mut Browser, link: &str) -> String {
    let (at, status, page) = browser.go(link, None).await;
    assert_eq!(status, 200, "{at}: {page}");
    page
}
