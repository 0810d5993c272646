//! `/ui/audit`: the audit log, filtered by subject, connection, tool, outcome and
//! time range, a page at a time (keyset on the row id, newest first); admins see
//! everyone's events, others only their own. `/ui/audit/{id}`: one event.
//! `/ui/audit/tail?after=…`: the events of the same filters newer than a row id, as
//! table rows the page's script prepends (the live tail); without the script the
//! page's "Newer events" link does the same by reloading.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use crate::clock::Timestamp;
use crate::console::layout::{Nav, badge, enc, page, when};
use crate::console::session::Session;
use crate::console::{Console, Error};
use crate::store::{AuditQuery, AuditRow, StoreKind};

const PAGE: u32 = 50;
/// Header of a tail answer: the newest row id it knows (the next `after`).
const NEWEST: &str = "x-hawser-newest";

/// The filter form, as the query string carries it.
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    #[serde(default)]
    subject: String,
    #[serde(default)]
    connection: String,
    #[serde(default)]
    tool: String,
    /// `ok`, `failed` or empty.
    #[serde(default)]
    outcome: String,
    /// `1h`, `24h`, `7d`, `30d` or empty (any time).
    #[serde(default)]
    range: String,
    before: Option<i64>,
    /// The live tail: rows above this id.
    after: Option<i64>,
}

const RANGES: [(&str, &str, u64); 4] = [
    ("1h", "Last hour", 3600),
    ("24h", "Last 24 hours", 86_400),
    ("7d", "Last 7 days", 7 * 86_400),
    ("30d", "Last 30 days", 30 * 86_400),
];

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

impl Filters {
    fn query(&self, session: &Session) -> AuditQuery {
        let since = RANGES
            .iter()
            .find(|(k, _, _)| *k == self.range)
            .map(|(_, _, secs)| {
                Timestamp::from_millis(
                    Timestamp::now().millis() - Duration::from_secs(*secs).as_millis() as i64,
                )
            });
        AuditQuery {
            // Not an admin: only their own events, whatever the form says.
            subject: if session.admin {
                some(&self.subject)
            } else {
                Some(session.subject.clone())
            },
            connection: some(&self.connection),
            target: some(&self.tool),
            success: match self.outcome.as_str() {
                "ok" => Some(true),
                "failed" => Some(false),
                _ => None,
            },
            since,
            until: None,
            before_id: self.before,
            after_id: self.after,
            limit: PAGE + 1,
        }
    }

    /// The filters as a query string.
    fn query_string(&self) -> String {
        format!(
            "subject={}&connection={}&tool={}&outcome={}&range={}",
            enc(&self.subject),
            enc(&self.connection),
            enc(&self.tool),
            enc(&self.outcome),
            enc(&self.range)
        )
    }

    /// The page of these filters with another `before`.
    fn link(&self, before: i64) -> String {
        format!("/ui/audit?{}&before={before}", self.query_string())
    }

    /// The newest page of these filters.
    fn newest(&self) -> String {
        format!("/ui/audit?{}", self.query_string())
    }

    /// The tail of these filters after row `after`.
    fn tail(&self, after: i64) -> String {
        format!("/ui/audit/tail?{}&after={after}", self.query_string())
    }
}

/// One event as a table row.
fn row(r: &AuditRow) -> Markup {
    html! {
        tr {
            td { a href={ "/ui/audit/" (r.id) } { (when(r.event.ts)) } }
            td { (r.event.subject.as_deref().unwrap_or("–")) }
            td { code { (r.event.method) } }
            td { (r.event.connection.as_deref().unwrap_or("–")) }
            td { (r.event.target.as_deref().unwrap_or("–")) }
            td { @if r.event.success { (badge("ok", "ok")) } @else { (badge(r.event.error_category.as_deref().unwrap_or("failed"), "bad")) } }
            td.num { (format!("{:.1}", r.event.duration_ms)) }
        }
    }
}

pub async fn list(
    State(console): State<Arc<Console>>,
    session: Session,
    Query(f): Query<Filters>,
) -> Result<Response, Error> {
    if console.store_kind == StoreKind::Memory {
        let content = html! {
            p { "In embedded mode the audit log is written as log lines (target "
                code { "hawser::audit" } "); the console reads it, with its filters and live tail, from PostgreSQL in shared mode." }
        };
        return Ok(page(&session, Nav::Audit, "Audit log", content));
    }
    let mut rows = console.admin.store.audit_page(&f.query(&session)).await?;
    let more = rows.len() > PAGE as usize;
    rows.truncate(PAGE as usize);
    let content = html! {
        @if !session.admin {
            p.muted { "You see your own calls only." }
        }
        form.filters method="get" action="/ui/audit" role="search" aria-label="Filter the audit log" {
            @if session.admin {
                label { "Subject" input type="text" name="subject" value=(f.subject); }
            }
            label { "Connection" input type="text" name="connection" value=(f.connection); }
            label { "Tool" input type="text" name="tool" value=(f.tool); }
            label { "Outcome"
                select name="outcome" {
                    option value="" selected[f.outcome.is_empty()] { "Any" }
                    option value="ok" selected[f.outcome == "ok"] { "Succeeded" }
                    option value="failed" selected[f.outcome == "failed"] { "Failed" }
                }
            }
            label { "Time"
                select name="range" {
                    option value="" selected[f.range.is_empty()] { "Any time" }
                    @for (k, label, _) in RANGES {
                        option value=(k) selected[f.range == k] { (label) }
                    }
                }
            }
            div.actions {
                button type="submit" { "Filter" }
                a.button.secondary href="/ui/audit" { "Clear" }
            }
        }
        @let live = f.before.is_none();
        @if rows.is_empty() {
            p #no-events { "No events match." }
        }
        @if live || !rows.is_empty() {
            div.table-wrap hidden[rows.is_empty()] { table {
                caption.muted { "Newest first" }
                thead { tr {
                    th scope="col" { "When" } th scope="col" { "Subject" } th scope="col" { "Method" }
                    th scope="col" { "Connection" } th scope="col" { "Target" } th scope="col" { "Outcome" }
                    th scope="col" .num { "ms" }
                } }
                tbody #audit-rows data-tail=[live.then(|| f.tail(rows.first().map_or(0, |r| r.id)))] {
                    @for r in &rows { (row(r)) }
                }
            } }
        }
        nav.pager aria-label="Pages" {
            @if live {
                a href=(f.newest()) { "Newer events" }
                span #tail-status .muted role="status" aria-live="polite" {}
            } @else {
                a href=(f.newest()) { "Newest" }
            }
            @if more { @if let Some(last) = rows.last() { a href=(f.link(last.id)) { "Older" } } }
        }
    };
    Ok(page(&session, Nav::Audit, "Audit log", content))
}

/// `GET /ui/audit/tail?after=…&<filters>`: the filters' events newer than row
/// `after`, newest first, at most a page, as table rows. The newest row id the
/// answer knows is in the `X-Hawser-Newest` header; 204 when nothing is new, 409 when
/// more than a page arrived (the page should be reloaded).
pub async fn tail(
    State(console): State<Arc<Console>>,
    session: Session,
    Query(f): Query<Filters>,
) -> Result<Response, Error> {
    if console.store_kind == StoreKind::Memory {
        return Ok((
            StatusCode::NOT_FOUND,
            "the live tail needs shared mode (PostgreSQL)",
        )
            .into_response());
    }
    let after = f.after.unwrap_or(0).max(0);
    let query = AuditQuery {
        before_id: None,
        after_id: Some(after),
        ..f.query(&session)
    };
    let mut rows = console.admin.store.audit_page(&query).await?;
    if rows.len() > PAGE as usize {
        return Ok(StatusCode::CONFLICT.into_response());
    }
    rows.truncate(PAGE as usize);
    let newest = rows.first().map_or(after, |r| r.id);
    let mut response = if rows.is_empty() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        let body = html! { @for r in &rows { (row(r)) } };
        (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body.into_string(),
        )
            .into_response()
    };
    response
        .headers_mut()
        .insert(NEWEST, HeaderValue::from(newest));
    Ok(response)
}

pub async fn one(
    State(console): State<Arc<Console>>,
    session: Session,
    Path(id): Path<i64>,
) -> Result<Response, Error> {
    let not_found = || Error::NotFound(format!("audit event {id}"));
    let row = console
        .admin
        .store
        .audit_event(id)
        .await?
        .ok_or_else(not_found)?;
    let e = &row.event;
    // Someone else's event is "not found" to a non-admin: no hint that it exists.
    if !session.admin && e.subject.as_deref() != Some(session.subject.as_str()) {
        return Err(not_found());
    }
    let params = e.params.as_ref().map(|p| {
        serde_json::from_str::<serde_json::Value>(p.to_json())
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_else(|_| p.to_json().to_owned())
    });
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "–".to_owned());
    let content = html! {
        dl.detail {
            dt { "When" } dd { (when(e.ts)) }
            dt { "Outcome" } dd { @if e.success { (badge("ok", "ok")) } @else { (badge("failed", "bad")) } }
            dt { "Subject" } dd { (opt(&e.subject)) }
            dt { "Groups" } dd { (e.groups.join(", ")) }
            dt { "Authenticated by" } dd { (opt(&e.auth_type)) }
            dt { "Method" } dd { code { (e.method) } }
            dt { "Connection" } dd { (opt(&e.connection)) }
            dt { "Target" } dd { (opt(&e.target)) }
            dt { "Upstream account" } dd { (opt(&e.token_subject)) }
            dt { "Error" } dd { (opt(&e.error_category)) ": " (opt(&e.error_message)) }
            dt { "Duration" } dd { (format!("{:.1} ms", e.duration_ms)) }
            dt { "Replica" } dd { (e.replica) }
            dt { "Request id" } dd { code { (e.request_id) } }
            dt { "Session" } dd { code { (opt(&e.session)) } }
            dt { "Client address" } dd { (opt(&e.remote_addr)) }
            dt { "User agent" } dd { (opt(&e.user_agent)) }
        }
        h2 { "Parameters (secrets redacted)" }
        @match params {
            Some(p) => pre { code { (p) } },
            None => p.muted { "none recorded" },
        }
        p { a href="/ui/audit" { "Back to the audit log" } }
    };
    Ok(page(
        &session,
        Nav::Audit,
        &format!("Audit event {id}"),
        content,
    ))
}
