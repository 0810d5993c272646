//! `console:`: the web console at `/ui/` and how people sign in to it.

use hawser_crds::SecretValue;
use serde::Deserialize;

use super::env::FileSecrets;
use super::{ConfigError, SecretResolver, invalid};
use crate::crypto::Secret;

/// `console:`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawConsole {
    /// Serve the console at `/ui/` (default true).
    pub enabled: Option<bool>,
    /// Members of any of these groups (from the ID or access token) are admins.
    #[serde(default)]
    pub admin_groups: Vec<String>,
    /// Sign-in with the company's OpenID Connect provider (`clientAuth.oidc.issuer`).
    pub oidc: Option<RawConsoleOidc>,
}

/// `console.oidc`, as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawConsoleOidc {
    /// The gateway's client id at the provider.
    pub client_id: String,
    /// Its secret (`{env: VAR}` keeps it out of the file).
    pub client_secret: SecretValue,
    /// Scopes asked for (default `openid`, `profile`, `email`).
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// `console:`, checked.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    pub enabled: bool,
    pub admin_groups: Vec<String>,
    pub oidc: Option<ConsoleOidc>,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            admin_groups: Vec::new(),
            oidc: None,
        }
    }
}

/// The console's own OIDC client (a confidential one).
#[derive(Debug, Clone)]
pub struct ConsoleOidc {
    pub client_id: String,
    pub client_secret: Secret,
    pub scopes: Vec<String>,
}

pub(super) fn resolve(
    raw: RawConsole,
    secrets: &FileSecrets<'_>,
    has_issuer: bool,
) -> Result<ConsoleSettings, ConfigError> {
    let oidc = match raw.oidc {
        None => None,
        Some(o) => {
            if !has_issuer {
                return Err(invalid(
                    "console.oidc",
                    "sign-in uses the provider of clientAuth.oidc: set clientAuth.oidc.issuer",
                ));
            }
            if o.client_id.trim().is_empty() {
                return Err(invalid("console.oidc.clientId", "must not be empty"));
            }
            let secret = secrets
                .resolve(&o.client_secret, "console.oidc.clientSecret")
                .map_err(|e| invalid(&e.field, e.message))?;
            let scopes = if o.scopes.is_empty() {
                ["openid", "profile", "email"].map(String::from).to_vec()
            } else {
                o.scopes
            };
            Some(ConsoleOidc {
                client_id: o.client_id,
                client_secret: Secret::new(secret),
                scopes,
            })
        }
    };
    Ok(ConsoleSettings {
        enabled: raw.enabled.unwrap_or(true),
        admin_groups: raw.admin_groups,
        oidc,
    })
}
