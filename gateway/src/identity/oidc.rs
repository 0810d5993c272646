//! OIDC access tokens: JWTs checked locally with the provider's published keys.
//!
//! The keys are fetched once (discovery, then `jwks_uri`), refreshed in the
//! background, and refetched early only for a key id not seen before — at most once
//! per `jwksRefreshInterval`, so a flood of forged key ids cannot hammer the provider.
//! A provider outage keeps the keys Hawser has. A verified token is cached by its
//! SHA-256 until it expires, so a caller pays for the signature once, not per call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use url::Url;

use super::{AuthMethod, Identity, Reason};
use crate::config::{OidcSettings, is_loopback};
use crate::crypto::{IdHash, Secret};

/// Most verified tokens kept; beyond it expired ones go first, then all.
const CACHE_ENTRIES: usize = 65_536;
/// Largest discovery or JWKS document read.
const MAX_DOCUMENT: usize = 1024 * 1024;
/// How often the keys are refreshed when nothing asks for it sooner.
const REFRESH_EVERY: Duration = Duration::from_secs(300);

/// One published key.
struct Key {
    kid: Option<String>,
    key: DecodingKey,
}

/// What the provider published, and when it was last fetched.
#[derive(Default)]
struct KeySet {
    keys: Vec<Key>,
    loaded: bool,
}

struct Verified {
    identity: Arc<Identity>,
    audiences: Vec<String>,
    expires: u64,
}

/// Checks the provider's access tokens.
pub struct Oidc {
    settings: OidcSettings,
    http: reqwest::Client,
    keys: ArcSwap<KeySet>,
    /// When the keys were last fetched (successfully or not): serializes fetches.
    fetched: tokio::sync::Mutex<Option<Instant>>,
    jwks_uri: Mutex<Option<Url>>,
    /// The token endpoint discovery named (token exchange towards upstreams).
    token_endpoint: Mutex<Option<Url>>,
    cache: Mutex<HashMap<IdHash, Arc<Verified>>>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Oidc {
    pub fn new(settings: OidcSettings) -> Self {
        Self {
            jwks_uri: Mutex::new(settings.jwks_uri.clone()),
            token_endpoint: Mutex::new(None),
            settings,
            http: crate::oauth::http::client(),
            keys: ArcSwap::from_pointee(KeySet::default()),
            fetched: tokio::sync::Mutex::new(None),
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// Fetches the keys now and keeps them fresh until `stop`.
    pub fn spawn_refresh(self: &Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_secs(1);
            loop {
                let wait = match me.refresh(true).await {
                    Ok(()) => {
                        backoff = Duration::from_secs(1);
                        REFRESH_EVERY
                    }
                    Err(error) => {
                        tracing::warn!(issuer = %me.settings.issuer, %error, "cannot fetch the identity provider's keys; keeping the ones known");
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        backoff
                    }
                };
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        });
    }

    /// Fetches the keys unless they were fetched less than the refresh interval ago
    /// (`force` ignores the interval). Concurrent callers wait for one fetch.
    async fn refresh(&self, force: bool) -> Result<(), String> {
        let mut fetched = self.fetched.lock().await;
        if !force
            && let Some(at) = *fetched
            && at.elapsed() < self.settings.jwks_refresh_interval
        {
            return Ok(());
        }
        *fetched = Some(Instant::now());
        let uri = self.jwks_uri().await?;
        let body = get_limited(&self.http, &uri).await?;
        let keys = parse_jwks(&body)?;
        tracing::info!(issuer = %self.settings.issuer, keys = keys.len(), "identity provider keys loaded");
        self.keys.store(Arc::new(KeySet { keys, loaded: true }));
        Ok(())
    }

    /// The provider's token endpoint, from discovery.
    pub fn token_endpoint(&self) -> Option<Url> {
        self.token_endpoint.lock().ok().and_then(|t| t.clone())
    }

    /// `jwksUri`, else the one discovery names (remembered once found).
    async fn jwks_uri(&self) -> Result<Url, String> {
        if let Some(u) = self.jwks_uri.lock().ok().and_then(|u| u.clone()) {
            return Ok(u);
        }
        let (candidate, doc) = self.discovery().await?;
        let uri = doc["jwks_uri"]
            .as_str()
            .ok_or_else(|| format!("{candidate} has no jwks_uri"))?;
        let uri = Url::parse(uri).map_err(|e| format!("jwks_uri {uri:?}: {e}"))?;
        if uri.scheme() != "https" && !(uri.scheme() == "http" && is_loopback(&uri)) {
            return Err(format!("jwks_uri {uri} must be https"));
        }
        if let Ok(mut slot) = self.jwks_uri.lock() {
            *slot = Some(uri.clone());
        }
        if let Some(t) = doc["token_endpoint"]
            .as_str()
            .and_then(|t| Url::parse(t).ok())
            && let Ok(mut slot) = self.token_endpoint.lock()
        {
            *slot = Some(t);
        }
        Ok(uri)
    }

    /// The provider's discovery document (the first location that answers) and where
    /// it came from; refused when it names another issuer (no mix-up).
    async fn discovery(&self) -> Result<(Url, Value), String> {
        let issuer = &self.settings.issuer;
        let mut last = String::from("no discovery document");
        for candidate in crate::oauth::discovery::as_candidates(issuer) {
            let doc = match get_limited(&self.http, &candidate).await {
                Ok(body) => body,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let doc: Value =
                serde_json::from_slice(&doc).map_err(|e| format!("{candidate}: not JSON: {e}"))?;
            let named = doc["issuer"].as_str().unwrap_or_default();
            if named.trim_end_matches('/') != issuer.as_str().trim_end_matches('/') {
                return Err(format!(
                    "{candidate} names issuer {named:?}, not {issuer}: refusing its keys and endpoints"
                ));
            }
            return Ok((candidate, doc));
        }
        Err(last)
    }

    /// Verifies `token` (whose SHA-256 is `digest`) for an endpoint accepting the
    /// audiences `accepts` says yes to.
    pub async fn verify(
        &self,
        token: &str,
        digest: IdHash,
        accepts: impl Fn(&str) -> bool,
    ) -> Result<Arc<Identity>, Reason> {
        let now = now_secs();
        let skew = self.settings.clock_skew.as_secs();
        let cached = self.cache.lock().ok().and_then(|c| c.get(&digest).cloned());
        let verified = match cached {
            Some(v) if now <= v.expires.saturating_add(skew) => v,
            Some(_) => {
                if let Ok(mut c) = self.cache.lock() {
                    c.remove(&digest);
                }
                return Err(Reason::Expired);
            }
            None => {
                let v = Arc::new(self.verify_uncached(token).await?);
                self.remember(digest, v.clone(), now);
                v
            }
        };
        if !verified.audiences.iter().any(|a| accepts(a)) {
            return Err(Reason::Audience);
        }
        let scopes = &verified.identity.scopes;
        if !self
            .settings
            .scopes_required
            .iter()
            .all(|s| scopes.contains(s))
        {
            return Err(Reason::InsufficientScope);
        }
        Ok(verified.identity.clone())
    }

    /// Verifies an OpenID Connect ID token issued to `client_id` (the web console's
    /// sign-in): signature, issuer, expiry and audience. No scope check (ID tokens
    /// carry none) and no cache: it is checked once per sign-in.
    pub async fn verify_id_token(
        &self,
        token: &str,
        client_id: &str,
    ) -> Result<Arc<Identity>, Reason> {
        let verified = self.verify_uncached(token).await?;
        if !verified.audiences.iter().any(|a| a == client_id) {
            return Err(Reason::Audience);
        }
        Ok(verified.identity)
    }

    /// The provider's authorization and token endpoints, from discovery (the web
    /// console signs people in with them).
    pub async fn sign_in_endpoints(&self) -> Result<(Url, Url), String> {
        let (candidate, doc) = self.discovery().await?;
        let url = |field: &str| {
            doc[field]
                .as_str()
                .and_then(|u| Url::parse(u).ok())
                .ok_or_else(|| format!("{candidate} has no {field}"))
        };
        Ok((url("authorization_endpoint")?, url("token_endpoint")?))
    }

    fn remember(&self, digest: IdHash, verified: Arc<Verified>, now: u64) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, v| v.expires > now);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(digest, verified);
    }

    async fn verify_uncached(&self, token: &str) -> Result<Verified, Reason> {
        let alg = header_alg(token)?;
        if !self.settings.algorithms.contains(&alg) {
            return Err(Reason::Algorithm);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| Reason::Malformed)?;
        let mut validation = Validation::new(alg);
        validation.leeway = self.settings.clock_skew.as_secs();
        validation.validate_aud = false;
        // `nbf` is checked in `identity`, whatever number it is.
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["exp"]);
        let mut claims = None;
        for round in 0..2 {
            let keys = self.keys.load_full();
            if !keys.loaded && round == 0 {
                // Nothing fetched yet (start-up, or the provider was down): try now.
                let _ = self.refresh(false).await;
                continue;
            }
            let mut matched = false;
            for key in keys.keys.iter().filter(|k| match (&header.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            }) {
                matched = true;
                match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                    Ok(data) => {
                        claims = Some(data.claims);
                        break;
                    }
                    Err(e) => {
                        use jsonwebtoken::errors::ErrorKind as K;
                        match e.kind() {
                            K::ExpiredSignature => return Err(Reason::Expired),
                            K::InvalidSignature | K::InvalidAlgorithm | K::InvalidKeyFormat => {}
                            K::MissingRequiredClaim(_) => return Err(Reason::Malformed),
                            _ => return Err(Reason::Malformed),
                        }
                    }
                }
            }
            if claims.is_some() {
                break;
            }
            if matched {
                return Err(Reason::Signature);
            }
            if !keys.loaded {
                return Err(Reason::Unavailable);
            }
            if round == 0 {
                // A key id not seen before: the provider may have rotated.
                let _ = self.refresh(false).await;
            }
        }
        let claims = claims.ok_or(Reason::UnknownKey)?;
        self.identity(claims, token)
    }

    fn identity(&self, claims: Map<String, Value>, token: &str) -> Result<Verified, Reason> {
        // RFC 7519 §4.1.5: `nbf` is a NumericDate. Checked here rather than by the JWT
        // library, which skips one it cannot read as an unsigned integer (`1e30`, a
        // fraction); anything but a number is refused.
        if let Some(nbf) = claims.get("nbf") {
            let Some(nbf) = nbf.as_f64().filter(|n| n.is_finite()) else {
                return Err(Reason::Malformed);
            };
            #[allow(clippy::cast_precision_loss)]
            let latest = (now_secs() + self.settings.clock_skew.as_secs()) as f64;
            if nbf > latest {
                return Err(Reason::NotYetValid);
            }
        }
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if iss.trim_end_matches('/') != self.settings.issuer.as_str().trim_end_matches('/') {
            return Err(Reason::Issuer);
        }
        let audiences = strings(claims.get("aud"));
        let subject = match claim(&claims, &self.settings.subject_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(Reason::NoSubject),
        };
        let groups = strings(claim(&claims, &self.settings.groups_claim));
        let mut scopes = Vec::new();
        for name in ["scope", "scp"] {
            for s in strings(claims.get(name)) {
                scopes.extend(s.split(' ').filter(|s| !s.is_empty()).map(str::to_owned));
            }
        }
        let expires = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        let claims = Arc::new(claims);
        Ok(Verified {
            identity: Arc::new(Identity {
                subject,
                method: AuthMethod::Oidc,
                groups,
                scopes,
                token: Some(Secret::new(token)),
                claims: Some(claims),
            }),
            audiences,
            expires,
        })
    }
}

/// A claim by name, or by a dotted path into nested objects (`realm_access.roles`)
/// when no top-level claim has the name (names like `https://example.com/groups`
/// contain dots).
fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut v = claims.get(parts.next()?)?;
    for part in parts {
        v = v.get(part)?;
    }
    Some(v)
}

/// A string or an array of strings, as strings.
fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// The `alg` a token's header names; `none` and anything unknown are refused here,
/// before any key is looked at.
fn header_alg(token: &str) -> Result<Algorithm, Reason> {
    let header = token.split('.').next().ok_or(Reason::Malformed)?;
    if token.split('.').count() != 3 {
        return Err(Reason::Malformed);
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| Reason::Malformed)?;
    let header: Value = serde_json::from_slice(&bytes).map_err(|_| Reason::Malformed)?;
    let alg = header["alg"].as_str().ok_or(Reason::Malformed)?;
    alg.parse::<Algorithm>().map_err(|_| Reason::Algorithm)
}

/// The signing keys of a JWKS document; keys of unknown types or for encryption are
/// skipped rather than failing the whole set.
fn parse_jwks(body: &[u8]) -> Result<Vec<Key>, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    let keys = doc["keys"].as_array().ok_or("JWKS has no \"keys\" array")?;
    let mut out = Vec::new();
    for k in keys {
        if k.get("use")
            .and_then(Value::as_str)
            .is_some_and(|u| u != "sig")
        {
            continue;
        }
        let Ok(jwk) = serde_json::from_value::<Jwk>(k.clone()) else {
            continue;
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        out.push(Key {
            kid: jwk.common.key_id.clone(),
            key,
        });
    }
    Ok(out)
}

/// GETs a JSON document of at most [`MAX_DOCUMENT`] bytes.
async fn get_limited(http: &reqwest::Client, url: &Url) -> Result<Vec<u8>, String> {
    let mut r = http
        .get(url.clone())
        .header("accept", "application/json")
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("{url}: {}", crate::upstream::error::root_cause(&e)))?;
    if !r.status().is_success() {
        return Err(format!("{url}: HTTP {}", r.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = r
        .chunk()
        .await
        .map_err(|e| format!("{url}: {}", crate::upstream::error::root_cause(&e)))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(format!("{url}: larger than {MAX_DOCUMENT} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests;
