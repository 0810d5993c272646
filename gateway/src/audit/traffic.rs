//! The last hour's calls of each connection, in memory, for the console's charts in
//! embedded mode (shared mode reads them from the audit table). Per connection: 60
//! one-minute slots, each with a call count, an error count and a latency histogram
//! (40 buckets, each √2 wider than the last, from 0.25 ms to about 3 minutes), all
//! atomics: recording a call is a lock-free map read and four atomic additions, with
//! no allocation once the connection has its slots.
//!
//! Bounded: at most [`MAX_CONNECTIONS`] connections get slots (about 11 KiB each);
//! when that many are tracked, connections idle for an hour make room, and calls of
//! any further connection are counted under [`OTHER`]. Approximate where that is
//! cheaper than exact: a call recorded while its slot turns over to a new minute may
//! be lost, and percentiles are a bucket's midpoint (within ±19 %).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::clock::Timestamp;
use crate::store::TrafficBucket;

/// Minutes kept.
const SLOTS: usize = 60;
/// Latency buckets; bucket `i` holds calls up to `FIRST_MS · 2^(i/2)`.
const BUCKETS: usize = 40;
const FIRST_MS: f64 = 0.25;
/// Series kept at most ([`OTHER`] included).
pub const MAX_CONNECTIONS: usize = 256;
/// Where calls of connections beyond [`MAX_CONNECTIONS`] are counted.
pub const OTHER: &str = "(other connections)";

struct Slot {
    /// The minute (Unix minutes) the counts belong to.
    minute: AtomicI64,
    calls: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU32; BUCKETS],
}

impl Slot {
    fn new() -> Self {
        Self {
            minute: AtomicI64::new(i64::MIN),
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

/// One connection's last hour.
struct Series {
    slots: [Slot; SLOTS],
}

impl Series {
    fn new() -> Self {
        Self {
            slots: std::array::from_fn(|_| Slot::new()),
        }
    }

    fn record(&self, minute: i64, ms: f64, ok: bool) {
        let slot = &self.slots[minute.rem_euclid(SLOTS as i64) as usize];
        let seen = slot.minute.load(Ordering::Acquire);
        if seen != minute
            && seen < minute
            && slot
                .minute
                .compare_exchange(seen, minute, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // This call turned the slot over: an hour-old minute is forgotten.
            slot.calls.store(0, Ordering::Relaxed);
            slot.errors.store(0, Ordering::Relaxed);
            for b in &slot.latency {
                b.store(0, Ordering::Relaxed);
            }
        } else if seen > minute {
            // A call that finished an hour late: not worth a slot.
            return;
        }
        slot.calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            slot.errors.fetch_add(1, Ordering::Relaxed);
        }
        slot.latency[bucket(ms)].fetch_add(1, Ordering::Relaxed);
    }

    /// The newest minute with counts.
    fn last_minute(&self) -> i64 {
        self.slots
            .iter()
            .map(|s| s.minute.load(Ordering::Relaxed))
            .max()
            .unwrap_or(i64::MIN)
    }
}

/// The latency bucket of `ms`.
fn bucket(ms: f64) -> usize {
    // NaN and anything up to the first bound go to the first bucket.
    if ms.is_nan() || ms <= FIRST_MS {
        return 0;
    }
    let i = ((ms / FIRST_MS).log2() * 2.0).ceil();
    (i as usize).min(BUCKETS - 1)
}

/// A value representing bucket `i` (the geometric middle of its bounds).
fn bucket_ms(i: usize) -> f64 {
    FIRST_MS * 2f64.powf((i as f64 - 0.5).max(0.0) / 2.0)
}

/// Every connection's last hour on this replica.
pub struct RecentTraffic {
    series: ArcSwap<HashMap<String, Arc<Series>>>,
    /// Taken only to add a connection.
    adding: Mutex<()>,
}

impl Default for RecentTraffic {
    fn default() -> Self {
        Self::new()
    }
}

impl RecentTraffic {
    pub fn new() -> Self {
        Self {
            series: ArcSwap::from_pointee(HashMap::new()),
            adding: Mutex::new(()),
        }
    }

    /// Counts one call of `connection` that took `elapsed`.
    pub fn record(&self, connection: &str, elapsed: Duration, ok: bool) {
        self.record_at(connection, elapsed, ok, Timestamp::now());
    }

    fn record_at(&self, connection: &str, elapsed: Duration, ok: bool, now: Timestamp) {
        let minute = now.millis().div_euclid(60_000);
        let ms = elapsed.as_secs_f64() * 1000.0;
        if let Some(s) = self.series.load().get(connection) {
            s.record(minute, ms, ok);
            return;
        }
        self.add(connection, minute).record(minute, ms, ok);
    }

    /// The series of a connection seen for the first time (or [`OTHER`]'s).
    fn add(&self, connection: &str, minute: i64) -> Arc<Series> {
        let _adding = self.adding.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.series.load_full();
        if let Some(s) = current.get(connection) {
            return s.clone();
        }
        let mut next: HashMap<String, Arc<Series>> = (*current).clone();
        // One place stays for OTHER.
        let full = |m: &HashMap<String, Arc<Series>>| m.len() >= MAX_CONNECTIONS - 1;
        if full(&next) {
            next.retain(|name, s| name == OTHER || s.last_minute() > minute - SLOTS as i64);
        }
        let name = if full(&next) { OTHER } else { connection };
        let series = next
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(Series::new()))
            .clone();
        self.series.store(Arc::new(next));
        series
    }

    /// Calls per minute since `since` (of `connection`, or of all), oldest first;
    /// minutes without calls are left out: what `Store::audit_traffic` answers in
    /// shared mode.
    pub fn buckets(&self, since: Timestamp, connection: Option<&str>) -> Vec<TrafficBucket> {
        let first = since.millis().div_euclid(60_000);
        let map = self.series.load();
        let chosen: Vec<&Arc<Series>> = match connection {
            Some(c) => map.get(c).into_iter().collect(),
            None => map.values().collect(),
        };
        let mut out = Vec::new();
        for minute in first..first + SLOTS as i64 + 1 {
            let mut calls = 0;
            let mut errors = 0;
            let mut latency = [0u64; BUCKETS];
            for s in &chosen {
                let slot = &s.slots[minute.rem_euclid(SLOTS as i64) as usize];
                if slot.minute.load(Ordering::Acquire) != minute {
                    continue;
                }
                calls += slot.calls.load(Ordering::Relaxed);
                errors += slot.errors.load(Ordering::Relaxed);
                for (sum, b) in latency.iter_mut().zip(&slot.latency) {
                    *sum += u64::from(b.load(Ordering::Relaxed));
                }
            }
            if calls == 0 {
                continue;
            }
            out.push(TrafficBucket {
                start: Timestamp::from_millis(minute * 60_000),
                calls: calls as i64,
                errors: errors as i64,
                p50_ms: percentile(&latency, 0.5),
                p99_ms: percentile(&latency, 0.99),
            });
        }
        out
    }
}

/// The `q` quantile of a histogram, as its bucket's middle.
fn percentile(latency: &[u64; BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = latency.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in latency.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(bucket_ms(i));
        }
    }
    Some(bucket_ms(BUCKETS - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> Timestamp {
        Timestamp::from_millis(minute * 60_000 + 1_000)
    }

    fn start(minute: i64) -> Timestamp {
        Timestamp::from_millis(minute * 60_000)
    }

    #[test]
    fn counts_errors_and_percentiles_per_minute_and_connection() {
        let t = RecentTraffic::new();
        let m = 29_000_000;
        for i in 0..100 {
            let ms = if i < 98 { 10 } else { 1000 };
            t.record_at("a", Duration::from_millis(ms), i % 10 != 0, at(m));
        }
        t.record_at("b", Duration::from_millis(50), true, at(m + 1));
        let all = t.buckets(at(m - 59), None);
        assert_eq!(all.len(), 2);
        let first = all[0];
        assert_eq!(
            (first.start, first.calls, first.errors),
            (start(m), 100, 10)
        );
        let p50 = first.p50_ms.unwrap();
        let p99 = first.p99_ms.unwrap();
        assert!((8.0..=12.0).contains(&p50), "p50 {p50}");
        assert!((800.0..=1200.0).contains(&p99), "p99 {p99}");
        assert_eq!(t.buckets(at(m - 59), Some("b")).len(), 1);
        assert!(t.buckets(at(m - 59), Some("c")).is_empty());
    }

    #[test]
    fn an_hour_later_a_minute_is_forgotten() {
        let t = RecentTraffic::new();
        let m = 29_000_000;
        t.record_at("a", Duration::from_millis(5), true, at(m));
        t.record_at("a", Duration::from_millis(5), false, at(m + 60));
        let b = t.buckets(at(m + 1), None);
        assert_eq!(b.len(), 1);
        assert_eq!((b[0].calls, b[0].errors), (1, 1));
        assert!(
            t.buckets(at(m - 59), None)
                .iter()
                .all(|b| b.start != start(m))
        );
    }

    #[test]
    fn connections_beyond_the_cap_share_one_series() {
        let t = RecentTraffic::new();
        let m = 29_000_000;
        for i in 0..MAX_CONNECTIONS + 10 {
            t.record_at(&format!("c{i}"), Duration::from_millis(1), true, at(m));
        }
        let map = t.series.load();
        assert_eq!(map.len(), MAX_CONNECTIONS);
        assert!(map.contains_key(OTHER));
        let total: i64 = t.buckets(at(m - 1), None).iter().map(|b| b.calls).sum();
        assert_eq!(total, (MAX_CONNECTIONS + 10) as i64);
        // An hour on, idle connections make room for new ones.
        t.record_at("fresh", Duration::from_millis(1), true, at(m + 61));
        assert!(t.series.load().contains_key("fresh"));
    }

    #[test]
    fn latency_buckets_cover_the_range() {
        assert_eq!(bucket(0.0), 0);
        assert_eq!(bucket(f64::NAN), 0);
        assert_eq!(bucket(1e12), BUCKETS - 1);
        for ms in [0.3, 1.0, 7.0, 100.0, 5000.0] {
            let b = bucket(ms);
            let mid = bucket_ms(b);
            assert!(mid / ms < 1.45 && ms / mid < 1.45, "{ms} → {mid}");
        }
    }
}
