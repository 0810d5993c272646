//! hawser-operator: turns `McpConnection` and `McpPolicy` resources into rows of the
//! Hawser gateway's Postgres store, and reports the gateway replicas' view back on
//! each resource.
//!
//! [`controller`] reconciles, using [`secrets`] to read the referenced Secrets and
//! [`status`] to build conditions and Events; [`leader`] makes sure one replica at a
//! time runs it; [`server`] serves health and [`metrics`]. [`run`] wires them up.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod cli;
pub mod controller;
mod error;
pub mod leader;
pub mod metrics;
pub mod secrets;
pub mod server;
pub mod status;

#[cfg(test)]
mod fixtures;

use std::sync::Arc;

use anyhow::Context as _;
use hawser_crds::{McpConnection, McpPolicy};
use hawser_gateway::config::Policy;
use hawser_gateway::store::{PgStore, Store, postgres};
use kube::api::ListParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use cli::{Cli, Settings};
pub use controller::Context;
pub use error::{Error, Result};

/// Runs the operator until SIGINT or SIGTERM.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    // One TLS provider for the process, whatever else the dependency graph enables.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_default().await.context(
        "loading the Kubernetes client configuration (in-cluster service account or KUBECONFIG)",
    )?;
    check_crd(&client, settings.namespace.as_deref()).await?;
    let policies = policies_served(&client, settings.namespace.as_deref()).await?;
    let store = open_store(&settings).await?;
    let (registry, metrics) = metrics::registry();
    let shutdown = hawser_gateway::server::shutdown_signal();
    let (leader_tx, leader_rx) = watch::channel(false);

    let server = server::spawn(
        settings.listen,
        Arc::new(server::AppState {
            registry,
            store: store.clone(),
            leader: leader_rx.clone(),
        }),
        shutdown.clone(),
    )
    .await?;

    let elector = leader::Elector::new(
        client.clone(),
        &settings.lease_namespace,
        settings.identity.clone(),
        leader::Timing::default(),
    );
    info!(
        identity = elector.identity(),
        lease = %format!("{}/{}", settings.lease_namespace, leader::LEASE_NAME),
        "campaigning for leadership"
    );
    let stop_campaign = CancellationToken::new();
    let campaign = tokio::spawn(elector.run(leader_tx, metrics.clone(), stop_campaign.clone()));

    let ctx = Arc::new(Context::new(
        client,
        store,
        metrics,
        Policy {
            allow_stdio_from_api: settings.allow_stdio_from_api,
        },
        leader_rx.clone(),
        &settings.identity,
    ));
    lead(
        ctx,
        settings.namespace.as_deref(),
        policies,
        leader_rx,
        &shutdown,
    )
    .await;
    let requested = shutdown.is_cancelled();

    // The controller has stopped: only now give the lease up.
    stop_campaign.cancel();
    if let Err(error) = campaign.await {
        warn!(%error, "leader election task failed");
    }
    shutdown.cancel();
    server
        .await
        .context("health server task")?
        .context("health server")?;
    if !requested {
        anyhow::bail!("the controller stopped without a shutdown request");
    }
    info!("stopped");
    Ok(())
}

/// Runs the controller whenever this replica leads, stops it the moment it does not.
async fn lead(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    policies: bool,
    mut leader: watch::Receiver<bool>,
    shutdown: &CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            elected = leader.wait_for(|l| *l) => if elected.is_err() { return },
        }
        info!(
            namespace = namespace.unwrap_or("(all)"),
            "leading: starting the controller"
        );
        tokio::select! {
            () = controller::run(ctx.clone(), namespace, policies, shutdown.clone()) => return,
            _ = leader.wait_for(|l| !*l) => warn!("lost the lease: controller stopped"),
        }
    }
}

/// Fails start-up with a hint when the CRD is not installed or not readable.
async fn check_crd(client: &Client, namespace: Option<&str>) -> anyhow::Result<()> {
    let api: Api<McpConnection> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    api.list(&ListParams::default().limit(1)).await.context(
        "cannot list McpConnections: is the CRD installed (kubectl apply -f crds/mcpconnections.yaml) \
         and may this service account list them?",
    )?;
    Ok(())
}

/// Whether McpPolicies can be reconciled. A chart upgrade does not install new CRDs
/// (Helm leaves `crds/` alone after the first install), so a missing McpPolicy CRD, or
/// RBAC that predates it, disables the policy controller with a warning instead of
/// stopping the operator.
async fn policies_served(client: &Client, namespace: Option<&str>) -> anyhow::Result<bool> {
    let api: Api<McpPolicy> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.is_not_found() || status.is_forbidden() => {
            warn!(
                error = %status.message,
                "McpPolicies are not reconciled: install the CRD (kubectl apply -f crds/mcppolicies.yaml), \
                 grant the operator get/list/watch/patch on mcppolicies and patch on mcppolicies/status, then restart it"
            );
            Ok(false)
        }
        Err(error) => Err(error).context("cannot list McpPolicies"),
    }
}

/// Connects to the gateway's database, applies pending migrations (as the gateway
/// does at start) and opens the store.
async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    let pool = postgres::connect(settings.database_url.expose(), &Default::default())
        .await
        .context("connecting to the database (DATABASE_URL)")?;
    postgres::migrate(&pool)
        .await
        .context("applying migrations")?;
    let store = PgStore::start(pool, settings.keyring.clone())
        .await
        .context("opening the store")?;
    Ok(Arc::new(store))
}
