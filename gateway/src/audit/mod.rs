//! The audit log: one event per tools/call, resources/read and prompts/get (and per
//! refused request), kept durably and written off the hot path.
//!
//! A request prepares its event (redaction, content blocks) and, in shared mode,
//! appends it to the local [`spool`] before its answer leaves; then it hands the
//! event to a bounded queue and goes on. The [`writer`] drains the queue in batches
//! (one `COPY` each), marks in the spool how far the store has them, and reads
//! back from the spool what did not fit in the queue or was left by a previous
//! process. An event the store refuses for its content goes to a dead-letter table;
//! every event that is lost anyway is counted by reason and logged.

mod blocks;
pub mod event;
mod redact;
pub mod spool;
pub mod traffic;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

pub use event::{Caller, Outcome};
pub use redact::Redactor;
pub use spool::Spool;

use crate::config::AuditSettings;
use crate::metrics::Metrics;
use crate::store::{AuditEvent, Health, Store};
use writer::{Queue, Queued, Writer};

/// An event as a request hands it over, with its raw parameters and response.
pub struct Record {
    pub event: Box<AuditEvent>,
    /// The request's params as it sent them (already checked to be JSON).
    pub params: Option<Box<serde_json::value::RawValue>>,
    pub response: Option<Bytes>,
}

/// The audit log's front end.
pub struct Auditor {
    tx: Option<Queue>,
    spool: Option<Arc<Spool>>,
    redactor: Redactor,
    metrics: Arc<Metrics>,
    /// Event ids when there is no spool: a random prefix and a counter.
    id_prefix: u64,
    next_id: AtomicU64,
    dropped: AtomicU64,
    last_warning: std::sync::Mutex<Option<Instant>>,
    /// Finishes when the writer has written or spooled what it held (shutdown).
    done: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Auditor {
    /// Starts the writer (when enabled). `spool_dir` is where events wait for the
    /// store (shared mode); without one, events wait in memory only.
    pub fn start(
        settings: AuditSettings,
        store: Arc<dyn Store>,
        health: Arc<Health>,
        spool_dir: Option<PathBuf>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        // Embedded mode writes events as log lines; when that target is filtered out
        // there is nobody to write for, so do not build them.
        let nowhere = store.kind() == crate::store::StoreKind::Memory
            && !tracing::enabled!(target: "hawser::audit", tracing::Level::INFO);
        let redactor = Redactor::new(&settings.redact);
        let mut auditor = Self {
            tx: None,
            spool: None,
            redactor,
            metrics: metrics.clone(),
            id_prefix: rand::random(),
            next_id: AtomicU64::new(1),
            dropped: AtomicU64::new(0),
            last_warning: std::sync::Mutex::new(None),
            done: tokio::sync::Mutex::new(None),
        };
        if !settings.enabled || nowhere {
            return Arc::new(auditor);
        }
        let mut committed = 0;
        if let Some(dir) = spool_dir {
            match Spool::open(&dir, settings.spool_max_bytes) {
                Ok((spool, c)) => {
                    committed = c;
                    let waiting = spool.next_seq().saturating_sub(c + 1);
                    if waiting > 0 {
                        tracing::info!(events = waiting, dir = %dir.display(), "audit events in the spool from before; writing them");
                    }
                    auditor.spool = Some(Arc::new(spool));
                }
                Err(error) => {
                    tracing::error!(%error, "audit spool unusable: events wait in memory only and are lost if the process dies");
                }
            }
        }
        metrics
            .audit_spool_enabled
            .set(i64::from(auditor.spool.is_some()));
        let (tx, rx, ready) = Queue::new(settings.buffer);
        auditor.tx = Some(tx);
        let spool = auditor.spool.clone();
        let auditor = Arc::new(auditor);
        let writer = Writer::new(
            store.clone(),
            health,
            metrics,
            spool,
            committed,
            settings.buffer,
            Arc::downgrade(&auditor),
        );
        let handle = tokio::spawn(writer.run(rx, ready, shutdown.clone()));
        if let Ok(mut done) = auditor.done.try_lock() {
            *done = Some(handle);
        }
        tokio::spawn(sweep(store, settings.retention, shutdown));
        auditor
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Records an event; never waits for the store. With a spool, the event is on
    /// disk when this returns.
    pub fn record(&self, record: Record) {
        let Some(tx) = &self.tx else { return };
        let mut event = event::prepare(record, &self.redactor);
        if let Some(spool) = &self.spool {
            let appended = spool.append(event, |seq, event| {
                let queued = tx.send(Queued {
                    seq: Some(seq),
                    event,
                });
                if !queued {
                    // On disk, not in memory: the writer reads it back from the spool.
                    self.metrics.audit_spilled.inc();
                }
            });
            match appended {
                Ok(()) => return,
                Err(failed) => {
                    let (error, back) = *failed;
                    self.warn(|| tracing::error!(%error, "cannot append to the audit spool; the event waits in memory only"));
                    event = back;
                }
            }
        }
        event.event_id = format!(
            "{:016x}-{}",
            self.id_prefix,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        if !tx.send(Queued { seq: None, event }) {
            self.dropped(1);
        }
    }

    /// Waits until the writer has stopped (after shutdown was asked for): what it
    /// could not write is in the spool, or counted as lost.
    pub async fn finished(&self) {
        if let Some(handle) = self.done.lock().await.take() {
            let _ = handle.await;
        }
    }

    /// Logs at most every 10 s.
    fn warn(&self, log: impl FnOnce()) {
        let mut last = self.last_warning.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            *last = Some(Instant::now());
            log();
        }
    }

    fn dropped(&self, n: u64) {
        self.metrics.audit_lost("buffer_full", n);
        let total = self.dropped.fetch_add(n, Ordering::Relaxed) + n;
        self.warn(|| {
            tracing::warn!(
                dropped_total = total,
                "audit buffer full: audit events dropped"
            )
        });
    }
}

async fn sweep(store: Arc<dyn Store>, retention: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store.sweep_audit(retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "audit retention: old events deleted"),
            Err(error) => tracing::warn!(%error, "audit retention sweep failed"),
        }
    }
}
