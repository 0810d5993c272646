//! `/healthz`, `/readyz` and `/metrics` on `--listen`.
//!
//! Every replica serves them, leader or not: `/readyz` checks the store is reachable
//! (a standby must be able to take over) and says which role the replica has.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hawser_gateway::store::Store;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the endpoints read.
pub struct AppState {
    pub registry: Registry,
    pub store: Arc<dyn Store>,
    pub leader: watch::Receiver<bool>,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let role = if *state.leader.borrow() {
        "leader"
    } else {
        "standby"
    };
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, format!("ready ({role})")),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: store unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "store unreachable".to_owned(),
            )
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "store did not answer in time".to_owned(),
        ),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Binds `listen` (failing start-up if it cannot) and serves until `shutdown`.
pub async fn spawn(
    listen: SocketAddr,
    state: Arc<AppState>,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the health and metrics server to {listen}"))?;
    tracing::info!(%listen, "serving /healthz, /readyz and /metrics");
    Ok(tokio::spawn(async move {
        axum::serve(listener, router(state))
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hawser_gateway::store::MemoryStore;

    #[tokio::test]
    async fn health_ready_and_metrics_answer() {
        let (registry, metrics) = crate::metrics::registry();
        metrics.set_leader(true);
        let (_tx, leader) = watch::channel(true);
        let state = Arc::new(AppState {
            registry,
            store: Arc::new(MemoryStore::new()),
            leader,
        });
        let shutdown = CancellationToken::new();
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = shutdown.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, router(state))
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        });
        let get = |path: &'static str| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            response
        };
        assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
        let ready = get("/readyz").await;
        assert!(
            ready.starts_with("HTTP/1.1 200") && ready.ends_with("ready (leader)"),
            "{ready}"
        );
        let metrics = get("/metrics").await;
        assert!(metrics.contains("hawser_operator_leader 1"), "{metrics}");
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
