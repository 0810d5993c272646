//! `telemetry.tracing`: where traces go (OTLP), how many are kept, and what the
//! service is called; `telemetry.metrics` ([`metrics`]): whether the `/metrics` series
//! are pushed over OTLP too. The standard `OTEL_*` variables win over the file, as
//! every variable wins over the file; no endpoint anywhere means tracing is off.

mod metrics;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::env::Env;
use super::{ConfigError, invalid};

pub use metrics::{ExportHeaders, MetricsExportSettings, RawMetrics};

/// `telemetry:`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawTelemetry {
    /// Traces exported over OTLP.
    #[serde(default)]
    pub tracing: RawTracing,
    /// The `/metrics` series pushed over OTLP too.
    #[serde(default)]
    pub metrics: RawMetrics,
}

/// `telemetry:`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    /// `None`: no traces exported.
    pub tracing: Option<TracingSettings>,
    /// `None`: metrics are scraped from `/metrics` only.
    pub metrics: Option<MetricsExportSettings>,
}

/// `telemetry.tracing:`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawTracing {
    /// The collector's base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`); over HTTP traces go
    /// to `<endpoint>/v1/traces`.
    pub endpoint: Option<String>,
    /// The full URL traces are sent to (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
    pub traces_endpoint: Option<String>,
    /// `http/protobuf` (default) or `grpc` (`OTEL_EXPORTER_OTLP_PROTOCOL`).
    pub protocol: Option<String>,
    /// `service.name` (`OTEL_SERVICE_NAME`; default `hawser`).
    pub service_name: Option<String>,
    /// `OTEL_TRACES_SAMPLER`: `parentbased_always_on` (default), `always_on`, …
    pub sampler: Option<String>,
    /// `OTEL_TRACES_SAMPLER_ARG`: the ratio of the `*traceidratio` samplers.
    pub sampler_arg: Option<f64>,
    /// Resource attributes (`OTEL_RESOURCE_ATTRIBUTES` adds to and overrides them).
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, String>,
    /// Finished spans waiting to be exported; more are dropped and counted.
    pub queue_size: Option<usize>,
    /// Most spans in one export.
    pub batch_size: Option<usize>,
    /// How long a span may wait for a full batch (`OTEL_BSP_SCHEDULE_DELAY`).
    pub export_interval: Option<hawser_crds::Duration>,
    /// How long one export may take (`OTEL_EXPORTER_OTLP_TIMEOUT`).
    pub export_timeout: Option<hawser_crds::Duration>,
    /// A PEM file of the CA(s) an `https://` collector's certificate is checked
    /// against besides the system's (`OTEL_EXPORTER_OTLP_CERTIFICATE`).
    pub certificate: Option<std::path::PathBuf>,
}

/// How spans reach the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/HTTP with protobuf bodies.
    HttpProtobuf,
    /// OTLP/gRPC (HTTP/2; TLS with an `https://` endpoint).
    Grpc,
}

/// Which traces are recorded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerKind {
    AlwaysOn,
    AlwaysOff,
    /// A share of traces, by trace id.
    Ratio(f64),
    /// The caller's decision when it sent one (`traceparent`), else `root`.
    ParentBased(RootSampler),
}

/// What a parent-based sampler does for a trace that starts here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RootSampler {
    AlwaysOn,
    AlwaysOff,
    Ratio(f64),
}

/// Tracing, resolved: present only when an endpoint is set.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    /// Where spans are sent: the full traces URL for HTTP, the collector for gRPC.
    pub endpoint: Url,
    pub protocol: OtlpProtocol,
    pub service_name: String,
    pub sampler: SamplerKind,
    /// Resource attributes besides `service.name` (which wins over one given here).
    pub resource_attributes: BTreeMap<String, String>,
    pub queue_size: usize,
    pub batch_size: usize,
    pub export_interval: Duration,
    pub export_timeout: Duration,
    /// Extra CAs for an `https://` collector.
    pub certificate: Option<std::path::PathBuf>,
}

/// Defaults of the batch queue (the OpenTelemetry SDK's own).
pub const DEFAULT_QUEUE_SIZE: usize = 2048;
pub const DEFAULT_BATCH_SIZE: usize = 512;
pub const DEFAULT_EXPORT_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves `telemetry:`.
pub(super) fn resolve(raw: RawTelemetry, env: &dyn Env) -> Result<Telemetry, ConfigError> {
    let metrics = metrics::resolve(raw.metrics, &raw.tracing, env)?;
    Ok(Telemetry {
        tracing: resolve_tracing(raw.tracing, env)?,
        metrics,
    })
}

/// `OTEL_SDK_DISABLED=true`: no signal is exported.
fn sdk_disabled(env: &dyn Env) -> bool {
    env.var("OTEL_SDK_DISABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Resolves `telemetry.tracing`; `None` when tracing is off (no endpoint, or
/// `OTEL_SDK_DISABLED=true`, or `OTEL_TRACES_EXPORTER=none`).
fn resolve_tracing(raw: RawTracing, env: &dyn Env) -> Result<Option<TracingSettings>, ConfigError> {
    if sdk_disabled(env) {
        return Ok(None);
    }
    match env.var("OTEL_TRACES_EXPORTER").as_deref() {
        None | Some("otlp") => {}
        Some("none") => return Ok(None),
        Some(other) => {
            return Err(invalid(
                "OTEL_TRACES_EXPORTER",
                format!("{other:?}: Hawser exports traces over OTLP only (otlp or none)"),
            ));
        }
    }
    let protocol = protocol(env, &TRACES, raw.protocol)?;
    let Some(endpoint) = endpoint(env, &TRACES, raw.endpoint, raw.traces_endpoint, protocol)?
    else {
        return Ok(None);
    };
    let (service_name, resource_attributes) =
        resource(env, raw.service_name, raw.resource_attributes)?;
    let queue_size = raw.queue_size.unwrap_or(DEFAULT_QUEUE_SIZE);
    if queue_size == 0 {
        return Err(invalid("telemetry.tracing.queueSize", "must be at least 1"));
    }
    let batch_size = raw.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
    if batch_size == 0 || batch_size > queue_size {
        return Err(invalid(
            "telemetry.tracing.batchSize",
            format!("must be between 1 and queueSize ({queue_size})"),
        ));
    }
    let export_interval = millis(env, "OTEL_BSP_SCHEDULE_DELAY")?
        .or(raw.export_interval.map(|d| d.get()))
        .unwrap_or(DEFAULT_EXPORT_INTERVAL);
    let export_timeout = millis(env, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")?
        .or(millis(env, "OTEL_EXPORTER_OTLP_TIMEOUT")?)
        .or(raw.export_timeout.map(|d| d.get()))
        .unwrap_or(DEFAULT_EXPORT_TIMEOUT);
    let certificate = certificate(env, &TRACES, raw.certificate)?;
    Ok(Some(TracingSettings {
        endpoint,
        protocol,
        service_name,
        sampler: sampler(env, raw.sampler, raw.sampler_arg)?,
        resource_attributes,
        queue_size,
        batch_size,
        export_interval,
        export_timeout,
        certificate,
    }))
}

/// The variables and file keys of one signal (traces, metrics).
struct Signal {
    /// `TRACES`, `METRICS`: the infix of the signal's own variables.
    var: &'static str,
    /// `telemetry.tracing`, `telemetry.metrics`.
    section: &'static str,
    /// The file key of the signal's full URL.
    url_key: &'static str,
    /// What OTLP/HTTP appends to a base URL.
    path: &'static str,
}

const TRACES: Signal = Signal {
    var: "TRACES",
    section: "telemetry.tracing",
    url_key: "tracesEndpoint",
    path: "/v1/traces",
};

/// `service.name` and the other resource attributes: the variables' over the file's.
fn resource(
    env: &dyn Env,
    service_name: Option<String>,
    mut attributes: BTreeMap<String, String>,
) -> Result<(String, BTreeMap<String, String>), ConfigError> {
    if let Some(text) = env.var("OTEL_RESOURCE_ATTRIBUTES") {
        attributes.extend(parse_resource_attributes(&text)?);
    }
    let service_name = env
        .var("OTEL_SERVICE_NAME")
        .or(service_name)
        .or_else(|| attributes.get("service.name").cloned())
        .unwrap_or_else(|| "hawser".to_owned());
    attributes.remove("service.name");
    Ok((service_name, attributes))
}

/// The CA file for an `https://` collector: the signal's variable, the general one,
/// the file; it must be readable now, not at the first export.
fn certificate(
    env: &dyn Env,
    signal: &Signal,
    file: Option<std::path::PathBuf>,
) -> Result<Option<std::path::PathBuf>, ConfigError> {
    let own = format!("OTEL_EXPORTER_OTLP_{}_CERTIFICATE", signal.var);
    let (field, path) = match (
        env.var(&own),
        env.var("OTEL_EXPORTER_OTLP_CERTIFICATE"),
        file,
    ) {
        (Some(v), _, _) => (own, std::path::PathBuf::from(v)),
        (None, Some(v), _) => ("OTEL_EXPORTER_OTLP_CERTIFICATE".to_owned(), v.into()),
        (None, None, Some(p)) => (format!("{}.certificate", signal.section), p),
        (None, None, None) => return Ok(None),
    };
    match std::fs::read(&path) {
        Ok(pem) if pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => Ok(Some(path)),
        Ok(_) => Err(invalid(
            &field,
            format!("{} holds no PEM certificate", path.display()),
        )),
        Err(e) => Err(invalid(&field, format!("{}: {e}", path.display()))),
    }
}

fn protocol(
    env: &dyn Env,
    signal: &Signal,
    file: Option<String>,
) -> Result<OtlpProtocol, ConfigError> {
    let own = format!("OTEL_EXPORTER_OTLP_{}_PROTOCOL", signal.var);
    let (field, value) = match (env.var(&own), env.var("OTEL_EXPORTER_OTLP_PROTOCOL"), file) {
        (Some(v), _, _) => (own, v),
        (None, Some(v), _) => ("OTEL_EXPORTER_OTLP_PROTOCOL".to_owned(), v),
        (None, None, Some(v)) => (format!("{}.protocol", signal.section), v),
        (None, None, None) => return Ok(OtlpProtocol::HttpProtobuf),
    };
    match value.as_str() {
        "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
        "grpc" => Ok(OtlpProtocol::Grpc),
        other => Err(invalid(
            &field,
            format!("{other:?}: use http/protobuf or grpc"),
        )),
    }
}

/// The signal's URL, checked. The signal's own URL is used as given; the base URL
/// gets the signal's path (`/v1/traces`) over HTTP (OpenTelemetry's rule).
fn endpoint(
    env: &dyn Env,
    signal: &Signal,
    base: Option<String>,
    own_url: Option<String>,
    protocol: OtlpProtocol,
) -> Result<Option<Url>, ConfigError> {
    let own = format!("OTEL_EXPORTER_OTLP_{}_ENDPOINT", signal.var);
    let (field, text, is_base) = match (
        env.var(&own),
        env.var("OTEL_EXPORTER_OTLP_ENDPOINT"),
        own_url,
        base,
    ) {
        (Some(v), _, _, _) => (own, v, false),
        (None, Some(v), _, _) => ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), v, true),
        (None, None, Some(v), _) => (format!("{}.{}", signal.section, signal.url_key), v, false),
        (None, None, None, Some(v)) => (format!("{}.endpoint", signal.section), v, true),
        (None, None, None, None) => return Ok(None),
    };
    let text = text.trim();
    let mut url =
        Url::parse(text).map_err(|e| invalid(&field, format!("{text:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(invalid(
            &field,
            format!("{:?} must be an http(s) URL with a host", url.as_str()),
        ));
    }
    if is_base && protocol == OtlpProtocol::HttpProtobuf {
        let path = format!("{}{}", url.path().trim_end_matches('/'), signal.path);
        url.set_path(&path);
    }
    Ok(Some(url))
}

fn ratio(field: &str, arg: Option<f64>) -> Result<f64, ConfigError> {
    let r = arg.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&r) {
        return Err(invalid(field, format!("{r}: a ratio between 0 and 1")));
    }
    Ok(r)
}

fn sampler(
    env: &dyn Env,
    file: Option<String>,
    file_arg: Option<f64>,
) -> Result<SamplerKind, ConfigError> {
    let arg = match env.var("OTEL_TRACES_SAMPLER_ARG") {
        Some(text) => Some(text.trim().parse::<f64>().map_err(|_| {
            invalid(
                "OTEL_TRACES_SAMPLER_ARG",
                format!("{text:?} is not a number"),
            )
        })?),
        None => file_arg,
    };
    let (field, name) = match (env.var("OTEL_TRACES_SAMPLER"), file) {
        (Some(v), _) => ("OTEL_TRACES_SAMPLER", v),
        (None, Some(v)) => ("telemetry.tracing.sampler", v),
        (None, None) => ("", "parentbased_always_on".to_owned()),
    };
    let arg_field = if env.var("OTEL_TRACES_SAMPLER_ARG").is_some() {
        "OTEL_TRACES_SAMPLER_ARG"
    } else {
        "telemetry.tracing.samplerArg"
    };
    Ok(match name.as_str() {
        "always_on" => SamplerKind::AlwaysOn,
        "always_off" => SamplerKind::AlwaysOff,
        "traceidratio" => SamplerKind::Ratio(ratio(arg_field, arg)?),
        "parentbased_always_on" => SamplerKind::ParentBased(RootSampler::AlwaysOn),
        "parentbased_always_off" => SamplerKind::ParentBased(RootSampler::AlwaysOff),
        "parentbased_traceidratio" => {
            SamplerKind::ParentBased(RootSampler::Ratio(ratio(arg_field, arg)?))
        }
        other => {
            return Err(invalid(
                field,
                format!(
                    "{other:?}: use always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio"
                ),
            ));
        }
    })
}

/// `key1=value1,key2=value2`, values percent-decoded (W3C Baggage's format, as the
/// OpenTelemetry specification defines `OTEL_RESOURCE_ATTRIBUTES`).
fn parse_resource_attributes(text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((key, value)) = entry.split_once('=') else {
            return Err(invalid(
                "OTEL_RESOURCE_ATTRIBUTES",
                format!("{entry:?} is not key=value"),
            ));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(invalid(
                "OTEL_RESOURCE_ATTRIBUTES",
                format!("{entry:?} has no key"),
            ));
        }
        let value = url::form_urlencoded::parse(
            format!("v={}", value.trim().replace('+', "%2B")).as_bytes(),
        )
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
        out.insert(key.to_owned(), value);
    }
    Ok(out)
}

/// A variable holding milliseconds (`OTEL_BSP_SCHEDULE_DELAY`, `OTEL_*_TIMEOUT`).
fn millis(env: &dyn Env, var: &str) -> Result<Option<Duration>, ConfigError> {
    env.var(var)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .ok()
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis)
                .ok_or_else(|| invalid(var, format!("{v:?} is not a number of milliseconds")))
        })
        .transpose()
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
        raw: RawTracing,
        vars: &[(&str, &str)],
    ) -> Result<Option<TracingSettings>, ConfigError> {
        resolve(
            RawTelemetry {
                tracing: raw,
                ..RawTelemetry::default()
            },
            &env(vars),
        )
        .map(|t| t.tracing)
    }

    #[test]
    fn off_without_an_endpoint_and_when_the_sdk_is_disabled() {
        assert_eq!(resolved(RawTracing::default(), &[]).ok(), Some(None));
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ];
        assert_eq!(resolved(RawTracing::default(), &vars).ok(), Some(None));
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ];
        assert_eq!(resolved(RawTracing::default(), &vars).ok(), Some(None));
    }

    #[test]
    fn the_base_endpoint_gets_the_traces_path_over_http_only() {
        let vars = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/otlp/")];
        let t = resolved(RawTracing::default(), &vars).unwrap().unwrap();
        assert_eq!(t.endpoint.as_str(), "http://collector:4318/otlp/v1/traces");
        assert_eq!(t.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(t.service_name, "hawser");
        assert_eq!(t.sampler, SamplerKind::ParentBased(RootSampler::AlwaysOn));
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ];
        let t = resolved(RawTracing::default(), &vars).unwrap().unwrap();
        assert_eq!(t.endpoint.as_str(), "http://collector:4317/");
        // The signal's own URL is used as given, and wins over the base URL.
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://other:9999/traces",
            ),
        ];
        let t = resolved(RawTracing::default(), &vars).unwrap().unwrap();
        assert_eq!(t.endpoint.as_str(), "http://other:9999/traces");
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let raw = RawTracing {
            endpoint: Some("http://file:4318".into()),
            service_name: Some("from-file".into()),
            sampler: Some("always_off".into()),
            resource_attributes: [("deployment.environment".to_owned(), "file".to_owned())]
                .into_iter()
                .collect(),
            ..RawTracing::default()
        };
        let t = resolved(raw, &[]).unwrap().unwrap();
        assert_eq!(t.endpoint.as_str(), "http://file:4318/v1/traces");
        assert_eq!(t.service_name, "from-file");
        assert_eq!(t.sampler, SamplerKind::AlwaysOff);
        let raw = RawTracing {
            endpoint: Some("http://file:4318".into()),
            service_name: Some("from-file".into()),
            ..RawTracing::default()
        };
        let vars = [
            ("OTEL_SERVICE_NAME", "from-env"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.01"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,team=a%20b, k8s.namespace.name=mcp",
            ),
        ];
        let t = resolved(raw, &vars).unwrap().unwrap();
        assert_eq!(t.service_name, "from-env");
        assert_eq!(
            t.sampler,
            SamplerKind::ParentBased(RootSampler::Ratio(0.01))
        );
        assert_eq!(t.resource_attributes["deployment.environment"], "prod");
        assert_eq!(t.resource_attributes["team"], "a b");
        assert_eq!(t.resource_attributes["k8s.namespace.name"], "mcp");
    }

    #[test]
    fn mistakes_name_their_setting() {
        let field = |raw: RawTracing, vars: &[(&str, &str)]| match resolved(raw, vars) {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("not refused: {other:?}"),
        };
        let base = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")];
        let with = |extra: (&'static str, &'static str)| {
            let mut v = base.to_vec();
            v.push(extra);
            v
        };
        assert_eq!(
            field(
                RawTracing::default(),
                &with(("OTEL_TRACES_SAMPLER", "sometimes"))
            ),
            "OTEL_TRACES_SAMPLER"
        );
        assert_eq!(
            field(
                RawTracing::default(),
                &with(("OTEL_TRACES_SAMPLER", "traceidratio"))
                    .into_iter()
                    .chain([("OTEL_TRACES_SAMPLER_ARG", "2")])
                    .collect::<Vec<_>>()
            ),
            "OTEL_TRACES_SAMPLER_ARG"
        );
        assert_eq!(
            field(
                RawTracing::default(),
                &with(("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"))
            ),
            "OTEL_EXPORTER_OTLP_PROTOCOL"
        );
        assert_eq!(
            field(
                RawTracing::default(),
                &with(("OTEL_RESOURCE_ATTRIBUTES", "novalue"))
            ),
            "OTEL_RESOURCE_ATTRIBUTES"
        );
        assert_eq!(
            field(
                RawTracing::default(),
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]
            ),
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        );
        let raw = RawTracing {
            endpoint: Some("http://c:4318".into()),
            batch_size: Some(10),
            queue_size: Some(5),
            ..RawTracing::default()
        };
        assert_eq!(field(raw, &[]), "telemetry.tracing.batchSize");
    }
}
