//! Test-only upstream MCP server; see `hawser_e2e::fixture`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use hawser_e2e::fixture::{self, cli::Cli};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    fixture::init_tracing();
    match fixture::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("hawser-fixture: {error:#}");
            ExitCode::FAILURE
        }
    }
}
