//! The `McpConnection` controller.
//!
//! Each reconciliation reads the resource's Secrets, resolves the spec the way the
//! gateway does, writes the `<namespace>/<name>` row through the gateway's store (which
//! seals the secrets and notifies every replica), then reports status from the
//! replicas' `connection_status` rows. A finalizer removes the row when the resource
//! is deleted. Secrets are watched (metadata only) and mapped to the connections that
//! reference them, so a rotated token reaches the gateway within seconds.
//!
//! [`policy`] reconciles `McpPolicy` resources the same way.

use std::sync::Arc;

use futures::StreamExt;
use hawser_crds::{Auth, McpConnection, OAuth2Grant};
use hawser_gateway::config::{Policy, Source, resolve};
use hawser_gateway::store::{PutOutcome, Store};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{PartialObjectMeta, Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store as Cache};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, instrument, warn};

use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::secrets::{self, Fetched};
use crate::status::{self, Notice, Observation, Sync, reasons};
use crate::{Error, Result};

/// Finalizer that keeps a resource until its row is deleted.
pub const FINALIZER: &str = "hawser.dev/cleanup";
/// Field manager of the status the operator applies, and the Events' reporter.
pub const FIELD_MANAGER: &str = "hawser-operator";
/// Reconciliations running at once (the store's pool has 10 connections).
const CONCURRENCY: u16 = 4;

/// What a reconciliation needs.
pub struct Context {
    pub client: Client,
    pub store: Arc<dyn Store>,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub policy: Policy,
    /// Whether this replica holds the lease; nothing is written otherwise.
    pub leader: watch::Receiver<bool>,
    pub backoff: Backoff,
}

impl Context {
    pub fn new(
        client: Client,
        store: Arc<dyn Store>,
        metrics: Metrics,
        policy: Policy,
        leader: watch::Receiver<bool>,
        identity: &str,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: Some(identity.to_owned()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            store,
            metrics,
            policy,
            leader,
            backoff: Backoff::default(),
        }
    }
}

/// `<namespace>/<name>`: the connection's name in the store.
pub fn connection_name(conn: &McpConnection) -> Result<String> {
    let namespace = conn.namespace().ok_or(Error::Incomplete("namespace"))?;
    let name = conn
        .meta()
        .name
        .as_deref()
        .ok_or(Error::Incomplete("name"))?;
    Ok(format!("{namespace}/{name}"))
}

/// For log lines: the connection's name, or what is known of it.
fn display_name(conn: &McpConnection) -> String {
    connection_name(conn).unwrap_or_else(|_| conn.name_any())
}

fn uses_authorization_code(conn: &McpConnection) -> bool {
    matches!(&conn.spec.auth, Auth::Oauth2(o) if o.grant == OAuth2Grant::AuthorizationCode)
}

/// Reconciles one resource: the finalizer first, then [`apply`] or [`cleanup`].
#[instrument(skip_all, fields(connection = %display_name(&conn)))]
pub async fn reconcile(conn: Arc<McpConnection>, ctx: Arc<Context>) -> Result<Action> {
    if !*ctx.leader.borrow() {
        // The controller is being stopped: leave the object to the new leader.
        debug!("not the leader; skipping");
        return Ok(Action::await_change());
    }
    let _timer = ctx.metrics.count_and_measure();
    let namespace = conn.namespace().ok_or(Error::Incomplete("namespace"))?;
    let api: Api<McpConnection> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, conn, |event| async {
        match event {
            Finalizer::Apply(conn) => apply(&conn, &ctx).await,
            Finalizer::Cleanup(conn) => cleanup(&conn, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Requeue with a per-object backoff that depends on what failed.
pub fn error_policy(conn: Arc<McpConnection>, error: &Error, ctx: Arc<Context>) -> Action {
    let name = display_name(&conn);
    let delay = ctx.backoff.failed(&name, error);
    ctx.metrics.reconcile_failure(error);
    warn!(connection = %name, %error, retry_in_s = delay.as_secs(), "reconcile failed");
    Action::requeue(delay)
}

/// Writes the row (unless a Secret is missing or the spec is invalid), then reports.
async fn apply(conn: &McpConnection, ctx: &Context) -> Result<Action> {
    let name = connection_name(conn)?;
    let namespace = conn.namespace().ok_or(Error::Incomplete("namespace"))?;
    let secret_api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let written = match Fetched::read(&secret_api, &conn.spec).await {
        Ok(fetched) => write(&name, conn, &fetched, ctx).await,
        Err(error) => Err(error),
    };
    let (sync, failure) = match written {
        Ok(outcome) => (Sync::Written(outcome), None),
        Err(Error::SecretNotFound(missing)) => (
            Sync::Failed {
                reason: reasons::SECRET_NOT_FOUND,
                message: missing.to_string(),
            },
            Some(Error::SecretNotFound(missing)),
        ),
        Err(Error::InvalidSpec(spec_error)) => (
            Sync::Failed {
                reason: reasons::INVALID_SPEC,
                message: spec_error.to_string(),
            },
            Some(Error::InvalidSpec(spec_error)),
        ),
        Err(other) => {
            publish(ctx, conn, sync_failed(&other, "connection")).await;
            return Err(other);
        }
    };
    if let Sync::Written(outcome) = &sync {
        match outcome {
            PutOutcome::Created { revision } => info!(revision, "connection created"),
            PutOutcome::Updated { revision } => info!(revision, "connection updated"),
            PutOutcome::Unchanged { .. } => debug!("connection unchanged"),
        }
    }

    let replicas = ctx.store.read_status(&name).await?;
    let previous = conn.status.as_ref();
    let desired = status::build(
        &Observation {
            connection: &name,
            generation: conn.metadata.generation,
            sync: &sync,
            replicas: &replicas,
            authorization_code: uses_authorization_code(conn),
        },
        previous,
        Timestamp::now(),
    );
    if status::differs(previous, &desired) {
        let api: Api<McpConnection> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = Patch::Apply(serde_json::json!({
            "apiVersion": McpConnection::api_version(&()),
            "kind": McpConnection::kind(&()),
            "status": desired,
        }));
        api.patch_status(
            &conn.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &patch,
        )
        .await
        .map_err(Error::Kube)?;
    }
    for notice in status::notices(&sync, previous, &desired) {
        publish(ctx, conn, notice).await;
    }
    match failure {
        Some(error) => Err(error),
        None => {
            ctx.backoff.succeeded(&name);
            Ok(Action::requeue(status::requeue_after(&desired)))
        }
    }
}

/// Resolves the spec with the Secrets' values and writes it; nothing is written when
/// any reference is missing or the spec is invalid.
async fn write(
    name: &str,
    conn: &McpConnection,
    fetched: &Fetched,
    ctx: &Context,
) -> Result<PutOutcome> {
    if let Some(missing) = fetched.missing(&conn.spec) {
        return Err(Error::SecretNotFound(missing));
    }
    let config = resolve(name, conn.spec.clone(), Source::Crd, ctx.policy, fetched)?;
    Ok(ctx
        .store
        .put_connection(&config, conn.metadata.generation)
        .await?)
}

/// A Warning for a failure that is retried without a status change: what failed, in
/// words safe to show to whoever may read the namespace's Events. `what` is the kind
/// of row (`connection`, `policy`).
pub(crate) fn sync_failed(error: &Error, what: &str) -> Notice {
    let note = match error {
        Error::SecretRead { .. } => format!("{error}; retrying"),
        Error::Store(_) => format!("cannot write the {what} to the gateway store; retrying"),
        _ => format!("reconciliation failed ({}); retrying", error.metric_label()),
    };
    Notice {
        type_: EventType::Warning,
        reason: "SyncFailed",
        note,
        action: "Sync",
    }
}

/// Deletes the row; the finalizer is removed once this succeeds.
async fn cleanup(conn: &McpConnection, ctx: &Context) -> Result<Action> {
    let name = connection_name(conn)?;
    let existed = ctx.store.delete_connection(&name).await?;
    info!(existed, "connection deleted");
    let note = if existed {
        "connection removed from the gateway store"
    } else {
        "connection was not in the gateway store"
    };
    publish(
        ctx,
        conn,
        Notice {
            type_: EventType::Normal,
            reason: "Deleted",
            note: note.to_owned(),
            action: "Delete",
        },
    )
    .await;
    ctx.backoff.succeeded(&name);
    Ok(Action::await_change())
}

/// Publishes an Event about `object`; a failure is logged, never fatal (Events are
/// best effort).
pub(crate) async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    object: &K,
    notice: Notice,
) {
    let event = Event {
        type_: notice.type_,
        reason: notice.reason.to_owned(),
        note: Some(notice.note),
        action: notice.action.to_owned(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
        warn!(%error, reason = notice.reason, "cannot publish event");
    }
}

/// The connections in `cache` that reference `secret`.
pub fn connections_using(
    cache: &Cache<McpConnection>,
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<McpConnection>> {
    let (Some(namespace), Some(name)) = (
        secret.metadata.namespace.as_deref(),
        secret.metadata.name.as_deref(),
    ) else {
        return Vec::new();
    };
    cache
        .state()
        .iter()
        .filter(|c| c.namespace().as_deref() == Some(namespace))
        .filter(|c| secrets::referenced(&c.spec).contains(name))
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

/// Runs the controllers over `namespace` (all when `None`) until `shutdown`, then lets
/// running reconciliations finish: the `McpConnection` one, and the `McpPolicy` one
/// when `policies` (its CRD is served).
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    policies: bool,
    shutdown: CancellationToken,
) {
    let connections = run_connections(ctx.clone(), namespace, shutdown.clone());
    if policies {
        futures::join!(connections, policy::run(ctx, namespace, shutdown));
    } else {
        connections.await;
    }
}

/// Runs the `McpConnection` controller until `shutdown`.
async fn run_connections(ctx: Arc<Context>, namespace: Option<&str>, shutdown: CancellationToken) {
    // `PartialObjectMeta<Secret>`: metadata-only requests, so a Secret's data reaches
    // the operator only when a connection uses it (and only through a GET).
    let (connections, secrets): (Api<McpConnection>, Api<PartialObjectMeta<Secret>>) =
        match namespace {
            Some(ns) => (
                Api::namespaced(ctx.client.clone(), ns),
                Api::namespaced(ctx.client.clone(), ns),
            ),
            None => (Api::all(ctx.client.clone()), Api::all(ctx.client.clone())),
        };
    let controller = Controller::new(connections, watcher::Config::default().any_semantic());
    let cache = controller.store();
    controller
        .watches(
            secrets,
            watcher::Config::default().any_semantic(),
            move |secret| connections_using(&cache, &secret),
        )
        .with_config(controller::Config::default().concurrency(CONCURRENCY))
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(connection = %object, "reconciled"),
                // Reconciler failures are logged by `error_policy`.
                Err(
                    controller::Error::ReconcilerFailed(..) | controller::Error::ObjectNotFound(_),
                ) => {}
                Err(error) => warn!(%error, "controller error"),
            }
        })
        .await;
}

pub mod policy;

#[cfg(test)]
mod tests;
