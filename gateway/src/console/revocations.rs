//! Console sign-ins ended before their cookie expires. A session is a sealed cookie
//! with no row, so a copied cookie would keep working until it expires; signing out
//! (and an admin's "sign out everywhere") records a revocation in the store instead.
//! Every replica holds the live revocations in memory (checked on every page view,
//! no store round-trip), re-reads them when the replica bus says they changed, after
//! a listener reconnect, and every 30 s in case a message was lost.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::broadcast::error::RecvError;

use super::session::{Session, TTL};
use crate::clock::Timestamp;
use crate::crypto::IdHash;
use crate::store::{BusMessage, ConsoleRevocation, Store, StoreEvent};

/// How often the revocations are re-read regardless of the bus.
const REREAD_EVERY: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Revoked {
    sessions: HashSet<IdHash>,
    /// Subject → sign-ins made at or before this time are revoked.
    subjects: HashMap<String, Timestamp>,
}

/// Every replica's copy of the console revocations.
pub struct Revocations {
    store: Arc<dyn Store>,
    revoked: ArcSwap<Revoked>,
}

impl Revocations {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            revoked: ArcSwap::from_pointee(Revoked::default()),
        }
    }

    /// Whether `session` was revoked.
    pub fn revoked(&self, session: &Session) -> bool {
        let revoked = self.revoked.load();
        revoked.sessions.contains(&session.id())
            || revoked
                .subjects
                .get(&session.subject)
                .is_some_and(|at| session.issued() <= *at)
    }

    /// Re-reads the revocations from the store.
    pub async fn load(&self) -> crate::store::Result<()> {
        let mut next = Revoked::default();
        for r in self.store.console_revocations().await? {
            match r {
                ConsoleRevocation::Session { id, .. } => {
                    next.sessions.insert(id);
                }
                ConsoleRevocation::Subject { subject, at, .. } => {
                    let latest = next.subjects.entry(subject).or_insert(at);
                    *latest = (*latest).max(at);
                }
            }
        }
        self.revoked.store(Arc::new(next));
        Ok(())
    }

    /// Ends one sign-in on every replica.
    pub async fn revoke(&self, session: &Session) -> crate::store::Result<()> {
        self.record(ConsoleRevocation::Session {
            id: session.id(),
            expires_at: session.expires,
        })
        .await
    }

    /// Ends every sign-in of `subject` made until now, on every replica.
    pub async fn revoke_subject(&self, subject: &str) -> crate::store::Result<()> {
        let now = Timestamp::now();
        self.record(ConsoleRevocation::Subject {
            subject: subject.to_owned(),
            at: now,
            expires_at: now.plus(TTL),
        })
        .await
    }

    async fn record(&self, revocation: ConsoleRevocation) -> crate::store::Result<()> {
        self.store.revoke_console_sessions(&revocation).await?;
        self.load().await?;
        if let Err(error) = self
            .store
            .publish(None, &BusMessage::ConsoleSessionsRevoked)
            .await
        {
            tracing::warn!(%error, "cannot tell other replicas about a console sign-out; they re-read revocations within 30s");
        }
        Ok(())
    }

    /// Follows changes (bus, resync, a periodic re-read) until `stop`.
    pub fn spawn(self: &Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let me = self.clone();
        let mut events = self.store.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REREAD_EVERY);
            loop {
                let reload = tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => true,
                    event = events.recv() => match event {
                        Ok(StoreEvent::Bus(BusMessage::ConsoleSessionsRevoked) | StoreEvent::Resync)
                        | Err(RecvError::Lagged(_)) => true,
                        Err(RecvError::Closed) => return,
                        Ok(_) => false,
                    },
                };
                if reload && let Err(error) = me.load().await {
                    tracing::warn!(%error, "cannot re-read console revocations; keeping the ones known");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn a_revoked_sign_in_and_a_subjects_earlier_sign_ins_are_refused() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let r = Revocations::new(store.clone());
        let (a, b) = (
            Session::new("alice".into(), vec![], false),
            Session::new("alice".into(), vec![], false),
        );
        let bob = Session::new("bob".into(), vec![], true);
        r.revoke(&a).await.unwrap();
        assert!(r.revoked(&a));
        assert!(!r.revoked(&b), "only the one sign-in");
        r.revoke_subject("bob").await.unwrap();
        assert!(r.revoked(&bob));
        assert!(!r.revoked(&b));
        // A sign-in made afterwards is not revoked.
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!r.revoked(&Session::new("bob".into(), vec![], true)));
        // Another replica reading the same store sees the same.
        let other = Revocations::new(store);
        other.load().await.unwrap();
        assert!(other.revoked(&a) && other.revoked(&bob) && !other.revoked(&b));
    }
}
