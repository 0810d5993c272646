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

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hawser_crds::{Auth, McpConnection, OAuth2Grant, TokenOwnership};
use hawser_gateway::config::{Policy, Source, resolve};
use hawser_gateway::store::{PutOutcome, Store};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{PartialObjectMeta, Patch, PatchParams};
use kube::core::NamespaceResourceScope;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store as Cache};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
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

/// `<namespace>/<name>`: the name of `object`'s row in the store.
pub(crate) fn store_name<K: Resource>(object: &K) -> Result<String> {
    let namespace = object.namespace().ok_or(Error::Incomplete("namespace"))?;
    let name = object
        .meta()
        .name
        .as_deref()
        .ok_or(Error::Incomplete("name"))?;
    Ok(format!("{namespace}/{name}"))
}

/// `<namespace>/<name>`: the connection's name in the store.
pub fn connection_name(conn: &McpConnection) -> Result<String> {
    store_name(conn)
}

/// For log lines: the object's name in the store, or what is known of it.
pub(crate) fn display_name<K: Resource>(object: &K) -> String {
    store_name(object).unwrap_or_else(|_| object.name_any())
}

fn uses_authorization_code(conn: &McpConnection) -> bool {
    matches!(&conn.spec.auth, Auth::Oauth2(o) if o.grant == OAuth2Grant::AuthorizationCode)
}

fn uses_per_user_tokens(conn: &McpConnection) -> bool {
    matches!(&conn.spec.auth, Auth::Oauth2(o) if o.tokens == TokenOwnership::PerUser)
}

/// Reconciles one resource: the finalizer first, then [`apply`] or [`cleanup`].
#[instrument(skip_all, fields(connection = %display_name(conn.as_ref())))]
pub async fn reconcile(conn: Arc<McpConnection>, ctx: Arc<Context>) -> Result<Action> {
    reconcile_finalized(conn, &ctx, |event| async {
        match event {
            Finalizer::Apply(conn) => apply(&conn, &ctx).await,
            Finalizer::Cleanup(conn) => cleanup(&conn, &ctx).await,
        }
    })
    .await
}

/// The frame of every reconciliation: nothing unless this replica leads, then
/// `reconcile` (apply or cleanup) behind the [`FINALIZER`], timed.
pub(crate) async fn reconcile_finalized<K, Fut>(
    object: Arc<K>,
    ctx: &Context,
    reconcile: impl FnOnce(Finalizer<K>) -> Fut,
) -> Result<Action>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug,
    Fut: Future<Output = Result<Action>>,
{
    if !*ctx.leader.borrow() {
        // The controller is being stopped: leave the object to the new leader.
        debug!("not the leader; skipping");
        return Ok(Action::await_change());
    }
    let _timer = ctx.metrics.count_and_measure();
    let namespace = object.namespace().ok_or(Error::Incomplete("namespace"))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, object, reconcile)
        .await
        .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Requeue with a per-object backoff that depends on what failed.
pub fn error_policy(conn: Arc<McpConnection>, error: &Error, ctx: Arc<Context>) -> Action {
    let name = display_name(conn.as_ref());
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
    let connected_users = if uses_per_user_tokens(conn) {
        Some(ctx.store.token_holders(Some(&name), None).await?.len())
    } else {
        None
    };
    let previous = conn.status.as_ref();
    let desired = status::build(
        &Observation {
            connection: &name,
            generation: conn.metadata.generation,
            sync: &sync,
            replicas: &replicas,
            authorization_code: uses_authorization_code(conn),
            connected_users,
        },
        previous,
        Timestamp::now(),
    );
    if status::differs(previous, &desired) {
        patch_status::<McpConnection>(&ctx.client, &namespace, &conn.name_any(), &desired).await?;
    }
    let notices = status::notices(&sync, previous, &desired);
    let requeue = status::requeue_after(&desired);
    conclude(ctx, conn, notices, failure, &name, requeue).await
}

/// Applies `status` to the status of the `K` `namespace/name` (server-side apply as
/// [`FIELD_MANAGER`], forced).
pub(crate) async fn patch_status<K>(
    client: &Client,
    namespace: &str,
    name: &str,
    status: &impl Serialize,
) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let patch = Patch::Apply(serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    }));
    api.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &patch)
        .await
        .map_err(Error::Kube)?;
    Ok(())
}

/// The end of an apply: publishes `notices` about `object`, then fails with `failure`
/// or, without one, forgets the backoff of `key` and requeues after `requeue`.
pub(crate) async fn conclude<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    object: &K,
    notices: Vec<Notice>,
    failure: Option<Error>,
    key: &str,
    requeue: Duration,
) -> Result<Action> {
    for notice in notices {
        publish(ctx, object, notice).await;
    }
    match failure {
        Some(error) => Err(error),
        None => {
            ctx.backoff.succeeded(key);
            Ok(Action::requeue(requeue))
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
    Ok(deleted(ctx, conn, "connection", existed, &name).await)
}

/// The end of a cleanup, once the row of `object` (a `what`) is deleted (`existed`:
/// whether there was one): a log line and an Event, the backoff of `key` forgotten.
pub(crate) async fn deleted<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    object: &K,
    what: &str,
    existed: bool,
    key: &str,
) -> Action {
    info!(existed, "{what} deleted");
    let note = if existed {
        format!("{what} removed from the gateway store")
    } else {
        format!("{what} was not in the gateway store")
    };
    publish(
        ctx,
        object,
        Notice {
            type_: EventType::Normal,
            reason: "Deleted",
            note,
            action: "Delete",
        },
    )
    .await;
    ctx.backoff.succeeded(key);
    Action::await_change()
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

/// An API over `namespace`, or over every namespace when `None`.
pub(crate) fn watched<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the `McpConnection` controller until `shutdown`.
async fn run_connections(ctx: Arc<Context>, namespace: Option<&str>, shutdown: CancellationToken) {
    // `PartialObjectMeta<Secret>`: metadata-only requests, so a Secret's data reaches
    // the operator only when a connection uses it (and only through a GET).
    let connections: Api<McpConnection> = watched(&ctx.client, namespace);
    let secrets: Api<PartialObjectMeta<Secret>> = watched(&ctx.client, namespace);
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
