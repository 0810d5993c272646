//! The bridged resource subscriptions a replica knows of: which resources each
//! legacy session subscribed to at 2026-07-28-only upstreams (as heard on the replica
//! bus), and which of them this replica relays. [`super::subscribed`] acts on them;
//! [`super::watch`] holds them beside the watches they use.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

use crate::crypto::IdHash;

/// Bridged subscriptions one session may hold.
pub(super) const MAX_PER_SESSION: usize = 64;
/// Sessions with bridged subscriptions one replica remembers.
const MAX_SESSIONS: usize = 16_384;

/// A connection and a resource URI.
pub(super) type Resource = (String, String);

/// The bridged subscriptions of every session (as heard on the bus), and the ones
/// relayed from this replica.
#[derive(Default)]
pub struct Subscribed {
    pub(super) by_session: Mutex<HashMap<IdHash, BTreeSet<Resource>>>,
    pub(super) relaying: Mutex<HashMap<(IdHash, Resource), CancellationToken>>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Subscribed {
    /// Forgets an ended session's subscriptions (its relays stop with the session).
    pub fn forget(&self, session: &IdHash) {
        lock(&self.by_session).remove(session);
        lock(&self.relaying).retain(|(s, _), _| s != session);
    }

    pub(super) fn of(&self, session: &IdHash) -> Vec<Resource> {
        lock(&self.by_session)
            .get(session)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Records a change; whether the session still has room for it.
    pub(super) fn record(&self, session: IdHash, resource: Resource, subscribed: bool) -> bool {
        let mut all = lock(&self.by_session);
        if !subscribed {
            if let Some(set) = all.get_mut(&session) {
                set.remove(&resource);
                if set.is_empty() {
                    all.remove(&session);
                }
            }
            return true;
        }
        if !all.contains_key(&session) && all.len() >= MAX_SESSIONS {
            return false;
        }
        let set = all.entry(session).or_default();
        if !set.contains(&resource) && set.len() >= MAX_PER_SESSION {
            return false;
        }
        set.insert(resource);
        true
    }
}
