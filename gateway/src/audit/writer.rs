//! The audit writer: one task that writes queued events to the store in batches, in
//! the order they were recorded, and keeps the spool's mark of how far they are.
//!
//! With a spool, every event has a sequence number. The writer takes the next one
//! from the queue when it is there, and from the spool when it is not (the queue was
//! full, or a previous process left it), so events are written in sequence and the
//! mark only ever moves over events the store has. When the store is away, batches
//! wait in order and are retried with back-off; the queue fills, and events wait on
//! disk instead. Without a spool, the oldest events are dropped once the buffer is
//! full, counted and logged.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::Auditor;
use super::spool::{self, Spool};
use crate::metrics::Metrics;
use crate::store::{AuditEvent, Error as StoreError, Health, Store};

/// Largest batch written in one statement.
const BATCH: usize = 1000;
/// How long a batch waits for more events before it is written. PostgreSQL spends
/// a few hundred microseconds on each `COPY` besides its rows; at 5,000 events a
/// second this makes batches of about 1,000, which pay that once per 1,000 rows.
/// In shared mode each event is in the spool before its answer leaves, so the wait
/// only delays when it shows in the store.
const GATHER: Duration = Duration::from_millis(200);
/// How often the spool is flushed to disk (the batched fsync) and its mark of what
/// the store has is written. A process that dies loses nothing either way (what it
/// wrote is in the page cache); this bounds what a node crash can take, and how many
/// events a restart writes again (the store keeps one of each).
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// Time the writer keeps trying at shutdown before leaving the rest in the spool.
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(5);

/// An event in the queue: its place in the spool (with one) and the event.
pub struct Queued {
    pub seq: Option<u64>,
    pub event: Box<AuditEvent>,
}

/// The sending end of the writer's queue. Sending does not wake the writer for each
/// event: it drains the queue when its batch's time is up, or as soon as a batch's
/// worth is waiting, so a busy gateway pays one wake-up per batch, not per call.
pub struct Queue {
    tx: mpsc::Sender<Queued>,
    ready: Arc<Notify>,
    /// Events waiting that make the writer look before its time is up.
    enough: usize,
}

impl Queue {
    /// A queue of `capacity` events and the writer's end of it.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Queued>, Arc<Notify>) {
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let ready = Arc::new(Notify::new());
        let queue = Self {
            tx,
            ready: ready.clone(),
            enough: BATCH.min(capacity.div_ceil(2)),
        };
        (queue, rx, ready)
    }

    /// Queues an event; `false` when the queue is full.
    #[must_use]
    pub fn send(&self, queued: Queued) -> bool {
        if self.tx.try_send(queued).is_err() {
            return false;
        }
        if self.tx.max_capacity() - self.tx.capacity() >= self.enough {
            self.ready.notify_one();
        }
        true
    }
}

pub struct Writer {
    store: Arc<dyn Store>,
    /// While the store is known to be away, no write is attempted (each would wait
    /// for the pool's timeout).
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    spool: Option<Arc<Spool>>,
    reader: Option<spool::Reader>,
    /// With a spool: the sequence number of the next event to take (every earlier
    /// one is pending here or in the store).
    next: u64,
    /// Batches not written yet, oldest first.
    pending: VecDeque<Vec<Queued>>,
    buffer_limit: usize,
    /// Times in a row the store refused the oldest batch while answering a ping.
    refusals: u8,
    /// The last sequence number the store has, not yet marked in the spool.
    unmarked: Option<u64>,
    /// A queued event taken out of turn: the spool holds earlier ones still to read.
    held: Option<Queued>,
    auditor: Weak<Auditor>,
}

impl Writer {
    pub fn new(
        store: Arc<dyn Store>,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
        spool: Option<Arc<Spool>>,
        committed: u64,
        buffer_limit: usize,
        auditor: Weak<Auditor>,
    ) -> Self {
        Self {
            store,
            health,
            metrics,
            reader: spool.as_ref().map(|s| s.reader()),
            spool,
            next: committed + 1,
            pending: VecDeque::new(),
            buffer_limit,
            refusals: 0,
            unmarked: None,
            held: None,
            auditor,
        }
    }

    fn pending_len(&self) -> usize {
        self.pending.iter().map(Vec::len).sum()
    }

    /// `hawser_audit_queue_depth`: events recorded and not yet in the store, whether
    /// queued, held here, or waiting in the spool.
    fn show_depth(&self, rx: &mpsc::Receiver<Queued>) {
        let waiting = match &self.spool {
            Some(spool) => spool.next_seq().saturating_sub(self.next) as usize,
            None => rx.len(),
        };
        self.metrics
            .audit_queue
            .set(i64::try_from(waiting + self.pending_len()).unwrap_or(i64::MAX));
    }

    /// Runs until shutdown. `ready` is signalled when a batch's worth waits in `rx`.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Queued>,
        ready: Arc<Notify>,
        shutdown: CancellationToken,
    ) {
        let mut backoff = Duration::from_millis(200);
        let mut synced = tokio::time::Instant::now();
        loop {
            self.show_depth(&rx);
            if self.pending_len() < self.buffer_limit {
                let batch = tokio::select! {
                    b = self.gather(&mut rx, &ready) => b,
                    () = shutdown.cancelled() => break,
                };
                match batch {
                    Some(batch) if !batch.is_empty() => {
                        self.pending.push_back(batch);
                        self.trim();
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            if synced.elapsed() >= SYNC_EVERY {
                self.sync_spool().await;
                synced = tokio::time::Instant::now();
            }
            // Write what is pending, oldest first. A write cut short by shutdown is
            // harmless: the spool still has its events, and the store keeps each once.
            while !self.pending.is_empty() {
                let written = tokio::select! {
                    r = self.write_front() => r,
                    () = shutdown.cancelled() => break,
                };
                match written {
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
                if shutdown.is_cancelled() {
                    break;
                }
            }
            if shutdown.is_cancelled() {
                break;
            }
        }
        self.drain(rx).await;
    }

    /// The next batch: events from the queue, or from the spool where the queue does
    /// not have them, waiting briefly for more. `None` when the queue is closed.
    async fn gather(
        &mut self,
        rx: &mut mpsc::Receiver<Queued>,
        ready: &Notify,
    ) -> Option<Vec<Queued>> {
        let mut batch = Vec::new();
        let mut deadline = tokio::time::Instant::now() + GATHER;
        while batch.len() < BATCH {
            if let Some(q) = self.held.take() {
                self.take(q, &mut batch).await;
                continue;
            }
            // Read the spool's head before the queue: an event numbered below it that
            // the queue does not hold now was never queued (it only went to disk).
            let spooled_up_to = self.spool.as_ref().map(|s| s.next_seq());
            match rx.try_recv() {
                Ok(q) => {
                    self.take(q, &mut batch).await;
                    continue;
                }
                Err(TryRecvError::Disconnected) if batch.is_empty() => return None,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {}
            }
            if let Some(head) = spooled_up_to
                && self.next < head
            {
                self.read_spool(head, &mut batch).await;
                continue;
            }
            if batch.is_empty() && self.pending.is_empty() {
                self.show_depth(rx);
                // Nothing at all: wait for the next event without a deadline.
                match rx.recv().await {
                    Some(q) => self.take(q, &mut batch).await,
                    None => return None,
                }
                deadline = tokio::time::Instant::now() + GATHER;
                continue;
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            // Let events gather in the queue rather than waking for each one.
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = ready.notified() => {}
            }
        }
        Some(batch)
    }

    /// Adds a queued event, after reading from the spool the ones before it that the
    /// queue skipped.
    async fn take(&mut self, q: Queued, batch: &mut Vec<Queued>) {
        let Some(seq) = q.seq else {
            batch.push(q);
            return;
        };
        if seq < self.next {
            return; // Already taken from the spool.
        }
        if seq > self.next {
            self.read_spool(seq, batch).await;
            if self.next < seq {
                // More of the spool comes first; this one waits its turn.
                self.held = Some(q);
                return;
            }
        }
        self.next = seq + 1;
        batch.push(q);
    }

    /// Reads events `self.next..up_to` from the spool into `batch` (at most a batch's
    /// worth more), on a blocking thread.
    async fn read_spool(&mut self, up_to: u64, batch: &mut Vec<Queued>) {
        let (Some(spool), Some(mut reader)) = (self.spool.clone(), self.reader) else {
            return;
        };
        let room = BATCH.saturating_sub(batch.len()).max(1);
        let want = usize::try_from(up_to - self.next).unwrap_or(room).min(room);
        let from = self.next;
        let read = tokio::task::spawn_blocking(move || {
            let events = spool.read(&mut reader, from, want);
            (reader, events)
        })
        .await;
        let events = match read {
            Ok((reader, events)) => {
                self.reader = Some(reader);
                events
            }
            Err(error) => Err(super::spool::SpoolError::Io {
                path: std::path::PathBuf::from("(spool)"),
                source: std::io::Error::other(error.to_string()),
            }),
        };
        match events {
            Ok(events) => {
                let before = self.next;
                for (seq, event) in events {
                    if seq >= up_to {
                        break;
                    }
                    self.next = seq + 1;
                    batch.push(Queued {
                        seq: Some(seq),
                        event: Box::new(event),
                    });
                }
                if self.next == before {
                    // Nothing readable there (a torn or deleted range): skip it, counted.
                    let lost = up_to - self.next;
                    tracing::error!(
                        from = self.next,
                        to = up_to,
                        "audit events missing from the spool"
                    );
                    self.metrics.audit_lost("spool", lost);
                    self.next = up_to;
                }
            }
            Err(error) => {
                tracing::error!(%error, "cannot read the audit spool; skipping what it holds");
                self.metrics.audit_lost("spool", up_to - self.next);
                self.next = up_to;
            }
        }
    }

    /// Writes the oldest pending batch, or makes progress on it: a batch the store
    /// refuses for its data is split in halves, down to the one event at fault, which
    /// goes to the dead-letter table so that it never holds up the others. `Err` when
    /// the store is unreachable (nothing was taken off the queue).
    async fn write_front(&mut self) -> Result<(), StoreError> {
        let Some(front) = self.pending.front() else {
            return Ok(());
        };
        if !self.health.is_up() {
            return Err(StoreError::Unavailable);
        }
        let events: Vec<&AuditEvent> = front.iter().map(|q| &*q.event).collect();
        let written = self.store.write_audit(&events).await;
        drop(events);
        let error = match written {
            Ok(escaped) => {
                let n = self.pending.front().map_or(0, Vec::len);
                self.metrics.audit_batches.inc();
                self.metrics.audit_rows.inc_by(n as u64);
                self.metrics.audit_escaped.inc_by(escaped as u64);
                self.refusals = 0;
                self.done_with_front();
                return Ok(());
            }
            Err(error) if error.is_data() => error,
            // An error the store does not attribute to the data. If the store answers
            // a ping, try once more (the connection may have been a stale one), and
            // then take it as this batch being refused.
            Err(error) => {
                if self.store.ping().await.is_err() {
                    return Err(error);
                }
                self.refusals += 1;
                if self.refusals < 2 {
                    return Ok(());
                }
                error
            }
        };
        self.refusals = 0;
        let Some(mut batch) = self.pending.pop_front() else {
            return Ok(());
        };
        if batch.len() > 1 {
            let second = batch.split_off(batch.len() / 2);
            self.pending.push_front(second);
            self.pending.push_front(batch);
            return Ok(());
        }
        let Some(q) = batch.pop() else {
            return Ok(());
        };
        let reason = error.to_string();
        match self.store.dead_letter_audit(&q.event, &reason).await {
            Ok(()) => {
                tracing::error!(request_id = %q.event.request_id, error = %reason, "audit event refused by the store; kept in audit_dead_letters");
                self.metrics.audit_dead_letters.inc();
            }
            Err(e) if e.is_data() => {
                tracing::error!(request_id = %q.event.request_id, error = %reason, dead_letter_error = %e, "audit event lost: refused by the store and by its dead-letter table");
                self.metrics.audit_lost("unwritable", 1);
            }
            Err(e) => {
                // Unreachable now: keep the event and try again later.
                self.pending.push_front(vec![q]);
                return Err(e);
            }
        }
        self.pending.push_front(vec![q]);
        self.done_with_front();
        Ok(())
    }

    /// The oldest pending batch is in the store (or dead-lettered): forget it; the
    /// spool's mark moves over it at the next sync.
    fn done_with_front(&mut self) {
        let Some(batch) = self.pending.pop_front() else {
            return;
        };
        if let Some(last) = batch.iter().filter_map(|q| q.seq).max() {
            self.unmarked = Some(last);
        }
    }

    /// Flushes the spool to disk and moves its mark over what the store has, on a
    /// blocking thread (fsync takes milliseconds the request path must not wait for).
    async fn sync_spool(&mut self) {
        let Some(spool) = self.spool.clone() else {
            return;
        };
        let mark = self.unmarked.take();
        let done = tokio::task::spawn_blocking(move || {
            spool.sync();
            mark.map(|seq| spool.commit(seq)).transpose()
        })
        .await;
        match done {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot record the audit spool's mark; events may be written twice (the store keeps one)")
            }
            Err(error) => tracing::warn!(%error, "audit spool sync failed"),
        }
    }

    /// Keeps the pending buffer within its limit: without a spool, by dropping the
    /// oldest events (counted); with one, nothing is dropped (the queue stops being
    /// read, and events wait on disk).
    fn trim(&mut self) {
        if self.spool.is_some() {
            return;
        }
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
        if dropped > 0
            && let Some(a) = self.auditor.upgrade()
        {
            a.dropped(dropped);
        }
    }

    /// Shutting down: write what can be written within the budget. What is left waits
    /// in the spool for the next start, or (without one) is counted as lost.
    async fn drain(mut self, mut rx: mpsc::Receiver<Queued>) {
        rx.close();
        let mut rest = Vec::new();
        while let Ok(q) = rx.try_recv() {
            self.take(q, &mut rest).await;
        }
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(BATCH));
            self.pending.push_back(std::mem::replace(&mut rest, tail));
        }
        let deadline = tokio::time::Instant::now() + SHUTDOWN_BUDGET;
        while !self.pending.is_empty() && tokio::time::Instant::now() < deadline {
            match tokio::time::timeout_at(deadline, self.write_front()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => break,
            }
        }
        let left = self.pending_len() as u64;
        self.show_depth(&rx);
        self.sync_spool().await;
        match &self.spool {
            Some(spool) => {
                let waiting = spool.next_seq().saturating_sub(self.next) + left;
                if waiting > 0 {
                    tracing::warn!(
                        events = waiting,
                        "audit events not yet in the store are kept in the spool; they are written at the next start"
                    );
                }
            }
            None if left > 0 => {
                tracing::error!(lost = left, "audit events not written at shutdown");
                self.metrics.audit_lost("shutdown", left);
            }
            None => {}
        }
    }
}
