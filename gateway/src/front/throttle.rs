//! Client addresses that keep failing authentication. Each address has a bucket of
//! `http.maxAuthFailuresPerMinute` failures, refilled continuously; once it is empty,
//! a request from there that fails authentication is answered 429 with `Retry-After`
//! instead of 401. Requests with valid credentials are never refused here, so clients
//! behind one address (a NAT, a proxy not in `trustedProxies`) are not locked out by a
//! neighbour. Per replica: a flood spread over N replicas gets N times the allowance,
//! which is the point of a cheap, local first line; policy rate limits are the shared
//! ones.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most addresses tracked; beyond it, addresses whose bucket refilled are forgotten,
/// then the whole table if that was not enough (a flood of addresses gets no memory).
const MAX_ADDRESSES: usize = 65_536;

struct Bucket {
    failures: f64,
    at: Instant,
}

pub struct FailureThrottle {
    per_minute: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl FailureThrottle {
    /// `per_minute` 0 disables it.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: f64::from(per_minute),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// How long `address` must wait before its next failure is allowed, without
    /// counting anything: for forms that refuse an over-allowance address even its
    /// right password, since answering a right guess would make guessing free.
    pub fn waiting(&self, address: &str) -> Option<Duration> {
        if self.per_minute <= 0.0 {
            return None;
        }
        let per_second = self.per_minute / 60.0;
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.get(address)?;
        let failures = bucket.failures - bucket.at.elapsed().as_secs_f64() * per_second;
        let over = failures + 1.0 - self.per_minute;
        (over > 0.0).then(|| Duration::from_secs_f64((over / per_second).max(1.0)))
    }

    /// Counts a failed authentication from `address`: `Some(wait)` when the address
    /// is over its allowance (answer 429, retry after `wait`).
    pub fn failed(&self, address: &str) -> Option<Duration> {
        if self.per_minute <= 0.0 {
            return None;
        }
        let per_second = self.per_minute / 60.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_ADDRESSES && !buckets.contains_key(address) {
            buckets.retain(|_, b| {
                b.failures - now.duration_since(b.at).as_secs_f64() * per_second > 0.0
            });
            if buckets.len() >= MAX_ADDRESSES {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(address.to_owned()).or_insert(Bucket {
            failures: 0.0,
            at: now,
        });
        let drained = now.duration_since(bucket.at).as_secs_f64() * per_second;
        bucket.failures = (bucket.failures - drained).max(0.0) + 1.0;
        bucket.at = now;
        let over = bucket.failures - self.per_minute;
        (over > 0.0).then(|| Duration::from_secs_f64((over / per_second).max(1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_over_its_allowance_is_told_to_wait_and_others_are_not() {
        let t = FailureThrottle::new(3);
        assert_eq!(t.failed("10.0.0.1"), None);
        assert_eq!(t.failed("10.0.0.1"), None);
        assert_eq!(t.failed("10.0.0.1"), None);
        let wait = t.failed("10.0.0.1").expect("the fourth failure is over");
        assert!(
            wait >= Duration::from_secs(1) && wait <= Duration::from_secs(21),
            "{wait:?}"
        );
        assert_eq!(t.failed("10.0.0.2"), None);
    }

    #[test]
    fn waiting_tells_without_counting() {
        let t = FailureThrottle::new(2);
        assert_eq!(t.waiting("10.0.0.1"), None);
        t.failed("10.0.0.1");
        assert_eq!(t.waiting("10.0.0.1"), None);
        assert_eq!(t.waiting("10.0.0.1"), None, "asking does not count");
        t.failed("10.0.0.1");
        assert!(
            t.waiting("10.0.0.1").is_some(),
            "a third failure would be over"
        );
        assert_eq!(t.waiting("10.0.0.2"), None);
    }

    #[test]
    fn zero_disables_it() {
        let t = FailureThrottle::new(0);
        assert!((0..1000).all(|_| t.failed("10.0.0.1").is_none()));
    }

    #[test]
    fn a_flood_of_addresses_takes_bounded_memory() {
        let t = FailureThrottle::new(60);
        for i in 0..(MAX_ADDRESSES as u32 + 10) {
            t.failed(&i.to_string());
        }
        assert!(t.buckets.lock().unwrap().len() <= MAX_ADDRESSES);
    }
}
