//! One module per console page.

pub mod apikeys;
pub mod audit;
pub mod connection;
pub mod consent;
pub mod mine;
pub mod overview;
pub mod policies;
pub mod sessions;

use maud::{Markup, html};

use super::layout::badge;
use crate::clock::Timestamp;
use crate::store::{ConnectionState, ConnectionStatus};

/// One replica's state of a connection as a badge (a stale row says so).
pub fn replica_state(s: &ConnectionStatus, now: Timestamp) -> Markup {
    let stale = now.since(s.updated_at) > crate::admin::STALE_AFTER;
    let tone = match s.state {
        _ if stale => "warn",
        ConnectionState::Ready => "ok",
        ConnectionState::Down | ConnectionState::Invalid => "bad",
        _ => "warn",
    };
    let text = if stale {
        format!("{}: {} (stale)", s.replica, s.state.as_str())
    } else {
        format!("{}: {}", s.replica, s.state.as_str())
    };
    badge(&text, tone)
}

/// The protocol era an upstream speaks, in words.
pub fn era(upstream: Option<&crate::upstream::Upstream>) -> &'static str {
    match upstream.map(|u| u.era()) {
        Some(crate::revision::Era::Modern) => "2026-07-28",
        Some(crate::revision::Era::Legacy) => "2025-11-25 or earlier",
        None => "unknown",
    }
}

/// A hidden CSRF field for a form.
pub fn csrf(session: &super::session::Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf()); }
}
