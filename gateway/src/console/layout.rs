//! The page shell (header, navigation, skip link) and small formatting helpers.

use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::session::Session;
use crate::clock::Timestamp;

/// Which navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Mine,
    Audit,
    ApiKeys,
    Policies,
    Sessions,
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Hawser" }
            link rel="stylesheet" href="/ui/assets/console.css";
            script src="/ui/assets/console.js" defer {}
        }
    }
}

/// A full page for a signed-in person.
pub fn page(session: &Session, nav: Nav, title: &str, content: Markup) -> Response {
    let item = |target: Nav, href: &str, label: &str| {
        html! {
            li { a href=(href) aria-current=[(nav == target).then_some("page")] { (label) } }
        }
    };
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui/" { "Hawser" }
                    nav aria-label="Main" {
                        ul {
                            (item(Nav::Overview, "/ui/", "Overview"))
                            (item(Nav::Mine, "/ui/me", "My connections"))
                            (item(Nav::Audit, "/ui/audit", "Audit"))
                            @if session.admin {
                                (item(Nav::ApiKeys, "/ui/apikeys", "API keys"))
                                (item(Nav::Policies, "/ui/policies", "Policies"))
                            }
                            (item(Nav::Sessions, "/ui/sessions", "Sessions"))
                        }
                    }
                    div.who {
                        span { (session.subject) @if session.admin { " (admin)" } }
                        form.inline method="post" action="/ui/signout" {
                            input type="hidden" name="csrf" value=(session.csrf());
                            button.secondary type="submit" { "Sign out" }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (content)
                }
            }
        }
    };
    Html(markup.into_string()).into_response()
}

/// A page without navigation (sign-in, errors).
pub fn bare_page(title: &str, content: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top { a.brand href="/ui/" { "Hawser" } }
                main #main tabindex="-1" {
                    div.signin {
                        h1 { (title) }
                        (content)
                    }
                }
            }
        }
    };
    Html(markup.into_string())
}

/// A page that says one thing.
pub fn bare(title: &str, message: &str) -> Html<String> {
    bare_page(
        title,
        html! { p { (message) } p { a href="/ui/" { "Back to the console" } } },
    )
}

/// `2026-01-31 12:34:56 UTC`.
pub fn when(ts: Timestamp) -> String {
    let secs = ts.unix_secs();
    let ymd = crate::clock::civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{}-{}-{} {:02}:{:02}:{:02} UTC",
        ymd.get(..4).unwrap_or_default(),
        ymd.get(4..6).unwrap_or_default(),
        ymd.get(6..8).unwrap_or_default(),
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A state as a labelled badge (`ok`, `bad` or `warn` colouring).
pub fn badge(text: &str, tone: &str) -> Markup {
    html! { span class={ "state " (tone) } { (text) } }
}

/// A link's query value.
pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
