//! [`Tagger`]: short tags that bind a value Hawser hands a client to what it was
//! handed for (a task id to its caller), so that a value shown to one caller is
//! refused from another. HMAC-SHA256 under a key derived from each encryption key: a
//! tag made on one replica checks on every other, and through a key rotation (the
//! first key tags, every key checks).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

/// Bytes of the MAC kept (96 bits: a forgery takes 2^96 guesses).
const TAG_BYTES: usize = 12;

/// Characters of a tag (base64url of [`TAG_BYTES`]).
pub const TAG_LEN: usize = 16;

/// What the derived keys are for; a key made for another purpose differs.
const PURPOSE: &[u8] = b"hawser/tag/v1";

/// Tag keys, one per encryption key, the first making tags. Cheap to clone.
#[derive(Clone)]
pub struct Tagger(Arc<[hmac::Key]>);

impl std::fmt::Debug for Tagger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tagger({} keys)", self.0.len())
    }
}

impl Tagger {
    /// Tag keys derived from raw encryption keys (the sealing key first).
    pub(super) fn derive<'k>(raw: impl IntoIterator<Item = &'k [u8]>) -> Self {
        let keys: Vec<hmac::Key> = raw
            .into_iter()
            .map(|k| {
                let derived = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, k), PURPOSE);
                hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
            })
            .collect();
        Self(keys.into())
    }

    /// The tag of `parts` (each length-prefixed, so no two lists of parts share one).
    pub fn tag(&self, parts: &[&[u8]]) -> String {
        let Some(key) = self.0.first() else {
            unreachable!("a keyring has at least one key")
        };
        URL_SAFE_NO_PAD.encode(&mac(key, parts).as_ref()[..TAG_BYTES])
    }

    /// Whether `tag` is the tag of `parts` under one of the keys (compared in
    /// constant time).
    pub fn check(&self, tag: &str, parts: &[&[u8]]) -> bool {
        let mut given = [0u8; TAG_BYTES];
        if tag.len() != TAG_LEN
            || URL_SAFE_NO_PAD
                .decode_slice(tag.as_bytes(), &mut given)
                .ok()
                != Some(TAG_BYTES)
        {
            return false;
        }
        self.0
            .iter()
            .any(|key| super::constant_time_eq(&mac(key, parts).as_ref()[..TAG_BYTES], &given))
    }
}

fn mac(key: &hmac::Key, parts: &[&[u8]]) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(key);
    for part in parts {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    ctx.sign()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagger(keys: &[[u8; 32]]) -> Tagger {
        Tagger::derive(keys.iter().map(|k| &k[..]))
    }

    #[test]
    fn a_tag_checks_for_its_parts_only() {
        let t = tagger(&[[1; 32]]);
        let tag = t.tag(&[b"fx", b"alice", b"t-1"]);
        assert_eq!(tag.len(), TAG_LEN);
        assert!(t.check(&tag, &[b"fx", b"alice", b"t-1"]));
        for other in [
            [&b"fx"[..], b"bob", b"t-1"],
            [b"fx", b"alice", b"t-2"],
            [b"gh", b"alice", b"t-1"],
            // The same bytes split otherwise.
            [b"fx", b"alicet", b"-1"],
        ] {
            assert!(!t.check(&tag, &other), "{other:?}");
        }
        assert!(!t.check("", &[b"fx", b"alice", b"t-1"]));
        assert!(!t.check(&tag[..TAG_LEN - 1], &[b"fx", b"alice", b"t-1"]));
        assert!(!t.check("!!!!!!!!!!!!!!!!", &[b"fx", b"alice", b"t-1"]));
    }

    #[test]
    fn tags_check_through_a_key_rotation_and_not_under_another_key() {
        let old = tagger(&[[1; 32]]);
        let rotated = tagger(&[[2; 32], [1; 32]]);
        let parts: &[&[u8]] = &[b"fx", b"alice", b"t-1"];
        assert!(rotated.check(&old.tag(parts), parts));
        assert!(!old.check(&rotated.tag(parts), parts));
        assert!(!tagger(&[[3; 32]]).check(&old.tag(parts), parts));
    }
}
