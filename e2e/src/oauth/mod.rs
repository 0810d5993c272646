//! `hawser-mock-oauth`: a strict, test-only OAuth 2 authorization server
//! (authorization code + PKCE S256, refresh-token rotation with reuse
//! detection, client credentials, RFC 7662 introspection, RFC 7009
//! revocation, RFC 8414/OIDC metadata). See `README.md` in this folder.
//!
//! Use it in-process with [`MockOAuth::start`] or as the
//! `hawser-mock-oauth` binary ([`run`]).

pub mod cli;
mod error;
mod params;
mod provider;
mod routes;
#[cfg(test)]
mod tests;

use std::{fmt, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use url::Url;

pub use params::basic_header;
pub use provider::TokenLogEntry;

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
}

impl ClientConfig {
    /// A confidential client allowed to use `client_secret_basic` and
    /// `client_secret_post`.
    pub fn confidential(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            secret: Some(secret.into()),
            auth_methods: vec![AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost],
        }
    }

    /// A public client (`token_endpoint_auth_method` `none`).
    pub fn public(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            secret: None,
            auth_methods: vec![AuthMethod::None],
        }
    }

    /// Restricts the client to the given authentication methods.
    #[must_use]
    pub fn with_auth_methods(mut self, methods: &[AuthMethod]) -> Self {
        self.auth_methods = methods.to_vec();
        self
    }

    pub fn is_confidential(&self) -> bool {
        self.secret.is_some()
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("auth_methods", &self.auth_methods)
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
        let provider = Arc::new(Provider::new(config, issuer));
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

    /// The next valid authorization request is answered `access_denied`.
    pub fn deny_next(&self) {
        self.provider.deny_next();
    }

    /// Revokes every token issued so far.
    pub fn revoke_all(&self) {
        self.provider.revoke_all();
    }

    /// Forgets every code, token and log entry.
    pub fn reset(&self) {
        self.provider.reset();
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
