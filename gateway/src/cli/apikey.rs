//! `hawser apikey create|list|revoke`: the admin API's `/api/v1/apikeys` from a shell.
//! Works the same against an embedded gateway (keys in its memory) and a shared one.

use anyhow::{Context as _, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::config::{Env, ProcessEnv};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Issue a key; prints the key (shown only this once) on stdout.
    Create {
        /// Who the key authenticates as.
        #[arg(long)]
        subject: String,
        /// A group of the subject (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// What the key is for.
        #[arg(long)]
        description: Option<String>,
        /// Validity, e.g. 90d; default: until revoked.
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// List keys (prefix, subject, groups, created, expires, last used, revoked).
    List,
    /// Revoke a key by id; every replica refuses it within a second.
    Revoke { id: String },
}

pub async fn run(command: Command, gateway: &str) -> anyhow::Result<()> {
    let token = ProcessEnv
        .var("HAWSER_ADMIN_TOKEN")
        .context("HAWSER_ADMIN_TOKEN is not set")?;
    let base = gateway.trim_end_matches('/');
    let http = crate::oauth::http::client();
    let url = format!("{base}/api/v1/apikeys");
    let request = match &command {
        Command::Create {
            subject,
            groups,
            description,
            expires_in,
        } => {
            let mut body = json!({"subject": subject, "groups": groups});
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            if let Some(e) = expires_in {
                body["expiresIn"] = json!(e);
            }
            http.post(&url).json(&body)
        }
        Command::List => http.get(&url),
        Command::Revoke { id } => http.delete(format!("{url}/{id}")),
    };
    let response = request
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("cannot reach the gateway at {base}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if !status.is_success() {
        let message = body["error"]["message"]
            .as_str()
            .or_else(|| body["error"].as_str())
            .unwrap_or(text.as_str());
        bail!("{status}: {message}");
    }
    match command {
        Command::Create { .. } => {
            eprintln!(
                "issued key {} ({}) for {}; it is not shown again",
                body["id"].as_str().unwrap_or_default(),
                body["prefix"].as_str().unwrap_or_default(),
                body["subject"].as_str().unwrap_or_default(),
            );
            println!("{}", body["key"].as_str().unwrap_or_default());
        }
        Command::List => {
            println!(
                "{:<16}  {:<12}  {:<20}  {:<20}  {:<20}  {:<20}  STATE",
                "ID", "PREFIX", "SUBJECT", "CREATED", "EXPIRES", "LAST USED"
            );
            for k in body["apiKeys"].as_array().into_iter().flatten() {
                let s = |f: &str| k[f].as_str().unwrap_or("-").to_owned();
                let state = if k["revokedAt"].is_string() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{:<16}  {:<12}  {:<20}  {:<20}  {:<20}  {:<20}  {state}",
                    s("id"),
                    s("prefix"),
                    s("subject"),
                    s("createdAt"),
                    s("expiresAt"),
                    s("lastUsedAt"),
                );
            }
        }
        Command::Revoke { id } => println!("revoked {id}"),
    }
    Ok(())
}
