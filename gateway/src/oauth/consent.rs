//! Consent for per-user tokens (`tokens: perUser`): the link a caller is handed when
//! they hold no usable upstream token, the page it opens, and the start of their own
//! authorization_code flow.
//!
//! The link is sealed with the keyring (AES-256-GCM): it names the connection and the
//! subject that asked, expires after [`LINK_TTL`] and opens one flow only (its nonce is
//! claimed in the store). Opening it shows a page; only its button (a POST, which link
//! previews and prefetchers do not send) claims the link, sets a cookie in that
//! browser and sends it to the authorization server. The callback must come back to
//! the same browser, and stores the token for the subject the link names, whichever
//! replica serves it. See `docs/security.md` for the trust model.

use std::sync::Arc;
use std::time::Duration;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use url::Url;

use super::flow::{self, CONSENT_COOKIE as COOKIE, escape, page};
use super::{Error, OAuth};
use crate::clock::Timestamp;
use crate::crypto::IdHash;

/// How long a consent link can be used.
pub const LINK_TTL: Duration = Duration::from_secs(600);

/// Authenticated data of the seal.
const CONTEXT: &str = "hawser/consent-link";

/// What a consent link says, sealed.
#[derive(Debug, Serialize, Deserialize)]
struct Link {
    #[serde(rename = "c")]
    connection: String,
    #[serde(rename = "s")]
    subject: String,
    /// Single use: claimed in the store when the flow starts.
    #[serde(rename = "n")]
    nonce: String,
    #[serde(rename = "e")]
    expires: Timestamp,
}

/// A link for a caller to open, with what the client shows them.
#[derive(Debug, Clone)]
pub struct Offer {
    pub url: Url,
    /// The elicitation's id (the link's nonce).
    pub id: String,
    pub message: String,
}

impl OAuth {
    /// A consent link for `subject` on `connection`.
    pub fn consent_offer(&self, connection: &str, subject: &str) -> Result<Offer, Error> {
        let public = self.public_url.as_ref().ok_or(Error::NoPublicUrl)?;
        let nonce = crate::crypto::random_hex::<16>();
        let link = Link {
            connection: connection.to_owned(),
            subject: subject.to_owned(),
            nonce: nonce.clone(),
            expires: Timestamp::now().plus(LINK_TTL),
        };
        let plain = serde_json::to_vec(&link).unwrap_or_default();
        let sealed = self.keyring.seal(&plain, CONTEXT);
        let mut url = flow::public_path(public, "oauth/consent").map_err(Error::RedirectUri)?;
        url.query_pairs_mut().append_pair("link", &sealed);
        Ok(Offer {
            url,
            id: nonce,
            message: format!(
                "Connection {connection} acts as you with your own account there. Open the link to connect it (valid for {} minutes), then retry.",
                LINK_TTL.as_secs() / 60
            ),
        })
    }

    /// The connection and subject a consent link names, or the page refusing it.
    pub fn consent_link(&self, sealed: &str) -> Result<(String, String), Refusal> {
        self.open_link(sealed).map(|l| (l.connection, l.subject))
    }

    fn open_link(&self, sealed: &str) -> Result<Link, Refusal> {
        let plain = self.keyring.unseal(sealed, CONTEXT).map_err(|_| Refusal {
            status: StatusCode::BAD_REQUEST,
            title: "Link not valid",
            message: "This consent link was not issued by this gateway, or was altered.",
        })?;
        let link = serde_json::from_slice::<Link>(&plain).map_err(|_| Refusal {
            status: StatusCode::BAD_REQUEST,
            title: "Link not valid",
            message: "This consent link cannot be read.",
        })?;
        if link.expires < Timestamp::now() {
            return Err(Refusal {
                status: StatusCode::GONE,
                title: "Link expired",
                message: "This consent link has expired. Retry the call in your client to get a new one.",
            });
        }
        Ok(link)
    }
}

/// Why a link is not honoured, as the page says it.
pub struct Refusal {
    status: StatusCode,
    title: &'static str,
    message: &'static str,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        page(self.status, self.title, self.message)
    }
}

/// The link's query (GET) or form (POST).
#[derive(Deserialize)]
pub struct LinkParam {
    link: Option<String>,
    /// The page's form token (POST): the value of [`FORM_COOKIE`].
    form: Option<String>,
}

/// The cookie the consent page sets, whose value its form carries back: a POST
/// without both, or with two different values, was not sent by the page's own
/// button in this browser (a page of another site submitting the link; the cookie is
/// `SameSite=Lax`, so a cross-site POST does not carry it).
const FORM_COOKIE: &str = "hawser_consent_form";

/// This browser's form token: the one its cookie already holds (so that pages open
/// in several tabs all work), or a new one.
fn form_token(headers: &HeaderMap) -> String {
    match crate::headers::cookie_value(headers, FORM_COOKIE)
        .filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        Some(held) => held.to_owned(),
        None => crate::crypto::random_hex::<16>(),
    }
}

/// Whether a browser says the form was sent from the gateway's own page: its
/// `Sec-Fetch-Site` (`same-origin`), or without one its `Origin` (the public URL's).
/// A site that can set cookies for the gateway's host (a sibling subdomain, or anyone
/// on a plain-http path) could choose the form token; these headers it cannot forge
/// in a visitor's browser. Clients that send neither are judged by the token alone.
fn from_the_page(headers: &HeaderMap, public: Option<&Url>) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return site == "same-origin";
    }
    match (text("origin"), public) {
        (Some(origin), Some(public)) => origin == public.origin().ascii_serialization(),
        _ => true,
    }
}

/// `GET /oauth/consent?link=…`: says what connecting means and offers to go on.
pub async fn show(
    State(oauth): State<Arc<OAuth>>,
    headers: HeaderMap,
    Query(q): Query<LinkParam>,
) -> Response {
    let Some(sealed) = q.link.filter(|l| !l.is_empty()) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Link not valid",
            "The link carries no consent request.",
        );
    };
    let link = match oauth.open_link(&sealed) {
        Ok(link) => link,
        Err(refused) => return refused.into_response(),
    };
    if oauth.consent_needs_sign_in() {
        return to_console(&sealed);
    }
    let token = form_token(&headers);
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>Connect {c} · Hawser</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}}\
         button{{font-size:1em;padding:.5em 1em}}</style></head><body>\
         <h1>Connect {c}</h1>\
         <p>Hawser will act as you on connection <strong>{c}</strong> for its caller <strong><bdi>{s}</bdi></strong>, \
         with the account you sign in with at its authorization server. Only continue if you are \
         <bdi>{s}</bdi> and asked for this from your own client.</p>\
         <form method=\"post\" action=\"consent\"><input type=\"hidden\" name=\"link\" value=\"{l}\">\
         <input type=\"hidden\" name=\"form\" value=\"{f}\">\
         <button type=\"submit\">Continue</button></form></body></html>",
        c = escape(&link.connection),
        s = escape(&link.subject),
        l = escape(&sealed),
        f = token,
    );
    let mut response = (StatusCode::OK, axum::response::Html(body)).into_response();
    // Set again when reused, so that it lives as long as this page's link.
    if let Ok(cookie) = HeaderValue::from_str(&oauth.cookie(FORM_COOKIE, &token, LINK_TTL)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    no_store(response)
}

/// `POST /oauth/consent`: claims the link and sends the browser to the authorization
/// server, with a cookie the callback checks. Where people sign in to the console,
/// the console's consent page does this instead, once it knows who is there.
pub async fn start(
    State(oauth): State<Arc<OAuth>>,
    headers: HeaderMap,
    Form(form): Form<LinkParam>,
) -> Response {
    let Some(sealed) = form.link.filter(|l| !l.is_empty()) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Link not valid",
            "The form carries no consent request.",
        );
    };
    if oauth.consent_needs_sign_in() {
        return to_console(&sealed);
    }
    let held = crate::headers::cookie_value(&headers, FORM_COOKIE);
    if form.form.is_none_or(|sent| Some(sent.as_str()) != held)
        || !from_the_page(&headers, oauth.public_url.as_ref())
    {
        tracing::warn!("consent form sent without this browser's consent page (another site?)");
        return no_store(page(
            StatusCode::FORBIDDEN,
            "Open the link first",
            "This request did not come from the consent page's own button. Open the link from your client, read the page, and press Continue there.",
        ));
    }
    proceed(&oauth, &sealed).await
}

/// The console's consent page for link `sealed`.
fn to_console(sealed: &str) -> Response {
    let to = format!(
        "/ui/consent?link={}",
        url::form_urlencoded::byte_serialize(sealed.as_bytes()).collect::<String>()
    );
    no_store((StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response())
}

/// Claims consent link `sealed` and starts its flow: the answer redirects the browser
/// to the authorization server and sets the cookie the callback checks.
pub async fn proceed(oauth: &OAuth, sealed: &str) -> Response {
    let link = match oauth.open_link(sealed) {
        Ok(link) => link,
        Err(refused) => return refused.into_response(),
    };
    match oauth
        .store
        .claim_consent_link(&IdHash::of(&link.nonce), link.expires)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return page(
                StatusCode::GONE,
                "Link already used",
                "This consent link was used already. Retry the call in your client to get a new one.",
            );
        }
        Err(error) => {
            tracing::error!(%error, "cannot claim a consent link");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "The gateway's store is unavailable; try again.",
            );
        }
    }
    let browser = crate::crypto::random_hex::<32>();
    let url = match flow::begin(
        oauth,
        &link.connection,
        &link.subject,
        Some(IdHash::of(&browser)),
    )
    .await
    {
        Ok((url, _)) => url,
        Err(error) => {
            tracing::warn!(connection = %link.connection, %error, "cannot start a consent flow");
            return page(
                error.status(),
                "Cannot connect",
                &format!("The authorization cannot start: {}", error.public_message()),
            );
        }
    };
    oauth.audit_consent(&link.connection, &link.subject, "started", None);
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, url.as_str())]).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&cookie(oauth, &browser, LINK_TTL)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    no_store(response)
}

/// The consent cookie: see [`OAuth::cookie`].
pub(crate) fn cookie(oauth: &OAuth, value: &str, max_age: Duration) -> String {
    oauth.cookie(COOKIE, value, max_age)
}

/// Not cached, not framed, running nothing.
fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(flow::PAGE_CSP),
    );
    response
}
