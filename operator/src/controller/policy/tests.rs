//! McpPolicy reconcile scenarios: a mocked API server that asserts every call, and a
//! real Postgres whose `policies` rows are checked through the gateway's store.

use std::time::Duration;

use hawser_crds::{McpPolicyStatus, condition_types};
use hawser_gateway::store::{Store, StoredPolicy};
use kube::runtime::reflector;
use serde_json::{Value, json};

use super::*;
use crate::fixtures::policy::{
    POLICY, POLICY_NAME, PolicyFixture, PolicyScenario, PolicySeen, labeled, policy,
};
use crate::fixtures::{TestEnv, timeout_after_5s};
use crate::status::policy::find;

/// Runs one reconciliation of `policy` against `scenario`.
async fn step(
    env: &TestEnv,
    policy: &McpPolicy,
    scenario: PolicyScenario,
) -> (Result<Action>, PolicySeen, Arc<Context>) {
    let (ctx, verifier) = env.context();
    let server = verifier.run_policy(scenario);
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        reconcile(Arc::new(policy.clone()), ctx.clone()),
    )
    .await
    .expect("reconcile timed out (an unexpected API call?)");
    let seen = timeout_after_5s(server).await;
    (result, seen, ctx)
}

fn apply(
    policy: &McpPolicy,
    connections: Option<Vec<PartialObjectMeta<McpConnection>>>,
    status_patch: bool,
    events: Vec<&'static str>,
) -> PolicyScenario {
    PolicyScenario::Apply {
        policy: policy.clone(),
        connections,
        status_patch,
        events,
    }
}

/// Two named targets, two rules.
fn by_name() -> Value {
    json!({
        "targetRefs": [{"name": "github"}, {"name": "jira"}],
        "rules": [
            {"groups": ["sre"], "tools": ["*"]},
            {"tools": ["search_*"], "when": "caller.subject != 'bot'"}
        ]
    })
}

/// `github` by name and every connection labelled `tier: prod`; one rule.
fn by_selector() -> Value {
    json!({
        "targetRefs": [{"name": "github"}, {"selector": {"matchLabels": {"tier": "prod"}}}],
        "rules": [{"tools": ["*"]}]
    })
}

/// The namespace's connections: `a`, `c` and `github` are `tier: prod`, `b` is not,
/// `d` is but is being deleted.
fn namespace_connections() -> Vec<PartialObjectMeta<McpConnection>> {
    let mut deleting = labeled("d", &[("tier", "prod")]);
    deleting.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
    );
    vec![
        labeled("a", &[("tier", "prod"), ("team", "x")]),
        labeled("b", &[("tier", "dev")]),
        labeled("c", &[("tier", "prod")]),
        deleting,
        labeled("github", &[("tier", "prod")]),
    ]
}

async fn row(env: &TestEnv) -> Option<StoredPolicy> {
    env.store
        .list_policies()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.name == POLICY)
}

fn ready(status: &McpPolicyStatus) -> (&str, &str, &str) {
    let c = find(status, condition_types::READY).expect("a Ready condition");
    (c.status.as_str(), c.reason.as_str(), c.message.as_str())
}

/// Creates the row the way a first reconciliation (after the finalizer) does.
async fn created(env: &TestEnv, p: &McpPolicy) -> McpPolicyStatus {
    let (result, mut seen, _) = step(env, p, apply(p, None, true, vec!["Created"])).await;
    assert_eq!(result.unwrap(), Action::requeue(REQUEUE_READY));
    seen.statuses.pop().expect("a status")
}

#[tokio::test]
async fn apply_writes_the_row_with_its_connections_and_reports_ready_with_counts() {
    let env = TestEnv::new().await;
    let p = policy(by_name());
    let (result, _, _) = step(&env, &p, PolicyScenario::FinalizerCreation(p.clone())).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert!(
        row(&env).await.is_none(),
        "nothing written before the finalizer"
    );

    let p = p.finalized();
    let (result, seen, _) = step(&env, &p, apply(&p, None, true, vec!["Created"])).await;
    assert_eq!(result.unwrap(), Action::requeue(REQUEUE_READY));
    let stored = row(&env).await.expect("the policy's row");
    assert_eq!(stored.source, Source::Crd);
    assert_eq!(stored.generation, Some(1));
    assert_eq!(stored.connections, ["team-a/github", "team-a/jira"]);
    assert_eq!(stored.spec.as_ref().ok(), Some(&p.spec));

    let status = &seen.statuses[0];
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!((status.connections, status.rules), (Some(2), Some(2)));
    assert_eq!(
        ready(status),
        (
            "True",
            "Synced",
            "generation 1 is stored: 2 connection(s), 2 rule(s)"
        )
    );
    assert_eq!(seen.events[0].type_.as_deref(), Some("Normal"));
    assert_eq!(
        seen.events[0].note.as_deref(),
        Some("policy written to the gateway store (2 connection(s), 2 rule(s))")
    );

    // Nothing changed: no write, no status patch, no Event.
    let p = p.with_status(status.clone());
    let (result, seen, _) = step(&env, &p, apply(&p, None, false, vec![])).await;
    assert_eq!(result.unwrap(), Action::requeue(REQUEUE_READY));
    assert!(seen.statuses.is_empty() && seen.events.is_empty());
}

#[tokio::test]
async fn selectors_resolve_against_the_labels_of_the_namespace_connections() {
    let env = TestEnv::new().await;
    let p = policy(by_selector()).finalized();
    let (result, seen, _) = step(
        &env,
        &p,
        apply(&p, Some(namespace_connections()), true, vec!["Created"]),
    )
    .await;
    result.unwrap();
    let stored = row(&env).await.expect("the policy's row");
    assert_eq!(
        stored.connections,
        ["team-a/a", "team-a/c", "team-a/github"],
        "sorted, without repeats, without the one being deleted"
    );
    let status = seen.statuses[0].clone();
    assert_eq!((status.connections, status.rules), (Some(3), Some(1)));

    // `b` is relabelled `tier: prod`: the next reconciliation (triggered by the
    // McpConnection watch) updates the row.
    let mut relabelled = namespace_connections();
    relabelled[1] = labeled("b", &[("tier", "prod")]);
    let p = p.with_status(status);
    let (result, seen, _) =
        step(&env, &p, apply(&p, Some(relabelled), true, vec!["Updated"])).await;
    result.unwrap();
    let stored = row(&env).await.expect("the policy's row");
    assert_eq!(
        stored.connections,
        ["team-a/a", "team-a/b", "team-a/c", "team-a/github"]
    );
    assert_eq!(seen.statuses[0].connections, Some(4));

    // A selector that matches nothing: written (the named target stays), reported.
    let p = p
        .with_status(seen.statuses[0].clone())
        .edited(json!({"targetRefs": [{"selector": {"matchLabels": {"tier": "none"}}}]}));
    let (result, seen, _) = step(
        &env,
        &p,
        apply(&p, Some(namespace_connections()), true, vec!["Updated"]),
    )
    .await;
    result.unwrap();
    assert!(row(&env).await.unwrap().connections.is_empty());
    let (s, _, message) = ready(&seen.statuses[0]);
    assert_eq!(s, "True");
    assert!(message.contains("targets no connection"), "{message}");
}

#[tokio::test]
async fn a_broken_cel_expression_is_reported_and_nothing_is_written() {
    let env = TestEnv::new().await;
    let broken = json!({
        "targetRefs": [{"name": "github"}],
        "rules": [{"tools": ["*"]}, {"when": "args.env =="}]
    });
    let p = policy(broken).finalized();
    let (result, seen, ctx) = step(&env, &p, apply(&p, None, true, vec!["InvalidPolicy"])).await;
    let error = result.unwrap_err();
    assert_eq!(error.metric_label(), "invalid_policy");
    let status = &seen.statuses[0];
    let (s, reason, message) = ready(status);
    assert_eq!((s, reason), ("False", "InvalidPolicy"));
    assert!(
        message.starts_with("rules[1].when: invalid CEL at line 1, column"),
        "{message}"
    );
    assert_eq!((status.connections, status.rules), (None, None));
    assert_eq!(seen.events[0].type_.as_deref(), Some("Warning"));
    assert_eq!(seen.events[0].note.as_deref(), Some(message));
    assert!(row(&env).await.is_none(), "nothing written");

    // Retried only as a safety net: an edit triggers a reconciliation at once.
    assert_eq!(
        error_policy(Arc::new(p.clone()), &error, ctx.clone()),
        Action::requeue(crate::backoff::INVALID_SPEC_DELAY)
    );
    assert_eq!(
        error_policy(Arc::new(p.clone()), &error, ctx),
        Action::requeue(crate::backoff::INVALID_SPEC_DELAY),
        "no growing storm either"
    );

    // The same failure again: no status patch, no new Warning.
    let p = p.with_status(status.clone());
    let (result, seen, _) = step(&env, &p, apply(&p, None, false, vec![])).await;
    assert!(result.is_err());
    assert!(seen.events.is_empty());
}

#[tokio::test]
async fn a_broken_edit_keeps_the_previous_row_in_force() {
    let env = TestEnv::new().await;
    let p = policy(by_name()).finalized();
    let status = created(&env, &p).await;
    let before = row(&env).await.expect("the policy's row");

    let p = p.with_status(status).edited(json!({
        "targetRefs": [{"name": "github", "selector": {"matchLabels": {"a": "b"}}}],
    }));
    let (result, seen, _) = step(&env, &p, apply(&p, None, true, vec!["InvalidPolicy"])).await;
    assert!(result.is_err());
    let status = &seen.statuses[0];
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(
        ready(status),
        (
            "False",
            "InvalidPolicy",
            "targetRefs[0]: give exactly one of name and selector"
        )
    );
    assert_eq!(
        (status.connections, status.rules),
        (Some(2), Some(2)),
        "the counts of the row still enforced"
    );
    assert_eq!(
        row(&env).await,
        Some(before),
        "the previous row is untouched"
    );
}

#[tokio::test]
async fn deletion_removes_the_row_then_the_finalizer() {
    let env = TestEnv::new().await;
    let p = policy(by_name()).finalized();
    let status = created(&env, &p).await;

    let p = p.with_status(status).needs_delete();
    let scenario = PolicyScenario::Cleanup {
        policy: p.clone(),
        events: vec!["Deleted"],
    };
    let (result, seen, _) = step(&env, &p, scenario).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert!(row(&env).await.is_none());
    assert_eq!(
        seen.events[0].note.as_deref(),
        Some("policy removed from the gateway store")
    );
}

#[tokio::test]
async fn prune_deletes_crd_rows_whose_policy_is_gone() {
    let env = TestEnv::new().await;
    let spec = policy(by_name()).spec;
    let none: &[String] = &[];
    for (name, source) in [
        (POLICY, Source::Crd),
        ("team-a/gone", Source::Crd),
        ("team-b/other", Source::Crd),
        ("from-api", Source::Api),
    ] {
        env.store
            .put_policy(name, &spec, source, none, Some(1))
            .await
            .unwrap();
    }
    let names = |env: &TestEnv| {
        let store = env.store.clone();
        async move {
            let listed = store.list_policies().await.unwrap();
            listed.into_iter().map(|p| p.name).collect::<Vec<_>>()
        }
    };

    // Watching team-a only: team-b's rows belong to someone else.
    let (ctx, verifier) = env.context();
    let server = verifier.run_policy(PolicyScenario::Prune {
        namespace: Some("team-a"),
        existing: vec![("team-a", POLICY_NAME)],
    });
    let gone = prune(&ctx, Some("team-a")).await.unwrap();
    timeout_after_5s(server).await;
    assert_eq!(gone, ["team-a/gone"]);
    assert_eq!(names(&env).await, ["from-api", POLICY, "team-b/other"]);

    // Every namespace: only what exists stays (and rows of other sources).
    let (ctx, verifier) = env.context();
    let server = verifier.run_policy(PolicyScenario::Prune {
        namespace: None,
        existing: vec![("team-a", POLICY_NAME)],
    });
    let gone = prune(&ctx, None).await.unwrap();
    timeout_after_5s(server).await;
    assert_eq!(gone, ["team-b/other"]);
    assert_eq!(names(&env).await, ["from-api", POLICY]);
}

#[test]
fn only_new_relabelled_or_departing_connections_trigger_selecting_policies() {
    let memory = LabelMemory::default();
    let prod = labeled("a", &[("tier", "prod")]);
    assert!(memory.changed(&prod), "first sight");
    assert!(!memory.changed(&prod), "a status update: same labels");
    let dev = labeled("a", &[("tier", "dev")]);
    assert!(memory.changed(&dev), "relabelled");
    let mut leaving = dev.clone();
    leaving.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
    );
    assert!(memory.changed(&leaving), "deletion starts");
    assert!(!memory.changed(&leaving), "the final delete event");

    let mut writer = reflector::store::Writer::<McpPolicy>::default();
    let selecting = policy(by_selector());
    let mut named = policy(by_name());
    named.metadata.name = Some("named".into());
    let mut elsewhere = policy(by_selector());
    elsewhere.metadata.namespace = Some("team-b".into());
    for p in [selecting, named, elsewhere] {
        writer.apply_watcher_event(&watcher::Event::Apply(p));
    }
    let cache = writer.as_reader();
    assert_eq!(
        policies_selecting(&cache, &prod),
        [ObjectRef::new(POLICY_NAME).within("team-a")]
    );
}
