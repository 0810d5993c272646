//! How MCP clients prove who they are.

use super::env::FileSecrets;
use super::file::RawClientAuth;
use super::{ConfigError, SecretResolver, invalid};
use crate::crypto::IdHash;

/// How MCP clients prove who they are.
#[derive(Clone)]
pub enum ClientAuth {
    /// Every client is the subject `anonymous`.
    None,
    /// Bearer tokens (subject, SHA-256 of the token).
    Bearer(Vec<(String, IdHash)>),
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Bearer(tokens) => {
                let subjects: Vec<&str> = tokens.iter().map(|(s, _)| s.as_str()).collect();
                f.debug_tuple("Bearer").field(&subjects).finish()
            }
        }
    }
}

/// Resolves `clientAuth:`; `env:` tokens come from the environment.
pub(super) fn resolve(
    raw: RawClientAuth,
    secrets: &FileSecrets<'_>,
) -> Result<ClientAuth, ConfigError> {
    let tokens = match raw {
        RawClientAuth::None => return Ok(ClientAuth::None),
        RawClientAuth::Bearer { tokens } => tokens,
    };
    let mut out = Vec::with_capacity(tokens.len());
    for (i, t) in tokens.into_iter().enumerate() {
        let field = format!("clientAuth.tokens[{i}]");
        let digest = match (t.token, t.sha256) {
            (Some(token), None) => {
                let token = secrets
                    .resolve(&token, &format!("{field}.token"))
                    .map_err(|e| invalid(&e.field, e.message))?;
                IdHash::of(&token)
            }
            (None, Some(hex)) => IdHash::from_hex(&hex)
                .ok_or_else(|| invalid(&format!("{field}.sha256"), "expected 64 hex digits"))?,
            _ => return Err(invalid(&field, "give exactly one of token and sha256")),
        };
        if t.subject.is_empty() {
            return Err(invalid(&format!("{field}.subject"), "must not be empty"));
        }
        out.push((t.subject, digest));
    }
    if out.is_empty() {
        return Err(invalid(
            "clientAuth.tokens",
            "bearer client auth needs at least one token",
        ));
    }
    Ok(ClientAuth::Bearer(out))
}
