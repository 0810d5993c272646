//! `hawser policy explain`: why a caller may or may not use a tool, from a running
//! gateway's admin API (HAWSER_ADMIN_TOKEN).

use anyhow::{Context as _, bail};
use clap::Subcommand;
use serde_json::Value;

use crate::config::{Env, ProcessEnv};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Whether SUBJECT (with GROUPs) may call TOOL, and which policy and rule decided.
    Explain {
        #[arg(long)]
        subject: String,
        /// A group of the subject (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// The tool as /mcp shows it (`prefix__name`), or its own name with --connection.
        #[arg(long)]
        tool: String,
        #[arg(long)]
        connection: Option<String>,
        /// The call's arguments (JSON), for conditions on them.
        #[arg(long)]
        args: Option<String>,
    },
}

pub async fn run(command: Command, gateway: &str) -> anyhow::Result<()> {
    let token = ProcessEnv
        .var("HAWSER_ADMIN_TOKEN")
        .context("HAWSER_ADMIN_TOKEN is not set")?;
    let Command::Explain {
        subject,
        groups,
        tool,
        connection,
        args,
    } = command;
    let mut query = vec![
        ("subject", subject),
        ("groups", groups.join(",")),
        ("tool", tool),
    ];
    if let Some(c) = connection {
        query.push(("connection", c));
    }
    if let Some(a) = args {
        query.push(("args", a));
    }
    let base = gateway.trim_end_matches('/');
    let response = crate::oauth::http::client()
        .get(format!("{base}/api/v1/policies/explain"))
        .query(&query)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("cannot reach the gateway at {base}"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "{status}: {}",
            body["error"].as_str().unwrap_or("no detail")
        );
    }
    let decided = match (&body["policy"], &body["rule"]) {
        (Value::String(p), Value::Number(r)) => format!(" by policy {p}, rule {r}"),
        (Value::String(p), _) => format!(" by policy {p} (no rule allows it)"),
        _ if body["governed"] == false => " (no policy governs this connection)".to_owned(),
        _ => " (no rule allows it)".to_owned(),
    };
    println!(
        "{} {}/{}{decided}",
        body["decision"].as_str().unwrap_or("?"),
        body["connection"].as_str().unwrap_or("?"),
        body["tool"].as_str().unwrap_or("?"),
    );
    Ok(())
}
