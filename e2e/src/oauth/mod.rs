//! `hawser-mock-oauth`: a strict, test-only OAuth 2 authorization server and
//! OpenID Connect provider (authorization code + PKCE S256, refresh-token
//! rotation with reuse detection, client credentials, RFC 8693 token
//! exchange, RFC 7662 introspection, RFC 7009 revocation, RFC 8414/OIDC
//! metadata, JWT access tokens with a rotating JWKS, RFC 7591 dynamic client
//! registration, client ID metadata documents). See `README.md` in this folder.
//!
//! Use it in-process with [`MockOAuth::start`] or as the
//! `hawser-mock-oauth` binary ([`run`]).

mod authorize;
mod cimd;
pub mod cli;
mod error;
mod exchange;
mod grants;
mod introspect;
mod jwt;
mod params;
mod provider;
mod register;
mod revoke;
mod routes;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_clients;
#[cfg(test)]
mod tests_oidc;
#[cfg(test)]
mod tests_revoke;

use std::{fmt, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use url::Url;

pub use params::basic_header;
pub use provider::TokenLogEntry;
pub use revoke::{RevocationLogEntry, TokenKind};

use provider::Provider;

/// How a client authenticates at the token endpoint (RFC 7591 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// HTTP Basic with the form-urlencoded client id and secret.
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// Public client: `client_id` in the form body, no secret.
    None,
}

impl AuthMethod {
    /// The RFC 7591 `token_endpoint_auth_method` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::None => "none",
        }
    }
}

/// A registered client.
#[derive(Clone)]
pub struct ClientConfig {
    pub id: String,
    /// `None` for a public client.
    pub secret: Option<String>,
    /// Methods this client may use at the token endpoint.
    pub auth_methods: Vec<AuthMethod>,
    /// When non-empty, `/authorize` only accepts these exact redirect URIs
    /// for this client (on top of [`Config::redirect_uris`]).
    pub redirect_uris: Vec<String>,
    /// When non-empty, the only grant types this client may use
    /// (`authorization_code`, `refresh_token`, `client_credentials`, the
    /// token-exchange URN).
    pub grant_types: Vec<String>,
}

impl ClientConfig {
    /// A confidential client allowed to use `client_secret_basic` and
    /// `client_secret_post`.
    pub fn confidential(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            secret: Some(secret.into()),
            auth_methods: vec![AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost],
            redirect_uris: Vec::new(),
            grant_types: Vec::new(),
        }
    }

    /// A public client (`token_endpoint_auth_method` `none`).
    pub fn public(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            secret: None,
            auth_methods: vec![AuthMethod::None],
            redirect_uris: Vec::new(),
            grant_types: Vec::new(),
        }
    }

    /// Restricts the client to the given authentication methods.
    #[must_use]
    pub fn with_auth_methods(mut self, methods: &[AuthMethod]) -> Self {
        self.auth_methods = methods.to_vec();
        self
    }

    /// Restricts `/authorize` to these exact redirect URIs for this client.
    #[must_use]
    pub fn with_redirect_uris(mut self, uris: &[&str]) -> Self {
        self.redirect_uris = uris.iter().map(|uri| (*uri).to_owned()).collect();
        self
    }

    pub fn is_confidential(&self) -> bool {
        self.secret.is_some()
    }

    /// Whether the client may use `grant_type`.
    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.grant_types.is_empty() || self.grant_types.iter().any(|g| g == grant_type)
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("auth_methods", &self.auth_methods)
            .field("redirect_uris", &self.redirect_uris)
            .field("grant_types", &self.grant_types)
            .finish()
    }
}

/// A protected resource allowed to call `/introspect` (besides every
/// confidential client).
#[derive(Clone)]
pub struct ResourceServer {
    pub id: String,
    pub secret: String,
}

impl fmt::Debug for ResourceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceServer")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Signature algorithm of the provider's keys (and so of JWT access tokens).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum JwtAlg {
    /// ECDSA P-256 with SHA-256.
    #[default]
    Es256,
    /// Ed25519.
    EdDsa,
}

impl JwtAlg {
    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }
}

impl std::str::FromStr for JwtAlg {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.eq_ignore_ascii_case("ES256") {
            Ok(Self::Es256)
        } else if input.eq_ignore_ascii_case("EdDSA") || input.eq_ignore_ascii_case("Ed25519") {
            Ok(Self::EdDsa)
        } else {
            Err(format!("unknown JWT algorithm {input:?} (ES256 or EdDSA)"))
        }
    }
}

/// How `/control/mint` signs a token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MintSign {
    /// With the current published key.
    #[default]
    Current,
    /// With a fresh key that is never published.
    UnknownKey,
    /// `alg: none`, empty signature.
    None,
    /// HS256 with the current public key's PEM as the HMAC secret (key confusion).
    Hs256PublicKey,
}

/// A `/control/mint` request: `claims` are used verbatim.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    pub claims: Value,
    #[serde(default)]
    pub sign: MintSign,
    /// Header `kid` instead of the signing key's own.
    #[serde(default)]
    pub kid: Option<String>,
    /// Header `typ` (default `at+jwt`; `JWT` for `none`).
    #[serde(default)]
    pub typ: Option<String>,
}

/// Configuration of a mock provider. [`Config::default`] is strict.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Lifetime of access tokens (`expires_in`).
    pub access_ttl: Duration,
    /// Lifetime of each refresh token (from its issue; rotation issues a new one).
    pub refresh_ttl: Duration,
    /// Lifetime of authorization codes.
    pub code_ttl: Duration,
    pub clients: Vec<ClientConfig>,
    pub resource_servers: Vec<ResourceServer>,
    /// Issuer identifier; default `http://<bound address>`. A path is
    /// supported: endpoints are then also served under it.
    pub issuer: Option<String>,
    /// When set, every authorization and token request must carry
    /// `resource=<this>` (RFC 8707).
    pub require_resource: Option<String>,
    /// When non-empty, `/authorize` only accepts these exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Scopes that may be requested; a request without `scope` is granted
    /// all of them. Empty: any scope is accepted.
    pub scopes: Vec<String>,
    /// `sub` of tokens from the code flow when `/authorize` has no `login_hint`.
    pub default_subject: String,
    /// Access tokens are JWTs (RFC 9068 `at+jwt`) signed with the current key.
    pub jwt: bool,
    /// Algorithm of the signing keys.
    pub jwt_alg: JwtAlg,
    /// `(subject, group)` pairs: a JWT for `subject` carries `groups`.
    pub groups: Vec<(String, String)>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            access_ttl: Duration::from_secs(2),
            refresh_ttl: Duration::from_secs(3600),
            code_ttl: Duration::from_secs(60),
            clients: Vec::new(),
            resource_servers: Vec::new(),
            issuer: None,
            require_resource: None,
            redirect_uris: Vec::new(),
            scopes: vec!["mcp".to_owned()],
            default_subject: "mock-user".to_owned(),
            jwt: false,
            jwt_alg: JwtAlg::Es256,
            groups: Vec::new(),
        }
    }
}

impl Config {
    fn validate(&self) -> anyhow::Result<()> {
        let mut ids = std::collections::BTreeSet::new();
        for client in &self.clients {
            if client.id.is_empty() {
                bail!("a client id is empty");
            }
            if !ids.insert(client.id.as_str()) {
                bail!("client {} is registered twice", client.id);
            }
            if client.auth_methods.is_empty() {
                bail!("client {} has no authentication method", client.id);
            }
            for uri in &client.redirect_uris {
                provider::check_redirect_uri(uri).map_err(|reason| {
                    anyhow::anyhow!("client {}: redirect URI {uri}: {reason}", client.id)
                })?;
            }
            let public = client.auth_methods.contains(&AuthMethod::None);
            if public == client.is_confidential() {
                bail!(
                    "client {}: public clients use method none and have no secret",
                    client.id
                );
            }
        }
        if let Some(resource) = &self.require_resource {
            provider::check_resource_uri(resource)
                .map_err(|e| anyhow::anyhow!("--require-resource: {}", e.description))?;
        }
        if let Some((subject, group)) = self
            .groups
            .iter()
            .find(|(subject, group)| subject.is_empty() || group.is_empty())
        {
            bail!("group {subject:?}:{group:?}: subject and group must not be empty");
        }
        for uri in &self.redirect_uris {
            provider::check_redirect_uri(uri)
                .map_err(|reason| anyhow::anyhow!("redirect URI {uri}: {reason}"))?;
        }
        Ok(())
    }
}

/// Normalizes and checks an issuer identifier (RFC 8414 §2: https or http
/// here, no query, no fragment); returns it without a trailing slash.
fn normalize_issuer(issuer: &str) -> anyhow::Result<String> {
    let url = Url::parse(issuer).with_context(|| format!("issuer {issuer:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("issuer must be an http(s) URL");
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("issuer must not have a query or fragment");
    }
    let path = url.path().trim_end_matches('/');
    if !path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~'))
    {
        bail!("issuer path may only contain [A-Za-z0-9/._~-]");
    }
    Ok(issuer.trim_end_matches('/').to_owned())
}

/// A running mock provider; stops when dropped or with [`MockOAuth::stop`].
pub struct MockOAuth {
    base_url: String,
    local_addr: SocketAddr,
    provider: Arc<Provider>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl MockOAuth {
    /// Binds `config.listen` and serves until stopped.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let local_addr = listener.local_addr().context("reading the bound address")?;
        let base_url = format!("http://{local_addr}");
        let issuer = match &config.issuer {
            Some(issuer) => normalize_issuer(issuer)?,
            None => base_url.clone(),
        };
        let provider = Arc::new(Provider::new(config, issuer)?);
        let app = routes::router(provider.clone());
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let server = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(error) = server.await {
                tracing::error!(%error, "mock OAuth server failed");
            }
        });
        tracing::info!(%local_addr, issuer = provider.issuer(), "mock OAuth provider listening");
        Ok(Self {
            base_url,
            local_addr,
            provider,
            shutdown,
            task: Some(task),
        })
    }

    /// `http://<ip>:<port>` of the listener.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The issuer identifier in the metadata.
    pub fn issuer(&self) -> &str {
        self.provider.issuer()
    }

    /// The `/token` request log (same as `GET /control/log`).
    pub fn token_log(&self) -> Vec<TokenLogEntry> {
        self.provider.token_log()
    }

    /// The `/revoke` request log (same as `GET /control/revocation-log`).
    pub fn revocation_log(&self) -> Vec<RevocationLogEntry> {
        self.provider.revocation_log()
    }

    /// The next valid authorization request is answered `access_denied`.
    pub fn deny_next(&self) {
        self.provider.deny_next();
    }

    /// Revokes every token issued so far.
    pub fn revoke_all(&self) {
        self.provider.revoke_all();
    }

    /// Revokes every grant issued to `sub` (refresh tokens and their access tokens);
    /// returns how many grants.
    pub fn revoke_subject(&self, sub: &str) -> usize {
        self.provider.revoke_subject(sub)
    }

    /// Forgets every code, token and log entry (keys and registered clients stay).
    pub fn reset(&self) {
        self.provider.reset();
    }

    /// A new signing key signs everything from now on; the previous keys
    /// stay in the JWKS. Returns the new `kid`.
    pub fn rotate_key(&self) -> anyhow::Result<String> {
        self.provider.rotate_key(false)
    }

    /// Like [`MockOAuth::rotate_key`], but only the new key stays published.
    pub fn rotate_key_and_retire(&self) -> anyhow::Result<String> {
        self.provider.rotate_key(true)
    }

    /// The `kid` of the key that signs tokens now.
    pub fn current_kid(&self) -> String {
        self.provider.current_kid()
    }

    /// The JWKS served at `/jwks`.
    pub fn jwks(&self) -> Value {
        self.provider.jwks()
    }

    /// The current public key as SPKI PEM (the HMAC secret of
    /// [`MintSign::Hs256PublicKey`] tokens).
    pub fn public_key_pem(&self) -> String {
        self.provider.public_key_pem()
    }

    /// Builds a token from verbatim claims (same as `POST /control/mint`).
    pub fn mint(&self, request: &MintRequest) -> anyhow::Result<String> {
        self.provider.mint(request)
    }

    /// Ids of the clients registered at `/register`, in order.
    pub fn registered_clients(&self) -> Vec<String> {
        self.provider.registered_client_ids()
    }

    /// Stops the server and waits (up to 5 s) for it to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for MockOAuth {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Runs the `hawser-mock-oauth` binary: prints `listening http://<ip>:<port>`
/// on stdout and serves until SIGINT/SIGTERM.
pub async fn run(cli: cli::Cli) -> anyhow::Result<()> {
    use std::io::Write;

    let config = cli.into_config();
    let server = MockOAuth::start(config).await?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening {}", server.base_url()).context("writing to stdout")?;
        stdout.flush().context("flushing stdout")?;
    }
    crate::shutdown_signal().await;
    tracing::info!("shutting down");
    server.stop().await;
    Ok(())
}
