//! hawser-operator: reconciles McpConnection resources into the gateway's store.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use hawser_operator::{Cli, cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    hawser_gateway::telemetry::init(cli.log_format);
    let settings = match cli.settings(cli::hostname()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(hawser_operator::run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
