//! Whether the store answers, known without asking it on the request path: a
//! background probe pings it every second and requests read the last answer, so a
//! request never waits for an unreachable store to time out.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
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
    /// `hawser_store_up`: follows `up` wherever it is recorded.
    gauge: Gauge,
}

impl Health {
    /// Starts probing `store` until `shutdown`; `gauge` (`hawser_store_up`) follows
    /// each answer.
    pub fn spawn(store: Arc<dyn Store>, gauge: Gauge, shutdown: CancellationToken) -> Arc<Self> {
        let health = Self::new(gauge);
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
                let was = h.record(up);
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
        Self::new(Gauge::default())
    }

    fn new(gauge: Gauge) -> Arc<Self> {
        gauge.set(1);
        Arc::new(Self {
            up: AtomicBool::new(true),
            gauge,
        })
    }

    /// Records whether the store answered; returns whether it was up before.
    fn record(&self, up: bool) -> bool {
        self.gauge.set(i64::from(up));
        self.up.swap(up, Ordering::Relaxed)
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
                self.record(false);
                Err(Error::Unavailable)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn a_store_operation_over_budget_marks_the_store_down() {
        let gauge = Gauge::default();
        let health = Health::new(gauge.clone());
        assert_eq!(gauge.get(), 1);
        let late = health
            .within_budget(std::future::pending::<Result<()>>())
            .await;
        assert!(matches!(late, Err(Error::Unavailable)));
        assert!(!health.is_up());
        assert_eq!(gauge.get(), 0);
    }

    #[tokio::test]
    async fn the_probe_brings_the_gauge_back_when_the_store_answers() {
        let gauge = Gauge::default();
        let shutdown = CancellationToken::new();
        let health = Health::spawn(
            Arc::new(MemoryStore::new()),
            gauge.clone(),
            shutdown.clone(),
        );
        assert_eq!(gauge.get(), 1);
        health.record(false);
        assert_eq!(gauge.get(), 0);
        let deadline = tokio::time::Instant::now() + 3 * PROBE_EVERY;
        while gauge.get() == 0 {
            assert!(tokio::time::Instant::now() < deadline, "no probe answered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(health.is_up());
        shutdown.cancel();
    }
}
