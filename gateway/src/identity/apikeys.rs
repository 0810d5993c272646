//! API keys: issued and revoked through the admin API, stored as SHA-256 hashes,
//! checked against a copy every replica keeps in memory (no store round-trip per
//! call). A revocation reaches every replica over the replica bus; last-used times
//! are written in batches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::{AuthMethod, Identity, Reason};
use crate::clock::Timestamp;
use crate::crypto::IdHash;
use crate::store::{ApiKeyRecord, BusMessage, Store, StoreEvent};

/// Every key starts with this, so secret scanners can find leaked ones.
pub const PREFIX: &str = "hwk_";
/// Characters of a key shown in lists (the prefix and 8 more).
const SHOWN: usize = PREFIX.len() + 8;
/// How often last-used times are written and the keys re-read regardless of the bus.
const FLUSH_EVERY: Duration = Duration::from_secs(30);

/// Whether a presented token is meant to be an API key.
pub fn looks_like_key(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// A key as a replica holds it.
struct Entry {
    id: String,
    identity: Arc<Identity>,
    expires_at: Option<i64>,
    revoked: bool,
}

/// A newly issued key: the key itself (shown once) and its row.
pub struct Issued {
    pub key: crate::crypto::Secret,
    pub record: ApiKeyRecord,
}

/// What `POST /api/v1/apikeys` and `hawser apikey create` take.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewKey {
    pub subject: String,
    #[serde(default)]
    pub groups: Vec<String>,
    pub description: Option<String>,
    /// How long the key is valid (e.g. `90d`); none: until revoked.
    pub expires_in: Option<hawser_crds::Duration>,
}

/// Every replica's copy of the API keys.
pub struct ApiKeys {
    store: Arc<dyn Store>,
    keys: ArcSwap<HashMap<IdHash, Entry>>,
    /// Key id → when it was last used, since the last flush.
    used: Mutex<HashMap<String, i64>>,
}

impl ApiKeys {
    pub fn new(store: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            store,
            keys: ArcSwap::from_pointee(HashMap::new()),
            used: Mutex::new(HashMap::new()),
        })
    }

    /// Re-reads every key from the store.
    pub async fn load(&self) -> crate::store::Result<()> {
        let records = self.store.list_api_keys().await?;
        let map = records
            .into_iter()
            .map(|r| {
                let entry = Entry {
                    identity: Arc::new(Identity::named(&r.subject, AuthMethod::ApiKey, r.groups)),
                    expires_at: r.expires_at,
                    revoked: r.revoked_at.is_some(),
                    id: r.id,
                };
                (r.hash, entry)
            })
            .collect();
        self.keys.store(Arc::new(map));
        Ok(())
    }

    /// The caller a key names.
    pub fn check(&self, key: &str) -> Result<Arc<Identity>, Reason> {
        let keys = self.keys.load();
        let entry = keys.get(&IdHash::of(key)).ok_or(Reason::Invalid)?;
        if entry.revoked {
            return Err(Reason::Revoked);
        }
        let now = Timestamp::now().unix_secs();
        if entry.expires_at.is_some_and(|t| t <= now) {
            return Err(Reason::Expired);
        }
        if let Ok(mut used) = self.used.lock() {
            used.insert(entry.id.clone(), now);
        }
        Ok(entry.identity.clone())
    }

    /// Issues a key for `new` and tells every replica.
    pub async fn issue(&self, new: NewKey) -> Result<Issued, IssueError> {
        if new.subject.trim().is_empty() || new.subject.len() > 256 {
            return Err(IssueError::Invalid(
                "subject must be 1 to 256 characters".into(),
            ));
        }
        if new.groups.iter().any(|g| g.is_empty() || g.len() > 256) || new.groups.len() > 64 {
            return Err(IssueError::Invalid(
                "groups: at most 64, each 1 to 256 characters".into(),
            ));
        }
        if new.description.as_ref().is_some_and(|d| d.len() > 1024) {
            return Err(IssueError::Invalid(
                "description: at most 1024 characters".into(),
            ));
        }
        let secret: [u8; 32] = rand::random();
        let key = format!("{PREFIX}{}", hex(&secret));
        let id_bytes: [u8; 8] = rand::random();
        let now = Timestamp::now();
        let expires_at = new.expires_in.map(|d| now.plus(d.get()).unix_secs());
        let record = ApiKeyRecord {
            id: hex(&id_bytes),
            prefix: key[..SHOWN].to_owned(),
            hash: IdHash::of(&key),
            subject: new.subject,
            groups: new.groups,
            description: new.description,
            created_at: now.unix_secs(),
            expires_at,
            last_used_at: None,
            revoked_at: None,
        };
        self.store
            .create_api_key(&record)
            .await
            .map_err(IssueError::Store)?;
        self.announce().await;
        Ok(Issued {
            key: crate::crypto::Secret::new(key),
            record,
        })
    }

    /// Revokes key `id` everywhere; whether it was live.
    pub async fn revoke(&self, id: &str) -> crate::store::Result<bool> {
        let revoked = self.store.revoke_api_key(id).await?;
        if revoked {
            self.announce().await;
        }
        Ok(revoked)
    }

    async fn announce(&self) {
        if let Err(error) = self.load().await {
            tracing::warn!(%error, "cannot re-read API keys");
        }
        if let Err(error) = self.store.publish(None, &BusMessage::ApiKeysChanged).await {
            tracing::warn!(%error, "cannot tell other replicas about an API key change; they re-read keys within 30s");
        }
    }

    /// Writes the last-used times gathered since the last flush.
    pub async fn flush(&self) {
        let batch: Vec<(String, i64)> = match self.used.lock() {
            Ok(mut used) => used.drain().collect(),
            Err(_) => return,
        };
        if let Err(error) = self.store.touch_api_keys(&batch).await {
            tracing::warn!(%error, keys = batch.len(), "cannot record API key use");
        }
    }

    /// Loads the keys, then follows changes (bus, resync, a periodic re-read) and
    /// flushes last-used times until `stop`.
    pub fn spawn(self: &Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let me = self.clone();
        let mut events = self.store.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            loop {
                tokio::select! {
                    () = stop.cancelled() => {
                        me.flush().await;
                        return;
                    }
                    _ = tick.tick() => {
                        me.flush().await;
                        if let Err(error) = me.load().await {
                            tracing::warn!(%error, "cannot re-read API keys; keeping the ones known");
                        }
                    }
                    event = events.recv() => {
                        let reload = matches!(
                            event,
                            Ok(StoreEvent::Bus(BusMessage::ApiKeysChanged) | StoreEvent::Resync)
                                | Err(tokio::sync::broadcast::error::RecvError::Lagged(_))
                        );
                        if matches!(event, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                            return;
                        }
                        if reload && let Err(error) = me.load().await {
                            tracing::warn!(%error, "cannot re-read API keys; keeping the ones known");
                        }
                    }
                }
            }
        });
    }
}

/// Why a key could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(crate::store::Error),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
