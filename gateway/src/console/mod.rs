//! The web console at `/ui/`: server-rendered pages (maud) over the same store,
//! registry and admin functions the REST API uses.
//!
//! Nothing runs in the page but one small optional script; the CSS and the script
//! are compiled into the binary and served from `/ui/assets/`, so the Content
//! Security Policy allows no inline code at all. Who is signed in lives in a cookie
//! sealed with the gateway's keyring (see [`session`]), so every replica accepts it
//! and no session row exists. See `docs/console.md`.

mod assets;
mod charts;
mod error;
mod layout;
mod pages;
pub mod revocations;
pub mod session;
mod signin;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::{any, get, post};

use crate::admin::Admin;
use crate::config::ConsoleSettings;
use crate::config::net::IpRange;
use crate::crypto::Keyring;
use crate::front::throttle::FailureThrottle;
use crate::metrics::Metrics;
use crate::store::StoreKind;

pub use error::Error;

/// What the console's handlers share.
pub struct Console {
    pub settings: ConsoleSettings,
    pub keyring: Keyring,
    /// The admin API's state: store, registry, OAuth, API keys, policies, identity.
    pub admin: Arc<Admin>,
    pub public_url: Option<url::Url>,
    /// Whether the audit log is in a table (shared mode) or only in log lines.
    pub store_kind: StoreKind,
    pub replica: String,
    /// Sign-ins ended before their cookie expires, as every replica knows them.
    pub revocations: Arc<revocations::Revocations>,
    /// Client addresses that keep sending a wrong admin token.
    sign_in_failures: FailureThrottle,
    /// Proxies whose `X-Forwarded-For` names the client.
    trusted_proxies: Vec<IpRange>,
    metrics: Arc<Metrics>,
    /// The last hour's calls counted in memory (embedded mode).
    pub traffic: Option<Arc<crate::audit::traffic::RecentTraffic>>,
    http: reqwest::Client,
}

/// What the console is made of besides the admin API's state.
pub struct Parts {
    pub settings: ConsoleSettings,
    pub keyring: Keyring,
    pub public_url: Option<url::Url>,
    pub replica: String,
    /// `http.maxAuthFailuresPerMinute`: wrong admin tokens per client address.
    pub max_auth_failures_per_minute: u32,
    pub trusted_proxies: Vec<IpRange>,
    pub metrics: Arc<Metrics>,
    pub traffic: Option<Arc<crate::audit::traffic::RecentTraffic>>,
}

impl Console {
    pub fn new(parts: Parts, admin: Arc<Admin>) -> Arc<Self> {
        Arc::new(Self {
            settings: parts.settings,
            keyring: parts.keyring,
            store_kind: admin.store.kind(),
            revocations: Arc::new(revocations::Revocations::new(admin.store.clone())),
            admin,
            public_url: parts.public_url,
            replica: parts.replica,
            sign_in_failures: FailureThrottle::new(parts.max_auth_failures_per_minute),
            trusted_proxies: parts.trusted_proxies,
            metrics: parts.metrics,
            traffic: parts.traffic,
            http: crate::oauth::http::client(),
        })
    }

    /// Reads the revocations and follows them until `stop` (nothing to do when the
    /// console is off).
    pub async fn start(
        &self,
        stop: tokio_util::sync::CancellationToken,
    ) -> crate::store::Result<()> {
        if !self.settings.enabled {
            return Ok(());
        }
        self.revocations.load().await?;
        self.revocations.spawn(stop);
        Ok(())
    }

    /// Cookies get `Secure` when the console is reached over https.
    fn secure_cookies(&self) -> bool {
        self.public_url
            .as_ref()
            .is_some_and(|u| u.scheme() == "https")
    }

    /// Whether people sign in with the company's provider (else with the admin token).
    fn uses_oidc(&self) -> bool {
        self.settings.oidc.is_some() && self.admin.identity.oidc().is_some()
    }

    /// Whether the console is on and signs people in with the company's provider.
    pub fn signs_in_with_oidc(&self) -> bool {
        self.settings.enabled && self.uses_oidc()
    }
}

/// Pages load only what `/ui/assets/` serves; nothing inline, never framed.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes (empty when `console.enabled` is false).
pub fn router(console: Arc<Console>) -> Router {
    if !console.settings.enabled {
        return Router::new();
    }
    Router::new()
        .route(
            "/ui",
            get(|| async { axum::response::Redirect::permanent("/ui/") }),
        )
        .route("/ui/", get(pages::overview::show))
        .route("/ui/assets/{file}", get(assets::serve))
        .route("/ui/signin", get(signin::page).post(signin::with_token))
        .route("/ui/auth/login", get(signin::start))
        .route("/ui/auth/callback", get(signin::callback))
        .route("/ui/signout", post(signin::sign_out))
        .route("/ui/sessions", get(pages::sessions::show))
        .route("/ui/sessions/revoke", post(pages::sessions::revoke))
        .route("/ui/connection", get(pages::connection::show))
        .route(
            "/ui/connection/authorize",
            post(pages::connection::authorize),
        )
        .route("/ui/me", get(pages::mine::show))
        .route(
            "/ui/consent",
            get(pages::consent::show).post(pages::consent::start),
        )
        .route("/ui/me/disconnect", post(pages::mine::disconnect))
        .route("/ui/audit", get(pages::audit::list))
        .route("/ui/audit/tail", get(pages::audit::tail))
        .route("/ui/audit/{id}", get(pages::audit::one))
        .route(
            "/ui/apikeys",
            get(pages::apikeys::show).post(pages::apikeys::issue),
        )
        .route("/ui/apikeys/revoke", post(pages::apikeys::revoke))
        .route("/ui/policies", get(pages::policies::show))
        // Any other address under /ui/ is the console's too: its 404 carries the
        // console's headers like every other page.
        .route(
            "/ui/{*rest}",
            any(|| async { error::Error::NotFound("page".to_owned()) }),
        )
        .layer(axum::middleware::map_response(protect))
        .with_state(console)
}

/// Headers every console answer carries; pages are never stored (they show who is
/// signed in and what they may see), assets say their own caching.
async fn protect(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
