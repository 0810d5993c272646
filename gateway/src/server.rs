//! Wires the gateway together and serves it until shutdown.

use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::store::{MemoryStore, PgStore, Store};

/// Shared application state.
pub struct AppState {
    pub settings: Settings,
    pub store: Arc<dyn Store>,
}

/// Opens the store the settings ask for: Postgres (migrated) in shared mode, memory otherwise.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
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
    Ok(Arc::new(PgStore::start(pool, keyring).await?))
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

/// Runs the gateway until `shutdown` fires.
pub async fn serve(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(
        listen = %local,
        mode = if settings.is_shared() { "shared" } else { "embedded" },
        store = store.kind(),
        connections = settings.connections.len(),
        "hawser listening"
    );
    let state = Arc::new(AppState { settings, store });
    let app = router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("serving")
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, &'static str) {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store unreachable"),
    }
}
