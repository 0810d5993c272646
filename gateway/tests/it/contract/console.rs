//! Console sign-outs: revocations written on one replica are read on another, and
//! forgotten once the sign-ins they name have expired.

use std::time::Duration;

use hawser_gateway::clock::Timestamp;
use hawser_gateway::crypto::IdHash;
use hawser_gateway::store::{ConsoleRevocation, Store};

pub async fn console_revocations_are_shared_and_forgotten_once_expired(
    a: &dyn Store,
    b: &dyn Store,
) {
    let now = Timestamp::now();
    let later = now.plus(Duration::from_secs(3600));
    let one = ConsoleRevocation::Session {
        id: IdHash::of("a sign-in"),
        expires_at: later,
    };
    let everyone = ConsoleRevocation::Subject {
        subject: "alice".into(),
        at: now,
        expires_at: later,
    };
    let spent = ConsoleRevocation::Session {
        id: IdHash::of("an expired sign-in"),
        expires_at: Timestamp::from_millis(now.millis() - 1_000),
    };
    for r in [&one, &everyone, &spent] {
        a.revoke_console_sessions(r).await.unwrap();
    }
    let seen = b.console_revocations().await.unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let close = |x: Timestamp, y: Timestamp| (x.millis() - y.millis()).abs() <= 1;
    assert!(seen.iter().any(|r| matches!(r,
        ConsoleRevocation::Session { id, expires_at }
            if *id == IdHash::of("a sign-in") && close(*expires_at, later))));
    assert!(seen.iter().any(|r| matches!(r,
        ConsoleRevocation::Subject { subject, at, expires_at }
            if subject == "alice" && close(*at, now) && close(*expires_at, later))));
}
