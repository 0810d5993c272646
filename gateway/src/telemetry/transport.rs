//! What traces and metrics share on their way to the collector: the HTTP client and
//! the gRPC channel (TLS for an `https://` endpoint, checked against the given CA
//! file or else the system's roots), and the resource attributes naming this replica.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use url::Url;

/// The CA file's certificates, read at start.
fn read_ca(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the CA file {}", path.display()))
}

/// The client for OTLP/HTTP; with `ca`, a collector's certificate must chain to it
/// (the CA file replaces the system's roots, as `OTEL_EXPORTER_OTLP_CERTIFICATE`
/// means).
pub fn http_client(timeout: Duration, ca: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    crate::install_crypto_provider();
    let mut builder = reqwest::Client::builder().timeout(timeout);
    if let Some(path) = ca {
        let certs = reqwest::Certificate::from_pem_bundle(&read_ca(path)?)
            .with_context(|| format!("reading the certificates of {}", path.display()))?;
        builder = builder.tls_certs_only(certs);
    }
    builder.build().context("building the OTLP HTTP client")
}

/// A gRPC channel to `endpoint`, connected on first use (a collector that starts
/// after Hawser is found, one that goes away is dialled again). TLS for `https://`.
pub fn grpc_channel(
    endpoint: &Url,
    timeout: Duration,
    ca: Option<&Path>,
) -> anyhow::Result<tonic::transport::Channel> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    let mut channel = Endpoint::from_shared(endpoint.as_str().to_owned())
        .with_context(|| format!("{endpoint} is not a gRPC endpoint"))?
        .timeout(timeout)
        .connect_timeout(timeout);
    if endpoint.scheme() == "https" {
        crate::install_crypto_provider();
        let tls = match ca {
            Some(path) => {
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_ca(path)?))
            }
            None => ClientTlsConfig::new().with_native_roots(),
        };
        channel = channel
            .tls_config(tls)
            .with_context(|| format!("setting up TLS towards {endpoint}"))?;
    }
    Ok(channel.connect_lazy())
}

/// The resource attributes of everything this replica exports, `service.name`
/// first: Hawser's defaults, overridden by the configured ones.
pub fn resource_attributes(
    service_name: &str,
    configured: &std::collections::BTreeMap<String, String>,
    replica: &str,
) -> Vec<(String, String)> {
    let mut attributes: Vec<(String, String)> = [
        ("service.name", service_name),
        ("service.version", env!("CARGO_PKG_VERSION")),
        ("service.instance.id", replica),
        ("telemetry.sdk.name", "opentelemetry"),
        ("telemetry.sdk.language", "rust"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    // Given attributes win over Hawser's defaults (a deployment may name its
    // instances); `service.name` is resolved already.
    for (k, v) in configured {
        if k == "service.name" {
            continue;
        }
        attributes.retain(|(key, _)| key != k);
        attributes.push((k.clone(), v.clone()));
    }
    attributes
}
