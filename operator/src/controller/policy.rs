//! The `McpPolicy` controller.
//!
//! Each reconciliation checks the spec as the gateway will compile it
//! ([`hawser_gateway::policy::check`]), resolves its `targetRefs` into stored
//! connection names (`<namespace>/<name>`; label selectors against the namespace's
//! `McpConnection`s, listed through the API), writes the `<namespace>/<name>` row of
//! the `policies` table (which notifies every gateway replica) and reports status. A
//! spec the gateway would not load is not written: the previous row, if any, stays
//! in force. A finalizer removes the row when the resource is deleted.
//!
//! `McpConnection`s are watched (metadata only); a connection that appears, changes
//! labels or starts going away re-reconciles the policies of its namespace that use
//! selectors. At start, rows of source `crd` whose `McpPolicy` is gone are pruned.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use hawser_crds::{McpConnection, McpPolicy, McpPolicySpec};
use hawser_gateway::config::Source;
use hawser_gateway::store::StoredPolicy;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, PartialObjectMeta};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::finalizer::Event as Finalizer;
use kube::runtime::reflector::{ObjectRef, Store as Cache};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, instrument, warn};

use super::{
    CONCURRENCY, Context, conclude, deleted, display_name, patch_status, publish,
    reconcile_finalized, store_name, sync_failed, watched,
};
use crate::status::policy::{self as status, PolicySync, Written};
use crate::status::{REQUEUE_READY, reasons};
use crate::{Error, Result};

/// `<namespace>/<name>`: the policy's name in the store.
pub fn policy_name(policy: &McpPolicy) -> Result<String> {
    store_name(policy)
}

/// The backoff key: connections and policies may share a `<namespace>/<name>`.
fn backoff_key(name: &str) -> String {
    format!("McpPolicy {name}")
}

/// Reconciles one `McpPolicy`: the finalizer first, then [`apply`] or [`cleanup`].
#[instrument(skip_all, fields(policy = %display_name(policy.as_ref())))]
pub async fn reconcile(policy: Arc<McpPolicy>, ctx: Arc<Context>) -> Result<Action> {
    reconcile_finalized(policy, &ctx, |event| async {
        match event {
            Finalizer::Apply(policy) => apply(&policy, &ctx).await,
            Finalizer::Cleanup(policy) => cleanup(&policy, &ctx).await,
        }
    })
    .await
}

/// Requeue with a per-object backoff that depends on what failed (an invalid policy:
/// 10 minutes, as an edit triggers a reconciliation at once).
pub fn error_policy(policy: Arc<McpPolicy>, error: &Error, ctx: Arc<Context>) -> Action {
    let name = display_name(policy.as_ref());
    let delay = ctx.backoff.failed(&backoff_key(&name), error);
    ctx.metrics.reconcile_failure(error);
    warn!(policy = %name, %error, retry_in_s = delay.as_secs(), "reconcile failed");
    Action::requeue(delay)
}

/// Checks, resolves and writes the row (unless the spec is invalid), then reports.
async fn apply(policy: &McpPolicy, ctx: &Context) -> Result<Action> {
    let name = policy_name(policy)?;
    let namespace = policy.namespace().ok_or(Error::Incomplete("namespace"))?;
    let written = match hawser_gateway::policy::check(&policy.spec) {
        Ok(()) => write(&name, &namespace, policy, ctx).await,
        Err(invalid) => Err(Error::InvalidPolicy(invalid)),
    };
    let (sync, failure) = match written {
        Ok((outcome, connections)) => {
            match outcome {
                Written::Created => info!(connections, "policy created"),
                Written::Updated => info!(connections, "policy updated"),
                Written::Unchanged => debug!("policy unchanged"),
            }
            let sync = PolicySync::Written {
                outcome,
                connections,
                rules: policy.spec.rules.len(),
            };
            (sync, None)
        }
        Err(Error::InvalidPolicy(invalid)) => (
            PolicySync::Failed {
                reason: reasons::INVALID_POLICY,
                message: invalid.to_string(),
            },
            Some(Error::InvalidPolicy(invalid)),
        ),
        Err(other) => {
            publish(ctx, policy, sync_failed(&other, "policy")).await;
            return Err(other);
        }
    };

    let previous = policy.status.as_ref();
    let desired = status::build(
        policy.metadata.generation,
        &sync,
        previous,
        Timestamp::now(),
    );
    if status::differs(previous, &desired) {
        patch_status::<McpPolicy>(&ctx.client, &namespace, &policy.name_any(), &desired).await?;
    }
    let notices = status::notices(&sync, previous, &desired);
    // Label changes arrive through the McpConnection watch; the requeue is a safety net.
    conclude(
        ctx,
        policy,
        notices,
        failure,
        &backoff_key(&name),
        REQUEUE_READY,
    )
    .await
}

/// Resolves the targets and writes the row unless it already says the same; the
/// outcome and the number of connections targeted.
async fn write(
    name: &str,
    namespace: &str,
    policy: &McpPolicy,
    ctx: &Context,
) -> Result<(Written, usize)> {
    let connections = targets(&ctx.client, namespace, &policy.spec).await?;
    let generation = policy.metadata.generation;
    let stored = ctx.store.list_policies().await?;
    let current = stored.iter().find(|p| p.name == name);
    if current.is_some_and(|p| holds(p, &policy.spec, &connections, generation)) {
        return Ok((Written::Unchanged, connections.len()));
    }
    let existed = ctx
        .store
        .put_policy(name, &policy.spec, Source::Crd, &connections, generation)
        .await?;
    let outcome = if existed {
        Written::Updated
    } else {
        Written::Created
    };
    Ok((outcome, connections.len()))
}

/// Whether `row` already holds this spec, targets and generation (so writing again
/// would only wake every replica for nothing).
fn holds(
    row: &StoredPolicy,
    spec: &McpPolicySpec,
    connections: &[String],
    generation: Option<i64>,
) -> bool {
    row.source == Source::Crd
        && row.generation == generation
        && row.connections == connections
        && row.spec.as_ref().is_ok_and(|s| s == spec)
}

/// The stored names (`<namespace>/<name>`, sorted, without repeats) of the
/// connections `spec` targets: each `name` as is (whether or not the McpConnection
/// exists yet), each `selector` against the labels of the namespace's McpConnections
/// (one metadata list, only when some target uses a selector; connections being
/// deleted are left out).
pub async fn targets(
    client: &Client,
    namespace: &str,
    spec: &McpPolicySpec,
) -> Result<Vec<String>> {
    let mut out = BTreeSet::new();
    for target in &spec.target_refs {
        if let Some(name) = &target.name {
            out.insert(format!("{namespace}/{name}"));
        }
    }
    let selectors: Vec<&BTreeMap<String, String>> = spec
        .target_refs
        .iter()
        .filter_map(|t| t.selector.as_ref().map(|s| &s.match_labels))
        .collect();
    if !selectors.is_empty() {
        let api: Api<McpConnection> = Api::namespaced(client.clone(), namespace);
        let listed = api
            .list_metadata(&ListParams::default())
            .await
            .map_err(Error::Kube)?;
        for conn in listed.items {
            let meta = &conn.metadata;
            let Some(name) = meta.name.as_deref() else {
                continue;
            };
            let labels = meta.labels.clone().unwrap_or_default();
            if meta.deletion_timestamp.is_none() && selectors.iter().any(|s| selects(s, &labels)) {
                out.insert(format!("{namespace}/{name}"));
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// `matchLabels` semantics: every pair present (an empty selector selects everything).
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Deletes the row; the finalizer is removed once this succeeds.
async fn cleanup(policy: &McpPolicy, ctx: &Context) -> Result<Action> {
    let name = policy_name(policy)?;
    let existed = ctx.store.delete_policy(&name).await?;
    Ok(deleted(ctx, policy, "policy", existed, &backoff_key(&name)).await)
}

type Labels = BTreeMap<String, String>;

/// The labels last seen of each McpConnection, so that only a connection that
/// appears, changes labels or starts going away triggers the policies (status
/// updates, which the operator itself makes every few minutes, do not).
#[derive(Debug, Default)]
pub struct LabelMemory {
    seen: Mutex<HashMap<(String, String), Labels>>,
}

impl LabelMemory {
    /// Whether `conn` is new, has other labels than last time, or has just started
    /// going away (its entry is then forgotten).
    pub fn changed(&self, conn: &PartialObjectMeta<McpConnection>) -> bool {
        let meta = &conn.metadata;
        let (Some(namespace), Some(name)) = (meta.namespace.clone(), meta.name.clone()) else {
            return false;
        };
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (namespace, name);
        if meta.deletion_timestamp.is_some() {
            return seen.remove(&key).is_some();
        }
        let labels = meta.labels.clone().unwrap_or_default();
        seen.insert(key, labels.clone()).as_ref() != Some(&labels)
    }
}

/// The policies in `cache` that `conn` may concern: those of its namespace that
/// select connections by label.
pub fn policies_selecting(
    cache: &Cache<McpPolicy>,
    conn: &PartialObjectMeta<McpConnection>,
) -> Vec<ObjectRef<McpPolicy>> {
    let Some(namespace) = conn.metadata.namespace.as_deref() else {
        return Vec::new();
    };
    cache
        .state()
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace))
        .filter(|p| p.spec.target_refs.iter().any(|t| t.selector.is_some()))
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

/// Deletes the rows of source `crd` whose McpPolicy no longer exists (deleted while
/// no operator ran, or with its finalizer removed by hand); their names. With a
/// watched `namespace`, rows of other namespaces are left alone.
pub async fn prune(ctx: &Context, namespace: Option<&str>) -> Result<Vec<String>> {
    let api: Api<McpPolicy> = watched(&ctx.client, namespace);
    let listed = api
        .list_metadata(&ListParams::default())
        .await
        .map_err(Error::Kube)?;
    let mut keep: Vec<String> = listed
        .items
        .iter()
        .filter_map(|p| {
            let meta = &p.metadata;
            Some(format!(
                "{}/{}",
                meta.namespace.as_deref()?,
                meta.name.as_deref()?
            ))
        })
        .collect();
    if let Some(ns) = namespace {
        let prefix = format!("{ns}/");
        let others = ctx.store.list_policies().await?.into_iter();
        keep.extend(
            others
                .filter(|p| p.source == Source::Crd && !p.name.starts_with(&prefix))
                .map(|p| p.name),
        );
    }
    Ok(ctx.store.prune_policies(Source::Crd, &keep).await?)
}

/// Prunes, then runs the controller over `namespace` (all when `None`) until
/// `shutdown`, then lets running reconciliations finish.
pub async fn run(ctx: Arc<Context>, namespace: Option<&str>, shutdown: CancellationToken) {
    match prune(&ctx, namespace).await {
        Ok(gone) if gone.is_empty() => {}
        Ok(gone) => info!(?gone, "deleted policies whose McpPolicy no longer exists"),
        Err(error) => warn!(%error, "cannot prune policies of deleted McpPolicies"),
    }
    let policies: Api<McpPolicy> = watched(&ctx.client, namespace);
    let connections: Api<PartialObjectMeta<McpConnection>> = watched(&ctx.client, namespace);
    let controller = Controller::new(policies, watcher::Config::default().any_semantic());
    let cache = controller.store();
    let memory = LabelMemory::default();
    controller
        .watches(
            connections,
            watcher::Config::default().any_semantic(),
            move |conn| {
                if memory.changed(&conn) {
                    policies_selecting(&cache, &conn)
                } else {
                    Vec::new()
                }
            },
        )
        .with_config(controller::Config::default().concurrency(CONCURRENCY))
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(policy = %object, "reconciled"),
                Err(
                    controller::Error::ReconcilerFailed(..) | controller::Error::ObjectNotFound(_),
                ) => {}
                Err(error) => warn!(%error, "policy controller error"),
            }
        })
        .await;
}

#[cfg(test)]
mod tests;
