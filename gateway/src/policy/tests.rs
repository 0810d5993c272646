//! Decisions, views and conditions against policies in a memory store.

use hawser_crds::McpPolicySpec;
use serde_json::json;

use super::*;
use crate::config::Source;
use crate::identity::AuthMethod;
use crate::store::MemoryStore;

fn caller(subject: &str, groups: &[&str]) -> Identity {
    Identity {
        subject: subject.into(),
        method: AuthMethod::StaticToken,
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        scopes: Vec::new(),
        token: None,
        claims: None,
    }
}

async fn policies(
    specs: &[(&str, serde_json::Value, &[&str])],
    default_deny: bool,
) -> Arc<Policies> {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    for (name, spec, connections) in specs {
        let spec: McpPolicySpec = serde_json::from_value(spec.clone()).unwrap();
        let connections: Vec<String> = connections.iter().map(|c| (*c).to_owned()).collect();
        store
            .put_policy(name, &spec, Source::Api, &connections, None)
            .await
            .unwrap();
    }
    let p = Policies::new(store, default_deny, crate::metrics::Metrics::new());
    p.load().await.unwrap();
    p
}

fn args(v: serde_json::Value) -> Box<RawValue> {
    RawValue::from_string(v.to_string()).unwrap()
}

#[tokio::test]
async fn only_what_a_rule_allows_and_an_explicit_deny_wins() {
    let p = policies(
        &[(
            "gh",
            json!({"targetRefs": [{"name": "gh"}], "rules": [
                {"groups": ["team-a"], "tools": ["*"]},
                {"tools": ["delete_*"], "effect": "deny"},
                {"subjects": ["bob"], "tools": ["search"]},
            ]}),
            &["gh"],
        )],
        false,
    )
    .await;
    let alice = caller("alice", &["team-a"]);
    let bob = caller("bob", &[]);
    let eve = caller("eve", &["team-b"]);
    let sees = |c: &Identity, tool: &str| p.visible(c, "gh", Kind::Tool, tool);
    assert!(sees(&alice, "create_issue") && sees(&alice, "search"));
    assert!(
        !sees(&alice, "delete_repo"),
        "the deny wins over the group's allow"
    );
    assert!(sees(&bob, "search") && !sees(&bob, "create_issue"));
    assert!(!sees(&eve, "search"), "nothing allows eve");
    // A connection no policy targets is open; defaultAction: deny closes it.
    assert!(p.visible(&eve, "jira", Kind::Tool, "anything"));
    let closed = policies(&[], true).await;
    assert!(!closed.visible(&eve, "jira", Kind::Tool, "anything"));
    // Rules naming tools say nothing about prompts.
    assert!(!sees(&alice, "x") || p.visible(&alice, "gh", Kind::Tool, "x"));
    assert!(!p.visible(&bob, "gh", Kind::Prompt, "search"));
    // A hidden tool is hidden on a call too; a visible one is allowed by its rule.
    let facts = Facts::default();
    assert_eq!(
        p.check_call(&eve, "gh", Kind::Tool, "search", &facts),
        Decision::Hidden(None)
    );
    assert_eq!(
        p.check_call(&bob, "gh", Kind::Tool, "search", &facts),
        Decision::Allow(Some(Decider {
            policy: "gh".into(),
            rule: Some(2)
        }))
    );
}

#[tokio::test]
async fn conditions_on_arguments_decide_calls_but_not_lists() {
    let p = policies(
        &[(
            "ops",
            json!({"targetRefs": [{"name": "ops"}], "rules": [
                {"groups": ["on-call"], "tools": ["restart_service"],
                 "when": "args.env == 'staging' || 'sre' in caller.groups"},
            ]}),
            &["ops"],
        )],
        false,
    )
    .await;
    let oncall = caller("olivia", &["on-call"]);
    let sre = caller("sam", &["on-call", "sre"]);
    assert!(
        p.visible(&oncall, "ops", Kind::Tool, "restart_service"),
        "visible: the condition needs a call"
    );
    let staging = args(json!({"env": "staging"}));
    let prod = args(json!({"env": "prod"}));
    let call = |c: &Identity, a: &RawValue| {
        p.check_call(
            c,
            "ops",
            Kind::Tool,
            "restart_service",
            &Facts {
                args: Some(a),
                client_address: None,
                tool: None,
            },
        )
    };
    assert!(matches!(call(&oncall, &staging), Decision::Allow(_)));
    assert_eq!(
        call(&oncall, &prod),
        Decision::Denied(Decider {
            policy: "ops".into(),
            rule: Some(0)
        })
    );
    assert!(matches!(call(&sre, &prod), Decision::Allow(_)));
    // Arguments without the field: the condition cannot be evaluated, the call is refused.
    assert!(matches!(
        call(&oncall, &args(json!({}))),
        Decision::Denied(_)
    ));
}

#[tokio::test]
async fn arguments_naming_a_member_twice_fail_closed_whichever_value_an_upstream_runs() {
    let p = policies(
        &[(
            "ops",
            json!({"targetRefs": [{"name": "ops"}], "rules": [
                {"tools": ["deploy"]},
                {"tools": ["deploy"], "effect": "deny", "when": "args.env == 'prod'"},
                {"tools": ["plan"], "when": "args.spec.env != 'prod'"},
                {"tools": ["each"], "when": "args.repos.all(r, r.startsWith('team-a/'))"},
            ]}),
            &["ops"],
        )],
        false,
    )
    .await;
    let carol = caller("carol", &[]);
    let call = |tool: &str, text: &str| {
        let a = RawValue::from_string(text.to_owned()).unwrap();
        p.check_call(
            &carol,
            "ops",
            Kind::Tool,
            tool,
            &Facts {
                args: Some(&a),
                client_address: None,
                tool: None,
            },
        )
    };
    assert!(matches!(
        call("deploy", r#"{"env":"dev"}"#),
        Decision::Allow(_)
    ));
    assert!(matches!(
        call("deploy", r#"{"env":"prod"}"#),
        Decision::Denied(_)
    ));
    // An upstream that keeps the first value would deploy to prod: refused, in
    // either order, and one level down too.
    // Names differing only in case are one to some upstreams (Go's encoding/json,
    // the Kelvin sign for k included).
    for text in [
        r#"{"env":"prod","env":"dev"}"#,
        r#"{"env":"dev","env":"prod"}"#,
        r#"{"env":"dev","ENV":"prod"}"#,
        r#"{"env":"dev","Env":"prod"}"#,
        r#"{"env":"dev","tas\u212a":1,"task":2}"#,
    ] {
        assert!(
            matches!(call("deploy", text), Decision::Denied(_)),
            "{text}"
        );
    }
    assert!(matches!(
        call("plan", r#"{"spec":{"env":"dev"}}"#),
        Decision::Allow(_)
    ));
    assert!(matches!(
        call("plan", r#"{"spec":{"env":"prod","env":"dev"}}"#),
        Decision::Denied(_)
    ));
    // Conditions may use CEL's macros over lists.
    assert!(matches!(
        call("each", r#"{"repos":["team-a/x","team-a/y"]}"#),
        Decision::Allow(_)
    ));
    assert!(matches!(
        call("each", r#"{"repos":["team-a/x","team-b/y"]}"#),
        Decision::Denied(_)
    ));
}

#[tokio::test]
async fn lists_show_each_caller_what_they_may_use() {
    let p = policies(
        &[(
            "fx",
            json!({"targetRefs": [{"name": "fx"}], "rules": [{"groups": ["a"], "tools": ["echo"]}]}),
            &["fx"],
        )],
        false,
    )
    .await;
    let view = crate::view::test_endpoint("fx", &["echo", "add", "boom"]);
    let a = p.list(&caller("x", &["a"]), &view, ListKind::Tools);
    let text = String::from_utf8_lossy(&a);
    assert!(
        text.contains("\"echo\"") && !text.contains("\"add\""),
        "{text}"
    );
    assert!(text.contains("\"cacheScope\":\"private\""), "{text}");
    let none = p.list(&caller("y", &[]), &view, ListKind::Tools);
    assert!(String::from_utf8_lossy(&none).contains("\"tools\":[]"));
    // Served from the cache the second time (same bytes).
    assert_eq!(p.list(&caller("z", &["a"]), &view, ListKind::Tools), a);
}

#[test]
fn broken_conditions_and_targets_are_refused_with_the_field() {
    let bad = |spec: serde_json::Value| {
        check(&serde_json::from_value(spec).unwrap())
            .unwrap_err()
            .to_string()
    };
    let e = bad(json!({"targetRefs": [{"name": "a"}], "rules": [{}, {"when": "args.env =="}]}));
    assert!(e.starts_with("rules[1].when: invalid CEL"), "{e}");
    let e = bad(json!({"targetRefs": [{"name": "a"}], "rules": [{"when": "arg.env == 'x'"}]}));
    assert!(e.contains("unknown variable \"arg\""), "{e}");
    // A macro's variable is known inside it only.
    let e = bad(
        json!({"targetRefs": [{"name": "a"}], "rules": [{"when": "args.xs.all(x, x > 0) && x == 1"}]}),
    );
    assert!(e.contains("unknown variable \"x\""), "{e}");
    for when in [
        "caller.groups.exists(g, g.startsWith('team-'))",
        "args.xs.map(x, x * 2).filter(y, y > 2).size() == 1",
        "args.xs.exists_one(x, x == 1) && has(args.xs)",
    ] {
        let spec = json!({"targetRefs": [{"name": "a"}], "rules": [{"when": when}]});
        assert!(
            check(&serde_json::from_value(spec).unwrap()).is_ok(),
            "{when}"
        );
    }
    let e = bad(json!({"targetRefs": [{}], "rules": []}));
    assert!(e.starts_with("targetRefs[0]"), "{e}");
    let e = bad(json!({"targetRefs": [{"name": "a"}], "rules": [{"tools": ["[a"]}]}));
    assert!(e.starts_with("rules[0].tools[0]"), "{e}");
}

#[tokio::test]
async fn a_rate_limit_admits_its_burst_then_says_when_to_retry() {
    let p = policies(
        &[(
            "fx",
            json!({"targetRefs": [{"name": "fx"}], "rules": [{}],
                   "rateLimits": [{"by": ["subject"], "tools": ["echo"], "requests": 5, "per": "1m"}]}),
            &["fx"],
        )],
        false,
    )
    .await;
    let alice = caller("alice", &[]);
    let bob = caller("bob", &[]);
    for i in 0..5 {
        assert!(
            p.limit(&alice, "fx", "echo", None).await.is_ok(),
            "call {i}"
        );
    }
    let limited = p.limit(&alice, "fx", "echo", None).await.unwrap_err();
    assert_eq!(limited.policy, "fx");
    // One token comes back every 12 s.
    assert!(limited.retry_after > Duration::from_secs(10), "{limited:?}");
    assert!(
        limited.retry_after <= Duration::from_secs(12),
        "{limited:?}"
    );
    // Counted per subject, and only for the tools the limit names.
    assert!(p.limit(&bob, "fx", "echo", None).await.is_ok());
    assert!(p.limit(&alice, "fx", "add", None).await.is_ok());
    assert!(p.limit(&alice, "other", "echo", None).await.is_ok());
}

#[tokio::test]
async fn conditions_read_token_claims_and_tool_annotations() {
    let p = policies(
        &[(
            "gh",
            json!({"targetRefs": [{"name": "gh"}], "rules": [
                {"when": "caller.claims.department == 'platform'"},
                {"effect": "deny", "when": "has(tool.annotations.destructiveHint) && tool.annotations.destructiveHint"},
            ]}),
            &["gh"],
        )],
        false,
    )
    .await;
    let mut platform = caller("pat", &[]);
    platform.claims = Some(Arc::new(
        serde_json::from_value(json!({"department": "platform"})).unwrap(),
    ));
    let mut sales = caller("sam", &[]);
    sales.claims = Some(Arc::new(
        serde_json::from_value(json!({"department": "sales"})).unwrap(),
    ));
    let reader = args(json!({"name": "read", "annotations": {"readOnlyHint": true}}));
    let deleter = args(json!({"name": "delete", "annotations": {"destructiveHint": true}}));
    let call = |c: &Identity, tool: &RawValue| {
        p.check_call(
            c,
            "gh",
            Kind::Tool,
            "t",
            &Facts {
                args: None,
                client_address: None,
                tool: Some(tool),
            },
        )
    };
    assert!(matches!(call(&platform, &reader), Decision::Allow(_)));
    assert!(
        matches!(call(&platform, &deleter), Decision::Denied(_)),
        "destructive tools refused"
    );
    assert!(
        matches!(call(&sales, &reader), Decision::Denied(_)),
        "another department"
    );
}

#[tokio::test]
async fn who_may_call_a_tool_is_said_in_the_policies_own_words() {
    let p = policies(
        &[(
            "gh",
            json!({"targetRefs": [{"name": "gh"}], "rules": [
                {"groups": ["team-a"], "tools": ["*"]},
                {"tools": ["delete_*"], "effect": "deny"},
                {"subjects": ["bob"], "groups": ["ops"], "tools": ["search"], "when": "args.q != ''"},
            ]}),
            &["gh"],
        )],
        false,
    )
    .await;
    let said: Vec<(usize, bool, String, Option<String>)> = p
        .who_may_call("gh", "search")
        .into_iter()
        .map(|g| (g.rule, g.allow, g.who, g.when))
        .collect();
    assert_eq!(
        said,
        [
            (0, true, "groups team-a".to_owned(), None),
            (
                2,
                true,
                "subjects bob; groups ops".to_owned(),
                Some("args.q != ''".to_owned())
            ),
        ]
    );
    let delete = p.who_may_call("gh", "delete_repo");
    assert_eq!(delete.len(), 2);
    assert!(!delete[1].allow && delete[1].who == "everyone");
    assert!(
        p.who_may_call("jira", "search").is_empty(),
        "no policy, no rules"
    );
}

mod one_walk {
    use proptest::prelude::*;

    use super::*;

    /// A rule of a generated policy: effect, tools, groups, condition.
    fn rule() -> impl Strategy<Value = serde_json::Value> {
        let tools = prop::sample::select(vec![vec!["*"], vec!["a"], vec!["b"], vec!["a", "b"]]);
        let groups = prop::sample::select(vec![None, Some("g"), Some("h")]);
        // `args.y` is never given: that condition cannot be evaluated.
        let when = prop::sample::select(vec![
            None,
            Some("true"),
            Some("false"),
            Some("args.x == 1"),
            Some("args.y == 1"),
        ]);
        (any::<bool>(), tools, groups, when).prop_map(|(deny, tools, group, when)| {
            let mut rule = json!({"tools": tools, "effect": if deny { "deny" } else { "allow" }});
            if let Some(g) = group {
                rule["groups"] = json!([g]);
            }
            if let Some(w) = when {
                rule["when"] = json!(w);
            }
            rule
        })
    }

    /// What `check_call` answered when it walked the rules twice: once without the
    /// call's facts (is the item seen?), then with them.
    fn two_walks(p: &Policies, who: &Identity, tool: &str, facts: &Facts<'_>) -> Decision {
        if !p.governs("c") {
            return Decision::Allow(None);
        }
        match p.decide(who, "c", Kind::Tool, tool, None) {
            Decision::Allow(_) => p.decide(who, "c", Kind::Tool, tool, Some(facts)),
            hidden => hidden,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn one_walk_decides_as_two_did(
            sets in prop::collection::vec(prop::collection::vec(rule(), 1..6), 0..4),
            default_deny in any::<bool>(),
            groups in prop::sample::subsequence(vec!["g", "h"], 0..=2),
            tool in prop::sample::select(vec!["a", "b"]),
            x in prop::sample::select(vec![None, Some(1), Some(2)]),
        ) {
            let specs: Vec<(String, serde_json::Value)> = sets
                .into_iter()
                .enumerate()
                .map(|(i, rules)| {
                    (format!("p{i}"), json!({"targetRefs": [{"name": "c"}], "rules": rules}))
                })
                .collect();
            let named: Vec<(&str, serde_json::Value, &[&str])> = specs
                .iter()
                .map(|(n, s)| (n.as_str(), s.clone(), &["c"][..]))
                .collect();
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let p = runtime.block_on(policies(&named, default_deny));
            let who = caller("u", &groups);
            let given = x.map(|x| args(json!({"x": x})));
            let facts = Facts { args: given.as_deref(), ..Facts::default() };
            prop_assert_eq!(
                p.check_call(&who, "c", Kind::Tool, tool, &facts),
                two_walks(&p, &who, tool, &facts)
            );
        }
    }
}
