//! The batch span processor: finished spans go into a bounded queue that a task on
//! the gateway's runtime empties in batches. A request never waits for the
//! collector: when the queue is full the span is dropped, and when an export fails
//! (the collector refused it, is away, or did not answer in time) its batch is
//! dropped; both are counted in `hawser_trace_spans_dropped_total`.
//!
//! The SDK's own batch processor runs exports on a thread of its own with a blocking
//! executor, which neither the async HTTP client nor tonic can run on, and keeps its
//! drop count to itself.

use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::{ReasonLabels, TraceCounters, trace_counters};

/// Sizes and times of the queue.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    pub queue_size: usize,
    pub batch_size: usize,
    pub interval: Duration,
    pub timeout: Duration,
}

/// The [`SpanProcessor`] the tracer provider calls for each finished span.
#[derive(Debug)]
pub struct Queue {
    tx: mpsc::Sender<SpanData>,
}

/// The task exporting what the queue holds.
pub struct Worker {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Queue {
    /// Starts the export task on the current runtime.
    pub fn start<E: SpanExporter + 'static>(exporter: E, batching: Batching) -> (Self, Worker) {
        let (tx, rx) = mpsc::channel(batching.queue_size);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(exporter, rx, batching, stop.clone()));
        (Self { tx }, Worker { stop, task })
    }
}

impl SpanProcessor for Queue {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.tx.try_send(span).is_err() {
            dropped(trace_counters(), "queue_full", 1);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    /// The worker drains the queue when [`Worker::stop`] is awaited; nothing to wait
    /// for here (this is called from synchronous code, possibly on the runtime's only
    /// thread).
    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

impl Worker {
    /// Exports what is queued (at most `within`), then stops.
    pub async fn stop(self, within: Duration) {
        self.stop.cancel();
        let mut task = self.task;
        if tokio::time::timeout(within, &mut task).await.is_err() {
            task.abort();
        }
    }
}

fn dropped(counters: &TraceCounters, reason: &'static str, n: usize) {
    counters
        .dropped
        .get_or_create(&ReasonLabels { reason })
        .inc_by(n as u64);
}

async fn run<E: SpanExporter>(
    exporter: E,
    mut rx: mpsc::Receiver<SpanData>,
    batching: Batching,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(batching.batch_size);
    let mut tick = tokio::time::interval(batching.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        let room = batching.batch_size - batch.len();
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            n = rx.recv_many(&mut batch, room) => {
                if n == 0 {
                    break;
                }
                if batch.len() < batching.batch_size {
                    continue;
                }
            }
            _ = tick.tick() => {
                if batch.is_empty() {
                    continue;
                }
            }
        }
        export(&exporter, &mut batch, batching.timeout, &mut failing).await;
        tick.reset();
    }
    // Stopping: what is queued goes out too, in batches.
    rx.close();
    while let Ok(span) = rx.try_recv() {
        batch.push(span);
        if batch.len() == batching.batch_size {
            export(&exporter, &mut batch, batching.timeout, &mut failing).await;
        }
    }
    if !batch.is_empty() {
        export(&exporter, &mut batch, batching.timeout, &mut failing).await;
    }
    let _ = exporter.shutdown();
}

async fn export<E: SpanExporter>(
    exporter: &E,
    batch: &mut Vec<SpanData>,
    timeout: Duration,
    failing: &mut bool,
) {
    let n = batch.len();
    let spans = std::mem::replace(batch, Vec::with_capacity(n));
    let counters = trace_counters();
    let error = match tokio::time::timeout(timeout, exporter.export(spans)).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {timeout:?}")),
    };
    match error {
        None => {
            counters.exported.inc_by(n as u64);
            if std::mem::take(failing) {
                tracing::info!("the trace collector accepts spans again");
            }
        }
        Some(error) => {
            dropped(counters, "export_failed", n);
            // Once per outage, not once per batch.
            if !std::mem::replace(failing, true) {
                tracing::warn!(%error, spans = n, "cannot export trace spans; dropping them until the collector answers (hawser_trace_spans_dropped_total)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, TraceFlags, TraceId, TraceState};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};

    use super::*;

    #[derive(Debug, Clone, Default)]
    struct Sink {
        fail: bool,
        seen: Arc<AtomicUsize>,
    }

    impl SpanExporter for Sink {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            if self.fail {
                return Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                    "collector away".into(),
                ));
            }
            self.seen.fetch_add(batch.len(), Ordering::Relaxed);
            Ok(())
        }
    }

    fn span(sampled: bool) -> SpanData {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(7u128),
                SpanId::from(7u64),
                flags,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: "t".into(),
            start_time: std::time::SystemTime::now(),
            end_time: std::time::SystemTime::now(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: opentelemetry::trace::Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }

    fn batching(queue_size: usize) -> Batching {
        Batching {
            queue_size,
            batch_size: queue_size.min(4),
            interval: Duration::from_secs(3600),
            timeout: Duration::from_secs(1),
        }
    }

    fn reason(r: &'static str) -> u64 {
        trace_counters()
            .dropped
            .get_or_create(&ReasonLabels { reason: r })
            .get()
    }

    #[tokio::test]
    async fn full_batches_go_out_at_once_and_the_rest_on_stop() {
        let sink = Sink::default();
        let (queue, worker) = Queue::start(sink.clone(), batching(16));
        for _ in 0..6 {
            queue.on_end(span(true));
        }
        queue.on_end(span(false));
        // A full batch (4) does not wait for the interval.
        for _ in 0..100 {
            if sink.seen.load(Ordering::Relaxed) >= 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(sink.seen.load(Ordering::Relaxed), 4);
        worker.stop(Duration::from_secs(1)).await;
        assert_eq!(
            sink.seen.load(Ordering::Relaxed),
            6,
            "unsampled spans are not sent"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_queue_and_a_failed_export_drop_and_count() {
        let (full, failed) = (reason("queue_full"), reason("export_failed"));
        let sink = Sink {
            fail: true,
            ..Sink::default()
        };
        let (queue, worker) = Queue::start(sink, batching(2));
        // The worker has not run yet (one thread): the third span finds the queue full.
        for _ in 0..3 {
            queue.on_end(span(true));
        }
        assert!(reason("queue_full") > full);
        worker.stop(Duration::from_secs(1)).await;
        assert!(reason("export_failed") >= failed + 2);
    }
}
