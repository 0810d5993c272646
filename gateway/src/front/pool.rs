//! Legacy upstream sessions used on behalf of 2026-07-28 clients. Such a client has no
//! session of its own, so each of its requests to a session-based upstream borrows one
//! kept per (connection, caller) on this replica, opened on first use and closed when
//! idle. Nothing about them is stored: a call never waits for Postgres.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use crate::registry::Registry;
use crate::revision;
use crate::store::UpstreamSession;
use crate::upstream::{ClientInit, Upstream, UpstreamError};

struct Pooled {
    session: UpstreamSession,
    used: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Pooled>>>;

/// Upstream sessions per (connection, caller).
pub struct Pool {
    idle: Duration,
    slots: Mutex<HashMap<(String, String), Slot>>,
}

impl Pool {
    pub fn new(idle: Duration) -> Arc<Self> {
        Arc::new(Self {
            idle,
            slots: Mutex::new(HashMap::new()),
        })
    }

    fn slot(&self, connection: &str, subject: &str) -> Slot {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((connection.to_owned(), subject.to_owned()))
            .or_default()
            .clone()
    }

    /// The upstream session `subject` uses towards `upstream`, opened if there is none
    /// (or only one of an older revision of the connection).
    pub async fn get(
        &self,
        upstream: &Arc<Upstream>,
        subject: &str,
        client_info: Option<&RawValue>,
    ) -> Result<UpstreamSession, UpstreamError> {
        let slot = self.slot(upstream.name(), subject);
        let mut guard = slot.lock().await;
        if let Some(pooled) = guard.as_mut()
            && pooled.session.revision == upstream.revision()
        {
            pooled.used = Instant::now();
            return Ok(pooled.session.clone());
        }
        // One of an older revision: ended once its calls are done, and only where it
        // lives (after a URL change it is another server's).
        if let Some(old) = guard.take()
            && old.session.url.is_some()
            && old.session.url == upstream.http_url()
        {
            upstream.close_session_after_calls(old.session);
        }
        let init = ClientInit::new(
            revision::LEGACY[0].to_owned(),
            None,
            client_info.map(ToOwned::to_owned),
        );
        let session = upstream.open_session(&init, Some(subject)).await?;
        tracing::debug!(connection = %upstream.name(), "pooled upstream session opened");
        *guard = Some(Pooled {
            session: session.clone(),
            used: Instant::now(),
        });
        Ok(session)
    }

    /// Marks the session `subject` uses towards `connection` as used now (a parked
    /// call resumed on it).
    pub fn touch(&self, connection: &str, subject: &str) {
        let slot = self.slot(connection, subject);
        if let Ok(mut guard) = slot.try_lock()
            && let Some(pooled) = guard.as_mut()
        {
            pooled.used = Instant::now();
        }
    }

    /// Forgets a session the upstream no longer knows.
    pub async fn forget(&self, upstream: &Upstream, subject: &str, stale: &UpstreamSession) {
        let slot = self.slot(upstream.name(), subject);
        let mut guard = slot.lock().await;
        if guard.as_ref().is_some_and(|p| &p.session == stale) {
            *guard = None;
        }
    }

    /// Closes the sessions unused for the idle time; how many.
    pub fn sweep(&self, registry: &Registry) -> usize {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut closed = 0;
        slots.retain(|(connection, _), slot| {
            // A slot in use (being opened) stays.
            let Ok(mut guard) = slot.try_lock() else {
                return true;
            };
            let idle = guard.as_ref().is_none_or(|p| p.used.elapsed() >= self.idle);
            if idle {
                if let (Some(p), Some(upstream)) = (guard.take(), registry.upstream(connection)) {
                    upstream.close_session(p.session);
                    closed += 1;
                }
                return false;
            }
            true
        });
        closed
    }

    /// Sessions held (for metrics and tests).
    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
