//! `/revoke` (RFC 7009) and its request log. A refresh token ends its whole
//! grant (every access and refresh token of the family); an access token
//! ends alone and its refresh token stays usable, as at Google or Okta, so
//! tests see exactly which of the two a client revoked. Whatever the token,
//! a valid request is answered `200`: a client learns nothing about tokens
//! it does not hold.

use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::{
    ClientConfig,
    params::Params,
    provider::{Fetched, Inner, OAuthError, Provider},
};
use crate::fixture::util::{now_ms, sha256_hex};

/// What the presented token turned out to be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    Access,
    Refresh,
    /// Not issued here (or minted, or forgotten by a reset), or the request
    /// failed before the token was looked up.
    #[default]
    Unknown,
}

/// One `/revoke` request, as listed by `GET /control/revocation-log`. The
/// token appears only as lowercase hex SHA-256.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationLogEntry {
    /// 1, 2, … in processing order (its own sequence, not the token log's;
    /// keeps growing across resets).
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub ts: u64,
    /// The authenticated client, or the one claimed when authentication failed.
    pub client_id: Option<String>,
    /// The `token_type_hint` parameter as sent.
    pub token_type_hint: Option<String>,
    /// SHA-256 of the `token` parameter, if one was sent.
    pub token_sha256: Option<String>,
    /// What the token is.
    pub token_type: TokenKind,
    /// The token family (one per authorization) of a known token.
    pub family: Option<u64>,
    /// The token was issued to another client, so nothing was revoked
    /// (RFC 7009 §2.1); the answer was still `200`.
    pub other_client: bool,
    /// This request made a usable token unusable: an active access token,
    /// or a refresh token whose family was not revoked yet.
    pub revoked: bool,
    /// `ok` or the OAuth error code.
    pub outcome: String,
}

impl Inner {
    fn push_revocation(&mut self, mut entry: RevocationLogEntry, outcome: &Result<(), OAuthError>) {
        self.last_revocation_seq += 1;
        entry.seq = self.last_revocation_seq;
        entry.ts = now_ms();
        entry.outcome = match outcome {
            Ok(()) => "ok".to_owned(),
            Err(error) => error.code.to_owned(),
        };
        self.revocations.push(entry);
    }

    /// The kind and family of a stored token. The hint only orders the
    /// search; a miss extends it to the other type (RFC 7009 §2.1).
    fn find_token(&self, key: &str, hint: Option<TokenKind>) -> Option<(TokenKind, u64)> {
        let access = || {
            self.access
                .get(key)
                .map(|access| (TokenKind::Access, access.family))
        };
        let refresh = || {
            self.refresh
                .get(key)
                .map(|refresh| (TokenKind::Refresh, refresh.family))
        };
        if hint == Some(TokenKind::Refresh) {
            refresh().or_else(access)
        } else {
            access().or_else(refresh)
        }
    }
}

impl Provider {
    /// RFC 7009 revocation. Clients authenticate as at `/token`; unknown,
    /// expired, already revoked and other clients' tokens are answered `Ok`
    /// without any change.
    pub(crate) fn revoke(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        fetched: &Fetched,
    ) -> Result<(), OAuthError> {
        let params = Params::parse(body);
        let mut entry = RevocationLogEntry {
            client_id: params.get("client_id").map(str::to_owned),
            token_type_hint: params.get("token_type_hint").map(str::to_owned),
            token_sha256: params.get("token").map(sha256_hex),
            ..RevocationLogEntry::default()
        };
        let request = self
            .form_client(headers, &params, fetched, &mut entry.client_id)
            .and_then(|client| {
                let token = params.require("token")?;
                Ok((client, sha256_hex(token), hint(&params)?))
            });
        let mut inner = self.lock();
        let result = request.map(|(client, key, hint)| {
            revoke_token(&mut inner, &client, &key, hint, &mut entry);
        });
        tracing::info!(
            client = entry.client_id.as_deref(),
            token_type = ?entry.token_type,
            family = entry.family,
            revoked = entry.revoked,
            other_client = entry.other_client,
            outcome = result.as_ref().map_or_else(|e| e.code, |()| "ok"),
            "revocation request"
        );
        inner.push_revocation(entry, &result);
        result
    }

    pub(crate) fn revocation_log(&self) -> Vec<RevocationLogEntry> {
        self.lock().revocations.clone()
    }
}

/// The `token_type_hint`; values other than the two RFC 7009 registers are
/// refused, so a misspelt hint shows up in tests instead of being ignored.
fn hint(params: &Params) -> Result<Option<TokenKind>, OAuthError> {
    match params.get("token_type_hint") {
        None => Ok(None),
        Some("access_token") => Ok(Some(TokenKind::Access)),
        Some("refresh_token") => Ok(Some(TokenKind::Refresh)),
        Some(other) => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_token_type",
            format!("token_type_hint {other} is not supported (access_token or refresh_token)"),
        )),
    }
}

/// Revokes the token with SHA-256 `key` if `client` holds it; records what
/// happened in `entry`.
fn revoke_token(
    inner: &mut Inner,
    client: &ClientConfig,
    key: &str,
    hint: Option<TokenKind>,
    entry: &mut RevocationLogEntry,
) {
    let Some((kind, family)) = inner.find_token(key, hint) else {
        return;
    };
    entry.token_type = kind;
    entry.family = Some(family);
    let Some(owner) = inner.families.get(&family) else {
        return;
    };
    if owner.client_id != client.id {
        // RFC 7009 §2.1: only the client the token was issued to may revoke it.
        entry.other_client = true;
        tracing::warn!(family, client = %client.id, "revocation of another client's token ignored");
        return;
    }
    entry.revoked = match kind {
        TokenKind::Refresh => {
            let was_active = !owner.revoked;
            inner.revoke_family(family);
            was_active
        }
        TokenKind::Access => {
            let was_active = inner.active_access(key, now_ms()).is_some();
            if let Some(access) = inner.access.get_mut(key) {
                access.revoked = true;
            }
            was_active
        }
        TokenKind::Unknown => false,
    };
}
