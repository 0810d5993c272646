//! The caller's identity towards upstreams, per connection: plain headers, an
//! assertion Hawser signs, or a token exchanged at the identity provider (RFC 8693);
//! plus the client headers a connection's `forwardHeaders` lets through. The client's
//! own credential never reaches an upstream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue};
use serde::Deserialize;

use super::Identity;
use super::oidc::Oidc;
use super::signing::Signer;
use crate::config::{CallerMode, ConnectionConfig, Exchange};
use crate::crypto::{IdHash, Secret};

/// Most exchanged tokens kept.
const CACHE_ENTRIES: usize = 16_384;
/// An exchanged token is not used in its last seconds.
const MARGIN: Duration = Duration::from_secs(30);

/// Why the caller's identity could not be expressed towards an upstream.
#[derive(Debug, thiserror::Error)]
pub enum TowardsError {
    #[error("Hawser has no signing key yet")]
    NoSigningKey,
    #[error("token exchange needs the caller's OIDC access token; {0} signed in otherwise")]
    NoToken(String),
    #[error("token exchange failed: {0}")]
    Exchange(String),
}

#[derive(Deserialize)]
struct ExchangeResponse {
    access_token: String,
    expires_in: Option<u64>,
}

/// Adds identity headers to upstream requests.
pub struct Towards {
    signer: Option<Arc<Signer>>,
    oidc: Option<Arc<Oidc>>,
    http: reqwest::Client,
    /// (caller token hash, connection) → (token, usable until).
    exchanged: Mutex<HashMap<(IdHash, String), (Secret, Instant)>>,
}

impl Towards {
    pub fn new(signer: Option<Arc<Signer>>, oidc: Option<Arc<Oidc>>) -> Self {
        Self {
            signer,
            oidc,
            http: crate::oauth::http::client(),
            exchanged: Mutex::new(HashMap::new()),
        }
    }

    /// Hawser's public signing keys.
    pub fn jwks(&self) -> Option<serde_json::Value> {
        self.signer.as_ref().map(|s| s.jwks())
    }

    /// Adds to `out` what `config` says the upstream learns about `caller`, and the
    /// client headers (`client`) it may see.
    pub async fn apply(
        &self,
        config: &ConnectionConfig,
        caller: Option<&Identity>,
        client: Option<&HeaderMap>,
        out: &mut HeaderMap,
    ) -> Result<(), TowardsError> {
        if let Some(client) = client {
            for name in &config.caller.forward {
                for value in client.get_all(name) {
                    out.append(name.clone(), value.clone());
                }
            }
        }
        let Some(caller) = caller else {
            return Ok(());
        };
        match &config.caller.mode {
            CallerMode::None => {}
            CallerMode::Headers { subject, groups } => {
                // Whatever the client sent under these names is replaced.
                out.remove(subject);
                out.remove(groups);
                if let Ok(v) = HeaderValue::from_str(&caller.subject) {
                    out.insert(subject.clone(), v);
                }
                if let Ok(v) = HeaderValue::from_str(&caller.groups.join(",")) {
                    out.insert(groups.clone(), v);
                }
            }
            CallerMode::Jwt {
                header,
                audience,
                ttl,
            } => {
                let token = self
                    .signer
                    .as_ref()
                    .and_then(|s| s.assertion(caller, audience, *ttl))
                    .ok_or(TowardsError::NoSigningKey)?;
                let mut v =
                    HeaderValue::from_str(&token).map_err(|_| TowardsError::NoSigningKey)?;
                v.set_sensitive(true);
                out.insert(header.clone(), v);
            }
            CallerMode::Exchange(exchange) => {
                let token = self.exchange(config, caller, exchange).await?;
                let mut v =
                    HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                        TowardsError::Exchange("the issued token is not a header value".into())
                    })?;
                v.set_sensitive(true);
                out.insert(exchange.header.clone(), v);
            }
        }
        Ok(())
    }

    async fn exchange(
        &self,
        config: &ConnectionConfig,
        caller: &Identity,
        ex: &Exchange,
    ) -> Result<Secret, TowardsError> {
        let subject_token = caller
            .token
            .as_ref()
            .ok_or_else(|| TowardsError::NoToken(caller.subject.clone()))?;
        let slot = (IdHash::of(subject_token.expose()), config.name.clone());
        if let Ok(cache) = self.exchanged.lock()
            && let Some((token, until)) = cache.get(&slot)
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let url = ex
            .token_url
            .clone()
            .or_else(|| self.oidc.as_ref().and_then(|o| o.token_endpoint()))
            .ok_or_else(|| {
                TowardsError::Exchange("no token endpoint: set identity.tokenUrl".into())
            })?;
        let mut form = vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", subject_token.expose()),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
        ];
        for (k, v) in [
            ("audience", &ex.audience),
            ("resource", &ex.resource),
            ("scope", &ex.scope),
        ] {
            if let Some(v) = v {
                form.push((k, v));
            }
        }
        let response = self
            .http
            .post(url.clone())
            .basic_auth(
                form_urlencoded(&ex.client_id),
                Some(form_urlencoded(ex.client_secret.expose())),
            )
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                TowardsError::Exchange(format!("{url}: {}", crate::upstream::error::root_cause(&e)))
            })?;
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        if !status.is_success() {
            // The provider's error code, never the body as a whole (it may echo input).
            let code = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "no error code".into());
            return Err(TowardsError::Exchange(format!(
                "{url} answered {status}: {code}"
            )));
        }
        let parsed: ExchangeResponse = serde_json::from_slice(&body).map_err(|_| {
            TowardsError::Exchange(format!("{url} answered without an access_token"))
        })?;
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(60));
        let token = Secret::new(parsed.access_token);
        if let Ok(mut cache) = self.exchanged.lock() {
            let now = Instant::now();
            if cache.len() >= CACHE_ENTRIES {
                cache.retain(|_, (_, until)| *until > now);
                if cache.len() >= CACHE_ENTRIES {
                    cache.clear();
                }
            }
            cache.insert(slot, (token.clone(), now + lifetime.saturating_sub(MARGIN)));
        }
        Ok(token)
    }
}

/// RFC 6749 §2.3.1: client credentials are form-urlencoded inside Basic.
fn form_urlencoded(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
