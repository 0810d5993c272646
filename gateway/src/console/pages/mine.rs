//! `/ui/me`: the signed-in person's connections with per-user tokens: Connect (the
//! consent link) or Disconnect (as `DELETE /api/v1/me/connections/{name}`).

use std::sync::Arc;

use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::csrf;
use crate::admin::users::{Disconnected, disconnect_token, state_of};
use crate::clock::Timestamp;
use crate::console::layout::{Nav, badge, enc, page, when};
use crate::console::session::Session;
use crate::console::{Console, Error};

#[derive(Deserialize)]
pub struct Notice {
    disconnected: Option<String>,
}

pub async fn show(
    State(console): State<Arc<Console>>,
    session: Session,
    Query(notice): Query<Notice>,
) -> Result<Response, Error> {
    let admin = &console.admin;
    let held = admin
        .store
        .token_holders(None, Some(&session.subject))
        .await?;
    let view = admin.registry.view();
    let mut names: Vec<&String> = view
        .connections
        .iter()
        .filter(|(_, v)| v.upstream.as_ref().is_some_and(|u| u.per_user_tokens()))
        .map(|(name, _)| name)
        .collect();
    names.sort();
    let content = html! {
        @if let Some(name) = &notice.disconnected {
            div.notice.ok role="status" { "Disconnected from " (name) "." }
        }
        p { "Connections that act upstream as you, with your own account there." }
        @if names.is_empty() {
            p.muted { "No connection uses per-user accounts." }
        } @else {
            div.table-wrap { table {
                thead { tr { th scope="col" { "Connection" } th scope="col" { "State" } th scope="col" { "Connected" } th scope="col" { "Action" } } }
                tbody { @for name in &names {
                    @let holder = held.iter().find(|h| &h.connection == *name);
                    @let state = state_of(holder);
                    tr {
                        th scope="row" { a href={ "/ui/connection?name=" (enc(name)) } { (name) } }
                        td { (badge(&state.replace('_', " "), if state == "connected" { "ok" } else { "warn" })) }
                        td { @if let Some(h) = holder { (when(Timestamp::from_millis(h.updated_at))) } @else { span.muted { "–" } } }
                        td {
                            @if state != "connected" {
                                @match admin.oauth.consent_offer(name, &session.subject) {
                                    Ok(offer) => a.button href=(offer.url.as_str()) aria-label={ "Connect " (name) } { "Connect" },
                                    Err(e) => span.error-text { (e.public_message()) },
                                }
                            }
                            @if holder.is_some() {
                                " "
                                form.inline method="post" action="/ui/me/disconnect" data-confirm={ "Disconnect " (name) "?" } {
                                    (csrf(&session))
                                    input type="hidden" name="name" value=(name);
                                    button.danger type="submit" aria-label={ "Disconnect " (name) } { "Disconnect" }
                                }
                            }
                        }
                    }
                } }
            } }
        }
    };
    Ok(page(&session, Nav::Mine, "My connections", content))
}

#[derive(Deserialize)]
pub struct DisconnectForm {
    name: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/me/disconnect`.
pub async fn disconnect(
    State(console): State<Arc<Console>>,
    session: Session,
    Form(form): Form<DisconnectForm>,
) -> Result<Response, Error> {
    session.check_csrf(&form.csrf)?;
    match disconnect_token(&console.admin, &form.name, &session.subject).await? {
        Disconnected::Done { .. } | Disconnected::NotHeld => {
            Ok(Redirect::to(&format!("/ui/me?disconnected={}", enc(&form.name))).into_response())
        }
    }
}
