//! What the operator reports on an `McpConnection`, built from the outcome of writing
//! its row and from every gateway replica's `connection_status` row, plus the
//! Kubernetes Events that status transitions deserve.
//!
//! Everything here is a pure function of its inputs (the clock is passed in), so the
//! aggregation rules are unit-tested without an API server or a database.

use std::collections::BTreeSet;
use std::time::Duration;

use hawser_crds::{
    AuthState, Condition, ConnectionState, McpConnectionStatus, ProblemKind, condition_types,
};
use hawser_gateway::store::{ConnectionStatus, PutOutcome};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::EventType;

/// Condition reasons the operator sets.
pub mod reasons {
    pub const READY: &str = "Ready";
    /// No gateway replica has reported on the connection yet.
    pub const PENDING: &str = "Pending";
    pub const CONNECTING: &str = "Connecting";
    pub const UNAVAILABLE: &str = "Unavailable";
    /// The gateway replicas could not use the stored row (e.g. a missing encryption key).
    pub const REJECTED: &str = "Rejected";
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const NAME_COLLISION: &str = "NameCollision";
    pub const AWAITING_AUTHORIZATION: &str = "AwaitingAuthorization";
    pub const AUTHORIZED: &str = "Authorized";
    /// The connection needs no interactive authorization.
    pub const NOT_REQUIRED: &str = "NotRequired";
    pub const SYNCED: &str = "Synced";
    /// An `McpPolicy` the gateway would not load (`hawser_gateway::policy::check`).
    pub const INVALID_POLICY: &str = "InvalidPolicy";
}

/// Kubernetes caps condition messages at 32 KiB; ours stay far shorter.
const MAX_MESSAGE: usize = 1024;

/// Requeue interval while the connection is not ready: status follows replicas closely.
pub const REQUEUE_NOT_READY: Duration = Duration::from_secs(30);
/// Requeue interval once ready: a periodic refresh of tools and replica counts.
pub const REQUEUE_READY: Duration = Duration::from_secs(300);

/// What became of the resource's spec this time.
#[derive(Debug, Clone, PartialEq)]
pub enum Sync {
    /// The row holds this generation (written now, or already).
    Written(PutOutcome),
    /// Nothing was written; `reason` is a condition reason.
    Failed {
        reason: &'static str,
        message: String,
    },
}

/// Everything the status is computed from.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    /// `<namespace>/<name>`.
    pub connection: &'a str,
    pub generation: Option<i64>,
    pub sync: &'a Sync,
    /// Every replica's row for the connection.
    pub replicas: &'a [ConnectionStatus],
    /// `auth.type: oauth2` with `grant: authorization_code`.
    pub authorization_code: bool,
    /// With per-user tokens: how many users hold one.
    pub connected_users: Option<usize>,
}

/// The status to report, with `lastTransitionTime` kept from `previous` for every
/// condition whose status did not change.
pub fn build(
    obs: &Observation<'_>,
    previous: Option<&McpConnectionStatus>,
    now: Timestamp,
) -> McpConnectionStatus {
    let live: Vec<&ConnectionStatus> = obs
        .replicas
        .iter()
        .filter(|r| r.state != ConnectionState::Removed)
        .collect();
    let ready = live
        .iter()
        .filter(|r| r.state == ConnectionState::Ready)
        .count();
    let condition = |type_: &str, status: &str, reason: &str, message: String| Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: truncate(message),
        observed_generation: obs.generation,
        last_transition_time: Time(now),
    };

    let (ready_status, ready_reason, ready_message) = ready_condition(obs, &live, ready);
    let (synced_status, synced_reason, synced_message) = match obs.sync {
        Sync::Written(outcome) => (
            "True",
            reasons::SYNCED,
            format!(
                "generation {} is stored as revision {}",
                obs.generation.unwrap_or_default(),
                outcome.revision()
            ),
        ),
        Sync::Failed { reason, message } => ("False", *reason, message.clone()),
    };
    let (auth_status, auth_reason, auth_message) = authorized_condition(obs, &live);

    let mut status = McpConnectionStatus {
        observed_generation: obs.generation,
        conditions: vec![
            condition(
                condition_types::READY,
                ready_status,
                ready_reason,
                ready_message,
            ),
            condition(
                condition_types::SYNCED,
                synced_status,
                synced_reason,
                synced_message,
            ),
            condition(
                condition_types::AUTHORIZED,
                auth_status,
                auth_reason,
                auth_message,
            ),
        ],
        tools: live.iter().map(|r| i64::from(r.tools)).max(),
        ready_replicas: Some(i64::try_from(ready).unwrap_or(i64::MAX)),
        connected_users: obs
            .connected_users
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
    };
    if let Some(previous) = previous {
        for c in &mut status.conditions {
            if let Some(old) = find(previous, &c.type_)
                && old.status == c.status
            {
                c.last_transition_time = old.last_transition_time.clone();
            }
        }
    }
    status
}

fn ready_condition(
    obs: &Observation<'_>,
    live: &[&ConnectionStatus],
    ready: usize,
) -> (&'static str, &'static str, String) {
    if let Sync::Failed { reason, message } = obs.sync {
        return ("False", reason, message.clone());
    }
    let total = live.len();
    if total == 0 {
        return (
            "False",
            reasons::PENDING,
            "no gateway replica has loaded the connection yet".to_owned(),
        );
    }
    let counts = format!("{ready}/{total} gateway replicas ready");
    let collisions = collisions(live);
    if !collisions.is_empty() {
        let status = if ready > 0 { "True" } else { "False" };
        let joined = collisions.into_iter().collect::<Vec<_>>().join("; ");
        return (
            status,
            reasons::NAME_COLLISION,
            format!("{counts}; {joined}"),
        );
    }
    if ready > 0 {
        return ("True", reasons::READY, counts);
    }
    let any = |state: ConnectionState| live.iter().any(|r| r.state == state);
    let reason = if any(ConnectionState::AwaitingAuthorization) {
        reasons::AWAITING_AUTHORIZATION
    } else if any(ConnectionState::Invalid) {
        reasons::REJECTED
    } else if any(ConnectionState::Down) {
        reasons::UNAVAILABLE
    } else {
        reasons::CONNECTING
    };
    let last = live
        .iter()
        .filter(|r| r.last_error.is_some())
        .max_by_key(|r| r.updated_at);
    let message = match last {
        Some(r) => format!(
            "{counts}; last error (replica {}): {}",
            r.replica,
            r.last_error.as_deref().unwrap_or_default()
        ),
        None => counts,
    };
    ("False", reason, message)
}

fn authorized_condition(
    obs: &Observation<'_>,
    live: &[&ConnectionStatus],
) -> (&'static str, &'static str, String) {
    if !obs.authorization_code {
        return (
            "True",
            reasons::NOT_REQUIRED,
            "the connection does not use the authorization_code grant".to_owned(),
        );
    }
    let awaiting = live.iter().any(|r| {
        r.state == ConnectionState::AwaitingAuthorization
            || r.auth_state == Some(AuthState::AwaitingAuthorization)
    });
    if awaiting {
        return (
            "False",
            reasons::AWAITING_AUTHORIZATION,
            format!(
                "an administrator must authorize the upstream: POST /api/v1/connections/{}/oauth/start on the gateway and open the returned authorizationUrl",
                obs.connection
            ),
        );
    }
    if live.is_empty() {
        return (
            "Unknown",
            reasons::PENDING,
            "no gateway replica has loaded the connection yet".to_owned(),
        );
    }
    (
        "True",
        reasons::AUTHORIZED,
        "no gateway replica is waiting for authorization".to_owned(),
    )
}

/// The replicas' name collisions, without repeats.
fn collisions(live: &[&ConnectionStatus]) -> BTreeSet<String> {
    live.iter()
        .flat_map(|r| &r.problems)
        .filter(|p| p.kind == ProblemKind::NameCollision)
        .map(|p| p.message.clone())
        .collect()
}

fn truncate(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE - 3;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    message
}

/// A status made of conditions and more (`McpConnectionStatus`, `McpPolicyStatus`).
pub trait Conditions: Clone + PartialEq {
    fn conditions(&self) -> &[Condition];
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
}

impl Conditions for McpConnectionStatus {
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }
}

/// The condition of `type_`, if present.
pub fn find<'a, S: Conditions>(status: &'a S, type_: &str) -> Option<&'a Condition> {
    status.conditions().iter().find(|c| c.type_ == type_)
}

/// Whether `desired` says something `current` does not, ignoring `lastTransitionTime`
/// and the order of conditions.
pub fn differs<S: Conditions>(current: Option<&S>, desired: &S) -> bool {
    let normalize = |s: &S| {
        let mut s = s.clone();
        let conditions = s.conditions_mut();
        for c in conditions.iter_mut() {
            c.last_transition_time = Time(Timestamp::UNIX_EPOCH);
        }
        conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
        s
    };
    current.is_none_or(|current| normalize(current) != normalize(desired))
}

/// How soon to look again when nothing else triggers a reconciliation.
pub fn requeue_after(status: &McpConnectionStatus) -> Duration {
    match find(status, condition_types::READY) {
        Some(c) if c.status == "True" => REQUEUE_READY,
        _ => REQUEUE_NOT_READY,
    }
}

/// A Kubernetes Event worth publishing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub type_: EventType,
    pub reason: &'static str,
    pub note: String,
    pub action: &'static str,
}

/// Events for what changed between `previous` and `desired`: the row written,
/// problems appearing (missing Secret, invalid spec, name collision), readiness
/// reached, authorization awaited. Repeating the same state publishes nothing.
pub fn notices(
    sync: &Sync,
    previous: Option<&McpConnectionStatus>,
    desired: &McpConnectionStatus,
) -> Vec<Notice> {
    let mut out = Vec::new();
    match sync {
        Sync::Written(PutOutcome::Created { revision }) => out.push(Notice {
            type_: EventType::Normal,
            reason: "Created",
            note: format!("connection written to the gateway store (revision {revision})"),
            action: "Sync",
        }),
        Sync::Written(PutOutcome::Updated { revision }) => out.push(Notice {
            type_: EventType::Normal,
            reason: "Updated",
            note: format!("connection updated in the gateway store (revision {revision})"),
            action: "Sync",
        }),
        Sync::Written(PutOutcome::Unchanged { .. }) | Sync::Failed { .. } => {}
    }
    let old = |type_| previous.and_then(|p| find(p, type_));
    let new = |type_| find(desired, type_);
    if let Some(ready) = new(condition_types::READY) {
        let before = old(condition_types::READY);
        let reason_changed = before.is_none_or(|b| b.reason != ready.reason);
        let changed = before.is_none_or(|b| b.reason != ready.reason || b.message != ready.message);
        let problem = [reasons::SECRET_NOT_FOUND, reasons::INVALID_SPEC]
            .into_iter()
            .find(|r| *r == ready.reason);
        if let Some(reason) = problem
            && changed
        {
            out.push(Notice {
                type_: EventType::Warning,
                reason,
                note: ready.message.clone(),
                action: "Sync",
            });
        }
        if ready.reason == reasons::NAME_COLLISION && reason_changed {
            out.push(Notice {
                type_: EventType::Warning,
                reason: reasons::NAME_COLLISION,
                note: ready.message.clone(),
                action: "Serve",
            });
        }
        if ready.status == "True" && before.is_none_or(|b| b.status != "True") {
            out.push(Notice {
                type_: EventType::Normal,
                reason: reasons::READY,
                note: ready.message.clone(),
                action: "Serve",
            });
        }
    }
    if let Some(auth) = new(condition_types::AUTHORIZED)
        && auth.reason == reasons::AWAITING_AUTHORIZATION
        && old(condition_types::AUTHORIZED).is_none_or(|b| b.reason != auth.reason)
    {
        out.push(Notice {
            type_: EventType::Normal,
            reason: reasons::AWAITING_AUTHORIZATION,
            note: auth.message.clone(),
            action: "Authorize",
        });
    }
    out
}

pub mod policy;

#[cfg(test)]
mod tests;
