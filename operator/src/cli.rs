//! The `hawser-operator` command line: every setting is a flag with an environment
//! variable behind it; secrets are taken as plain strings and parsed here, so clap never
//! echoes them in an error, and [`Settings`] keeps them out of `Debug`.

use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use clap::Parser;
use hawser_gateway::crypto::{Keyring, Secret};
use hawser_gateway::telemetry::LogFormat;

/// Default address of `/healthz`, `/readyz` and `/metrics`.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8081";

/// Reconciles McpConnection resources into the Hawser gateway's Postgres store.
#[derive(Parser)]
#[command(name = "hawser-operator", version, about, long_about = None)]
pub struct Cli {
    /// PostgreSQL URL of the gateway's shared state (the gateway's DATABASE_URL).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,

    /// Encryption keys, `kid:base64-32-bytes[,...]`: the gateway's HAWSER_ENCRYPTION_KEYS.
    #[arg(long, env = "HAWSER_ENCRYPTION_KEYS", hide_env_values = true)]
    encryption_keys: Option<String>,

    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "HAWSER_OPERATOR_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,

    /// Watch McpConnections, McpPolicies and Secrets in this namespace only
    /// [default: all namespaces].
    #[arg(long, env = "HAWSER_WATCH_NAMESPACE")]
    namespace: Option<String>,

    /// Namespace of the leader-election Lease `hawser-operator` (in a pod: its namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,

    /// This replica's identity in the Lease [default: POD_NAME, else the hostname].
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,

    /// Accept `transport: stdio` in McpConnection resources (as the gateway's
    /// --allow-stdio-from-api): whoever may create them can then run programs in the gateway.
    #[arg(long, env = "HAWSER_ALLOW_STDIO_FROM_API")]
    allow_stdio_from_api: bool,

    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "HAWSER_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// Validated settings.
#[derive(Debug)]
pub struct Settings {
    pub database_url: Secret,
    pub keyring: Keyring,
    pub listen: SocketAddr,
    pub namespace: Option<String>,
    pub lease_namespace: String,
    pub identity: String,
    pub allow_stdio_from_api: bool,
}

impl Cli {
    /// Checks that everything required is there; `hostname` is the fallback identity.
    pub fn settings(self, hostname: Option<String>) -> anyhow::Result<Settings> {
        let Some(database_url) = self.database_url.filter(|v| !v.is_empty()) else {
            bail!(
                "DATABASE_URL is required: the PostgreSQL URL the gateway replicas use (e.g. postgres://hawser:...@postgres:5432/hawser)"
            );
        };
        let Some(keys) = self.encryption_keys.filter(|v| !v.is_empty()) else {
            bail!(
                "HAWSER_ENCRYPTION_KEYS is required: the same keys as the gateway's (generate one with `hawser keygen`)"
            );
        };
        let keyring = Keyring::parse(&keys).context("invalid encryption keys")?;
        let Some(lease_namespace) = self.lease_namespace.filter(|v| !v.is_empty()) else {
            bail!(
                "POD_NAMESPACE (or --lease-namespace) is required: the namespace of the leader-election Lease \
                 (in a pod, set it from the downward API: fieldRef metadata.namespace)"
            );
        };
        let Some(identity) = self.identity.or(hostname).filter(|v| !v.is_empty()) else {
            bail!("POD_NAME (or --identity) is required when the hostname is unknown");
        };
        Ok(Settings {
            database_url: Secret::new(database_url),
            keyring,
            listen: self.listen,
            namespace: self.namespace.filter(|v| !v.is_empty()),
            lease_namespace,
            identity,
            allow_stdio_from_api: self.allow_stdio_from_api,
        })
    }
}

/// The hostname, from `HOSTNAME` or `/etc/hostname`.
pub fn hostname() -> Option<String> {
    use hawser_gateway::config::Env as _;
    hawser_gateway::config::ProcessEnv.hostname()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Built directly, not parsed: the test process's environment must not leak in.
    fn cli(database_url: &str, keys: &str, lease_namespace: &str) -> Cli {
        let some = |v: &str| Some(v.to_owned());
        Cli {
            database_url: some(database_url),
            encryption_keys: some(keys),
            listen: DEFAULT_LISTEN.parse().unwrap(),
            namespace: None,
            lease_namespace: some(lease_namespace),
            identity: None,
            allow_stdio_from_api: false,
            log_format: LogFormat::Text,
        }
    }

    #[test]
    fn missing_requirements_are_named() {
        let key = Keyring::generate_entry();
        let cases = [
            (cli("", &key, "ns"), "DATABASE_URL is required"),
            (
                cli("postgres://x/db", "", "ns"),
                "HAWSER_ENCRYPTION_KEYS is required",
            ),
            (cli("postgres://x/db", &key, ""), "POD_NAMESPACE"),
            (
                cli("postgres://x/db", "k1:not-base64!", "ns"),
                "HAWSER_ENCRYPTION_KEYS",
            ),
        ];
        for (cli, expected) in cases {
            let e = cli.settings(Some("host".into())).unwrap_err();
            assert!(format!("{e:#}").contains(expected), "{e:#}");
        }
        let e = cli("postgres://x/db", &key, "ns")
            .settings(None)
            .unwrap_err();
        assert!(format!("{e:#}").contains("POD_NAME"), "{e:#}");
    }

    #[test]
    fn settings_hide_secrets_and_default_the_identity() {
        let key = Keyring::generate_entry();
        let settings = cli("postgres://u:hunter2@db/hawser", &key, "hawser-system")
            .settings(Some("pod-1".into()))
            .unwrap();
        assert_eq!(settings.identity, "pod-1");
        assert_eq!(settings.lease_namespace, "hawser-system");
        assert_eq!(settings.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(settings.namespace, None);
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let secret_part = key.split_once(':').unwrap().1;
        assert!(!shown.contains(secret_part), "{shown}");
    }

    #[test]
    fn flags_parse() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
