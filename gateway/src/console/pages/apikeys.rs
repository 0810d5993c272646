//! `/ui/apikeys` (admins): issue a key (shown once, on the answer to the form, never
//! again), list keys (prefix, subject, dates: never the key or its hash), revoke.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::csrf;
use crate::clock::Timestamp;
use crate::console::layout::{Nav, badge, enc, page, when};
use crate::console::session::Session;
use crate::console::{Console, Error};
use crate::identity::apikeys::{IssueError, NewKey};

#[derive(Deserialize)]
pub struct Notice {
    revoked: Option<String>,
}

fn secs(s: i64) -> String {
    when(Timestamp::from_millis(s.saturating_mul(1000)))
}

pub async fn show(
    State(console): State<Arc<Console>>,
    session: Session,
    Query(n): Query<Notice>,
) -> Result<Response, Error> {
    session.require_admin()?;
    let notice = n.revoked.map(|id| {
        html! {
            div.notice.ok role="status" { "API key " code { (id) } " revoked." }
        }
    });
    render(&console, &session, notice, StatusCode::OK).await
}

async fn render(
    console: &Console,
    session: &Session,
    notice: Option<Markup>,
    status: StatusCode,
) -> Result<Response, Error> {
    if console.admin.api_keys.is_none() {
        let content = html! { p { "API keys are off. Set " code { "clientAuth.apiKeys: true" } " in the gateway's config." } };
        return Ok(page(session, Nav::ApiKeys, "API keys", content));
    }
    let mut keys = console.admin.store.list_api_keys().await?;
    keys.sort_by_key(|k| std::cmp::Reverse(k.created_at));
    let content = html! {
        @if let Some(n) = notice { (n) }
        h2 { "Issue a key" }
        form.stack method="post" action="/ui/apikeys" {
            (csrf(session))
            label { "Subject" input type="text" name="subject" required autocomplete="off"; }
            label { "Groups (comma-separated)" input type="text" name="groups" autocomplete="off"; }
            label { "Description" input type="text" name="description" autocomplete="off"; }
            label { "Expires in (e.g. 90d; empty: never)" input type="text" name="expires_in" autocomplete="off"; }
            div.actions { button type="submit" { "Issue key" } }
        }
        h2 { "Keys (" (keys.len()) ")" }
        @if keys.is_empty() {
            p.muted { "No keys issued." }
        } @else {
            div.table-wrap { table {
                thead { tr {
                    th scope="col" { "Key" } th scope="col" { "Subject" } th scope="col" { "Groups" } th scope="col" { "Description" }
                    th scope="col" { "Created" } th scope="col" { "Last used" } th scope="col" { "State" } th scope="col" { "Action" }
                } }
                tbody { @for k in &keys { tr {
                    th scope="row" { code { (k.prefix) "…" } }
                    td { (k.subject) }
                    td { (k.groups.join(", ")) }
                    td { (k.description.as_deref().unwrap_or("")) }
                    td { (secs(k.created_at)) }
                    td { @if let Some(u) = k.last_used_at { (secs(u)) } @else { span.muted { "never" } } }
                    td {
                        @if k.revoked_at.is_some() { (badge("revoked", "bad")) }
                        @else if k.expires_at.is_some_and(|e| e * 1000 <= Timestamp::now().millis()) { (badge("expired", "warn")) }
                        @else { (badge("active", "ok")) }
                    }
                    td { @if k.revoked_at.is_none() {
                        form.inline method="post" action="/ui/apikeys/revoke" data-confirm={ "Revoke key " (k.prefix) "?" } {
                            (csrf(session))
                            input type="hidden" name="id" value=(k.id);
                            button.danger type="submit" aria-label={ "Revoke key " (k.prefix) } { "Revoke" }
                        }
                    } }
                } } }
            } }
        }
    };
    let mut response = page(session, Nav::ApiKeys, "API keys", content);
    *response.status_mut() = status;
    Ok(response)
}

#[derive(Deserialize)]
pub struct IssueForm {
    #[serde(default)]
    csrf: String,
    subject: String,
    #[serde(default)]
    groups: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    expires_in: String,
}

/// The API keys, for an admin's form with a valid CSRF token.
fn admin_keys<'a>(
    console: &'a Console,
    session: &Session,
    csrf: &str,
) -> Result<&'a crate::identity::apikeys::ApiKeys, Error> {
    session.check_csrf(csrf)?;
    session.require_admin()?;
    console
        .admin
        .api_keys
        .as_deref()
        .ok_or_else(|| Error::Invalid("API keys are off".into()))
}

/// `POST /ui/apikeys`: the answer shows the key, once.
pub async fn issue(
    State(console): State<Arc<Console>>,
    session: Session,
    Form(form): Form<IssueForm>,
) -> Result<Response, Error> {
    let keys = admin_keys(&console, &session, &form.csrf)?;
    let expires_in = match form.expires_in.trim() {
        "" => None,
        d => match serde_json::from_value::<hawser_crds::Duration>(serde_json::json!(d)) {
            Ok(d) => Some(d),
            Err(_) => {
                let n = html! { div.notice.bad role="alert" { "“" (d) "” is not a duration (e.g. 90d, 12h)." } };
                return render(&console, &session, Some(n), StatusCode::BAD_REQUEST).await;
            }
        },
    };
    let new = NewKey {
        subject: form.subject.trim().to_owned(),
        groups: form
            .groups
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect(),
        description: Some(form.description.trim().to_owned()).filter(|d| !d.is_empty()),
        expires_in,
    };
    let issued = match keys.issue(new).await {
        Ok(i) => i,
        Err(IssueError::Invalid(message)) => {
            let n = html! { div.notice.bad role="alert" { (message) } };
            return render(&console, &session, Some(n), StatusCode::BAD_REQUEST).await;
        }
        Err(IssueError::Store(e)) => return Err(Error::Store(e)),
    };
    tracing::info!(id = %issued.record.id, subject = %issued.record.subject, by = %session.subject, "API key issued from the console");
    let n = html! {
        div.notice.ok role="status" {
            p { "Key for " strong { (issued.record.subject) } " issued. Copy it now: it is shown only this once." }
            code.secret-once #new-key { (issued.key.expose()) }
        }
    };
    render(&console, &session, Some(n), StatusCode::CREATED).await
}

#[derive(Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    csrf: String,
    id: String,
}

/// `POST /ui/apikeys/revoke`.
pub async fn revoke(
    State(console): State<Arc<Console>>,
    session: Session,
    Form(form): Form<RevokeForm>,
) -> Result<Response, Error> {
    let keys = admin_keys(&console, &session, &form.csrf)?;
    if !keys.revoke(&form.id).await? {
        return Err(Error::NotFound(format!("API key {}", form.id)));
    }
    tracing::info!(id = %form.id, by = %session.subject, "API key revoked from the console");
    Ok(Redirect::to(&format!("/ui/apikeys?revoked={}", enc(&form.id))).into_response())
}
