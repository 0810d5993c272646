//! Leader election through the `coordination.k8s.io/v1` Lease `hawser-operator`, so
//! that of several operator replicas exactly one runs the controller and writes to
//! the gateway store.
//!
//! kube-runtime 5 ships no election helper, so this follows client-go's
//! `leaderelection` package:
//! - every write to the Lease is a PUT carrying the `resourceVersion` that was read:
//!   of two candidates racing for a free or expired lease, one gets 409 Conflict;
//! - a lease held by another replica counts as expired only once its record has
//!   stayed unchanged for `leaseDurationSeconds` as measured by *our* clock since we
//!   first saw it, so clock skew between nodes does not matter;
//! - the leader steps down when it has not renewed within `renew_deadline`, shorter
//!   than the lease duration, so it stops writing before anyone may take over.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics::Metrics;

/// Name of the Lease the operator replicas compete for.
pub const LEASE_NAME: &str = "hawser-operator";

/// Election timing (client-go's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a lease stays valid after its last renewal.
    pub lease_duration: Duration,
    /// The leader steps down when it could not renew for this long.
    pub renew_deadline: Duration,
    /// Pause between attempts to acquire or renew.
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What to do with a lease as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// We hold it: renew.
    Renew,
    /// Nobody holds it, or the holder let it expire: take it.
    Acquire,
    /// Someone else holds it.
    Follow { holder: String },
}

/// Decides from the lease's holder and how long (our clock) its record has been
/// unchanged.
pub fn decide(
    holder: Option<&str>,
    identity: &str,
    unchanged_for: Duration,
    lease_duration: Duration,
) -> Decision {
    match holder.filter(|h| !h.is_empty()) {
        None => Decision::Acquire,
        Some(h) if h == identity => Decision::Renew,
        Some(_) if unchanged_for >= lease_duration => Decision::Acquire,
        Some(h) => Decision::Follow {
            holder: h.to_owned(),
        },
    }
}

/// The part of a lease record whose change shows its holder is alive.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    transitions: Option<i32>,
}

impl Record {
    fn of(spec: &LeaseSpec) -> Self {
        Self {
            holder: spec.holder_identity.clone(),
            renew_time: spec.renew_time.clone(),
            transitions: spec.lease_transitions,
        }
    }
}

/// One candidate in the election.
pub struct Elector {
    api: Api<Lease>,
    identity: String,
    timing: Timing,
    /// The record last read, and when (our clock) it was first seen as it is.
    observed: Option<(Record, Instant)>,
}

impl Elector {
    pub fn new(client: Client, namespace: &str, identity: String, timing: Timing) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            identity,
            timing,
            observed: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn duration_secs(&self) -> i32 {
        i32::try_from(self.timing.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// One attempt at `now`: reads the lease, then creates, renews or takes it over
    /// if that is due. Whether we hold the lease afterwards.
    pub async fn try_acquire_or_renew(&mut self, now: Instant) -> Result<bool, kube::Error> {
        let stamp = MicroTime(Timestamp::now());
        let Some(mut lease) = self.api.get_opt(LEASE_NAME).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.to_owned()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    acquire_time: Some(stamp.clone()),
                    renew_time: Some(stamp),
                    lease_duration_seconds: Some(self.duration_secs()),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let record = Record::of(&spec);
        let since = match &self.observed {
            Some((seen, at)) if *seen == record => *at,
            _ => now,
        };
        self.observed = Some((record, since));
        let holder_duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0)
            .map_or(self.timing.lease_duration, Duration::from_secs);
        let decision = decide(
            spec.holder_identity.as_deref(),
            &self.identity,
            now.saturating_duration_since(since),
            holder_duration,
        );
        let next = match decision {
            Decision::Follow { .. } => return Ok(false),
            Decision::Renew => LeaseSpec {
                renew_time: Some(stamp),
                lease_duration_seconds: Some(self.duration_secs()),
                ..spec
            },
            Decision::Acquire => {
                let had_holder = spec
                    .holder_identity
                    .as_deref()
                    .is_some_and(|h| !h.is_empty());
                LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    acquire_time: Some(stamp.clone()),
                    renew_time: Some(stamp),
                    lease_duration_seconds: Some(self.duration_secs()),
                    lease_transitions: Some(
                        spec.lease_transitions.unwrap_or(0) + i32::from(had_holder),
                    ),
                    ..spec
                }
            }
        };
        lease.spec = Some(next);
        // `lease.metadata.resourceVersion` is the one just read: if anyone wrote the
        // lease since, the API server answers 409 and we do not hold it.
        match self
            .api
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up so another replica takes over at once (on shutdown).
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(LEASE_NAME).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
        spec.lease_duration_seconds = Some(1);
        match self
            .api
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            // Someone wrote the lease meanwhile: it is not ours to release any more.
            Err(kube::Error::Api(status)) if status.is_conflict() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Campaigns until `stop`: publishes `true` on `leader` while this replica holds
    /// the lease, `false` otherwise, and releases the lease when stopped.
    pub async fn run(
        mut self,
        leader: watch::Sender<bool>,
        metrics: Metrics,
        stop: CancellationToken,
    ) {
        let deadline = self.timing.renew_deadline;
        // When we last held the lease (start of the successful attempt); `None`: not leading.
        let mut renewed_at: Option<Instant> = None;
        loop {
            let started = Instant::now();
            let budget = renewed_at.map_or(deadline, |at| {
                (at + deadline).saturating_duration_since(started)
            });
            let attempt = tokio::select! {
                () = stop.cancelled() => break,
                r = tokio::time::timeout(budget, self.try_acquire_or_renew(started)) => r,
            };
            match attempt {
                Ok(Ok(true)) => renewed_at = Some(started),
                Ok(Ok(false)) => renewed_at = None,
                Ok(Err(error)) => warn!(%error, lease = LEASE_NAME, "lease update failed"),
                Err(_) => warn!(lease = LEASE_NAME, "lease update timed out"),
            }
            if renewed_at.is_some_and(|at| Instant::now() >= at + deadline) {
                warn!(
                    lease = LEASE_NAME,
                    "lease not renewed within the deadline; stepping down"
                );
                renewed_at = None;
            }
            let leading = renewed_at.is_some();
            if leader.send_if_modified(|was| std::mem::replace(was, leading) != leading) {
                if leading {
                    info!(identity = %self.identity, lease = LEASE_NAME, "became the leader");
                } else {
                    warn!(identity = %self.identity, lease = LEASE_NAME, "no longer the leader");
                }
            }
            metrics.set_leader(leading);
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(self.timing.retry_period) => {}
            }
        }
        leader.send_replace(false);
        metrics.set_leader(false);
        if renewed_at.is_some() {
            match tokio::time::timeout(deadline, self.release()).await {
                Ok(Ok(())) => info!(lease = LEASE_NAME, "lease released"),
                Ok(Err(error)) => warn!(%error, lease = LEASE_NAME, "cannot release the lease"),
                Err(_) => warn!(lease = LEASE_NAME, "releasing the lease timed out"),
            }
        }
    }
}

#[cfg(test)]
mod tests;
