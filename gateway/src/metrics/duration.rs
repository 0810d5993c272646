//! The request-duration histogram, and the trace its observations link to: with
//! tracing on, each bucket keeps the trace ids of its latest sampled request as an
//! OpenMetrics exemplar, so a latency spike on a dashboard leads to a trace.

use std::time::SystemTime;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// The sampled server span an observation came from (an exemplar's labels).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceLabels {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
}

/// One series of `hawser_request_duration_seconds`. Plain with tracing off, so that
/// an observation takes the histogram's lock and nothing else; with exemplars when
/// spans are exported.
#[derive(Clone, Debug)]
pub enum DurationHistogram {
    Plain(Histogram),
    WithExemplars(HistogramWithExemplars<TraceLabels>),
}

fn buckets() -> impl Iterator<Item = f64> {
    // 100 µs … ~105 s
    exponential_buckets(0.0001, 2.0, 21)
}

/// A series without exemplars (tracing off).
pub fn plain() -> DurationHistogram {
    DurationHistogram::Plain(Histogram::new(buckets()))
}

/// A series whose buckets keep their latest sampled trace (tracing on).
pub fn with_exemplars() -> DurationHistogram {
    DurationHistogram::WithExemplars(HistogramWithExemplars::new(buckets()))
}

impl DurationHistogram {
    /// Observes `seconds`; `trace`, of a sampled request, becomes its bucket's
    /// exemplar (dropped by a plain series, which never sees one: unsampled requests
    /// and tracing off pass `None`).
    pub fn observe(&self, seconds: f64, trace: Option<TraceLabels>) {
        match self {
            Self::Plain(h) => h.observe(seconds),
            Self::WithExemplars(h) => {
                let at = trace.as_ref().map(|_| SystemTime::now());
                h.observe(seconds, trace, at);
            }
        }
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        match self {
            Self::Plain(h) => h.encode(encoder),
            Self::WithExemplars(h) => h.encode(encoder),
        }
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}
