//! The provider's state and rules, independent of HTTP framing. Tokens are
//! stored only as SHA-256 hashes; every state change of one request happens
//! under one lock, so single-use rules hold under concurrency and the token
//! log is in processing order.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use anyhow::Context;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;

use super::{
    ClientConfig, Config, cimd::DocumentCache, exchange::TOKEN_EXCHANGE, jwt::KeyStore,
    register::Registry, revoke::RevocationLogEntry,
};
use crate::fixture::util::now_ms;

pub(crate) use super::error::OAuthError;

/// One `/token` request, as listed by `GET /control/log`. Tokens appear
/// only as lowercase hex SHA-256.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenLogEntry {
    /// 1, 2, … in processing order (keeps growing across resets).
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub ts: u64,
    pub grant_type: Option<String>,
    /// The authenticated client, or the one claimed when authentication failed.
    pub client_id: Option<String>,
    /// SHA-256 of the `refresh_token` parameter, if one was sent.
    pub refresh_token_sha256: Option<String>,
    /// SHA-256 of the refresh token issued by this request, if any.
    pub issued_refresh_sha256: Option<String>,
    /// SHA-256 of the access token issued by this request, if any.
    pub access_sha256: Option<String>,
    /// SHA-256 of the `subject_token` of a token exchange, if one was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_token_sha256: Option<String>,
    /// `ok` or the OAuth error code.
    pub outcome: String,
    /// A used code or refresh token was presented again (its family is revoked).
    pub reuse_detected: bool,
    /// The token family (one per authorization) the request touched.
    pub family: Option<u64>,
}

#[derive(Debug, Clone)]
pub(super) struct CodeRecord {
    pub(super) client_id: String,
    pub(super) redirect_uri: String,
    pub(super) challenge: String,
    pub(super) scope: Vec<String>,
    pub(super) resource: Option<String>,
    pub(super) sub: String,
    /// OpenID Connect `nonce` of the authorization request, echoed in the ID token.
    pub(super) nonce: Option<String>,
    pub(super) expires_ms: u64,
    pub(super) used: bool,
    /// Set once tokens were issued from the code.
    pub(super) family: Option<u64>,
}

/// Every token descending from one authorization (or one client_credentials grant).
#[derive(Debug, Clone)]
pub(super) struct Family {
    pub(super) client_id: String,
    pub(super) sub: String,
    pub(super) scope: Vec<String>,
    pub(super) resource: Option<String>,
    /// RFC 8693 `act` of an exchanged token.
    pub(super) act: Option<Value>,
    pub(super) revoked: bool,
}

#[derive(Debug, Clone)]
pub(super) struct AccessRecord {
    pub(super) family: u64,
    pub(super) scope: Vec<String>,
    pub(super) issued_ms: u64,
    pub(super) expires_ms: u64,
    pub(super) revoked: bool,
}

#[derive(Debug, Clone)]
pub(super) struct RefreshRecord {
    pub(super) family: u64,
    pub(super) issued_ms: u64,
    pub(super) expires_ms: u64,
    pub(super) used: bool,
}

#[derive(Debug, Default)]
pub(super) struct Inner {
    pub(super) codes: HashMap<String, CodeRecord>,
    pub(super) access: HashMap<String, AccessRecord>,
    pub(super) refresh: HashMap<String, RefreshRecord>,
    pub(super) families: HashMap<u64, Family>,
    pub(super) next_family: u64,
    pub(super) log: Vec<TokenLogEntry>,
    pub(super) last_seq: u64,
    /// The `/revoke` request log and its own sequence.
    pub(super) revocations: Vec<RevocationLogEntry>,
    pub(super) last_revocation_seq: u64,
    pub(super) deny_next: bool,
}

impl Inner {
    pub(super) fn new_family(&mut self, family: Family) -> u64 {
        self.next_family += 1;
        self.families.insert(self.next_family, family);
        self.next_family
    }

    pub(super) fn revoke_family(&mut self, id: u64) {
        if let Some(family) = self.families.get_mut(&id) {
            family.revoked = true;
        }
    }

    #[cfg(test)]
    pub(super) fn family_revoked(&self, id: u64) -> bool {
        self.families.get(&id).is_none_or(|family| family.revoked)
    }

    pub(super) fn push_log(
        &mut self,
        mut entry: TokenLogEntry,
        outcome: &Result<Issued, OAuthError>,
    ) {
        self.last_seq += 1;
        entry.seq = self.last_seq;
        entry.ts = now_ms();
        entry.outcome = match outcome {
            Ok(_) => "ok".to_owned(),
            Err(error) => error.code.to_owned(),
        };
        self.log.push(entry);
    }

    /// The access token with this SHA-256 and its family, if usable now.
    pub(super) fn active_access(&self, key: &str, now: u64) -> Option<(&AccessRecord, &Family)> {
        let access = self.access.get(key)?;
        let family = self.families.get(&access.family)?;
        (!access.revoked && !family.revoked && now < access.expires_ms).then_some((access, family))
    }
}

/// Tokens issued by one successful token request.
pub(super) struct Issued {
    pub(super) access: String,
    pub(super) refresh: Option<String>,
    pub(super) scope: Vec<String>,
    /// `issued_token_type` of a token exchange.
    pub(super) issued_token_type: Option<&'static str>,
    /// An OpenID Connect ID token (code flow with the `openid` scope).
    pub(super) id_token: Option<String>,
}

/// The client described by a metadata document fetched for this request
/// (`None`: no document was needed).
pub(crate) type Fetched = Option<Result<ClientConfig, OAuthError>>;

/// What `/authorize` answers.
pub(crate) enum AuthorizeOutcome {
    /// 302 to this URL (a code or an error for the client).
    Redirect(String),
    /// The client or redirect URI is unusable: answer 400, do not redirect.
    Rejected(OAuthError),
}

/// The mock authorization server.
pub(crate) struct Provider {
    pub(super) config: Config,
    pub(super) issuer: String,
    pub(super) inner: Mutex<Inner>,
    /// Signing keys. Lock order: `inner` before `keys`.
    pub(super) keys: Mutex<KeyStore>,
    /// Clients registered at `/register`.
    pub(super) registry: Mutex<Registry>,
    /// Fetched client ID metadata documents.
    pub(super) documents: Mutex<DocumentCache>,
    /// Fetches client ID metadata documents.
    pub(super) http: reqwest::Client,
}

impl Provider {
    pub(crate) fn new(config: Config, issuer: String) -> anyhow::Result<Self> {
        let keys = KeyStore::new(config.jwt_alg)?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(super::cimd::FETCH_TIMEOUT)
            .timeout(super::cimd::FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the metadata document HTTP client")?;
        Ok(Self {
            config,
            issuer,
            inner: Mutex::new(Inner::default()),
            keys: Mutex::new(keys),
            registry: Mutex::new(Registry::default()),
            documents: Mutex::new(DocumentCache::default()),
            http,
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    pub(crate) fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The issuer's path without a trailing slash (`""` for none).
    pub(crate) fn issuer_path(&self) -> String {
        Url::parse(&self.issuer)
            .map(|url| url.path().trim_end_matches('/').to_owned())
            .unwrap_or_default()
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// A configured or registered client.
    pub(super) fn client(&self, id: &str) -> Option<ClientConfig> {
        if let Some(client) = self.config.clients.iter().find(|client| client.id == id) {
            return Some(client.clone());
        }
        lock(&self.registry).client(id)
    }

    /// The groups of `subject` (`Config::groups`).
    pub(super) fn groups_for(&self, subject: &str) -> Vec<String> {
        let mut groups: Vec<String> = Vec::new();
        for (sub, group) in &self.config.groups {
            if sub == subject && !groups.contains(group) {
                groups.push(group.clone());
            }
        }
        groups
    }

    /// RFC 8414 metadata (`oidc`: the OpenID Connect discovery variant).
    pub(crate) fn metadata(&self, oidc: bool) -> Value {
        let mut metadata = json!({
            "issuer": self.issuer,
            "authorization_endpoint": self.endpoint("/authorize"),
            "token_endpoint": self.endpoint("/token"),
            "introspection_endpoint": self.endpoint("/introspect"),
            "revocation_endpoint": self.endpoint("/revoke"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "jwks_uri": self.endpoint("/jwks"),
            "registration_endpoint": self.endpoint("/register"),
            "client_id_metadata_document_supported": true,
            "id_token_signing_alg_values_supported": [self.config.jwt_alg.as_str()],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "authorization_response_iss_parameter_supported": true,
        });
        if self.config.jwt
            && let Some(grants) = metadata["grant_types_supported"].as_array_mut()
        {
            grants.push(json!(TOKEN_EXCHANGE));
        }
        if !self.config.scopes.is_empty() {
            metadata["scopes_supported"] = json!(self.config.scopes);
        }
        if oidc {
            metadata["subject_types_supported"] = json!(["public"]);
        }
        metadata
    }

    pub(crate) fn token_log(&self) -> Vec<TokenLogEntry> {
        self.lock().log.clone()
    }

    pub(crate) fn deny_next(&self) {
        self.lock().deny_next = true;
    }

    pub(crate) fn revoke_all(&self) {
        for family in self.lock().families.values_mut() {
            family.revoked = true;
        }
    }

    /// Revokes every grant of `sub` (as a provider does when a user withdraws
    /// access); returns how many.
    pub(crate) fn revoke_subject(&self, sub: &str) -> usize {
        let mut n = 0;
        for family in self.lock().families.values_mut() {
            if family.sub == sub && !family.revoked {
                family.revoked = true;
                n += 1;
            }
        }
        n
    }

    /// Forgets every code, token, log entry (both logs), pending switch and
    /// cached metadata document; sequence numbers, keys and registered
    /// clients stay.
    pub(crate) fn reset(&self) {
        let mut inner = self.lock();
        *inner = Inner {
            last_seq: inner.last_seq,
            last_revocation_seq: inner.last_revocation_seq,
            next_family: inner.next_family,
            ..Inner::default()
        };
        drop(inner);
        *lock(&self.documents) = DocumentCache::default();
    }
}

/// Locks a mutex, ignoring poisoning (every update is a single assignment).
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a redirect URI is unusable: it must be an absolute http(s) URL
/// without a fragment (RFC 6749 §3.1.2).
pub(crate) fn check_redirect_uri(uri: &str) -> Result<(), &'static str> {
    let url = Url::parse(uri).map_err(|_| "is not an absolute URL")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL");
    }
    if url.fragment().is_some() {
        return Err("must not contain a fragment");
    }
    Ok(())
}

/// An RFC 8707 resource indicator: an absolute URI without a fragment.
pub(crate) fn check_resource_uri(uri: &str) -> Result<(), OAuthError> {
    let url = Url::parse(uri)
        .map_err(|_| OAuthError::invalid_target("resource must be an absolute URI"))?;
    if url.fragment().is_some() {
        return Err(OAuthError::invalid_target(
            "resource must not contain a fragment",
        ));
    }
    Ok(())
}

/// Space-separated scope tokens, deduplicated in order.
pub(super) fn split_scope(scope: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for token in scope.unwrap_or_default().split(' ') {
        if !token.is_empty() && !out.iter().any(|s| s == token) {
            out.push(token.to_owned());
        }
    }
    out
}

/// base64url (no padding) SHA-256 of the verifier (RFC 7636 §4.2).
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

pub(super) fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

pub(super) fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// An opaque token: `prefix` + 256 random bits, base64url.
pub(super) fn random_token(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::rng().random();
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

pub(super) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue, header};

    #[test]
    fn pkce_s256_matches_rfc7636_example() {
        // RFC 7636 Appendix B.
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(is_s256_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!is_s256_challenge("plain-verifier"));
        assert!(is_valid_verifier(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        ));
        assert!(!is_valid_verifier("short"));
        assert!(!is_valid_verifier(&"a b".repeat(20)));
    }

    #[test]
    fn scopes_split_and_dedupe() {
        assert_eq!(split_scope(Some("a  b a")), vec!["a", "b"]);
        assert!(split_scope(None).is_empty());
    }

    #[test]
    fn redirect_and_resource_checks() {
        assert!(check_redirect_uri("http://127.0.0.1:1/cb?x=1").is_ok());
        assert!(check_redirect_uri("http://127.0.0.1:1/cb#frag").is_err());
        assert!(check_redirect_uri("/relative").is_err());
        assert!(check_redirect_uri("javascript:alert(1)").is_err());
        assert!(check_resource_uri("http://127.0.0.1:1/mcp").is_ok());
        assert!(check_resource_uri("mcp").is_err());
    }

    #[test]
    fn tokens_are_random_and_prefixed() {
        let a = random_token("mat_");
        let b = random_token("mat_");
        assert_ne!(a, b);
        assert!(a.starts_with("mat_"));
        assert_eq!(a.len(), 4 + 43);
    }

    #[test]
    fn reset_keeps_sequences() {
        let provider = Provider::new(
            Config {
                clients: vec![ClientConfig::confidential("c", "s")],
                ..Config::default()
            },
            "http://127.0.0.1:1".to_owned(),
        )
        .expect("provider");
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let body = b"grant_type=client_credentials&client_id=c&client_secret=s";
        assert!(provider.token(&headers, body, &None).is_ok());
        assert!(provider.family_active(1));
        provider.revoke_all();
        assert!(!provider.family_active(1));
        provider.reset();
        assert!(provider.token_log().is_empty());
        assert!(provider.token(&headers, body, &None).is_ok());
        let log = provider.token_log();
        assert_eq!(log[0].seq, 2);
        assert_eq!(log[0].family, Some(2));
        assert_eq!(log[0].outcome, "ok");
    }
}
