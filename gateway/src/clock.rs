//! [`Timestamp`]: the one representation of a point in time at the store boundary
//! (rows, events, token expiries): milliseconds since the Unix epoch, UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A point in time: milliseconds since the Unix epoch (UTC).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(i64);

/// `YYYYMMDD` of a day counted from the Unix epoch (the proleptic Gregorian
/// calendar; Howard Hinnant's civil-from-days).
pub fn civil_from_days(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}")
}

impl Timestamp {
    /// The time now (the epoch if the clock is set before 1970).
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub const fn millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch.
    pub const fn unix_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// Seconds since the epoch, for SQL's `to_timestamp`.
    pub fn secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    /// The UTC date of this time as `YYYYMMDD` (partition names, generated key ids).
    pub fn yyyymmdd(self) -> String {
        civil_from_days(self.0.div_euclid(86_400_000))
    }

    /// This time plus `d` (saturating).
    pub fn plus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// How long after `earlier` this is (zero if it is not after it).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// How long ago this was (zero for a time in the future).
    pub fn elapsed(self) -> Duration {
        Self::now().since(self)
    }

    /// How long until this time (zero for a time in the past).
    pub fn remaining(self) -> Duration {
        self.since(Self::now())
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        Self(
            t.duration_since(UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or(0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        let t = Timestamp::from_millis(1_000);
        assert_eq!(t.plus(Duration::from_millis(500)).millis(), 1_500);
        assert_eq!(
            t.since(Timestamp::from_millis(400)),
            Duration::from_millis(600)
        );
        assert_eq!(t.since(Timestamp::from_millis(4_000)), Duration::ZERO);
        assert_eq!(
            Timestamp::from_millis(i64::MAX - 1)
                .plus(Duration::MAX)
                .millis(),
            i64::MAX
        );
        assert!(Timestamp::now() > t);
        assert_eq!(serde_json::to_string(&t).unwrap(), "1000");
    }
}
