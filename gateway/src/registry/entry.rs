//! One connection's entry on this replica: the upstream of its current revision, the
//! previous revision's while the new one dials (make before break), and its state.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::clock::Timestamp;
use crate::store::ConnectionState;
use crate::upstream::Upstream;

/// A connection's last known state on this replica.
#[derive(Debug, Clone)]
pub struct LocalStatus {
    pub state: ConnectionState,
    pub error: Option<String>,
    pub revision: i64,
}

pub(super) struct Entry {
    pub revision: i64,
    /// When the row was written, until this replica serves it (reload lag).
    pub written_at: Option<Timestamp>,
    /// The upstream of this revision; `None` for a connection whose spec is invalid here.
    pub upstream: Option<Arc<Upstream>>,
    pub stop: CancellationToken,
    /// The previous revision's upstream, still serving until `upstream` has its
    /// catalog (make before break), so a change never empties the connection's lists
    /// or fails its calls while the new revision dials.
    pub previous: Option<(Arc<Upstream>, CancellationToken)>,
    pub status: LocalStatus,
}

impl Entry {
    /// The upstream requests go to and the view shows.
    pub fn serving(&self) -> Option<Arc<Upstream>> {
        match (&self.upstream, &self.previous) {
            (Some(current), Some((previous, _))) if current.catalog().is_none() => {
                Some(previous.clone())
            }
            (current, _) => current.clone(),
        }
    }

    /// The new revision takes over (it is ready, or cannot serve: requests then go to
    /// it and fail with its error rather than to a configuration that was replaced);
    /// the previous one finishes its calls.
    pub fn retire_previous(&mut self) {
        if let Some((previous, stop)) = self.previous.take() {
            stop_after_calls(previous, stop);
        }
    }

    /// Stops every upstream of this entry (the connection was deleted, or its new
    /// revision cannot run here); the one that served finishes its calls first.
    pub fn stop_all(self) {
        if let Some((serving, stop)) = self.into_bridge() {
            stop_after_calls(serving, stop);
        }
    }

    /// Stops everything; keeps the upstream that serves (with its stop token) when it
    /// has a catalog, to bridge the next revision.
    pub fn into_bridge(self) -> Option<(Arc<Upstream>, CancellationToken)> {
        let ready = |u: &Arc<Upstream>| u.catalog().is_some();
        match (self.upstream, self.previous) {
            (Some(current), previous) if ready(&current) => {
                if let Some((_, stop)) = previous {
                    stop.cancel();
                }
                Some((current, self.stop))
            }
            (_, Some((previous, previous_stop))) if ready(&previous) => {
                self.stop.cancel();
                Some((previous, previous_stop))
            }
            (_, previous) => {
                self.stop.cancel();
                if let Some((_, stop)) = previous {
                    stop.cancel();
                }
                None
            }
        }
    }
}

/// Stops `upstream` once the calls it may still be running are done: requests routed
/// before the view changed can still reach it, so it is stopped after its call timeout
/// (at most a minute) rather than under them.
fn stop_after_calls(upstream: Arc<Upstream>, stop: CancellationToken) {
    let grace = upstream.drain_grace();
    drop(upstream);
    tokio::spawn(async move {
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(grace) => stop.cancel(),
        }
    });
}
