//! Test-only OAuth 2 authorization server; see `hawser_e2e::oauth`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use hawser_e2e::{
    fixture,
    oauth::{self, cli::Cli},
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    fixture::init_tracing();
    match oauth::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("hawser-mock-oauth: {error:#}");
            ExitCode::FAILURE
        }
    }
}
