//! The audit log: one event per tools/call, resources/read and prompts/get (and per
//! denied request), written off the hot path.
//!
//! Requests hand their event to a bounded queue and go on. A writer task drains it in
//! batches (one INSERT per batch). When the store is away, batches wait in a bounded
//! buffer and are retried in order; only when that buffer is full are the oldest
//! events dropped, counted and logged. Parameter redaction and counting content blocks
//! happen in the writer, not in the request.

pub mod event;
mod redact;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use event::{Caller, Outcome};
pub use redact::Redactor;

use crate::config::AuditSettings;
use crate::metrics::Metrics;
use crate::store::{AuditEvent, Store};

/// Largest batch written in one statement.
const BATCH: usize = 500;
/// Parameters larger than this are summarized instead of stored.
const MAX_PARAMS: usize = 64 * 1024;
/// Responses larger than this are not parsed to count content blocks.
const MAX_PARSED_RESPONSE: usize = 1024 * 1024;

/// An event as a request hands it over: the raw parameters and response are
/// processed later by the writer.
pub struct Record {
    pub event: AuditEvent,
    pub params: Option<Bytes>,
    pub response: Option<Bytes>,
}

/// The audit queue's front end.
pub struct Auditor {
    tx: Option<mpsc::Sender<Record>>,
    metrics: Arc<Metrics>,
    dropped: AtomicU64,
    last_warning: std::sync::Mutex<Option<Instant>>,
}

impl Auditor {
    /// Starts the writer (when enabled).
    pub fn start(
        settings: AuditSettings,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        // Embedded mode writes events as log lines; when that target is filtered out
        // there is nobody to write for, so do not build them.
        let nowhere = store.kind() == crate::store::StoreKind::Memory
            && !tracing::enabled!(target: "hawser::audit", tracing::Level::INFO);
        if !settings.enabled || nowhere {
            return Arc::new(Self {
                tx: None,
                metrics,
                dropped: AtomicU64::new(0),
                last_warning: std::sync::Mutex::new(None),
            });
        }
        let (tx, rx) = mpsc::channel(settings.buffer.max(1));
        let auditor = Arc::new(Self {
            tx: Some(tx),
            metrics: metrics.clone(),
            dropped: AtomicU64::new(0),
            last_warning: std::sync::Mutex::new(None),
        });
        let writer = Writer {
            store: store.clone(),
            metrics,
            redactor: Redactor::new(&settings.redact),
            buffer_limit: settings.buffer,
            pending: VecDeque::new(),
            auditor: Arc::downgrade(&auditor),
        };
        tokio::spawn(writer.run(rx, shutdown.clone()));
        tokio::spawn(sweep(store, settings.retention, shutdown));
        auditor
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues an event; never waits. A full queue drops the event (counted, logged).
    pub fn record(&self, record: Record) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(record) {
            Ok(()) => {
                self.metrics.audit_queue.inc();
            }
            Err(_) => self.dropped(1),
        }
    }

    fn dropped(&self, n: u64) {
        self.metrics.audit_lost("buffer_full", n);
        let total = self.dropped.fetch_add(n, Ordering::Relaxed) + n;
        let mut last = self.last_warning.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            *last = Some(Instant::now());
            tracing::warn!(
                dropped_total = total,
                "audit buffer full: audit events dropped"
            );
        }
    }
}

struct Writer {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    redactor: Redactor,
    buffer_limit: usize,
    /// Batches that could not be written yet, oldest first.
    pending: VecDeque<Vec<AuditEvent>>,
    auditor: std::sync::Weak<Auditor>,
}

impl Writer {
    fn pending_len(&self) -> usize {
        self.pending.iter().map(Vec::len).sum()
    }

    fn finish(&self, record: Record) -> AuditEvent {
        let mut event = record.event;
        if let Some(raw) = record.params {
            event.params = Some(if raw.len() > MAX_PARAMS {
                crate::store::AuditParams::Value(
                    serde_json::json!({"truncated": true, "bytes": raw.len()}),
                )
            } else if !self.redactor.may_need(&raw) {
                // Nothing to redact: stored as sent, without decoding it here.
                crate::store::AuditParams::Raw(String::from_utf8_lossy(&raw).into_owned())
            } else {
                match serde_json::from_slice::<serde_json::Value>(&raw) {
                    Ok(mut v) => {
                        self.redactor.redact(&mut v);
                        crate::store::AuditParams::Value(v)
                    }
                    Err(_) => {
                        crate::store::AuditParams::Value(serde_json::json!({"unparseable": true}))
                    }
                }
            });
        }
        if let Some(response) = record.response
            && response.len() <= MAX_PARSED_RESPONSE
            && let Some((blocks, is_error)) = inspect(&response)
        {
            event.content_blocks = blocks;
            // A tool that reports failure in its result failed, even though the
            // protocol exchange succeeded.
            if is_error && event.success {
                event.success = false;
                event.error_category = Some("upstream".into());
                event.error_message = Some("the tool reported an error (isError)".into());
            }
        }
        event
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Record>, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        loop {
            // Gather a batch: whatever is queued, waiting briefly for more.
            let mut batch = Vec::new();
            if self.pending.is_empty() {
                let first = tokio::select! {
                    r = rx.recv() => r,
                    () = shutdown.cancelled() => None,
                };
                let Some(first) = first else { break };
                batch.push(first);
            }
            let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
            while batch.len() < BATCH {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(r)) => batch.push(r),
                    _ => break,
                }
            }
            if !batch.is_empty() {
                let events: Vec<AuditEvent> = batch.into_iter().map(|r| self.finish(r)).collect();
                self.pending.push_back(events);
                self.trim();
            }
            // Write what is pending, oldest first.
            while !self.pending.is_empty() {
                match self.write_front().await {
                    Ok(()) => backoff = Duration::from_millis(200),
                    Err(error) => {
                        tracing::warn!(%error, pending = self.pending_len(), "cannot write audit events; keeping them");
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {}
                            () = shutdown.cancelled() => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        break;
                    }
                }
            }
        }
        // Shutting down: one last attempt for what is left.
        while !self.pending.is_empty() {
            if let Err(error) = self.write_front().await {
                let lost = self.pending_len();
                tracing::error!(%error, lost, "audit events not written at shutdown");
                self.metrics.audit_lost("shutdown", lost as u64);
                self.metrics.audit_queue.dec_by(lost as i64);
                self.pending.clear();
            }
        }
    }

    /// Writes the oldest pending batch, or makes progress on it: a batch the store
    /// refuses for its data is split in halves, down to the one event at fault, which
    /// goes to the dead-letter table so that it never holds up the others. `Err` when
    /// the store is unreachable (nothing was taken off the queue).
    async fn write_front(&mut self) -> Result<(), crate::store::Error> {
        let Some(front) = self.pending.front() else {
            return Ok(());
        };
        let error = match self.store.write_audit(front).await {
            Ok(escaped) => {
                let n = front.len();
                self.metrics.audit_batches.inc();
                self.metrics.audit_rows.inc_by(n as u64);
                self.metrics.audit_escaped.inc_by(escaped as u64);
                self.metrics.audit_queue.dec_by(n as i64);
                self.pending.pop_front();
                return Ok(());
            }
            Err(error) if error.is_data() => error,
            // An error the store does not attribute to the data: if the store answers
            // otherwise, it is this batch it refuses after all.
            Err(error) => match self.store.ping().await {
                Ok(()) => error,
                Err(_) => return Err(error),
            },
        };
        let Some(mut batch) = self.pending.pop_front() else {
            return Ok(());
        };
        if batch.len() > 1 {
            let second = batch.split_off(batch.len() / 2);
            self.pending.push_front(second);
            self.pending.push_front(batch);
            return Ok(());
        }
        let Some(event) = batch.pop() else {
            return Ok(());
        };
        let reason = error.to_string();
        match self.store.dead_letter_audit(&event, &reason).await {
            Ok(()) => {
                tracing::error!(request_id = %event.request_id, error = %reason, "audit event refused by the store; kept in audit_dead_letters");
                self.metrics.audit_dead_letters.inc();
            }
            Err(e) if e.is_data() => {
                tracing::error!(request_id = %event.request_id, error = %reason, dead_letter_error = %e, "audit event lost: refused by the store and by its dead-letter table");
                self.metrics.audit_lost("unwritable", 1);
            }
            Err(e) => {
                // Unreachable now: keep the event and try again later.
                self.pending.push_front(vec![event]);
                return Err(e);
            }
        }
        self.metrics.audit_queue.dec();
        Ok(())
    }

    /// Keeps the pending buffer within its limit by dropping the oldest events.
    fn trim(&mut self) {
        let mut over = self.pending_len().saturating_sub(self.buffer_limit);
        let mut dropped = 0;
        while over > 0 {
            let Some(front) = self.pending.front_mut() else {
                break;
            };
            let n = over.min(front.len());
            front.drain(..n);
            if front.is_empty() {
                self.pending.pop_front();
            }
            over -= n;
            dropped += n as u64;
        }
        if dropped > 0 {
            self.metrics.audit_queue.dec_by(dropped as i64);
            if let Some(a) = self.auditor.upgrade() {
                a.dropped(dropped);
            }
        }
    }
}

/// Number of content blocks of a tools/call, prompts/get or resources/read result
/// (`content`, `messages`, `contents`), and whether a tool result says `isError`.
fn inspect(response: &[u8]) -> Option<(Option<i32>, bool)> {
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        result: Option<&'a serde_json::value::RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct Counted {
        content: Option<Vec<serde::de::IgnoredAny>>,
        messages: Option<Vec<serde::de::IgnoredAny>>,
        contents: Option<Vec<serde::de::IgnoredAny>>,
        #[serde(rename = "isError", default)]
        is_error: bool,
    }
    let env: Envelope<'_> = serde_json::from_slice(response).ok()?;
    let c: Counted = serde_json::from_str(env.result?.get()).ok()?;
    let blocks = c
        .content
        .or(c.messages)
        .or(c.contents)
        .map(|v| i32::try_from(v.len()).unwrap_or(i32::MAX));
    Some((blocks, c.is_error))
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

#[cfg(test)]
mod tests {
    #[test]
    fn counts_content_blocks() {
        assert_eq!(
            super::inspect(br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"a"},{"type":"image"}]}}"#),
            Some((Some(2), false))
        );
        assert_eq!(
            super::inspect(br#"{"jsonrpc":"2.0","id":1,"result":{"messages":[{}]}}"#),
            Some((Some(1), false))
        );
        assert_eq!(
            super::inspect(br#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}}"#),
            Some((Some(0), true))
        );
        assert_eq!(
            super::inspect(br#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}"#),
            None
        );
    }
}
