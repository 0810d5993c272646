//! Durations written as `10s`, `1500ms`, `2m`, `1h30m`.
//!
//! One small grammar (a sequence of `<digits><unit>`, units `ms`, `s`, `m`, `h`) is
//! shared by the config file, the admin API and the CRD, whose schema carries the
//! same grammar as a regex so the API server rejects a bad value at `kubectl apply`.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The regex the CRD schema uses for durations; kept in step with [`Duration::parse`].
pub const DURATION_PATTERN: &str = "^([0-9]+(ms|s|m|h|d))+$";

/// The longest duration the grammar takes (100 years): anything longer is a typo, and
/// added to a clock it would overflow it.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(36_500 * 86_400);

/// A non-zero duration parsed from the `<digits><unit>` grammar, at most
/// [`MAX_DURATION`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseDurationError {
    input: String,
    reason: &'static str,
}

impl fmt::Display for ParseDurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid duration {:?}: {} (expected e.g. \"500ms\", \"10s\", \"2m\", \"1h30m\", \"30d\")",
            self.input, self.reason
        )
    }
}

impl std::error::Error for ParseDurationError {}

impl Duration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    pub const fn from_millis(millis: u64) -> Self {
        Self(std::time::Duration::from_millis(millis))
    }

    pub const fn get(self) -> std::time::Duration {
        self.0
    }

    /// Parses `<digits><unit>` repeated; the total must be greater than zero.
    pub fn parse(input: &str) -> Result<Self, ParseDurationError> {
        let err = |reason| ParseDurationError {
            input: input.to_owned(),
            reason,
        };
        let mut rest = input.trim();
        if rest.is_empty() {
            return Err(err("empty"));
        }
        let mut total = std::time::Duration::ZERO;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(err("expected a number"));
            }
            let value: u64 = rest[..digits]
                .parse()
                .map_err(|_| err("number out of range"))?;
            rest = &rest[digits..];
            let (unit_len, part) = if rest.starts_with("ms") {
                (2, std::time::Duration::from_millis(value))
            } else if rest.starts_with('s') {
                (1, std::time::Duration::from_secs(value))
            } else if rest.starts_with('m') {
                (1, seconds(value, 60).ok_or_else(|| err("out of range"))?)
            } else if rest.starts_with('h') {
                (1, seconds(value, 3600).ok_or_else(|| err("out of range"))?)
            } else if rest.starts_with('d') {
                (
                    1,
                    seconds(value, 86_400).ok_or_else(|| err("out of range"))?,
                )
            } else {
                return Err(err("missing or unknown unit (use ms, s, m, h or d)"));
            };
            rest = &rest[unit_len..];
            total = total.checked_add(part).ok_or_else(|| err("out of range"))?;
        }
        if total.is_zero() {
            return Err(err("must be greater than zero"));
        }
        if total > MAX_DURATION {
            return Err(err("out of range (at most 36500d)"));
        }
        Ok(Self(total))
    }
}

fn seconds(value: u64, factor: u64) -> Option<std::time::Duration> {
    value
        .checked_mul(factor)
        .map(std::time::Duration::from_secs)
}

impl fmt::Display for Duration {
    /// The shortest exact spelling: `90s` → `1m30s`, `1500ms` stays `1500ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        if !millis.is_multiple_of(1000) {
            return write!(f, "{millis}ms");
        }
        let mut secs = millis / 1000;
        let hours = secs / 3600;
        secs %= 3600;
        let minutes = secs / 60;
        secs %= 60;
        if hours > 0 {
            write!(f, "{hours}h")?;
        }
        if minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        if secs > 0 || (hours == 0 && minutes == 0) {
            write!(f, "{secs}s")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        Duration::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration such as 500ms, 10s, 2m, 1h30m or 30d."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(Duration::parse("10s").unwrap().get().as_secs(), 10);
        assert_eq!(Duration::parse("1500ms").unwrap().get().as_millis(), 1500);
        assert_eq!(Duration::parse("1h30m").unwrap().get().as_secs(), 5400);
        assert_eq!(Duration::parse("2m").unwrap().get().as_secs(), 120);
        assert_eq!(Duration::parse("30d").unwrap().get().as_secs(), 30 * 86_400);
    }

    #[test]
    fn rejects_what_the_crd_pattern_rejects() {
        for bad in [
            "",
            "10",
            "s",
            "10x",
            "1.5s",
            "-1s",
            "0s",
            "10 s",
            "99999999999999999999h",
        ] {
            assert!(Duration::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn displays_shortest_exact_form_and_round_trips() {
        for (input, shown) in [
            ("90s", "1m30s"),
            ("1500ms", "1500ms"),
            ("3600s", "1h"),
            ("1h0m5s", "1h5s"),
        ] {
            let d = Duration::parse(input).unwrap();
            assert_eq!(d.to_string(), shown);
            assert_eq!(Duration::parse(shown).unwrap(), d);
        }
    }

    #[test]
    fn error_names_the_value_and_the_grammar() {
        let e = Duration::parse("10 seconds").unwrap_err().to_string();
        assert!(e.contains("\"10 seconds\""), "{e}");
        assert!(e.contains("10s"), "{e}");
    }
}
