//! Hawser's own signing keys (ES256) and the assertions it signs for upstreams
//! (identity mode `jwt`): `iss` = Hawser, `aud` = the upstream, `sub`, `groups`, and
//! `act` naming Hawser. Public keys are served at `/.well-known/jwks.json`. Keys live
//! in the store (sealed); a rotation publishes the new key at once and keeps the old
//! one published for a day. An assertion is reused while more than half its lifetime
//! is left, so signing costs nothing on most calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};

use super::Identity;
use crate::clock::Timestamp;
use crate::store::{BusMessage, SigningKeyRecord, Store, StoreEvent};

/// Most assertions kept for reuse.
const CACHE_ENTRIES: usize = 16_384;

#[derive(Default)]
struct Keys {
    signing: Option<(String, Arc<EncodingKey>)>,
    jwks: Value,
}

/// (kid, subject, audience) of a cached assertion.
type Slot = (String, String, String);

/// Signs assertions about callers.
pub struct Signer {
    issuer: String,
    store: Arc<dyn Store>,
    keys: ArcSwap<Keys>,
    /// (kid, subject, audience) → (assertion, expiry in unix seconds).
    cache: Mutex<HashMap<Slot, (Arc<str>, i64)>>,
}

/// Why no key could be made or read.
#[derive(Debug, thiserror::Error)]
#[error("signing keys: {0}")]
pub struct KeyError(String);

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn new_key() -> Result<SigningKeyRecord, KeyError> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| KeyError("cannot generate a P-256 key".into()))?;
    let now = Timestamp::now();
    let id: [u8; 6] = rand::random();
    Ok(SigningKeyRecord {
        kid: format!("{}-{}", now.yyyymmdd(), b64(&id)),
        pkcs8: pkcs8.as_ref().to_vec(),
        created_at: now.unix_secs(),
        retired_at: None,
    })
}

fn public_jwk(record: &SigningKeyRecord) -> Option<Value> {
    let rng = ring::rand::SystemRandom::new();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &record.pkcs8, &rng).ok()?;
    let public = pair.public_key().as_ref();
    (public.len() == 65).then(|| {
        json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": record.kid,
            "x": b64(&public[1..33]), "y": b64(&public[33..65])})
    })
}

impl Signer {
    /// A signer whose assertions name `issuer`.
    pub fn new(issuer: String, store: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            issuer,
            store,
            keys: ArcSwap::from_pointee(Keys {
                signing: None,
                jwks: json!({"keys": []}),
            }),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Reads the keys, creating the first one when there is none.
    pub async fn load(&self) -> Result<(), KeyError> {
        let mut records = self
            .store
            .signing_keys()
            .await
            .map_err(|e| KeyError(e.to_string()))?;
        if !records.iter().any(|r| r.retired_at.is_none()) {
            let key = new_key()?;
            self.store
                .rotate_signing_key(&key)
                .await
                .map_err(|e| KeyError(e.to_string()))?;
            let _ = self
                .store
                .publish(None, &BusMessage::SigningKeysChanged)
                .await;
            records = self
                .store
                .signing_keys()
                .await
                .map_err(|e| KeyError(e.to_string()))?;
        }
        let signing = records
            .iter()
            .find(|r| r.retired_at.is_none())
            .map(|r| (r.kid.clone(), Arc::new(EncodingKey::from_ec_der(&r.pkcs8))));
        let jwks: Vec<Value> = records.iter().filter_map(public_jwk).collect();
        self.keys.store(Arc::new(Keys {
            signing,
            jwks: json!({ "keys": jwks }),
        }));
        Ok(())
    }

    /// Signs with a new key from now on; the old ones stay published for a day.
    pub async fn rotate(&self) -> Result<String, KeyError> {
        let key = new_key()?;
        self.store
            .rotate_signing_key(&key)
            .await
            .map_err(|e| KeyError(e.to_string()))?;
        self.load().await?;
        if let Err(error) = self
            .store
            .publish(None, &BusMessage::SigningKeysChanged)
            .await
        {
            tracing::warn!(%error, "cannot tell other replicas about the new signing key; they re-read keys within 5 minutes");
        }
        Ok(key.kid)
    }

    /// The public keys (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> Value {
        self.keys.load().jwks.clone()
    }

    /// An assertion about `caller` for `audience`, valid for `ttl`.
    pub fn assertion(&self, caller: &Identity, audience: &str, ttl: Duration) -> Option<Arc<str>> {
        let keys = self.keys.load();
        let (kid, key) = keys.signing.as_ref()?;
        let now = Timestamp::now().unix_secs();
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(3600);
        let slot = (kid.clone(), caller.subject.clone(), audience.to_owned());
        if let Ok(cache) = self.cache.lock()
            && let Some((token, exp)) = cache.get(&slot)
            && exp - now > ttl / 2
        {
            return Some(token.clone());
        }
        let jti: [u8; 12] = rand::random();
        let claims = json!({
            "iss": self.issuer, "aud": audience, "sub": caller.subject,
            "groups": caller.groups, "iat": now, "nbf": now - 5, "exp": now + ttl,
            "jti": b64(&jti), "auth_method": caller.method.as_str(),
            "act": {"sub": self.issuer},
        });
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.clone());
        header.typ = Some("JWT".into());
        let token: Arc<str> = jsonwebtoken::encode(&header, &claims, key).ok()?.into();
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_ENTRIES {
                cache.retain(|_, (_, exp)| *exp - now > ttl / 2);
                if cache.len() >= CACHE_ENTRIES {
                    cache.clear();
                }
            }
            cache.insert(slot, (token.clone(), now + ttl));
        }
        Some(token)
    }

    /// Follows rotations made by other replicas until `stop`.
    pub fn spawn(self: &Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let me = self.clone();
        let mut events = self.store.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(300));
            tick.tick().await;
            loop {
                let reload = tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => true,
                    event = events.recv() => match event {
                        Ok(StoreEvent::Bus(BusMessage::SigningKeysChanged) | StoreEvent::Resync) => true,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                        Ok(_) => false,
                    },
                };
                if reload && let Err(error) = me.load().await {
                    tracing::warn!(%error, "cannot re-read signing keys; keeping the ones known");
                }
            }
        });
    }
}
