//! Secrets at rest: AES-256-GCM sealing with key ids, the [`Secret`] wrapper, and
//! [`IdHash`], the digest under which every bearer secret (session ids, tokens,
//! OAuth states) is stored and compared.
//!
//! A sealed value reads `enc:v1:<kid>:<base64(nonce ‖ ciphertext ‖ tag)>`. The key id
//! travels with the value, so a keyring may hold several keys: the first seals, all
//! unseal, and keys rotate by adding a new first key, re-sealing, then dropping the
//! old one. Every value is sealed with associated data naming what it is (for example
//! `connection:github:credentials`), so a sealed value copied into another row or
//! column fails to unseal instead of being accepted.

mod digest;
mod tag;

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

pub use digest::{IdHash, constant_time_eq, hex};
pub use tag::{TAG_LEN, Tagger};

/// `N` random bytes as hex: unguessable identifiers and one-time values.
pub fn random_hex<const N: usize>() -> String {
    hex(&rand::random::<[u8; N]>())
}

const PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 12;

/// A string that must not be shown: `Debug` prints `<redacted>`, and there is no
/// `Display`, so it cannot end up in a message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that needs it (a header, a token request).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// Why a key list or a sealed value was rejected. Never carries secret material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("HAWSER_ENCRYPTION_KEYS: {0}")]
    BadKeys(String),
    #[error("sealed with key id {0:?}, which is not in HAWSER_ENCRYPTION_KEYS")]
    UnknownKey(String),
    #[error("not a sealed value (expected enc:v1:<kid>:<base64>)")]
    Malformed,
    #[error("sealed value with key id {0:?} failed authentication (wrong key or tampered value)")]
    Tampered(String),
}

/// The encryption keys from `HAWSER_ENCRYPTION_KEYS`: the first seals, all unseal.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<(String, Aes256Gcm)>,
    tagger: Tagger,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|(kid, _)| kid.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &kids).finish()
    }
}

impl Keyring {
    /// Parses `kid:base64-32-bytes[,kid:base64-32-bytes…]`.
    pub fn parse(spec: &str) -> Result<Self, CryptoError> {
        let mut keys: Vec<(String, Aes256Gcm)> = Vec::new();
        let mut raw: Vec<Vec<u8>> = Vec::new();
        for (i, entry) in spec.split(',').map(str::trim).enumerate() {
            let n = i + 1;
            let (kid, b64) = entry
                .split_once(':')
                .ok_or_else(|| CryptoError::BadKeys(format!("entry {n} is not kid:base64")))?;
            if kid.is_empty()
                || !kid
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            {
                return Err(CryptoError::BadKeys(format!(
                    "entry {n}: key id must be non-empty and use only A-Z a-z 0-9 - _ ."
                )));
            }
            let bytes = B64
                .decode(b64)
                .map_err(|_| CryptoError::BadKeys(format!("key {kid:?} is not valid base64")))?;
            let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| {
                CryptoError::BadKeys(format!(
                    "key {kid:?} is {} bytes; AES-256 needs exactly 32",
                    bytes.len()
                ))
            })?;
            if keys.iter().any(|(k, _)| k == kid) {
                return Err(CryptoError::BadKeys(format!(
                    "key id {kid:?} appears twice"
                )));
            }
            keys.push((kid.to_owned(), cipher));
            raw.push(bytes);
        }
        let tagger = Tagger::derive(raw.iter().map(Vec::as_slice));
        Ok(Self { keys, tagger })
    }

    /// A keyring of one random key, for a process that was given none: what it seals
    /// is readable by this process only.
    pub fn ephemeral() -> Self {
        let key: [u8; 32] = rand::random();
        let cipher = Aes256Gcm::new_from_slice(&key)
            .unwrap_or_else(|_| unreachable!("a 32-byte key is an AES-256 key"));
        Self {
            keys: vec![("ephemeral".to_owned(), cipher)],
            tagger: Tagger::derive([&key[..]]),
        }
    }

    /// A fresh `kid:base64` entry for `HAWSER_ENCRYPTION_KEYS`.
    pub fn generate_entry() -> String {
        let key: [u8; 32] = rand::random();
        let suffix: [u8; 3] = rand::random();
        let kid = format!(
            "k{}{:02x}{:02x}{:02x}",
            chrono_like_date(),
            suffix[0],
            suffix[1],
            suffix[2]
        );
        format!("{kid}:{}", B64.encode(key))
    }

    /// Tags made with keys derived from these (see [`Tagger`]).
    pub fn tagger(&self) -> &Tagger {
        &self.tagger
    }

    /// Id of the key new values are sealed with.
    pub fn sealing_key_id(&self) -> &str {
        // `parse` never returns an empty keyring: `split` yields at least one entry.
        self.keys
            .first()
            .map(|(kid, _)| kid.as_str())
            .unwrap_or_default()
    }

    /// Seals `plaintext`, binding it to `context` (which must be given again to unseal).
    pub fn seal(&self, plaintext: &[u8], context: &str) -> String {
        let Some((kid, cipher)) = self.keys.first() else {
            unreachable!("a parsed keyring has at least one key")
        };
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = Nonce::from(nonce_bytes);
        let payload = Payload {
            msg: plaintext,
            aad: context.as_bytes(),
        };
        // Encryption only fails for inputs larger than AES-GCM's 64 GiB limit.
        let ciphertext = cipher
            .encrypt(&nonce, payload)
            .unwrap_or_else(|_| unreachable!("AES-GCM input within size limits"));
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce_bytes);
        blob.extend_from_slice(&ciphertext);
        format!("{PREFIX}{kid}:{}", B64.encode(blob))
    }

    /// Unseals a value produced by [`Self::seal`] with the same `context`.
    pub fn unseal(&self, sealed: &str, context: &str) -> Result<Vec<u8>, CryptoError> {
        let (kid, blob) = split_sealed(sealed)?;
        let cipher = self
            .keys
            .iter()
            .find(|(k, _)| k == kid)
            .map(|(_, c)| c)
            .ok_or_else(|| CryptoError::UnknownKey(kid.to_owned()))?;
        let blob = B64.decode(blob).map_err(|_| CryptoError::Malformed)?;
        if blob.len() < NONCE_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce_bytes, ciphertext) = blob.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce_bytes).map_err(|_| CryptoError::Malformed)?;
        let payload = Payload {
            msg: ciphertext,
            aad: context.as_bytes(),
        };
        cipher
            .decrypt(&nonce, payload)
            .map_err(|_| CryptoError::Tampered(kid.to_owned()))
    }

    /// Unseals a UTF-8 string.
    pub fn unseal_string(&self, sealed: &str, context: &str) -> Result<Secret, CryptoError> {
        let bytes = self.unseal(sealed, context)?;
        String::from_utf8(bytes)
            .map(Secret)
            .map_err(|_| CryptoError::Malformed)
    }

    /// Whether `sealed` uses a key other than the sealing key (and should be re-sealed).
    pub fn needs_reseal(&self, sealed: &str) -> bool {
        split_sealed(sealed).is_ok_and(|(kid, _)| kid != self.sealing_key_id())
    }

    /// Re-seals under the current sealing key; `None` when already current.
    pub fn reseal(&self, sealed: &str, context: &str) -> Result<Option<String>, CryptoError> {
        if !self.needs_reseal(sealed) {
            return Ok(None);
        }
        let plain = self.unseal(sealed, context)?;
        Ok(Some(self.seal(&plain, context)))
    }
}

/// Whether a stored string looks like a sealed value.
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

fn split_sealed(sealed: &str) -> Result<(&str, &str), CryptoError> {
    sealed
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .ok_or(CryptoError::Malformed)
}

/// `YYYYMMDD` of today (UTC), for readable generated key ids.
fn chrono_like_date() -> String {
    crate::clock::Timestamp::now().yyyymmdd()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(entries: &[&str]) -> Keyring {
        Keyring::parse(&entries.join(",")).unwrap()
    }

    #[test]
    fn seal_then_unseal_round_trips_and_hides_the_plaintext() {
        let k = ring(&[&Keyring::generate_entry()]);
        let sealed = k.seal(b"ghp_supersecret", "connection:gh:credentials");
        assert!(sealed.starts_with(&format!("enc:v1:{}:", k.sealing_key_id())));
        assert!(!sealed.contains("supersecret"));
        assert_eq!(
            k.unseal(&sealed, "connection:gh:credentials").unwrap(),
            b"ghp_supersecret"
        );
        // Same input, new nonce: sealed values do not reveal equal plaintexts.
        assert_ne!(
            sealed,
            k.seal(b"ghp_supersecret", "connection:gh:credentials")
        );
    }

    #[test]
    fn a_value_moved_to_another_context_or_tampered_with_is_rejected() {
        let k = ring(&[&Keyring::generate_entry()]);
        let sealed = k.seal(b"token", "connection:a:credentials");
        assert!(matches!(
            k.unseal(&sealed, "connection:b:credentials"),
            Err(CryptoError::Tampered(_))
        ));
        let mut bytes = sealed.into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(k.unseal(&tampered, "connection:a:credentials").is_err());
    }

    #[test]
    fn rotation_new_key_first_then_reseal_then_drop_old() {
        let old = Keyring::generate_entry();
        let new = Keyring::generate_entry();
        let before = ring(&[&old]);
        let sealed = before.seal(b"v", "ctx");
        let during = ring(&[&new, &old]);
        assert!(during.needs_reseal(&sealed));
        let resealed = during.reseal(&sealed, "ctx").unwrap().unwrap();
        assert!(!during.needs_reseal(&resealed));
        assert_eq!(during.reseal(&resealed, "ctx").unwrap(), None);
        let after = ring(&[&new]);
        assert_eq!(after.unseal(&resealed, "ctx").unwrap(), b"v");
        assert!(matches!(
            after.unseal(&sealed, "ctx"),
            Err(CryptoError::UnknownKey(_))
        ));
    }

    #[test]
    fn bad_key_lists_are_explained_without_echoing_key_material() {
        for (spec, expect) in [
            ("nokid", "not kid:base64"),
            ("k1:not-base64!", "not valid base64"),
            ("k1:AAAA", "exactly 32"),
            (":AAAA", "key id"),
        ] {
            let e = Keyring::parse(spec).unwrap_err().to_string();
            assert!(e.contains(expect), "{spec}: {e}");
        }
        let dup = Keyring::generate_entry();
        let e = Keyring::parse(&format!("{dup},{dup}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("twice"), "{e}");
        let key = Keyring::generate_entry();
        let e = Keyring::parse(&format!("{key}x")).unwrap_err().to_string();
        assert!(!e.contains(key.split_once(':').unwrap().1), "{e}");
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let entry = Keyring::generate_entry();
        let shown = format!("{:?}", ring(&[&entry]));
        assert!(!shown.contains(entry.split_once(':').unwrap().1));
        assert!(format!("{:?}", Secret::new("hunter2")) == "<redacted>");
    }
}
