use hawser_crds::Problem;

use super::*;

fn replica(
    name: &str,
    state: &str,
    tools: i32,
    error: Option<&str>,
    age_secs: u64,
) -> ConnectionStatus {
    ConnectionStatus {
        connection: "team-a/github".into(),
        replica: name.into(),
        state: ConnectionState::parse(state).expect("a connection state"),
        tools,
        last_error: error.map(str::to_owned),
        problems: Vec::new(),
        auth_state: None,
        revision: 7,
        updated_at: hawser_gateway::clock::Timestamp::from_millis(
            hawser_gateway::clock::Timestamp::now().millis() - (age_secs * 1000) as i64,
        ),
    }
}

/// A replica reporting a name collision, as the gateway does.
fn colliding(name: &str, message: &str) -> ConnectionStatus {
    let mut r = replica(name, "ready", 3, Some(message), 1);
    r.problems = vec![Problem {
        kind: ProblemKind::NameCollision,
        message: message.to_owned(),
    }];
    r
}

fn written() -> Sync {
    Sync::Written(PutOutcome::Unchanged { revision: 7 })
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

fn observe(sync: &Sync, replicas: &[ConnectionStatus], oauth: bool) -> McpConnectionStatus {
    build(
        &Observation {
            connection: "team-a/github",
            generation: Some(3),
            sync,
            replicas,
            authorization_code: oauth,
            connected_users: None,
        },
        None,
        at(0),
    )
}

fn cond<'a>(s: &'a McpConnectionStatus, type_: &str) -> &'a Condition {
    find(s, type_).unwrap()
}

#[test]
fn ready_when_one_replica_is_ready_with_counts_and_max_tools() {
    let sync = written();
    let s = observe(
        &sync,
        &[
            replica("r1", "ready", 4, None, 5),
            replica("r2", "connecting", 0, None, 1),
            replica("r3", "removed", 9, None, 1),
        ],
        false,
    );
    let ready = cond(&s, condition_types::READY);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Ready")
    );
    assert_eq!(ready.message, "1/2 gateway replicas ready");
    assert_eq!(ready.observed_generation, Some(3));
    assert_eq!(s.tools, Some(4), "removed replicas do not count");
    assert_eq!(s.ready_replicas, Some(1));
    assert_eq!(s.observed_generation, Some(3));
    let synced = cond(&s, condition_types::SYNCED);
    assert_eq!(synced.status, "True");
    assert_eq!(synced.message, "generation 3 is stored as revision 7");
    assert_eq!(cond(&s, condition_types::AUTHORIZED).reason, "NotRequired");
    assert_eq!(requeue_after(&s), REQUEUE_READY);
}

#[test]
fn not_ready_reports_the_latest_error_and_pending_without_replicas() {
    let sync = written();
    let s = observe(
        &sync,
        &[
            replica("r1", "down", 0, Some("old failure"), 60),
            replica("r2", "down", 0, Some("connection refused"), 2),
        ],
        false,
    );
    let ready = cond(&s, condition_types::READY);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Unavailable")
    );
    assert_eq!(
        ready.message,
        "0/2 gateway replicas ready; last error (replica r2): connection refused"
    );
    assert_eq!(requeue_after(&s), REQUEUE_NOT_READY);

    let s = observe(&sync, &[], false);
    let ready = cond(&s, condition_types::READY);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Pending")
    );
    assert_eq!(s.tools, None);
    assert_eq!(s.ready_replicas, Some(0));
}

#[test]
fn awaiting_authorization_names_the_start_path() {
    let sync = written();
    let s = observe(
        &sync,
        &[replica("r1", "awaiting_authorization", 0, None, 1)],
        true,
    );
    let auth = cond(&s, condition_types::AUTHORIZED);
    assert_eq!(
        (auth.status.as_str(), auth.reason.as_str()),
        ("False", "AwaitingAuthorization")
    );
    assert!(
        auth.message
            .contains("POST /api/v1/connections/team-a/github/oauth/start"),
        "{}",
        auth.message
    );
    assert_eq!(
        cond(&s, condition_types::READY).reason,
        "AwaitingAuthorization"
    );

    let s = observe(&sync, &[replica("r1", "ready", 2, None, 1)], true);
    let auth = cond(&s, condition_types::AUTHORIZED);
    assert_eq!(
        (auth.status.as_str(), auth.reason.as_str()),
        ("True", "Authorized")
    );
    let s = observe(&sync, &[], true);
    assert_eq!(cond(&s, condition_types::AUTHORIZED).status, "Unknown");
}

#[test]
fn collisions_are_surfaced_on_both_connections() {
    let sync = written();
    // The two messages the gateway writes for one collision (gateway/src/view.rs).
    let loser = "tool \"github__search\" collides with connection \"team-b/github\", which keeps it; change toolPrefix to expose it";
    let owner = "tool \"github__search\" is also offered by connection \"team-a/github\" (not exposed from there)";
    for message in [loser, owner] {
        let s = observe(
            &sync,
            &[colliding("r1", message), colliding("r2", message)],
            false,
        );
        let ready = cond(&s, condition_types::READY);
        assert_eq!(ready.reason, "NameCollision");
        assert_eq!(ready.status, "True", "the connection is still served");
        assert_eq!(
            ready.message,
            format!("2/2 gateway replicas ready; {message}"),
            "reported once, not once per replica"
        );
        let events = notices(&sync, None, &s);
        assert!(
            events
                .iter()
                .any(|n| n.reason == "NameCollision" && n.type_ == EventType::Warning),
            "{events:?}"
        );
    }
}

#[test]
fn sync_failures_set_ready_and_synced_false() {
    let sync = Sync::Failed {
        reason: reasons::SECRET_NOT_FOUND,
        message: "auth.token: Secret \"gh\" not found".into(),
    };
    let s = observe(&sync, &[], false);
    for type_ in [condition_types::READY, condition_types::SYNCED] {
        let c = cond(&s, type_);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "SecretNotFound")
        );
        assert_eq!(c.message, "auth.token: Secret \"gh\" not found");
    }
    let events = notices(&sync, None, &s);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].type_, EventType::Warning);
    assert_eq!(events[0].reason, "SecretNotFound");
    // The same failure again publishes nothing new.
    assert!(notices(&sync, Some(&s), &s).is_empty());
}

#[test]
fn transition_times_survive_unchanged_statuses() {
    let sync = written();
    let obs = Observation {
        connection: "team-a/github",
        generation: Some(3),
        sync: &sync,
        replicas: &[],
        authorization_code: false,
        connected_users: None,
    };
    let first = build(&obs, None, at(0));
    let replicas = [replica("r1", "ready", 1, None, 1)];
    let second = build(
        &Observation {
            replicas: &replicas,
            ..obs.clone()
        },
        Some(&first),
        at(100),
    );
    // Ready flipped: new time. Synced and Authorized did not: old time.
    assert_eq!(cond(&second, "Ready").last_transition_time, Time(at(100)));
    assert_eq!(cond(&second, "Synced").last_transition_time, Time(at(0)));
    assert_eq!(
        cond(&second, "Authorized").last_transition_time,
        Time(at(0))
    );

    let again = build(&obs, Some(&first), at(200));
    assert!(!differs(Some(&first), &again), "only the clock moved");
    assert!(differs(Some(&first), &second));
    assert!(differs(None, &first));
}

#[test]
fn written_rows_and_readiness_publish_normal_events() {
    let created = Sync::Written(PutOutcome::Created { revision: 1 });
    let s = observe(&created, &[replica("r1", "ready", 1, None, 1)], false);
    let reasons: Vec<&str> = notices(&created, None, &s)
        .iter()
        .map(|n| n.reason)
        .collect();
    assert_eq!(reasons, ["Created", "Ready"]);
    let updated = Sync::Written(PutOutcome::Updated { revision: 2 });
    let reasons: Vec<&str> = notices(&updated, Some(&s), &s)
        .iter()
        .map(|n| n.reason)
        .collect();
    assert_eq!(reasons, ["Updated"]);
}

#[test]
fn long_messages_are_cut_on_a_character_boundary() {
    let long = "é".repeat(MAX_MESSAGE);
    let cut = truncate(long);
    assert!(cut.len() <= MAX_MESSAGE && cut.ends_with("..."));
}

#[test]
fn per_user_connections_report_how_many_users_connected() {
    let sync = written();
    let obs = Observation {
        connection: "team-a/github",
        generation: Some(3),
        sync: &sync,
        replicas: &[],
        authorization_code: true,
        connected_users: Some(12),
    };
    assert_eq!(build(&obs, None, at(0)).connected_users, Some(12));
    let shared = Observation {
        connected_users: None,
        ..obs
    };
    assert_eq!(build(&shared, None, at(0)).connected_users, None);
}
