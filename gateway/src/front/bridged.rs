//! The bridged resource subscriptions this replica relays: which resources a legacy
//! session subscribed to at 2026-07-28-only upstreams are watched from here for its
//! GET stream. What each session subscribed to is kept with the session (in the
//! store, and in [`super::session::ClientSession`] once loaded); [`super::subscribed`]
//! acts on it; [`super::watch`] holds this beside the watches it uses.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

use crate::crypto::IdHash;
use crate::store::ResourceSubscription;

/// Bridged subscriptions one session may hold.
pub(super) const MAX_PER_SESSION: usize = 64;
/// Longest resource URI a bridged subscription keeps (it is stored with the session).
pub(super) const MAX_URI_BYTES: usize = 4096;

/// The relays running on this replica, by session and resource.
#[derive(Default)]
pub struct Subscribed {
    pub(super) relaying: Mutex<HashMap<(IdHash, ResourceSubscription), CancellationToken>>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Subscribed {
    /// Forgets an ended session's relays (they stop with the session).
    pub fn forget(&self, session: &IdHash) {
        lock(&self.relaying).retain(|(s, _), _| s != session);
    }
}
