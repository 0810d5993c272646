//! Metrics over OTLP: every `telemetry.metrics.exportInterval` a task reads the
//! `/metrics` exposition, turns it into OTLP metrics ([`convert`]) and pushes them to
//! the collector over HTTP/protobuf or gRPC. Requests never wait for it; one push is
//! in flight at a time and nothing is queued, so a collector that is away costs a
//! failed push per interval, counted in `hawser_metric_exports_total{outcome}` and
//! logged once per outage.

mod convert;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::transport;
use crate::config::{MetricsExportSettings, OtlpProtocol};
use crate::metrics::Metrics;

/// How pushes reach the collector.
enum Transport {
    Http {
        client: reqwest::Client,
        url: Url,
        headers: reqwest::header::HeaderMap,
    },
    Grpc {
        client: MetricsServiceClient<tonic::transport::Channel>,
        headers: tonic::metadata::MetadataMap,
    },
}

/// Why a push did not land.
#[derive(Debug, thiserror::Error)]
enum PushError {
    /// The collector is away, refused the request, or did not answer in time.
    #[error("{0}")]
    Failed(String),
    /// The collector took the request and refused some of its points.
    #[error("the collector rejected {points} data points: {message}")]
    Rejected { points: i64, message: String },
}

impl PushError {
    fn metric_label(&self) -> &'static str {
        match self {
            Self::Failed(_) => "failed",
            Self::Rejected { .. } => "rejected",
        }
    }
}

/// The pushing task.
pub struct Exporter {
    transport: Transport,
    resource: Resource,
    metrics: Arc<Metrics>,
    interval: Duration,
    timeout: Duration,
}

impl Exporter {
    /// Builds the transport; the caller [`run`](Self::run)s it (on the runtime).
    pub fn new(
        settings: &MetricsExportSettings,
        replica: &str,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let ca = settings.certificate.as_deref();
        let transport = match settings.protocol {
            OtlpProtocol::HttpProtobuf => {
                let mut headers = reqwest::header::HeaderMap::new();
                for (name, value) in &settings.headers.0 {
                    // Checked when the settings were resolved.
                    if let (Ok(name), Ok(value)) = (
                        reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                        reqwest::header::HeaderValue::from_str(value),
                    ) {
                        headers.append(name, value);
                    }
                }
                Transport::Http {
                    client: transport::http_client(settings.timeout, ca)?,
                    url: settings.endpoint.clone(),
                    headers,
                }
            }
            OtlpProtocol::Grpc => {
                let mut headers = tonic::metadata::MetadataMap::new();
                for (name, value) in &settings.headers.0 {
                    if let (Ok(name), Ok(value)) = (
                        tonic::metadata::MetadataKey::from_bytes(name.as_bytes()),
                        value.parse(),
                    ) {
                        headers.append(name, value);
                    }
                }
                let channel = transport::grpc_channel(&settings.endpoint, settings.timeout, ca)?;
                Transport::Grpc {
                    client: MetricsServiceClient::new(channel),
                    headers,
                }
            }
        };
        let attributes = transport::resource_attributes(
            &settings.service_name,
            &settings.resource_attributes,
            replica,
        );
        Ok(Self {
            transport,
            resource: Resource {
                attributes: attributes
                    .into_iter()
                    .map(|(key, value)| string(key, value))
                    .collect(),
                ..Resource::default()
            },
            metrics,
            interval: settings.interval,
            timeout: settings.timeout,
        })
    }

    /// Pushes every interval until `stop` (the gateway starts to stop), then once
    /// more, bounded by the timeout: best effort, the process may end first.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + self.interval, self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            self.push_once(&mut failing).await;
        }
        self.push_once(&mut failing).await;
    }

    async fn push_once(&mut self, failing: &mut bool) {
        let request = self.request();
        let result = match tokio::time::timeout(self.timeout, self.push(request)).await {
            Ok(result) => result,
            Err(_) => Err(PushError::Failed(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        };
        let outcome = match &result {
            Ok(()) => "ok",
            Err(e) => e.metric_label(),
        };
        self.metrics.metric_export(outcome);
        match result {
            Ok(()) => {
                if std::mem::take(failing) {
                    tracing::info!("the metrics collector accepts pushes again");
                }
            }
            Err(error) => {
                // Once per outage, not once per interval.
                if !std::mem::replace(failing, true) {
                    tracing::warn!(%error, "cannot push metrics over OTLP; trying again every interval (hawser_metric_exports_total)");
                }
            }
        }
    }

    /// What `/metrics` shows now, as one OTLP request.
    fn request(&self) -> ExportMetricsServiceRequest {
        let nanos = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        };
        let times = convert::Times {
            start: nanos(self.metrics.created),
            now: nanos(SystemTime::now()),
        };
        let metrics = convert::metrics(&self.metrics.render(), times);
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "hawser".to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        ..InstrumentationScope::default()
                    }),
                    metrics,
                    ..ScopeMetrics::default()
                }],
                ..ResourceMetrics::default()
            }],
        }
    }

    async fn push(&mut self, request: ExportMetricsServiceRequest) -> Result<(), PushError> {
        let response = match &mut self.transport {
            Transport::Http {
                client,
                url,
                headers,
            } => {
                let reply = client
                    .post(url.clone())
                    .headers(headers.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
                    .body(request.encode_to_vec())
                    .send()
                    .await
                    .map_err(|e| PushError::Failed(error_chain(&e)))?;
                let status = reply.status();
                if !status.is_success() {
                    return Err(PushError::Failed(format!(
                        "the collector answered {status}"
                    )));
                }
                let body = reply.bytes().await.unwrap_or_default();
                ExportMetricsServiceResponse::decode(body).unwrap_or_default()
            }
            Transport::Grpc { client, headers } => {
                let mut call = tonic::Request::new(request);
                *call.metadata_mut() = headers.clone();
                client
                    .export(call)
                    .await
                    .map_err(|status| {
                        PushError::Failed(format!("{:?}: {}", status.code(), status.message()))
                    })?
                    .into_inner()
            }
        };
        match response.partial_success {
            Some(partial) if partial.rejected_data_points > 0 => Err(PushError::Rejected {
                points: partial.rejected_data_points,
                message: partial.error_message,
            }),
            _ => Ok(()),
        }
    }
}

/// An error and its causes (reqwest's own text leaves out why a connection failed).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

fn string(key: String, value: String) -> KeyValue {
    KeyValue {
        key,
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..KeyValue::default()
    }
}

/// Starts pushing `metrics` as `settings` say, until `stop`.
pub fn spawn(
    settings: &MetricsExportSettings,
    replica: &str,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let exporter = Exporter::new(settings, replica, metrics)?;
    tracing::info!(
        endpoint = %settings.endpoint,
        protocol = ?settings.protocol,
        interval = ?settings.interval,
        "pushing metrics over OTLP"
    );
    Ok(tokio::spawn(exporter.run(stop)))
}
