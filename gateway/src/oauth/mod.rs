//! OAuth 2 towards upstreams: authorization_code with PKCE (started by an operator
//! for a shared token, or by each caller's consent for their own) and
//! client_credentials, tokens sealed in the store, refreshed before expiry and safe
//! across replicas.

pub mod consent;
pub mod discovery;
mod error;
pub mod flow;
pub(crate) mod http;
pub mod tokens;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use url::Url;

pub use error::Error;

use crate::audit::{Auditor, Caller, Record};
use crate::config::{ConnectionConfig, InlineOnly, Policy, Target, UpstreamAuth, resolve};
use crate::crypto::Keyring;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::upstream::UpstreamError;
use crate::upstream::auth::{Credentials, CredentialsFactory, StaticCredentials};
use tokens::ConnectionTokens;

/// OAuth state shared by the registry (token sources) and the HTTP handlers.
pub struct OAuth {
    pub store: Arc<dyn Store>,
    pub public_url: Option<Url>,
    pub policy: Policy,
    /// Seals consent links.
    keyring: Keyring,
    /// Records consent started, completed, refused and revoked.
    auditor: Arc<Auditor>,
    /// Whether a consent link must be completed by a browser signed in to the console
    /// as the subject the link names (set when the console signs people in with the
    /// company's provider).
    consent_sign_in: std::sync::atomic::AtomicBool,
    replica: String,
    metrics: Arc<Metrics>,
    http: reqwest::Client,
    /// Token sources by connection, replaced when the connection changes.
    sources: Mutex<HashMap<String, Arc<ConnectionTokens>>>,
}

impl OAuth {
    pub fn new(
        store: Arc<dyn Store>,
        public_url: Option<Url>,
        policy: Policy,
        keyring: Keyring,
        auditor: Arc<Auditor>,
        replica: &str,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            public_url,
            policy,
            keyring,
            auditor,
            consent_sign_in: std::sync::atomic::AtomicBool::new(false),
            replica: replica.to_owned(),
            metrics,
            http: http::client(),
            sources: Mutex::new(HashMap::new()),
        })
    }

    fn source(&self, config: &ConnectionConfig) -> Result<Arc<ConnectionTokens>, UpstreamError> {
        let UpstreamAuth::OAuth2(settings) = &config.auth else {
            return Err(UpstreamError::NotAuthorized(
                "not an OAuth connection".into(),
            ));
        };
        let url = match &config.target {
            Target::StreamableHttp(u) | Target::Sse(u) => u.clone(),
            Target::Stdio { .. } => {
                return Err(UpstreamError::NotAuthorized(
                    "stdio connections take no OAuth".into(),
                ));
            }
        };
        let tokens = Arc::new(ConnectionTokens::new(
            &config.name,
            url,
            settings.clone(),
            self.store.clone(),
            self.http.clone(),
            self.metrics.clone(),
        ));
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(config.name.clone(), tokens.clone());
        Ok(tokens)
    }

    /// The token source of `connection` (this replica's, or one built from the store).
    pub async fn tokens_for(&self, connection: &str) -> Result<Arc<ConnectionTokens>, Error> {
        if let Some(t) = self
            .sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(connection)
            .cloned()
        {
            return Ok(t);
        }
        let stored = self
            .store
            .get_connection(connection)
            .await?
            .ok_or_else(|| Error::NotFound(connection.to_owned()))?;
        let unusable = |message: String| Error::Unusable {
            connection: connection.to_owned(),
            message,
        };
        let spec = stored.spec.map_err(unusable)?;
        let config =
            resolve(connection, spec, stored.source, self.policy, &InlineOnly).map_err(|e| {
                Error::Unusable {
                    connection: connection.to_owned(),
                    message: e.to_string(),
                }
            })?;
        self.source(&config)
            .map_err(|_| Error::NotOAuth(connection.to_owned()))
    }
}

impl OAuth {
    /// From now on, consent links are completed through the console's sign-in.
    pub fn require_consent_sign_in(&self) {
        self.consent_sign_in
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn consent_needs_sign_in(&self) -> bool {
        self.consent_sign_in
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A cookie of the OAuth pages: scoped to `<publicUrl path>/oauth/`, `Secure`
    /// behind https.
    pub(crate) fn cookie(&self, name: &str, value: &str, max_age: std::time::Duration) -> String {
        let public = self.public_url.as_ref();
        let path = public
            .and_then(|p| flow::public_path(p, "oauth/").ok())
            .map_or_else(|| "/oauth/".to_owned(), |u| u.path().to_owned());
        let secure = public.is_some_and(|p| p.scheme() == "https");
        crate::headers::set_cookie(name, value, &path, max_age, secure)
    }

    /// Records a consent event (`started`, `completed`, `refused`, `revoked`) of
    /// `subject` on `connection`.
    pub fn audit_consent(&self, connection: &str, subject: &str, what: &str, why: Option<&str>) {
        let caller = Caller {
            request_id: crate::crypto::random_hex::<8>(),
            subject: Some(subject.to_owned()),
            ..Caller::default()
        };
        let mut event = crate::audit::event::begin(
            &self.replica,
            caller,
            &format!("consent/{what}"),
            Some(connection),
            None,
        );
        event.success = what != "refused";
        if let Some(why) = why {
            crate::audit::event::refuse(&mut event, "consent", why, std::time::Duration::ZERO);
        }
        self.auditor.record(Record {
            event,
            params: None,
            response: None,
        });
    }
}

impl CredentialsFactory for OAuth {
    fn credentials(&self, config: &ConnectionConfig) -> Result<Credentials, UpstreamError> {
        match &config.auth {
            UpstreamAuth::OAuth2(_) => Ok(Credentials::OAuth(self.source(config)?)),
            _ => StaticCredentials.credentials(config),
        }
    }
}

/// The public OAuth routes (`/oauth/callback`).
pub fn router(oauth: Arc<OAuth>) -> Router {
    Router::new()
        .route("/oauth/callback", get(flow::callback))
        .route("/oauth/consent", get(consent::show).post(consent::start))
        .with_state(oauth)
}
