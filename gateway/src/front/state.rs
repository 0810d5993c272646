//! [`Front`]: what the MCP endpoints share.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::bridge::Bridge;
use super::listeners::Listeners;
use super::relay::Relay;
use super::session::Sessions;
use crate::audit::Auditor;
use crate::config::{HttpLimits, Security};
use crate::crypto::Keyring;
use crate::identity::Authenticator;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::store::Store;

/// State of the MCP endpoints.
pub struct Front {
    pub security: Security,
    /// Who is calling.
    pub identity: Arc<Authenticator>,
    /// Client addresses that keep failing authentication.
    pub auth_failures: super::throttle::FailureThrottle,
    /// What each caller may see and call.
    pub policy: Arc<crate::policy::Policies>,
    /// Consent links for connections with per-user tokens.
    pub oauth: Arc<crate::oauth::OAuth>,
    pub sessions: Arc<Sessions>,
    /// Seals what Hawser hands clients to give back (2026-07-28 `requestState`).
    pub keyring: Keyring,
    pub registry: Arc<Registry>,
    pub relay: Arc<Relay>,
    /// 2026-07-28 clients' calls waiting for a retry with the answer.
    pub bridge: Arc<Bridge>,
    /// `subscriptions/listen` streams open here.
    pub listeners: Arc<Listeners>,
    pub store: Arc<dyn Store>,
    pub auditor: Arc<Auditor>,
    /// The last hour's calls per connection, for the console (embedded mode only).
    pub traffic: Option<Arc<crate::audit::traffic::RecentTraffic>>,
    pub metrics: Arc<Metrics>,
    pub replica: String,
    /// Sessions unused for this long are ended.
    pub session_idle_timeout: Duration,
    pub limits: HttpLimits,
    /// Cancelled when the process is asked to stop: GET streams end (the clients
    /// re-open them on another replica) so that shutdown waits only for calls.
    pub draining: CancellationToken,
}

impl Front {
    /// What binds task ids to their callers, when callers authenticate (see
    /// [`super::task_ids::Names`]); `None` when everyone is `anonymous`.
    pub fn task_tagger(&self) -> Option<&crate::crypto::Tagger> {
        (!self.identity.is_open()).then(|| self.keyring.tagger())
    }
}
