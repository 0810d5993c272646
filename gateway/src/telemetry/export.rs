//! The OTLP pipeline: exporter (HTTP/protobuf or gRPC), sampler, resource, and the
//! tracer the `tracing` layer records with.

use anyhow::Context as _;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{
    Protocol, WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};

use super::queue::{Batching, Queue, Worker};
use crate::config::{OtlpProtocol, RootSampler, SamplerKind, TracingSettings};

/// A running pipeline; [`Pipeline::shutdown`] exports what is left.
pub struct Pipeline {
    provider: SdkTracerProvider,
    worker: Worker,
    export_timeout: std::time::Duration,
}

impl Pipeline {
    /// Builds the exporter and starts the export task (needs the runtime).
    pub fn start(settings: &TracingSettings, replica: &str) -> anyhow::Result<Self> {
        let endpoint = settings.endpoint.as_str();
        let exporter = match settings.protocol {
            OtlpProtocol::HttpProtobuf => {
                let client = super::transport::http_client(
                    settings.export_timeout,
                    settings.certificate.as_deref(),
                )?;
                opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_http_client(client)
                    .with_endpoint(endpoint)
                    .with_protocol(Protocol::HttpBinary)
                    .with_timeout(settings.export_timeout)
                    .with_retry_policy(opentelemetry_otlp::RetryPolicy::disabled())
                    .build()
            }
            OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                // Hawser's own channel: TLS on the same roots as HTTP and metrics.
                .with_channel(super::transport::grpc_channel(
                    &settings.endpoint,
                    settings.export_timeout,
                    settings.certificate.as_deref(),
                )?)
                .with_endpoint(endpoint)
                .with_protocol(Protocol::Grpc)
                .with_timeout(settings.export_timeout)
                .with_retry_policy(opentelemetry_otlp::RetryPolicy::disabled())
                .build(),
        }
        .with_context(|| format!("setting up the OTLP exporter for {endpoint}"))?;
        let mut exporter = exporter;
        let resource = resource(settings, replica);
        opentelemetry_sdk::trace::SpanExporter::set_resource(&mut exporter, &resource);
        let (queue, worker) = Queue::start(
            exporter,
            Batching {
                queue_size: settings.queue_size,
                batch_size: settings.batch_size,
                interval: settings.export_interval,
                timeout: settings.export_timeout,
            },
        );
        let provider = SdkTracerProvider::builder()
            .with_span_processor(queue)
            .with_sampler(sampler(settings.sampler))
            .with_resource(resource)
            .build();
        Ok(Self {
            provider,
            worker,
            export_timeout: settings.export_timeout,
        })
    }

    /// The tracer spans are recorded with.
    pub fn tracer(&self) -> SdkTracer {
        let scope = opentelemetry::InstrumentationScope::builder("hawser")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        self.provider.tracer_with_scope(scope)
    }

    /// Exports the spans still queued (bounded by the export timeout), then stops.
    pub async fn shutdown(self) {
        self.worker.stop(self.export_timeout).await;
        let _ = self.provider.shutdown();
    }
}

fn sampler(kind: SamplerKind) -> Sampler {
    let root = |r: RootSampler| match r {
        RootSampler::AlwaysOn => Sampler::AlwaysOn,
        RootSampler::AlwaysOff => Sampler::AlwaysOff,
        RootSampler::Ratio(r) => Sampler::TraceIdRatioBased(r),
    };
    match kind {
        SamplerKind::AlwaysOn => Sampler::AlwaysOn,
        SamplerKind::AlwaysOff => Sampler::AlwaysOff,
        SamplerKind::Ratio(r) => Sampler::TraceIdRatioBased(r),
        SamplerKind::ParentBased(r) => Sampler::ParentBased(Box::new(root(r))),
    }
}

fn resource(settings: &TracingSettings, replica: &str) -> Resource {
    let attributes = super::transport::resource_attributes(
        &settings.service_name,
        &settings.resource_attributes,
        replica,
    );
    Resource::builder_empty()
        .with_attributes(attributes.into_iter().map(|(k, v)| KeyValue::new(k, v)))
        .build()
}
