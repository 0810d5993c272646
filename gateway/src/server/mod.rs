//! Wires the gateway together and serves it until shutdown.

pub mod listener;

use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::admin::Admin;
use crate::config::{Policy, Settings, Source};

use crate::audit::Auditor;
use crate::crypto::IdHash;
use crate::front::{self, Front};
use crate::metrics::Metrics;
use crate::oauth::OAuth;
use crate::registry::{Registry, RegistrySettings};
use crate::store::{Health, MemoryStore, PgStore, Store, StoreKind};

/// Shared application state.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub health: Arc<Health>,
    pub auditor: Arc<Auditor>,
    /// Cancelled once the HTTP server has finished every request: the audit writer
    /// and the upstreams stop then, not at the signal, so that a call still being
    /// served during the drain finds its upstream and records its event.
    pub drained: CancellationToken,
    pub registry: Arc<Registry>,
    pub front: Arc<Front>,
    pub admin: Arc<Admin>,
    pub console: Arc<crate::console::Console>,
    pub oauth: Arc<OAuth>,
    pub metrics: Arc<Metrics>,
    pub replica: String,
    /// Wrong admin tokens on the admin API, per client address (as the console's
    /// sign-in form keeps its own).
    pub admin_failures: front::throttle::FailureThrottle,
}

/// Opens the store the settings ask for: Postgres (migrated) in shared mode, memory
/// otherwise. `token` is this process's address on the replica bus.
pub async fn open_store(settings: &Settings, token: &str) -> anyhow::Result<Arc<dyn Store>> {
    let Some(url) = &settings.database_url else {
        return Ok(Arc::new(MemoryStore::new()));
    };
    let keyring = settings.keyring.clone().context(
        "HAWSER_ENCRYPTION_KEYS is required with DATABASE_URL (generate one with `hawser keygen`)",
    )?;
    let pool = crate::store::postgres::connect(url.expose(), &Default::default())
        .await
        .context("connecting to the database")?;
    crate::store::postgres::migrate(&pool)
        .await
        .context("applying migrations")?;
    Ok(Arc::new(
        PgStore::start_replica(pool, keyring, token).await?,
    ))
}

/// Resolves when the process gets SIGINT or SIGTERM.
pub fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        t.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        t.cancel();
    });
    token
}

/// A short random token unique to this process (upstream and relay ids, bus address).
pub fn process_token() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// Writes the config file's connections to the store (source `file`) and removes
/// file connections that are no longer in it.
async fn sync_file_connections(store: &dyn Store, settings: &Settings) -> anyhow::Result<()> {
    for conn in &settings.connections {
        store
            .put_connection(conn, None)
            .await
            .with_context(|| format!("storing connection {:?} from the config file", conn.name))?;
    }
    let keep: Vec<String> = settings
        .connections
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let removed = store.prune_connections(Source::File, &keep).await?;
    for name in removed {
        tracing::info!(connection = %name, "removed: no longer in the config file");
    }
    Ok(())
}

/// Writes the config file's policies to the store (source `file`), refusing a broken
/// one, and removes file policies that are no longer in it.
async fn sync_file_policies(store: &dyn Store, settings: &Settings) -> anyhow::Result<()> {
    for (name, spec, targets) in &settings.policies {
        crate::policy::check(spec).map_err(|e| anyhow::anyhow!("policies: {name}: {e}"))?;
        store
            .put_policy(name, spec, Source::File, targets, None)
            .await
            .with_context(|| format!("storing policy {name:?} from the config file"))?;
    }
    let keep: Vec<String> = settings
        .policies
        .iter()
        .map(|(n, _, _)| n.clone())
        .collect();
    for name in store.prune_policies(Source::File, &keep).await? {
        tracing::info!(policy = %name, "removed: no longer in the config file");
    }
    Ok(())
}

/// Builds the gateway on `store`.
pub async fn build(
    settings: &Settings,
    store: Arc<dyn Store>,
    token: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<AppState>> {
    let token = token.to_owned();
    let policy = Policy {
        allow_stdio_from_api: settings.security.allow_stdio_from_api,
    };
    sync_file_connections(store.as_ref(), settings).await?;
    // Exemplars on request durations when spans are exported (tracing is installed
    // before the gateway starts).
    let metrics = Metrics::with_exemplars(crate::telemetry::on());
    if let Some(export) = &settings.metrics_export {
        crate::telemetry::metrics::spawn(
            export,
            &settings.replica_id,
            metrics.clone(),
            shutdown.child_token(),
        )
        .context("starting the OTLP metrics export")?;
    }
    let health = match store.kind() {
        StoreKind::Memory => Health::always_up(),
        StoreKind::Postgres => Health::spawn(
            store.clone(),
            metrics.store_up.clone(),
            shutdown.child_token(),
        ),
    };
    // Events wait on disk until the store has them; in embedded mode they are log
    // lines, written at once.
    let spool_dir = match store.kind() {
        StoreKind::Memory => None,
        StoreKind::Postgres => settings.audit.spool_dir.clone(),
    };
    // The audit writer and the upstreams outlive the HTTP server: they stop once the
    // last request has finished and recorded its event (see `serve`).
    let drained = CancellationToken::new();
    let auditor = Auditor::start(
        settings.audit.clone(),
        store.clone(),
        health.clone(),
        spool_dir,
        metrics.clone(),
        drained.clone(),
    );
    // Without configured keys (embedded mode) what Hawser seals for clients is only
    // valid in this process, which is the only replica.
    let keyring = settings
        .keyring
        .clone()
        .unwrap_or_else(crate::crypto::Keyring::ephemeral);
    let oauth = OAuth::new(
        store.clone(),
        settings.public_url.clone(),
        policy,
        keyring.clone(),
        auditor.clone(),
        &settings.replica_id,
        metrics.clone(),
    );
    let registry = Registry::start(
        RegistrySettings {
            replica: settings.replica_id.clone(),
            replica_token: token.clone(),
            policy,
        },
        store.clone(),
        oauth.clone(),
        metrics.clone(),
        drained.clone(),
    );
    let api_keys = crate::identity::apikeys::ApiKeys::new(store.clone());
    if settings.client_auth.api_keys {
        api_keys.load().await.context("reading API keys")?;
        api_keys.spawn(shutdown.child_token());
    }
    // Hawser's own signing key, for identity mode `jwt` towards upstreams.
    let issuer = settings.public_url.as_ref().map_or_else(
        || "hawser".to_owned(),
        |u| u.as_str().trim_end_matches('/').to_owned(),
    );
    let signer = crate::identity::signing::Signer::new(issuer, store.clone());
    signer
        .load()
        .await
        .context("loading the gateway's signing keys")?;
    signer.spawn(shutdown.child_token());
    let identity = Arc::new(crate::identity::Authenticator::new(
        &settings.client_auth,
        settings.public_url.clone(),
        Some(api_keys.clone()),
        Some(signer.clone()),
    ));
    if let Some(oidc) = identity.oidc() {
        oidc.spawn_refresh(shutdown.child_token());
    }
    sync_file_policies(store.as_ref(), settings).await?;
    let policies =
        crate::policy::Policies::new(store.clone(), settings.policy_default_deny, metrics.clone());
    policies.load().await.context("reading policies")?;
    policies.spawn(shutdown.child_token());
    // Embedded mode has no audit table to chart: the console's charts count calls here.
    let traffic = (store.kind() == StoreKind::Memory)
        .then(|| Arc::new(crate::audit::traffic::RecentTraffic::new()));
    let front = Arc::new(Front {
        security: settings.security.clone(),
        identity: identity.clone(),
        auth_failures: front::throttle::FailureThrottle::new(
            settings.http.max_auth_failures_per_minute,
        ),
        oauth: oauth.clone(),
        policy: policies.clone(),
        sessions: front::session::Sessions::new(
            store.clone(),
            health.clone(),
            // A pooled upstream session outlives a parked call's wait.
            settings
                .session_idle_timeout
                .min(std::time::Duration::from_secs(600))
                .max(front::bridge::PARK_FOR + std::time::Duration::from_secs(60)),
        ),
        keyring: keyring.clone(),
        registry: registry.clone(),
        relay: front::relay::Relay::new(&token),
        bridge: front::bridge::Bridge::new(
            keyring.clone(),
            &token,
            settings.advertise_url.as_ref(),
        ),
        listeners: Default::default(),
        store: store.clone(),
        auditor: auditor.clone(),
        traffic: traffic.clone(),
        metrics: metrics.clone(),
        replica: settings.replica_id.clone(),
        session_idle_timeout: settings.session_idle_timeout,
        limits: settings.http,
        draining: shutdown.child_token(),
    });
    front::spawn_background(front.clone(), shutdown.child_token());
    let admin = Arc::new(Admin {
        store: store.clone(),
        token: settings
            .admin_token
            .as_ref()
            .map(|t| IdHash::of(t.expose())),
        policy,
        oauth: oauth.clone(),
        api_keys: settings.client_auth.api_keys.then_some(api_keys),
        signer: Some(signer),
        policies,
        registry: registry.clone(),
        identity,
    });
    let console = crate::console::Console::new(
        crate::console::Parts {
            settings: settings.console.clone(),
            keyring: keyring.clone(),
            public_url: settings.public_url.clone(),
            replica: settings.replica_id.clone(),
            max_auth_failures_per_minute: settings.http.max_auth_failures_per_minute,
            trusted_proxies: settings.security.trusted_proxies.clone(),
            metrics: metrics.clone(),
            traffic,
        },
        admin.clone(),
    );
    console
        .start(shutdown.child_token())
        .await
        .context("reading console sign-out revocations")?;
    // Where people sign in to the console with the company's provider, a per-user
    // consent link is completed by a browser signed in as the user it was made for.
    if console.signs_in_with_oidc() {
        oauth.require_consent_sign_in();
    }
    Ok(Arc::new(AppState {
        store,
        health,
        auditor,
        drained,
        registry,
        front,
        admin,
        console,
        oauth,
        metrics,
        replica: settings.replica_id.clone(),
        admin_failures: front::throttle::FailureThrottle::new(
            settings.http.max_auth_failures_per_minute,
        ),
    }))
}

/// The whole HTTP surface.
pub fn router(state: Arc<AppState>) -> Router {
    let ops = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state.clone());
    let admin = crate::admin::router(state.admin.clone()).layer(
        axum::middleware::from_fn_with_state(state.clone(), guard_admin_api),
    );
    front::router(state.front.clone())
        .merge(admin)
        .merge(crate::oauth::router(state.oauth.clone()))
        .merge(crate::console::router(state.console.clone()))
        .merge(ops)
}

/// Failed authentication on the admin API, counted in `hawser_auth_failures_total`
/// and per client address (`http.maxAuthFailuresPerMinute`). Wrong admin tokens have
/// an allowance of their own, as at the console's sign-in form: an address over it
/// gets 429 with `Retry-After` whatever it sends, the right token included, since
/// answering a right guess would make guessing free. A caller's own routes
/// (`/api/v1/me`) take the caller's credentials as `/mcp` does, and count against the
/// address's `/mcp` allowance as they would there: valid credentials are never refused.
async fn guard_admin_api(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let front = &state.front;
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let address =
        front::request::client_address(request.headers(), peer, &front.security.trusted_proxies)
            .unwrap_or_default();
    let own = request.uri().path().starts_with("/api/v1/me/");
    let throttle = if own {
        &front.auth_failures
    } else {
        &state.admin_failures
    };
    if !own && let Some(wait) = throttle.waiting(&address) {
        return too_many_failures(wait);
    }
    let response = next.run(request).await;
    if response.status() != StatusCode::UNAUTHORIZED {
        return response;
    }
    let reason = response
        .extensions()
        .get::<crate::admin::AuthFailure>()
        .map_or("invalid", |f| f.0);
    front.metrics.auth_failure(reason);
    match throttle.failed(&address) {
        Some(wait) => too_many_failures(wait),
        None => response,
    }
}

/// 429 for an address over its allowance of failed authentications.
fn too_many_failures(wait: std::time::Duration) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let seconds = wait.as_secs().max(1);
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(axum::http::header::RETRY_AFTER, seconds.to_string())],
        axum::Json(serde_json::json!({
            "error": format!("too many failed authentications from this address; retry in {seconds} s")
        })),
    )
        .into_response()
}

/// OpenMetrics (with exemplars) for scrapers that accept it, Prometheus text for the
/// others.
async fn metrics(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> impl axum::response::IntoResponse {
    let m = &state.metrics;
    m.sessions_active
        .set(state.front.sessions.local().len() as i64);
    if let Some((size, idle)) = state.store.pool_stats() {
        m.db_pool
            .get_or_create(&crate::metrics::PoolLabels { state: "idle" })
            .set(i64::from(idle));
        m.db_pool
            .get_or_create(&crate::metrics::PoolLabels { state: "used" })
            .set(i64::from(size.saturating_sub(idle)));
    }
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let format = crate::metrics::Format::accepted(accept);
    (
        [(axum::http::header::CONTENT_TYPE, format.content_type())],
        m.render_as(format),
    )
}

/// Ready once the connections are loaded and dialled once (at most 10 s for those
/// still dialling), while the store answers. Reads the last probe of the store (at
/// most a second old) rather than asking it, so it answers at once even when the
/// store does not.
async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, &'static str) {
    if !state.registry.is_synced() {
        return (StatusCode::SERVICE_UNAVAILABLE, "loading connections");
    }
    if !state.registry.is_settled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "dialling connections");
    }
    if state.health.is_up() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "store unreachable")
    }
}

/// Runs the gateway until `shutdown` fires.
pub async fn serve(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    crate::install_crypto_provider();
    let token = process_token();
    let store = open_store(&settings, &token).await?;

    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let local = listener.local_addr()?;
    // The connection threads (none with one core) live until every request has
    // finished and the audit log is written: requests' own tasks run on them.
    let workers = crate::runtime::Workers::start(crate::runtime::threads())
        .context("starting the connection threads")?;
    let state = build(&settings, store, &token, &shutdown).await?;

    tracing::info!(
        listen = %local,
        replica = %state.replica,
        mode = if settings.is_shared() { "shared" } else { "embedded" },
        store = state.store.kind().as_str(),
        "hawser listening"
    );
    // Tests and scripts wait for this line.
    if settings.console.enabled {
        println!("listening http://{local} (console: http://{local}/ui/)");
    } else {
        println!("listening http://{local}");
    }
    let metrics = state.metrics.clone();
    let (auditor, drained) = (state.auditor.clone(), state.drained.clone());
    let registry = state.registry.clone();
    let app = router(state);
    listener::serve(listener, &workers, app, settings.http, metrics, shutdown).await;
    // Every request has finished and recorded its event: close the upstreams, write
    // (or spool) the rest of the audit log.
    drained.cancel();
    // Closing the upstreams must not hold the exit up for long (a store away).
    let closed = tokio::time::timeout(std::time::Duration::from_secs(2), registry.stopped());
    let _ = tokio::join!(closed, auditor.finished());
    drop(workers);
    Ok(())
}
