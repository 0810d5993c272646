//! Rate limits shared by every replica. Each (limit, key) is a token bucket in the
//! store; a replica leases a few tokens at a time (one statement), sized to the rate
//! it sees, and spends them locally, so calls cost no store round-trip while a lease
//! lasts. N replicas admit at most the limit plus one lease each. Unspent tokens are
//! dropped after a second, so an idle replica cannot save them up. While the store is
//! unreachable each replica limits locally to its share (the limit ÷ live replicas)
//! and says so in the log and `hawser_rate_limit_fallback`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use crate::store::Store;

/// How long leased tokens stay spendable.
const LEASE_FOR: Duration = Duration::from_secs(1);
/// Shortest wait told to a refused caller.
const MIN_RETRY: Duration = Duration::from_millis(50);
/// Most buckets held per replica; beyond it idle ones are dropped.
const MAX_BUCKETS: usize = 65_536;

struct Local {
    tokens: u32,
    leased_at: Instant,
    /// Calls per second seen here (exponentially decaying count).
    calls: f64,
    last: Instant,
    refused_until: Option<Instant>,
    /// The local bucket used while the store is away: (tokens, refilled at).
    fallback: Option<(f64, Instant)>,
}

struct Bucket {
    local: tokio::sync::Mutex<Local>,
}

/// Hands out tokens from shared buckets.
pub struct Limiter {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    buckets: Mutex<HashMap<String, Arc<Bucket>>>,
    replicas: AtomicUsize,
    degraded: AtomicBool,
    /// While degraded, the store is asked again only after this.
    retry_store_at: Mutex<Option<Instant>>,
}

/// How long a replica limits on its own before asking the store again.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// Longest wait for a lease.
const STORE_WAIT: Duration = Duration::from_millis(500);

impl Limiter {
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            metrics,
            buckets: Mutex::new(HashMap::new()),
            replicas: AtomicUsize::new(1),
            degraded: AtomicBool::new(false),
            retry_store_at: Mutex::new(None),
        }
    }

    /// Forgets local leases (the limits changed).
    pub fn reset(&self) {
        if let Ok(mut b) = self.buckets.lock() {
            b.clear();
        }
    }

    /// Refreshes the live replica count and sweeps idle buckets.
    pub async fn maintain(&self) {
        if let Ok(n) = self.store.live_replicas().await {
            self.replicas.store(n, Ordering::Relaxed);
        }
        let _ = self
            .store
            .sweep_buckets(Duration::from_secs(24 * 3600))
            .await;
        if let Ok(mut b) = self.buckets.lock()
            && b.len() > MAX_BUCKETS
        {
            b.clear();
        }
    }

    fn bucket(&self, key: &str) -> Arc<Bucket> {
        let now = Instant::now();
        let mut buckets = match self.buckets.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        buckets
            .entry(key.to_owned())
            .or_insert_with(|| {
                Arc::new(Bucket {
                    local: tokio::sync::Mutex::new(Local {
                        tokens: 0,
                        leased_at: now,
                        calls: 0.0,
                        last: now,
                        refused_until: None,
                        fallback: None,
                    }),
                })
            })
            .clone()
    }

    /// One token of bucket `key` (`rate` per second, up to `burst`), or how long to
    /// wait before trying again.
    pub async fn take(&self, key: &str, rate: f64, burst: f64) -> Result<(), Duration> {
        let bucket = self.bucket(key);
        let mut l = bucket.local.lock().await;
        let now = Instant::now();
        let dt = now.duration_since(l.last).as_secs_f64();
        l.calls = l.calls * (-dt).exp() + 1.0;
        l.last = now;
        if l.tokens > 0 && now.duration_since(l.leased_at) < LEASE_FOR {
            l.tokens -= 1;
            return Ok(());
        }
        l.tokens = 0;
        if let Some(until) = l.refused_until
            && now < until
        {
            return Err(until - now);
        }
        // A quarter second of this replica's traffic, at most an eighth of the burst.
        let most = (burst / 8.0).floor().max(1.0);
        let want = (l.calls * 0.25).round().clamp(1.0, most) as u32;
        let skip_store = self
            .retry_store_at
            .lock()
            .ok()
            .and_then(|t| *t)
            .is_some_and(|at| now < at);
        let leased = if skip_store {
            Err(crate::store::Error::Unavailable)
        } else {
            // A store that does not answer quickly is treated as away: a call must not
            // wait out a connection timeout for its token.
            tokio::time::timeout(STORE_WAIT, self.store.lease_tokens(key, rate, burst, want))
                .await
                .unwrap_or(Err(crate::store::Error::Unavailable))
        };
        match leased {
            Ok(lease) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!("rate limits are shared again");
                    self.metrics.rate_limit_fallback.set(0);
                }
                l.fallback = None;
                if lease.granted > 0 {
                    l.tokens = lease.granted - 1;
                    l.leased_at = now;
                    return Ok(());
                }
                let wait =
                    Duration::from_secs_f64(((1.0 - lease.left) / rate).max(0.0)).max(MIN_RETRY);
                l.refused_until = Some(now + wait);
                Err(wait)
            }
            Err(error) => {
                if !skip_store && let Ok(mut at) = self.retry_store_at.lock() {
                    *at = Some(now + STORE_RETRY);
                }
                if !self.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%error, "rate-limit buckets unreachable: each replica limits to its share locally");
                    self.metrics.rate_limit_fallback.set(1);
                }
                let share = self.replicas.load(Ordering::Relaxed).max(1) as f64;
                let (rate, burst) = (rate / share, (burst / share).max(1.0));
                let (tokens, at) = l.fallback.get_or_insert((burst, now));
                let available = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
                *at = now;
                if available >= 1.0 {
                    *tokens = available - 1.0;
                    Ok(())
                } else {
                    *tokens = available;
                    Err(Duration::from_secs_f64((1.0 - available) / rate).max(MIN_RETRY))
                }
            }
        }
    }
}
