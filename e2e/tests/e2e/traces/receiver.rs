//! A real OTLP receiver for the tests: over HTTP/protobuf (`/v1/traces`,
//! `/v1/metrics`) or gRPC (the collector services of `opentelemetry-proto`, with TLS
//! when given a certificate), it decodes what the gateway exports and keeps it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
use prost::Message as _;

/// One exported span, flattened.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    pub parent_id: String,
    pub name: String,
    /// 2 server, 3 client (the OTLP enum).
    pub kind: i32,
    pub attributes: BTreeMap<String, String>,
    pub service: String,
}

/// One data point of a pushed metric, flattened.
#[derive(Debug, Clone)]
pub struct Point {
    pub metric: String,
    /// `sum`, `gauge` or `histogram`.
    pub kind: &'static str,
    pub monotonic: bool,
    pub labels: BTreeMap<String, String>,
    /// A number's value; a histogram's count.
    pub value: f64,
    /// A histogram's bounds and counts per bucket.
    pub bounds: Vec<f64>,
    pub buckets: Vec<u64>,
}

/// One metrics push: its resource attributes and points.
#[derive(Debug, Clone, Default)]
pub struct Push {
    pub resource: BTreeMap<String, String>,
    /// The request's `authorization` header (gRPC: metadata), if any.
    pub authorization: Option<String>,
    pub points: Vec<Point>,
    pub at: Option<Instant>,
}

#[derive(Default)]
struct Received {
    spans: Mutex<Vec<Span>>,
    pushes: Mutex<Vec<Push>>,
}

pub struct Receiver {
    received: Arc<Received>,
    /// What `OTEL_EXPORTER_OTLP_ENDPOINT` is set to.
    pub endpoint: String,
    _server: tokio::task::JoinHandle<()>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn value(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn map(attributes: &[KeyValue]) -> BTreeMap<String, String> {
    attributes
        .iter()
        .map(|a| (a.key.clone(), value(a.value.as_ref())))
        .collect()
}

impl Received {
    fn traces(&self, request: ExportTraceServiceRequest) {
        let mut out = Vec::new();
        for rs in request.resource_spans {
            let resource = map(rs.resource.as_ref().map_or(&[][..], |r| &r.attributes));
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for s in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                out.push(Span {
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_id: hex(&s.parent_span_id),
                    name: s.name,
                    kind: s.kind,
                    attributes: map(&s.attributes),
                    service: service.clone(),
                });
            }
        }
        self.spans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(out);
    }

    fn metrics(&self, request: ExportMetricsServiceRequest, authorization: Option<String>) {
        for rm in request.resource_metrics {
            let mut push = Push {
                resource: map(rm.resource.as_ref().map_or(&[][..], |r| &r.attributes)),
                authorization: authorization.clone(),
                points: Vec::new(),
                at: Some(Instant::now()),
            };
            for m in rm.scope_metrics.into_iter().flat_map(|s| s.metrics) {
                let number =
                    |p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint| match p.value {
                        Some(number_data_point::Value::AsInt(i)) => i as f64,
                        Some(number_data_point::Value::AsDouble(d)) => d,
                        None => f64::NAN,
                    };
                let point = |kind, monotonic, labels, value| Point {
                    metric: m.name.clone(),
                    kind,
                    monotonic,
                    labels,
                    value,
                    bounds: Vec::new(),
                    buckets: Vec::new(),
                };
                match &m.data {
                    Some(Data::Sum(s)) => push.points.extend(
                        s.data_points
                            .iter()
                            .map(|p| point("sum", s.is_monotonic, map(&p.attributes), number(p))),
                    ),
                    Some(Data::Gauge(g)) => push.points.extend(
                        g.data_points
                            .iter()
                            .map(|p| point("gauge", false, map(&p.attributes), number(p))),
                    ),
                    Some(Data::Histogram(h)) => {
                        push.points.extend(h.data_points.iter().map(|p| Point {
                            bounds: p.explicit_bounds.clone(),
                            buckets: p.bucket_counts.clone(),
                            ..point("histogram", false, map(&p.attributes), p.count as f64)
                        }))
                    }
                    other => panic!("{}: unexpected data {other:?}", m.name),
                }
            }
            self.pushes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(push);
        }
    }
}

async fn http_traces(State(received): State<Arc<Received>>, body: Bytes) -> &'static str {
    received.traces(
        ExportTraceServiceRequest::decode(body)
            .unwrap_or_else(|e| panic!("not an ExportTraceServiceRequest: {e}")),
    );
    ""
}

async fn http_metrics(
    State(received): State<Arc<Received>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> &'static str {
    received.metrics(
        ExportMetricsServiceRequest::decode(body)
            .unwrap_or_else(|e| panic!("not an ExportMetricsServiceRequest: {e}")),
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    );
    ""
}

#[derive(Clone)]
struct Grpc(Arc<Received>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.traces(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.0.metrics(request.into_inner(), authorization);
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// A server certificate and its key, PEM.
pub struct Tls {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl Receiver {
    /// An OTLP/HTTP receiver.
    pub async fn start() -> Self {
        let received = Arc::new(Received::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let app = Router::new()
            .route("/v1/traces", post(http_traces))
            .route("/v1/metrics", post(http_metrics))
            .with_state(received.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            received,
            endpoint: format!("http://127.0.0.1:{port}"),
            _server: server,
        }
    }

    /// An OTLP receiver on tonic: gRPC and HTTP/protobuf on one port; with `tls`, at
    /// `https://localhost:<port>`.
    pub async fn start_tonic(tls: Option<Tls>) -> Self {
        let received = Arc::new(Received::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let mut builder = tonic::transport::Server::builder().accept_http1(true);
        let endpoint = match &tls {
            Some(tls) => {
                let identity = tonic::transport::Identity::from_pem(&tls.cert, &tls.key);
                builder = builder
                    .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                    .unwrap_or_else(|e| panic!("server TLS: {e}"));
                format!("https://localhost:{port}")
            }
            None => format!("http://127.0.0.1:{port}"),
        };
        let http = Router::new()
            .route("/v1/traces", post(http_traces))
            .route("/v1/metrics", post(http_metrics))
            .with_state(received.clone());
        let routes = tonic::service::Routes::from(http)
            .add_service(TraceServiceServer::new(Grpc(received.clone())))
            .add_service(MetricsServiceServer::new(Grpc(received.clone())));
        let router = builder.add_routes(routes);
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let server = tokio::spawn(async move {
            let _ = router.serve_with_incoming(incoming).await;
        });
        Self {
            received,
            endpoint,
            _server: server,
        }
    }

    /// The spans of `trace_id`, once `done` says they are all there.
    pub async fn trace(&self, trace_id: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        self.spans_where(|s| s.trace_id == trace_id, done).await
    }

    /// The spans `keep` selects, once `done` says they are all there.
    pub async fn spans_where(
        &self,
        keep: impl Fn(&Span) -> bool,
        done: impl Fn(&[Span]) -> bool,
    ) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans: Vec<Span> = self.all().into_iter().filter(|s| keep(s)).collect();
            if done(&spans) {
                return spans;
            }
            assert!(Instant::now() < deadline, "spans incomplete: {spans:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn all(&self) -> Vec<Span> {
        self.received
            .spans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The first push received after `after` (if given) that `done` accepts.
    pub async fn push(&self, after: Option<Instant>, done: impl Fn(&Push) -> bool) -> Push {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self
                .received
                .pushes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find(|p| after.is_none_or(|after| p.at > Some(after)) && done(p))
                .cloned();
            if let Some(push) = found {
                return push;
            }
            let pushes = self
                .received
                .pushes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len();
            assert!(
                Instant::now() < deadline,
                "no such metrics push among {pushes}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Push {
    /// The point of `metric` with exactly `labels`.
    pub fn point(&self, metric: &str, labels: &[(&str, &str)]) -> Option<&Point> {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.points
            .iter()
            .find(|p| p.metric == metric && p.labels == labels)
    }
}
