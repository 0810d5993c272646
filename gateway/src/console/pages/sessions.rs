//! `/ui/sessions`: sign-ins to the console. Anyone can sign themselves out on every
//! browser and replica ("sign out everywhere"); admins can do it for any subject,
//! e.g. when a laptop is lost or a person leaves. Revocations reach every replica
//! through the replica bus (see `console::revocations`).

use std::sync::Arc;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::csrf;
use crate::console::layout::{Nav, enc, page, when};
use crate::console::session::{self, Session};
use crate::console::{Console, Error};

#[derive(Deserialize)]
pub struct Notice {
    revoked: Option<String>,
}

pub async fn show(session: Session, Query(notice): Query<Notice>) -> Result<Response, Error> {
    let content = html! {
        @if let Some(subject) = &notice.revoked {
            div.notice.ok role="status" { "Every console sign-in of " strong { (subject) } " has ended, on every replica." }
        }
        h2 { "This sign-in" }
        dl.detail {
            dt { "Signed in as" } dd { (session.subject) @if session.admin { " (admin)" } }
            dt { "Since" } dd { (when(session.issued())) }
            dt { "Ends" } dd { (when(session.expires)) }
        }
        h2 { "Sign out everywhere" }
        p { "Ends every sign-in of " strong { (session.subject) } " to this console, in every browser, this one included." }
        form method="post" action="/ui/sessions/revoke" data-confirm="Sign out of every browser?" {
            (csrf(&session))
            button.danger type="submit" { "Sign out everywhere" }
        }
        @if session.admin {
            h2 { "Sign someone out everywhere" }
            p { "Ends every console sign-in a person has now; they can sign in again. Their API keys and MCP sessions are not affected." }
            form method="post" action="/ui/sessions/revoke" {
                (csrf(&session))
                label for="subject" { "Subject" }
                input #subject type="text" name="subject" required autocomplete="off";
                button.danger type="submit" { "Sign out everywhere" }
            }
        }
    };
    Ok(page(&session, Nav::Sessions, "Sessions", content))
}

#[derive(Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    subject: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/sessions/revoke`: every sign-in of a subject (one's own, or, for an
/// admin, anyone's) ends.
pub async fn revoke(
    State(console): State<Arc<Console>>,
    session: Session,
    Form(form): Form<RevokeForm>,
) -> Result<Response, Error> {
    session.check_csrf(&form.csrf)?;
    let subject = form.subject.trim();
    let subject = if subject.is_empty() {
        session.subject.as_str()
    } else {
        subject
    };
    if subject != session.subject {
        session.require_admin()?;
    }
    if subject.len() > 256 {
        return Err(Error::Invalid("subject: at most 256 characters".into()));
    }
    console.revocations.revoke_subject(subject).await?;
    tracing::info!(subject = %subject, by = %session.subject, "console: signed out everywhere");
    if subject == session.subject {
        let mut response = Redirect::to("/ui/signin").into_response();
        if let Ok(v) = HeaderValue::from_str(&session::cleared(&console)) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
        return Ok(response);
    }
    Ok(Redirect::to(&format!("/ui/sessions?revoked={}", enc(subject))).into_response())
}
