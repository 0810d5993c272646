//! What the operator reports on an `McpPolicy`: one `Ready` condition, the number of
//! connections the stored row targets and of its rules, and the Events its
//! transitions deserve. Pure functions of their inputs (the clock is passed in).

use hawser_crds::{Condition, McpPolicyStatus, condition_types};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::EventType;

use super::{Conditions, Notice, reasons, truncate};
pub use super::{differs, find};

/// What became of the policy's row this time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Created,
    Updated,
    /// The row already held this generation with the same targets.
    Unchanged,
}

/// The outcome of one reconciliation of an `McpPolicy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySync {
    /// The row holds this generation, targeting `connections` with `rules` rules.
    Written {
        outcome: Written,
        connections: usize,
        rules: usize,
    },
    /// Nothing was written (a row written before stays); `reason` is a condition reason.
    Failed {
        reason: &'static str,
        message: String,
    },
}

fn count(n: usize) -> Option<i64> {
    Some(i64::try_from(n).unwrap_or(i64::MAX))
}

/// The status to report. On failure `connections` and `rules` keep their previous
/// values: they describe the row the gateway still enforces.
pub fn build(
    generation: Option<i64>,
    sync: &PolicySync,
    previous: Option<&McpPolicyStatus>,
    now: Timestamp,
) -> McpPolicyStatus {
    let (status, reason, message, connections, rules) = match sync {
        PolicySync::Written {
            connections, rules, ..
        } => {
            let g = generation.unwrap_or_default();
            let message = if *connections == 0 {
                format!(
                    "generation {g} is stored, but targets no connection: no McpConnection matches its targetRefs"
                )
            } else {
                format!("generation {g} is stored: {connections} connection(s), {rules} rule(s)")
            };
            (
                "True",
                reasons::SYNCED,
                message,
                count(*connections),
                count(*rules),
            )
        }
        PolicySync::Failed { reason, message } => (
            "False",
            *reason,
            message.clone(),
            previous.and_then(|p| p.connections),
            previous.and_then(|p| p.rules),
        ),
    };
    let mut ready = Condition {
        type_: condition_types::READY.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: truncate(message),
        observed_generation: generation,
        last_transition_time: Time(now),
    };
    if let Some(old) = previous.and_then(|p| find(p, condition_types::READY))
        && old.status == ready.status
    {
        ready.last_transition_time = old.last_transition_time.clone();
    }
    McpPolicyStatus {
        observed_generation: generation,
        conditions: vec![ready],
        connections,
        rules,
    }
}

impl Conditions for McpPolicyStatus {
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }
}

/// Events for what changed: the row created or updated, a problem appearing or
/// changing. Repeating the same state publishes nothing.
pub fn notices(
    sync: &PolicySync,
    previous: Option<&McpPolicyStatus>,
    desired: &McpPolicyStatus,
) -> Vec<Notice> {
    let mut out = Vec::new();
    if let PolicySync::Written {
        outcome,
        connections,
        rules,
    } = sync
    {
        let what = format!("{connections} connection(s), {rules} rule(s)");
        match outcome {
            Written::Created => out.push(Notice {
                type_: EventType::Normal,
                reason: "Created",
                note: format!("policy written to the gateway store ({what})"),
                action: "Sync",
            }),
            Written::Updated => out.push(Notice {
                type_: EventType::Normal,
                reason: "Updated",
                note: format!("policy updated in the gateway store ({what})"),
                action: "Sync",
            }),
            Written::Unchanged => {}
        }
    }
    if let Some(ready) = find(desired, condition_types::READY)
        && ready.status == "False"
    {
        let before = previous.and_then(|p| find(p, condition_types::READY));
        if before.is_none_or(|b| b.reason != ready.reason || b.message != ready.message) {
            out.push(Notice {
                type_: EventType::Warning,
                reason: if ready.reason == reasons::INVALID_POLICY {
                    reasons::INVALID_POLICY
                } else {
                    "SyncFailed"
                },
                note: ready.message.clone(),
                action: "Sync",
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn written(outcome: Written, connections: usize) -> PolicySync {
        PolicySync::Written {
            outcome,
            connections,
            rules: 2,
        }
    }

    fn invalid(message: &str) -> PolicySync {
        PolicySync::Failed {
            reason: reasons::INVALID_POLICY,
            message: message.to_owned(),
        }
    }

    #[test]
    fn written_policies_are_ready_with_counts() {
        let sync = written(Written::Created, 3);
        let s = build(Some(4), &sync, None, at(0));
        assert_eq!(s.observed_generation, Some(4));
        assert_eq!((s.connections, s.rules), (Some(3), Some(2)));
        let ready = find(&s, "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Synced")
        );
        assert_eq!(
            ready.message,
            "generation 4 is stored: 3 connection(s), 2 rule(s)"
        );
        assert_eq!(ready.observed_generation, Some(4));
        let reasons: Vec<_> = notices(&sync, None, &s).iter().map(|n| n.reason).collect();
        assert_eq!(reasons, ["Created"]);

        let none = build(Some(4), &written(Written::Unchanged, 0), Some(&s), at(9));
        assert!(
            find(&none, "Ready")
                .unwrap()
                .message
                .contains("targets no connection")
        );
        assert_eq!(
            find(&none, "Ready").unwrap().last_transition_time,
            Time(at(0))
        );
    }

    #[test]
    fn failures_keep_the_counts_of_the_row_still_enforced_and_warn_once() {
        let ok = build(Some(1), &written(Written::Created, 3), None, at(0));
        let sync = invalid("rules[1].when: invalid CEL at line 1, column 11: x");
        let bad = build(Some(2), &sync, Some(&ok), at(5));
        assert_eq!((bad.connections, bad.rules), (Some(3), Some(2)));
        let ready = find(&bad, "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "InvalidPolicy")
        );
        assert_eq!(ready.last_transition_time, Time(at(5)));
        let events = notices(&sync, Some(&ok), &bad);
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].type_, events[0].reason),
            (EventType::Warning, "InvalidPolicy")
        );
        assert!(
            notices(&sync, Some(&bad), &bad).is_empty(),
            "same failure: no event"
        );
        assert!(!differs(
            Some(&bad),
            &build(Some(2), &sync, Some(&bad), at(60))
        ));
        assert!(differs(Some(&ok), &bad) && differs(None, &ok));
        let fresh = build(Some(1), &sync, None, at(0));
        assert_eq!((fresh.connections, fresh.rules), (None, None));
    }
}
