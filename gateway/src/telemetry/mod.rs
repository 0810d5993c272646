//! Logs, traces and metrics pushed over OTLP. Logs: `RUST_LOG` filters, text or JSON
//! lines on stderr. Traces: OpenTelemetry spans over OTLP, on only when an endpoint
//! is configured (`telemetry.tracing`, `OTEL_EXPORTER_OTLP_ENDPOINT`). Metrics: the
//! `/metrics` series, pushed over OTLP too when asked for (`telemetry.metrics`).

pub mod context;
mod export;
pub mod metrics;
mod queue;
pub mod span;
mod transport;

use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

pub use export::Pipeline;
pub use span::on;

use crate::config::TracingSettings;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

fn env_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the global subscriber for logs. Safe to call more than once (later calls
/// are no-ops).
pub fn init(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}

/// Installs logs and, with `tracing` set, the OTLP pipeline (on the current runtime).
/// Without it this is [`init`]: no exporter, no extra layer, no cost per request.
pub fn init_serving(
    format: LogFormat,
    tracing: Option<&TracingSettings>,
    replica: &str,
) -> anyhow::Result<Option<Pipeline>> {
    let Some(settings) = tracing else {
        init(format);
        return Ok(None);
    };
    let pipeline = Pipeline::start(settings, replica)?;
    // Each layer filters for itself: RUST_LOG says what is logged, and the exported
    // spans are exported whatever it says.
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let spans = tracing_opentelemetry::layer()
        .with_tracer(pipeline.tracer())
        .with_location(false)
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_target(false)
        // Entering a span need not make its context current: parents are set
        // explicitly (`set_parent`), and entering is on every poll of a call.
        .with_context_activation(false)
        .with_filter(tracing_subscriber::filter::filter_fn(exported));
    let installed = tracing_subscriber::registry()
        .with(logs.with_filter(env_filter()))
        .with(spans)
        .try_init();
    if installed.is_err() {
        // Another subscriber came first (tests): tracing stays off.
        return Ok(None);
    }
    span::turn_on(pipeline.tracer());
    tracing::info!(
        endpoint = %settings.endpoint,
        protocol = ?settings.protocol,
        sampler = ?settings.sampler,
        "exporting traces over OTLP"
    );
    Ok(Some(pipeline))
}

/// What the OTLP layer sees: Hawser's own spans (the request's server span is made
/// with the OpenTelemetry API, its children through `tracing`), and warnings and
/// errors logged in them (as span events).
fn exported(meta: &tracing::Metadata<'_>) -> bool {
    if meta.is_span() {
        meta.target() == span::TARGET
    } else {
        *meta.level() <= Level::WARN
    }
}
