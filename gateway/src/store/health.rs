//! Whether the store answers, known without asking it on the request path: a
//! background probe pings it every second and requests read the last answer, so a
//! request never waits for an unreachable store to time out.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Error, Result, Store};

/// How often the store is probed, and how long a probe may take.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Longest wait for the store on a request's path: beyond it the request is answered
/// without the store (or with 503 and `Retry-After`).
pub const REQUEST_BUDGET: Duration = Duration::from_secs(1);

/// The store's last known reachability.
pub struct Health {
    up: AtomicBool,
}

impl Health {
    /// Starts probing `store` until `shutdown`.
    pub fn spawn(store: Arc<dyn Store>, shutdown: CancellationToken) -> Arc<Self> {
        let health = Arc::new(Self {
            up: AtomicBool::new(true),
        });
        let h = health.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROBE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let answer = tokio::time::timeout(PROBE_EVERY, store.ping()).await;
                let up = matches!(answer, Ok(Ok(())));
                let was = h.up.swap(up, Ordering::Relaxed);
                match (was, up) {
                    (true, false) => tracing::warn!(
                        error = %answer.map_or_else(|_| "no answer within 1s".to_owned(), |r| r.err().map(|e| e.to_string()).unwrap_or_default()),
                        "store unreachable"
                    ),
                    (false, true) => tracing::info!("store reachable again"),
                    _ => {}
                }
            }
        });
        health
    }

    /// Always up (the in-memory store, tests).
    pub fn always_up() -> Arc<Self> {
        Arc::new(Self {
            up: AtomicBool::new(true),
        })
    }

    /// Whether the last probe was answered.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Runs a store operation on a request's path: at once [`Error::Unavailable`] when
    /// the store is known to be down, and never longer than [`REQUEST_BUDGET`].
    pub async fn within_budget<T>(
        &self,
        operation: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        if !self.is_up() {
            return Err(Error::Unavailable);
        }
        match tokio::time::timeout(REQUEST_BUDGET, operation).await {
            Ok(result) => result,
            Err(_) => {
                self.up.store(false, Ordering::Relaxed);
                Err(Error::Unavailable)
            }
        }
    }
}
