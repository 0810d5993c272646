//! A browser without a browser: console pages through plain HTTP, cookies and
//! forms handled by hand, redirects not followed (tests look at them).

use std::collections::BTreeMap;

use hawser_e2e::harness::cluster::ADMIN_TOKEN;

/// One client's cookies for one console.
#[derive(Clone, Default)]
pub struct Web {
    pub cookies: BTreeMap<String, String>,
}

/// An answer: status, `Location`, body.
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Page {
    /// The first form's CSRF token on the page.
    pub fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self
            .body
            .find(marker)
            .unwrap_or_else(|| panic!("no CSRF field in {}", self.body))
            + marker.len();
        let len = self.body[start..].find('"').unwrap_or(0);
        self.body[start..start + len].to_owned()
    }
}

fn client() -> reqwest::Client {
    let _ = hawser_e2e::harness::http();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

impl Web {
    fn header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn take(&mut self, r: reqwest::Response) -> Page {
        for c in r.headers().get_all(reqwest::header::SET_COOKIE) {
            let c = c.to_str().unwrap_or_default();
            let pair = c.split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() || c.contains("Max-Age=0;") {
                    self.cookies.remove(k.trim());
                } else {
                    self.cookies.insert(k.trim().to_owned(), v.to_owned());
                }
            }
        }
        let text = |h: reqwest::header::HeaderName| {
            r.headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Page {
            status: r.status().as_u16(),
            location: text(reqwest::header::LOCATION),
            retry_after: text(reqwest::header::RETRY_AFTER),
            body: r.text().await.unwrap_or_default(),
        }
    }

    pub async fn get(&mut self, url: &str) -> Page {
        let r = client()
            .get(url)
            .header(reqwest::header::COOKIE, self.header())
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        self.take(r).await
    }

    pub async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> Page {
        let r = client()
            .post(url)
            .header(reqwest::header::COOKIE, self.header())
            .form(form)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        self.take(r).await
    }

    /// Signs in at `base` with the admin token through the sign-in form.
    pub async fn sign_in(base: &str) -> Self {
        let mut web = Self::default();
        let form = web.get(&format!("{base}/ui/signin")).await;
        let csrf = form.csrf();
        let done = web
            .post(
                &format!("{base}/ui/signin"),
                &[("token", ADMIN_TOKEN), ("csrf", &csrf)],
            )
            .await;
        assert_eq!(done.status, 303, "sign-in: {}", done.body);
        assert!(web.cookies.contains_key("hawser_ui"), "no session cookie");
        web
    }

    /// Signs in at `base` through the console's single sign-on as `login` (the mock
    /// provider signs in whoever `login_hint` names).
    pub async fn sign_in_with_provider(base: &str, login: &str) -> Self {
        let mut web = Self::default();
        let mut url = format!("{base}/ui/auth/login?login_hint={login}");
        for _ in 0..5 {
            let p = web.get(&url).await;
            match p.location {
                Some(to) if (300..400).contains(&p.status) => {
                    if to == "/ui/" {
                        assert!(web.cookies.contains_key("hawser_ui"), "no session cookie");
                        return web;
                    }
                    url = if to.starts_with('/') {
                        format!("{base}{to}")
                    } else {
                        to
                    };
                }
                _ => panic!(
                    "sign-in as {login} stopped at {url}: {} {}",
                    p.status, p.body
                ),
            }
        }
        panic!("sign-in as {login}: too many redirects");
    }

    /// Whether `base`'s overview lets this client in.
    pub async fn signed_in_at(&mut self, base: &str) -> bool {
        let p = self.get(&format!("{base}/ui/")).await;
        match p.status {
            200 => true,
            303 if p.location.as_deref() == Some("/ui/signin") => false,
            other => panic!("overview answered {other}: {}", p.body),
        }
    }
}
