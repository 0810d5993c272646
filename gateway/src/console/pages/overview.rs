//! `/ui/`: every connection with its state on each replica, and the last hour's
//! traffic: from the audit log in shared mode, from this replica's memory in
//! embedded mode (see `audit::traffic`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};

use super::{era, replica_state};
use crate::clock::Timestamp;
use crate::console::layout::{Nav, enc, page};
use crate::console::session::Session;
use crate::console::{Console, Error, charts};
use crate::store::{ConnectionState, ConnectionStatus, StoreKind, TrafficBucket};

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

pub async fn show(
    State(console): State<Arc<Console>>,
    session: Session,
) -> Result<Response, Error> {
    let store = &console.admin.store;
    let now = Timestamp::now();
    let mut connections = store.list_connections().await?;
    connections.sort_by(|a, b| a.name.cmp(&b.name));
    let mut status: HashMap<String, Vec<ConnectionStatus>> = HashMap::new();
    for s in store.read_all_status().await? {
        if s.state != ConnectionState::Removed {
            status.entry(s.connection.clone()).or_default().push(s);
        }
    }
    let traffic = if session.admin {
        last_hour(&console, now, None).await?
    } else {
        None
    };
    let content = html! {
        @if session.admin {
            h2 { "Last hour" }
            @if console.traffic.is_some() && traffic.is_some() {
                p.muted { "Calls this gateway forwarded to upstreams, counted in its memory since it started (embedded mode)." }
            } @else if traffic.is_some() {
                p.muted { "Calls of every replica, from the audit log." }
            }
            @match &traffic {
                Some(buckets) => (traffic_cards(buckets, hour_ago(now))),
                None => p.muted { "No traffic figures: see " code { "/metrics" } " for counters." },
            }
        }
        h2 { "Connections (" (connections.len()) ")" }
        @if connections.is_empty() {
            p { "No connections yet." }
        } @else {
            div.table-wrap {
                table {
                    caption.muted { "State on each replica, tools, protocol era and last error" }
                    thead { tr {
                        th scope="col" { "Connection" }
                        th scope="col" { "State" }
                        th scope="col" .num { "Tools" }
                        th scope="col" { "Protocol" }
                        th scope="col" { "Last error" }
                    } }
                    tbody {
                        @for c in &connections {
                            @let rows = status.get(&c.name).map(Vec::as_slice).unwrap_or_default();
                            @let upstream = console.admin.registry.upstream(&c.name);
                            tr {
                                th scope="row" { a href={ "/ui/connection?name=" (enc(&c.name)) } { (c.name) } }
                                td {
                                    @if rows.is_empty() { span.muted { "no replica reported" } }
                                    @for s in rows { (replica_state(s, now)) " " }
                                }
                                td.num { (rows.iter().map(|s| s.tools).max().unwrap_or(0)) }
                                td { (era(upstream.as_deref())) }
                                td {
                                    @if let Some(e) = rows.iter().find_map(|s| s.last_error.as_deref()) {
                                        span.error-text { (e) }
                                    } @else if let Err(e) = &c.spec {
                                        span.error-text { (e) }
                                    } @else { span.muted { "none" } }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&session, Nav::Overview, "Overview", content))
}

/// The last hour's calls per minute (of `connection`, or of all): from this
/// process's memory in embedded mode, from the audit log in shared mode.
pub async fn last_hour(
    console: &Console,
    now: Timestamp,
    connection: Option<&str>,
) -> Result<Option<Vec<TrafficBucket>>, Error> {
    Ok(match (&console.traffic, console.store_kind) {
        (Some(memory), _) => Some(memory.buckets(hour_ago(now), connection)),
        (None, StoreKind::Postgres) => Some(
            console
                .admin
                .store
                .audit_traffic(hour_ago(now), MINUTE, connection)
                .await?,
        ),
        (None, StoreKind::Memory) => None,
    })
}

/// The start of the minute an hour ago (buckets start on whole minutes).
pub fn hour_ago(now: Timestamp) -> Timestamp {
    let ms = now.millis() - HOUR.as_millis() as i64;
    Timestamp::from_millis(ms.div_euclid(60_000) * 60_000)
}

/// Four cards (calls/s, error rate, p50, p99) over one-minute buckets.
pub fn traffic_cards(buckets: &[TrafficBucket], since: Timestamp) -> Markup {
    let start = since.millis();
    let slot =
        |b: &TrafficBucket| usize::try_from((b.start.millis() - start).div_euclid(60_000)).ok();
    let mut by_minute: Vec<Option<&TrafficBucket>> = vec![None; 61];
    for b in buckets {
        if let Some(i) = slot(b).filter(|i| *i < by_minute.len()) {
            by_minute[i] = Some(b);
        }
    }
    let series =
        |f: &dyn Fn(&TrafficBucket) -> Option<f64>, empty: Option<f64>| -> Vec<Option<f64>> {
            by_minute.iter().map(|b| b.map_or(empty, f)).collect()
        };
    let calls: i64 = buckets.iter().map(|b| b.calls).sum();
    let errors: i64 = buckets.iter().map(|b| b.errors).sum();
    let last = buckets.last();
    let rate = series(&|b| Some(b.calls as f64 / 60.0), Some(0.0));
    let error_rate = series(
        &|b| (b.calls > 0).then(|| b.errors as f64 / b.calls as f64 * 100.0),
        None,
    );
    let p50 = series(&|b| b.p50_ms, None);
    let p99 = series(&|b| b.p99_ms, None);
    let ms = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v:.0} ms"));
    html! {
        div.cards {
            div.card {
                h2 { "Calls per second" }
                p.big { (format!("{:.2}", calls as f64 / 3600.0)) }
                p.muted { (calls) " calls in the hour" }
                (charts::line(&rate, "Calls per second, per minute, last hour", false))
            }
            div.card {
                h2 { "Error rate" }
                p.big { @if calls > 0 { (format!("{:.1} %", errors as f64 / calls as f64 * 100.0)) } @else { "–" } }
                p.muted { (errors) " failed" }
                (charts::line(&error_rate, "Error rate in percent, per minute, last hour", true))
            }
            div.card {
                h2 { "Latency p50" }
                p.big { (ms(last.and_then(|b| b.p50_ms))) }
                p.muted { "last minute with calls" }
                (charts::line(&p50, "Median latency, per minute, last hour", false))
            }
            div.card {
                h2 { "Latency p99" }
                p.big { (ms(last.and_then(|b| b.p99_ms))) }
                p.muted { "last minute with calls" }
                (charts::line(&p99, "99th percentile latency, per minute, last hour", false))
            }
        }
    }
}
