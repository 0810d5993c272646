//! `telemetry.metrics`: the series `/metrics` serves, also pushed over OTLP. Off
//! unless asked for (`OTEL_METRICS_EXPORTER=otlp`, a metrics endpoint, or
//! `telemetry.metrics.enabled`): `/metrics` is always there, and a deployment that
//! only sets `OTEL_EXPORTER_OTLP_ENDPOINT` for traces gets no second copy of its
//! series.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::super::env::Env;
use super::super::{ConfigError, invalid};
use super::{
    OtlpProtocol, RawTracing, Signal, certificate, endpoint, millis, parse_resource_attributes,
    protocol, resource, sdk_disabled,
};

/// `telemetry.metrics:`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawMetrics {
    /// Push over OTLP (default: only when a metrics endpoint is given).
    pub enabled: Option<bool>,
    /// The collector's base URL; over HTTP metrics go to `<endpoint>/v1/metrics`.
    /// Default: `telemetry.tracing.endpoint`.
    pub endpoint: Option<String>,
    /// The full URL metrics are sent to (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`).
    pub metrics_endpoint: Option<String>,
    /// `http/protobuf` or `grpc`; default: `telemetry.tracing.protocol`.
    pub protocol: Option<String>,
    /// How often the series are pushed (`OTEL_METRIC_EXPORT_INTERVAL`).
    pub export_interval: Option<hawser_crds::Duration>,
    /// How long one push may take (`OTEL_EXPORTER_OTLP_METRICS_TIMEOUT`).
    pub export_timeout: Option<hawser_crds::Duration>,
    /// Extra CAs for an `https://` collector; default: `telemetry.tracing.certificate`.
    pub certificate: Option<PathBuf>,
}

/// Metrics over OTLP, resolved: present only when on.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsExportSettings {
    /// The full metrics URL for HTTP, the collector for gRPC.
    pub endpoint: Url,
    pub protocol: OtlpProtocol,
    pub interval: Duration,
    pub timeout: Duration,
    pub service_name: String,
    /// Resource attributes besides `service.name`.
    pub resource_attributes: BTreeMap<String, String>,
    /// Sent with every push (`OTEL_EXPORTER_OTLP_HEADERS`): often a credential.
    pub headers: ExportHeaders,
    /// Extra CAs for an `https://` collector.
    pub certificate: Option<PathBuf>,
}

/// Headers sent with each export; their values never appear in `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ExportHeaders(pub Vec<(String, String)>);

impl std::fmt::Debug for ExportHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| format!("{name}: <redacted>")))
            .finish()
    }
}

/// The OpenTelemetry SDK's defaults.
pub const DEFAULT_METRIC_EXPORT_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_METRIC_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

const METRICS: Signal = Signal {
    var: "METRICS",
    section: "telemetry.metrics",
    url_key: "metricsEndpoint",
    path: "/v1/metrics",
};

/// Resolves `telemetry.metrics`; where it says nothing of the collector,
/// `telemetry.tracing` (`tracing`) does.
pub(super) fn resolve(
    raw: RawMetrics,
    tracing: &RawTracing,
    env: &dyn Env,
) -> Result<Option<MetricsExportSettings>, ConfigError> {
    if sdk_disabled(env) || !asked_for(env, &raw)? {
        return Ok(None);
    }
    let protocol = protocol(
        env,
        &METRICS,
        raw.protocol.or_else(|| tracing.protocol.clone()),
    )?;
    let base = raw.endpoint.or_else(|| tracing.endpoint.clone());
    let Some(endpoint) = endpoint(env, &METRICS, base, raw.metrics_endpoint, protocol)? else {
        return Err(invalid(
            "telemetry.metrics.endpoint",
            "metrics export is on but no collector is named: set OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_METRICS_ENDPOINT or telemetry.metrics.endpoint",
        ));
    };
    let (service_name, resource_attributes) = resource(
        env,
        tracing.service_name.clone(),
        tracing.resource_attributes.clone(),
    )?;
    let interval = millis(env, "OTEL_METRIC_EXPORT_INTERVAL")?
        .or(raw.export_interval.map(|d| d.get()))
        .unwrap_or(DEFAULT_METRIC_EXPORT_INTERVAL);
    let timeout = millis(env, "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT")?
        .or(millis(env, "OTEL_EXPORTER_OTLP_TIMEOUT")?)
        .or(millis(env, "OTEL_METRIC_EXPORT_TIMEOUT")?)
        .or(raw.export_timeout.map(|d| d.get()))
        .unwrap_or(DEFAULT_METRIC_EXPORT_TIMEOUT);
    Ok(Some(MetricsExportSettings {
        endpoint,
        protocol,
        interval,
        timeout,
        service_name,
        resource_attributes,
        headers: headers(env)?,
        certificate: certificate(
            env,
            &METRICS,
            raw.certificate.or_else(|| tracing.certificate.clone()),
        )?,
    }))
}

/// Whether metrics are pushed: `OTEL_METRICS_EXPORTER` says so, else the file, else
/// whether a metrics endpoint is given.
fn asked_for(env: &dyn Env, raw: &RawMetrics) -> Result<bool, ConfigError> {
    if let Some(list) = env.var("OTEL_METRICS_EXPORTER") {
        let mut otlp = false;
        for name in list.split(',').map(str::trim) {
            match name {
                "otlp" => otlp = true,
                // `/metrics` is the Prometheus exporter, and is always served.
                "prometheus" | "none" => {}
                other => {
                    return Err(invalid(
                        "OTEL_METRICS_EXPORTER",
                        format!(
                            "{other:?}: use otlp, prometheus (/metrics, always served) or none"
                        ),
                    ));
                }
            }
        }
        return Ok(otlp);
    }
    Ok(raw.enabled.unwrap_or(
        raw.endpoint.is_some()
            || raw.metrics_endpoint.is_some()
            || env.var("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT").is_some(),
    ))
}

/// `OTEL_EXPORTER_OTLP_METRICS_HEADERS`, else `OTEL_EXPORTER_OTLP_HEADERS`
/// (`name=value,…`, values percent-decoded).
fn headers(env: &dyn Env) -> Result<ExportHeaders, ConfigError> {
    let (field, text) = match (
        env.var("OTEL_EXPORTER_OTLP_METRICS_HEADERS"),
        env.var("OTEL_EXPORTER_OTLP_HEADERS"),
    ) {
        (Some(v), _) => ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", v),
        (None, Some(v)) => ("OTEL_EXPORTER_OTLP_HEADERS", v),
        (None, None) => return Ok(ExportHeaders::default()),
    };
    // The same `key=value` list as resource attributes; errors name the variable
    // without repeating a value, which may be a credential.
    let parsed =
        parse_resource_attributes(&text).map_err(|_| invalid(field, "not a list of name=value"))?;
    let mut out = Vec::with_capacity(parsed.len());
    for (name, value) in parsed {
        let name = name.to_ascii_lowercase();
        if http::HeaderName::from_bytes(name.as_bytes()).is_err()
            || http::HeaderValue::from_str(&value).is_err()
        {
            return Err(invalid(
                field,
                format!("header {name:?} is not a valid header"),
            ));
        }
        out.push((name, value));
    }
    Ok(ExportHeaders(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> BTreeMap<String, String> {
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn resolved(
        raw: RawMetrics,
        tracing: RawTracing,
        vars: &[(&str, &str)],
    ) -> Result<Option<MetricsExportSettings>, ConfigError> {
        resolve(raw, &tracing, &env(vars))
    }

    #[test]
    fn off_unless_asked_for_even_with_a_collector_for_traces() {
        let base = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")];
        assert_eq!(
            resolved(RawMetrics::default(), RawTracing::default(), &base).ok(),
            Some(None)
        );
        let tracing = RawTracing {
            endpoint: Some("http://collector:4318".into()),
            ..RawTracing::default()
        };
        assert_eq!(
            resolved(RawMetrics::default(), tracing, &[]).ok(),
            Some(None)
        );
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_METRICS_EXPORTER", "prometheus"),
        ];
        assert_eq!(
            resolved(RawMetrics::default(), RawTracing::default(), &vars).ok(),
            Some(None)
        );
        let raw = RawMetrics {
            enabled: Some(false),
            endpoint: Some("http://collector:4318".into()),
            ..RawMetrics::default()
        };
        assert_eq!(resolved(raw, RawTracing::default(), &[]).ok(), Some(None));
    }

    #[test]
    fn the_standard_variables_turn_it_on_and_name_the_collector() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/otlp/"),
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "15000"),
            ("OTEL_SERVICE_NAME", "gw"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Bearer%20s3cret",
            ),
        ];
        let m = resolved(RawMetrics::default(), RawTracing::default(), &vars)
            .unwrap()
            .unwrap();
        assert_eq!(m.endpoint.as_str(), "http://collector:4318/otlp/v1/metrics");
        assert_eq!(m.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(m.interval, Duration::from_secs(15));
        assert_eq!(m.timeout, DEFAULT_METRIC_EXPORT_TIMEOUT);
        assert_eq!(m.service_name, "gw");
        assert_eq!(
            m.headers.0,
            vec![("authorization".to_owned(), "Bearer s3cret".to_owned())]
        );
        assert!(!format!("{m:?}").contains("s3cret"), "{m:?}");
        // The signal's own URL and protocol win, and the URL is used as given.
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://other:4317"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc"),
        ];
        let m = resolved(RawMetrics::default(), RawTracing::default(), &vars)
            .unwrap()
            .unwrap();
        assert_eq!(m.endpoint.as_str(), "http://other:4317/");
        assert_eq!(m.protocol, OtlpProtocol::Grpc);
        assert_eq!(m.interval, DEFAULT_METRIC_EXPORT_INTERVAL);
    }

    #[test]
    fn the_file_falls_back_on_the_tracing_section() {
        let tracing = RawTracing {
            endpoint: Some("http://collector:4317".into()),
            protocol: Some("grpc".into()),
            service_name: Some("from-file".into()),
            ..RawTracing::default()
        };
        let raw = RawMetrics {
            enabled: Some(true),
            export_interval: hawser_crds::Duration::parse("5s").ok(),
            ..RawMetrics::default()
        };
        let m = resolved(raw, tracing, &[]).unwrap().unwrap();
        assert_eq!(m.endpoint.as_str(), "http://collector:4317/");
        assert_eq!(m.protocol, OtlpProtocol::Grpc);
        assert_eq!(m.service_name, "from-file");
        assert_eq!(m.interval, Duration::from_secs(5));
    }

    #[test]
    fn mistakes_name_their_setting() {
        let field = |raw: RawMetrics, vars: &[(&str, &str)]| match resolved(
            raw,
            RawTracing::default(),
            vars,
        ) {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("not refused: {other:?}"),
        };
        let on = || RawMetrics {
            enabled: Some(true),
            ..RawMetrics::default()
        };
        assert_eq!(field(on(), &[]), "telemetry.metrics.endpoint");
        assert_eq!(
            field(
                RawMetrics::default(),
                &[("OTEL_METRICS_EXPORTER", "console")]
            ),
            "OTEL_METRICS_EXPORTER"
        );
        let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        assert_eq!(
            field(on(), &[base, ("OTEL_METRIC_EXPORT_INTERVAL", "soon")]),
            "OTEL_METRIC_EXPORT_INTERVAL"
        );
        assert_eq!(
            field(on(), &[base, ("OTEL_EXPORTER_OTLP_HEADERS", "bad name=x")]),
            "OTEL_EXPORTER_OTLP_HEADERS"
        );
        assert_eq!(
            field(
                on(),
                &[
                    base,
                    ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem")
                ]
            ),
            "OTEL_EXPORTER_OTLP_CERTIFICATE"
        );
    }
}
