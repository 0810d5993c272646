//! `/introspect` (RFC 7662).

use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::{
    params::{Credentials, Params, credentials, is_form},
    provider::{Family, OAuthError, Provider},
};
use crate::fixture::util::{now_ms, secrets_equal, sha256_hex};

impl Provider {
    /// RFC 7662 introspection; callers authenticate as a confidential client
    /// or a configured resource server.
    pub(crate) fn introspect(&self, headers: &HeaderMap, body: &[u8]) -> Result<Value, OAuthError> {
        if !is_form(headers) {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let params = Params::parse(body);
        let credentials = credentials(headers, &params)?;
        self.authenticate_introspector(&credentials)?;
        params.reject_duplicates()?;
        let key = sha256_hex(params.require("token")?);
        let now = now_ms();
        let inner = self.lock();
        let active =
            |family: &Family, scope: &[String], issued_ms: u64, expires_ms: u64, kind: &str| {
                let mut answer = json!({
                    "active": true,
                    "scope": scope.join(" "),
                    "client_id": family.client_id,
                    "sub": family.sub,
                    "exp": expires_ms / 1000,
                    "iat": issued_ms / 1000,
                    "token_type": kind,
                    "iss": self.issuer,
                });
                if let Some(resource) = &family.resource {
                    answer["aud"] = json!(resource);
                }
                if let Some(act) = &family.act {
                    answer["act"] = act.clone();
                }
                let groups = self.groups_for(&family.sub);
                if !groups.is_empty() {
                    answer["groups"] = json!(groups);
                }
                answer
            };
        if let Some((access, family)) = inner.active_access(&key, now) {
            return Ok(active(
                family,
                &access.scope,
                access.issued_ms,
                access.expires_ms,
                "Bearer",
            ));
        }
        if let Some(refresh) = inner.refresh.get(&key)
            && let Some(family) = inner.families.get(&refresh.family)
            && !refresh.used
            && !family.revoked
            && now < refresh.expires_ms
        {
            return Ok(active(
                family,
                &family.scope,
                refresh.issued_ms,
                refresh.expires_ms,
                "refresh_token",
            ));
        }
        Ok(json!({ "active": false }))
    }

    fn authenticate_introspector(&self, credentials: &Credentials) -> Result<(), OAuthError> {
        let Credentials::Secret { id, secret, .. } = credentials else {
            return Err(OAuthError::invalid_client(
                "introspection requires client authentication",
            ));
        };
        let secret = secret.as_bytes();
        let client_ok = self
            .client(id)
            .and_then(|client| client.secret)
            .is_some_and(|expected| secrets_equal(secret, expected.as_bytes()));
        let server_ok = self
            .config
            .resource_servers
            .iter()
            .any(|rs| rs.id == *id && secrets_equal(secret, rs.secret.as_bytes()));
        if client_ok || server_ok {
            Ok(())
        } else {
            Err(OAuthError::invalid_client("unknown caller or wrong secret"))
        }
    }

    /// Whether any token of `family` is still usable (for tests).
    #[cfg(test)]
    pub(crate) fn family_active(&self, family: u64) -> bool {
        !self.lock().family_revoked(family)
    }
}
