//! `/ui/consent`: a per-user consent link completed by a browser signed in to the
//! console as the subject the link names. Where the console signs people in with the
//! company's provider, `/oauth/consent` sends links here: a person who is not signed
//! in signs in first (and comes back), a person signed in as someone else is refused,
//! so nobody can connect their upstream account to another user's subject.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::csrf;
use crate::console::layout::{Nav, bare, enc, page};
use crate::console::session::{self, Session};
use crate::console::{Console, Error};

#[derive(Deserialize)]
pub struct LinkQuery {
    link: Option<String>,
}

/// Whose link `sealed` is, if `session` may complete it; else the answer.
fn check(console: &Console, session: &Session, sealed: &str) -> Result<String, Box<Response>> {
    let (connection, subject) = console
        .admin
        .oauth
        .consent_link(sealed)
        .map_err(|r| Box::new(r.into_response()))?;
    if subject != session.subject {
        tracing::warn!(connection = %connection, "a consent link was opened by another signed-in user");
        console.admin.oauth.audit_consent(
            &connection,
            &subject,
            "refused",
            Some("opened by another signed-in user"),
        );
        return Err(Box::new(
            (
                StatusCode::FORBIDDEN,
            bare(
                "Not your link",
                "This link was made for another user. Only the person whose client asked for it can connect an account with it.",
                ),
            )
                .into_response(),
        ));
    }
    Ok(connection)
}

/// `GET /ui/consent?link=…`: signs in first, then asks to confirm.
pub async fn show(
    State(console): State<Arc<Console>>,
    Query(q): Query<LinkQuery>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let Some(sealed) = q.link.filter(|l| !l.is_empty()) else {
        return Err(Error::Invalid("the link carries no consent request".into()));
    };
    let Some(session) = session::read(&console, &headers) else {
        let here = format!("/ui/consent?link={}", enc(&sealed));
        return Ok(Redirect::to(&format!("/ui/auth/login?then={}", enc(&here))).into_response());
    };
    let connection = match check(&console, &session, &sealed) {
        Ok(c) => c,
        Err(refused) => return Ok(*refused),
    };
    let content = html! {
        p { "Hawser will act as you on connection " strong { (connection) } ", with the account you sign in with at its authorization server." }
        p { "Only continue if you asked for this from your own client." }
        form method="post" action="/ui/consent" {
            (csrf(&session))
            input type="hidden" name="link" value=(sealed);
            button type="submit" { "Connect " (connection) }
        }
    };
    Ok(page(
        &session,
        Nav::Mine,
        &format!("Connect {connection}"),
        content,
    ))
}

#[derive(Deserialize)]
pub struct ConsentForm {
    link: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/consent`: the signed-in owner of the link goes on to the provider.
pub async fn start(
    State(console): State<Arc<Console>>,
    session: Session,
    Form(form): Form<ConsentForm>,
) -> Result<Response, Error> {
    session.check_csrf(&form.csrf)?;
    if let Err(refused) = check(&console, &session, &form.link) {
        return Ok(*refused);
    }
    Ok(crate::oauth::consent::proceed(&console.admin.oauth, &form.link).await)
}
