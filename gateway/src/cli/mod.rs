//! The `hawser` command line.

mod apikey;
mod policy;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::{Env, Flags, ProcessEnv, Settings};
use crate::crypto::Keyring;
use crate::telemetry::{self, LogFormat};

/// Hawser: one MCP endpoint for many upstream MCP servers.
#[derive(Debug, Parser)]
#[command(name = "hawser", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "HAWSER_LOG_FORMAT")]
    log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway. Without DATABASE_URL it runs embedded (one replica, in-memory
    /// state, connections from the config file); with it, shared (Postgres).
    Serve {
        /// Config file (YAML) [env: HAWSER_CONFIG].
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on [env: HAWSER_LISTEN] [default: 0.0.0.0:8080].
        #[arg(long)]
        listen: Option<String>,
        /// Accept stdio connections from the admin API and McpConnection resources.
        #[arg(long)]
        allow_stdio_from_api: bool,
    },
    /// Apply database migrations (DATABASE_URL) and exit.
    Migrate,
    /// Print a new encryption key entry for HAWSER_ENCRYPTION_KEYS.
    Keygen,
    /// Re-seal every stored secret under the first key of HAWSER_ENCRYPTION_KEYS.
    Reseal,
    /// Issue, list and revoke API keys through a running gateway's admin API
    /// (HAWSER_ADMIN_TOKEN).
    Apikey {
        #[command(subcommand)]
        command: apikey::Command,
        /// The gateway's base URL [env: HAWSER_GATEWAY_URL].
        #[arg(
            long,
            global = true,
            env = "HAWSER_GATEWAY_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        gateway: String,
    },
    /// Ask a running gateway why a caller may or may not use a tool.
    Policy {
        #[command(subcommand)]
        command: policy::Command,
        /// The gateway's base URL [env: HAWSER_GATEWAY_URL].
        #[arg(
            long,
            global = true,
            env = "HAWSER_GATEWAY_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        gateway: String,
    },
}

/// Entry point of the `hawser` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match crate::runtime::main_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let format = cli.log_format;
    if !matches!(cli.command, Command::Serve { .. }) {
        telemetry::init(format);
    }
    match cli.command {
        Command::Serve {
            config,
            listen,
            allow_stdio_from_api,
        } => {
            let flags = Flags {
                config,
                listen,
                allow_stdio_from_api,
            };
            let settings = Settings::load(&flags, &ProcessEnv).context("invalid configuration")?;
            // Logging starts once the settings say whether spans are exported too.
            let traces =
                telemetry::init_serving(format, settings.tracing.as_ref(), &settings.replica_id)?;
            let served = crate::server::serve(settings, crate::server::shutdown_signal()).await;
            if let Some(traces) = traces {
                traces.shutdown().await;
            }
            served
        }
        Command::Migrate => {
            let url = database_url()?;
            let pool = crate::store::postgres::connect(&url, &Default::default())
                .await
                .context("connecting to the database")?;
            crate::store::postgres::migrate(&pool)
                .await
                .context("applying migrations")?;
            println!("migrations applied");
            Ok(())
        }
        Command::Apikey { command, gateway } => apikey::run(command, &gateway).await,
        Command::Policy { command, gateway } => policy::run(command, &gateway).await,
        Command::Keygen => {
            println!("{}", Keyring::generate_entry());
            Ok(())
        }
        Command::Reseal => {
            let url = database_url()?;
            let keys = ProcessEnv
                .var("HAWSER_ENCRYPTION_KEYS")
                .context("HAWSER_ENCRYPTION_KEYS is not set")?;
            let keyring = Keyring::parse(&keys)?;
            let pool = crate::store::postgres::connect(&url, &Default::default())
                .await
                .context("connecting to the database")?;
            let report = crate::store::postgres::reseal_all(&pool, &keyring)
                .await
                .context("re-sealing")?;
            println!(
                "re-sealed {} value(s) under key {}",
                report,
                keyring.sealing_key_id()
            );
            Ok(())
        }
    }
}

fn database_url() -> anyhow::Result<String> {
    ProcessEnv
        .var("DATABASE_URL")
        .context("DATABASE_URL is not set (e.g. postgres://user:pass@host/db)")
}
