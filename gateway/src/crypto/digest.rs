//! [`IdHash`]: the SHA-256 of a bearer secret. Session ids, API keys, client tokens
//! and OAuth `state` values are stored and looked up by it, so a read of the store
//! yields nothing usable, and compared in constant time.

use std::fmt;

use sha2::{Digest, Sha256};

/// SHA-256 of a secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdHash([u8; 32]);

impl IdHash {
    /// The digest of `secret`.
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// A digest read back from storage; `None` unless exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex (64 digits), as carried in notifications and bus messages.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses [`Self::to_hex`] (either case).
    pub fn from_hex(s: &str) -> Option<Self> {
        // Only hex digits: `from_str_radix` alone would also take a `+` sign.
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).ok()?;
        }
        Some(Self(out))
    }

    /// A short, non-secret handle for logs and audit rows (the first 6 bytes in hex).
    pub fn handle(&self) -> String {
        hex(&self.0[..6])
    }

    /// Compares in constant time (timing tells nothing about a common prefix).
    pub fn matches(&self, other: &IdHash) -> bool {
        constant_time_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for IdHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdHash({}…)", self.handle())
    }
}

/// As hex text (bus messages between replicas carry session hashes this way).
impl serde::Serialize for IdHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for IdHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_hex(&text).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_bad_input_is_refused() {
        let h = IdHash::of("a session id");
        assert_eq!(IdHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(IdHash::from_hex(&h.to_hex().to_uppercase()), Some(h));
        assert_eq!(h.to_hex().len(), 64);
        assert!(h.to_hex().starts_with(&h.handle()));
        for bad in ["", "zz", &"0".repeat(63), &"g".repeat(64), &"é".repeat(32)] {
            assert_eq!(IdHash::from_hex(bad), None, "{bad}");
        }
        assert_eq!(IdHash::from_bytes(&[0; 31]), None);
    }

    #[test]
    fn compares_by_value_and_shows_only_a_handle() {
        let a = IdHash::of("x");
        assert!(a.matches(&IdHash::of("x")));
        assert!(!a.matches(&IdHash::of("y")));
        assert!(!format!("{a:?}").contains(&a.to_hex()));
        assert!(constant_time_eq(b"ab", b"ab"));
        assert!(!constant_time_eq(b"ab", b"abc"));
    }
}
