//! `/ui/connection?name=…`: one connection's tools (and whether the viewer may call
//! each), its state on each replica, its recent errors, its authorization (with an
//! **Authorize** button that runs the authorization_code flow in the browser and
//! comes back here) and, for per-user tokens, how many users are connected.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use hawser_crds::{Auth, OAuth2Grant, TokenOwnership};
use maud::{Markup, html};
use serde::Deserialize;

use super::{csrf, era, replica_state};
use crate::clock::Timestamp;
use crate::console::layout::{Nav, badge, enc, page, when};
use crate::console::session::Session;
use crate::console::{Console, Error};
use crate::store::{AuditQuery, ConnectionState};
use crate::view::ListKind;

#[derive(Deserialize)]
pub struct Which {
    name: String,
}

/// How a connection authenticates upstream, for the page.
enum Authorization {
    None,
    /// Shared authorization_code token: held or not.
    Shared {
        held: bool,
    },
    PerUser {
        users: usize,
    },
    Other(&'static str),
}

pub async fn show(
    State(console): State<Arc<Console>>,
    session: Session,
    Query(q): Query<Which>,
) -> Result<Response, Error> {
    let admin = &console.admin;
    let name = q.name;
    let conn = admin
        .store
        .get_connection(&name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("connection {name}")))?;
    let now = Timestamp::now();
    let status: Vec<_> = admin
        .store
        .read_status(&name)
        .await?
        .into_iter()
        .filter(|s| s.state != ConnectionState::Removed)
        .collect();
    let authorization = match conn.spec.as_ref().map(|s| &s.auth) {
        Ok(Auth::Oauth2(o)) if o.tokens == TokenOwnership::PerUser => Authorization::PerUser {
            users: admin.store.token_holders(Some(&name), None).await?.len(),
        },
        Ok(Auth::Oauth2(o)) if o.grant == OAuth2Grant::AuthorizationCode => Authorization::Shared {
            held: admin.store.get_token(&name, "").await?.is_some(),
        },
        Ok(Auth::Oauth2(_)) => Authorization::Other("OAuth 2 client credentials"),
        Ok(Auth::Bearer { .. }) => Authorization::Other("bearer token"),
        Ok(Auth::Header { .. }) => Authorization::Other("static headers"),
        Ok(Auth::None) | Err(_) => Authorization::None,
    };
    let mut errors_query = AuditQuery {
        connection: Some(name.clone()),
        success: Some(false),
        limit: 10,
        ..AuditQuery::default()
    };
    if !session.admin {
        errors_query.subject = Some(session.subject.clone());
    }
    let errors = admin.store.audit_page(&errors_query).await?;
    let view = admin.registry.view();
    let tools: Vec<String> = view
        .connections
        .get(&name)
        .map(|v| {
            v.entries(ListKind::Tools)
                .iter()
                .map(|e| e.name.clone())
                .collect()
        })
        .unwrap_or_default();
    let upstream = admin.registry.upstream(&name);
    let traffic = if session.admin {
        super::overview::last_hour(&console, now, Some(&name)).await?
    } else {
        None
    };
    let content = html! {
        dl.detail {
            dt { "Source" } dd { (conn.source.as_str()) }
            dt { "Revision" } dd { (conn.revision) }
            dt { "Protocol" } dd { (era(upstream.as_deref())) }
            @if let Ok(spec) = &conn.spec {
                dt { "Upstream" } dd { code { (spec.url.as_deref().map_or_else(|| "stdio".to_owned(), shown_url)) } }
            }
            dt { "Authorization" } dd { (authorization_cell(&authorization, &session, &name)) }
        }
        h2 { "Replicas" }
        @if status.is_empty() {
            p.muted { "No replica has reported this connection yet." }
        } @else {
            div.table-wrap { table {
                thead { tr { th scope="col" { "Replica" } th scope="col" { "State" } th scope="col" .num { "Tools" } th scope="col" { "Last error" } th scope="col" { "Reported" } } }
                tbody { @for s in &status { tr {
                    th scope="row" { (s.replica) }
                    td { (replica_state(s, now)) }
                    td.num { (s.tools) }
                    td { @if let Some(e) = &s.last_error { span.error-text { (e) } } @else { span.muted { "none" } } }
                    td { (when(s.updated_at)) }
                } } }
            } }
        }
        @if let Some(buckets) = &traffic {
            h2 { "Last hour" }
            (super::overview::traffic_cards(buckets, super::overview::hour_ago(now)))
        }
        h2 { "Tools (" (tools.len()) ")" }
        @if tools.is_empty() {
            p.muted { "This replica lists no tools for it (not ready, or it has none)." }
        } @else {
            div.table-wrap { table {
                thead { tr { th scope="col" { "Tool" } th scope="col" { "You may call it" }
                    @if session.admin { th scope="col" { "Who may call it" } } } }
                tbody { @for t in &tools { (tool_row(&console, &session, &name, t)) } }
            } }
        }
        h2 { "Recent errors" }
        @if console.store_kind == crate::store::StoreKind::Memory {
            p.muted { "The audit log is kept in shared mode only." }
        } @else if errors.is_empty() {
            p.muted { "No failed call recorded." }
        } @else {
            div.table-wrap { table {
                thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "What" } th scope="col" { "Error" } } }
                tbody { @for r in &errors { tr {
                    td { a href={ "/ui/audit/" (r.id) } { (when(r.event.ts)) } }
                    td { (r.event.subject.as_deref().unwrap_or("–")) }
                    td { code { (r.event.method) } " " (r.event.target.as_deref().unwrap_or("")) }
                    td.error-text { (r.event.error_message.as_deref().unwrap_or(r.event.error_category.as_deref().unwrap_or("failed"))) }
                } } }
            } }
        }
    };
    Ok(page(
        &session,
        Nav::Overview,
        &format!("Connection {name}"),
        content,
    ))
}

/// A connection's URL as the console shows it: a password in it and the values of its
/// query (where some servers take an API key) masked. Secrets belong in `auth` or
/// `headers`, from a Secret; a URL is shown to everyone who may see the connection.
fn shown_url(url: &str) -> String {
    const MASK: &str = "***";
    let Ok(mut parsed) = url::Url::parse(url) else {
        return MASK.to_owned();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some(MASK));
    }
    // Each item's name when it has a value (the value masked), else the whole item
    // masked: `?sk-live-…` is a secret with no name.
    if let Some(query) = parsed.query() {
        let shown: Vec<String> = query
            .split('&')
            .map(|item| match item.split_once('=') {
                Some((name, _)) => format!("{name}={MASK}"),
                None => MASK.to_owned(),
            })
            .collect();
        parsed.set_query(Some(&shown.join("&")));
    }
    parsed.set_fragment(parsed.fragment().map(|_| MASK));
    parsed.into()
}

fn authorization_cell(a: &Authorization, session: &Session, name: &str) -> Markup {
    html! {
        @match a {
            Authorization::None => span.muted { "none" },
            Authorization::Other(what) => (what),
            Authorization::PerUser { users } => {
                "per-user OAuth: " (users) @if *users == 1 { " user connected" } @else { " users connected" }
                " (" a href="/ui/me" { "connect your own account" } ")"
            }
            Authorization::Shared { held } => {
                @if *held { (badge("Authorized", "ok")) } @else { (badge("Not authorized", "warn")) }
                @if session.admin {
                    " "
                    form.inline method="post" action="/ui/connection/authorize" {
                        (csrf(session))
                        input type="hidden" name="name" value=(name);
                        button type="submit" { @if *held { "Authorize again" } @else { "Authorize" } }
                    }
                }
            }
        }
    }
}

fn tool_row(console: &Console, session: &Session, connection: &str, tool: &str) -> Markup {
    let mine = crate::admin::policies::explain_call(
        &console.admin,
        &session.subject,
        session.groups.clone(),
        tool,
        Some(connection.to_owned()),
        None,
    );
    html! {
        tr {
            th scope="row" { code { (tool) } }
            td { @match &mine {
                Ok(e) if e.allowed => (badge("yes", "ok")),
                Ok(_) => (badge("no", "bad")),
                Err(_) => span.muted { "unknown" },
            } }
            @if session.admin {
                td { @match &mine {
                    Ok(e) if !e.governed => "anyone who can sign in (no policy targets this connection)",
                    _ => {
                        @let grants = console.admin.policies.who_may_call(connection, tool);
                        @if grants.is_empty() {
                            span.muted { "nobody (no rule covers it)" }
                        } @else {
                            ul.plain { @for g in &grants {
                                li {
                                    (badge(if g.allow { "allow" } else { "deny" }, if g.allow { "ok" } else { "bad" }))
                                    " " (g.who)
                                    @if let Some(w) = &g.when { " when " code { (w) } }
                                    " " span.muted { "(" (g.policy) ", rule " (g.rule) ")" }
                                }
                            } }
                        }
                        " "
                        a href={ "/ui/policies?connection=" (enc(connection)) "&tool=" (enc(tool)) } { "explain for a caller" }
                    }
                } }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct AuthorizeForm {
    name: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/connection/authorize`: starts the flow for the shared token and sends
/// the browser to the authorization server; the callback brings it back here.
pub async fn authorize(
    State(console): State<Arc<Console>>,
    session: Session,
    Form(form): Form<AuthorizeForm>,
) -> Result<Response, Error> {
    session.check_csrf(&form.csrf)?;
    session.require_admin()?;
    let oauth = &console.admin.oauth;
    let (url, begun) = crate::oauth::flow::begin(oauth, &form.name, "", None).await?;
    tracing::info!(connection = %form.name, subject = %session.subject, "OAuth authorization started from the console");
    let back = format!("/ui/connection?name={}", enc(&form.name));
    let mut response = Redirect::to(url.as_str()).into_response();
    if let Some(cookie) = crate::oauth::flow::return_cookie(oauth, &begun.state, &back)
        && let Ok(v) = HeaderValue::from_str(&cookie)
    {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::shown_url;

    #[test]
    fn a_url_is_shown_without_its_password_or_query_values() {
        assert_eq!(
            shown_url("http://user:supersecret@10.0.0.5:8080/mcp?api_key=k&region=eu"),
            "http://user:***@10.0.0.5:8080/mcp?api_key=***&region=***"
        );
        assert_eq!(
            shown_url("https://mcp.example.com/mcp"),
            "https://mcp.example.com/mcp"
        );
        assert_eq!(
            shown_url("https://mcp.example.com/mcp?sk-live-abc#tok"),
            "https://mcp.example.com/mcp?***#***"
        );
        assert_eq!(shown_url("not a url with a secret"), "***");
    }
}
