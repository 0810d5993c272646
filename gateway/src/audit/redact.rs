//! Removing secrets from audited parameters.

use aho_corasick::Anchored;
use aho_corasick::automaton::Automaton;
use aho_corasick::dfa::DFA;
use serde_json::Value;

#[cfg(test)]
use crate::config::DEFAULT_REDACTED_KEYS;

/// Replaces the values of sensitive keys with `"[redacted]"`, at any depth.
#[derive(Debug, Clone)]
pub struct Redactor {
    keys: Keys,
}

/// The normalized keys (lowercase, without `-` and `_`).
#[derive(Debug, Clone)]
enum Keys {
    None,
    /// As one automaton, built once.
    Automaton(Box<DFA>),
    /// Listed, when the automaton could not be built (only past limits far beyond
    /// any list of names): every text is then decoded and each of its keys compared.
    Listed(Vec<String>),
}

fn normalize(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

impl Redactor {
    pub fn new(keys: &[String]) -> Self {
        let needles: Vec<String> = keys
            .iter()
            .map(|k| normalize(k))
            .filter(|k| !k.is_empty())
            .collect();
        if needles.is_empty() {
            return Self { keys: Keys::None };
        }
        // Standard (not leftmost) semantics: the automaton reports a match as soon as
        // one ends, which is all a yes-or-no question needs.
        let keys = match aho_corasick::dfa::Builder::new().build(&needles) {
            Ok(dfa) => Keys::Automaton(Box::new(dfa)),
            Err(error) => {
                tracing::warn!(%error, keys = needles.len(), "audit: too many redacted keys for one automaton; every audited request is decoded to redact it");
                Keys::Listed(needles)
            }
        };
        Self { keys }
    }

    /// Whether `raw` JSON might hold a sensitive key: a conservative check (`false`
    /// means certainly not) that saves decoding the common case. Every key appears
    /// verbatim in the text unless it uses `\u` escapes, so the whole text, normalized
    /// like a key, contains a needle whenever one of its keys does. ASCII text is
    /// normalized as the automaton reads it, one pass and nothing copied.
    pub fn may_need(&self, raw: &[u8]) -> bool {
        let dfa = match &self.keys {
            Keys::None => return false,
            Keys::Listed(_) => return true,
            Keys::Automaton(dfa) => dfa,
        };
        if find_bytes!(raw, b"\\u").is_some() {
            return true;
        }
        if !raw.is_ascii() {
            return contains(dfa, normalize(&String::from_utf8_lossy(raw)).as_bytes());
        }
        let Ok(mut state) = dfa.start_state(Anchored::No) else {
            return true;
        };
        for &b in raw {
            if b == b'-' || b == b'_' {
                continue;
            }
            state = dfa.next_state(Anchored::No, state, b.to_ascii_lowercase());
            if dfa.is_special(state) && dfa.is_match(state) {
                return true;
            }
        }
        false
    }

    fn sensitive(&self, key: &str) -> bool {
        let flat = normalize(key);
        match &self.keys {
            Keys::None => false,
            Keys::Automaton(dfa) => contains(dfa, flat.as_bytes()),
            Keys::Listed(needles) => needles.iter().any(|n| flat.contains(n.as_str())),
        }
    }

    pub fn redact(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if self.sensitive(k) {
                        *v = Value::String("[redacted]".into());
                    } else {
                        self.redact(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact(v)),
            _ => {}
        }
    }
}

/// Whether `flat` (already normalized) contains a key. An unanchored search of this
/// automaton cannot fail; should it ever, the answer is the cautious one.
fn contains(dfa: &DFA, flat: &[u8]) -> bool {
    dfa.try_find(&aho_corasick::Input::new(flat))
        .map_or(true, |m| m.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_sensitive_keys_at_any_depth() {
        let r = Redactor::new(
            &DEFAULT_REDACTED_KEYS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        );
        let mut v = serde_json::json!({
            "name": "deploy",
            "arguments": {"repo": "x", "apiKey": "k1", "nested": [{"X-Api-Key": "k2", "Password": "p"}], "access_token": "t"},
            "cookieJar": "c"
        });
        r.redact(&mut v);
        let text = v.to_string();
        for secret in ["\"k1\"", "\"k2\"", "\"p\"", "\"t\"", "\"c\""] {
            assert!(!text.contains(secret), "{secret} left in {text}");
        }
        assert!(text.contains("\"repo\":\"x\""), "{text}");
    }

    #[test]
    fn the_prefilter_never_misses_a_sensitive_key() {
        let r = Redactor::new(
            &DEFAULT_REDACTED_KEYS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        );
        for raw in [
            r#"{"apiKey":"x"}"#,
            r#"{"API_KEY":"x"}"#,
            r#"{"x-api-key":"x"}"#,
            r#"{"Password":"x"}"#,
            r#"{"refresh_token":"x"}"#,
            r#"{"Cookie":"x"}"#,
            r#"{"PassWord":"x"}"#,
            r#"{"AUTHorization":"x"}"#,
            r#"{"\u0070assword":"x"}"#,
        ] {
            assert!(r.may_need(raw.as_bytes()), "{raw}");
            let mut v: Value = serde_json::from_str(raw).expect("test JSON");
            r.redact(&mut v);
            assert_eq!(
                v.as_object().and_then(|m| m.values().next()),
                Some(&Value::from("[redacted]")),
                "{raw}"
            );
        }
        // Configured keys in any spelling, however short.
        let custom = Redactor::new(&["apiKey".to_owned(), "pw".to_owned()]);
        for raw in [r#"{"apiKey":"x"}"#, r#"{"x_api_key":"x"}"#, r#"{"PW":"x"}"#] {
            assert!(custom.may_need(raw.as_bytes()), "{raw}");
        }
        assert!(!r.may_need(br#"{"name":"echo","arguments":{"text":"hello"}}"#));
    }

    /// The prefilter reads the text once, normalizing as it goes; its answer must be
    /// exactly that of searching the normalized text for each key. The texts mix
    /// noise with keys in disguise: `-` and `_` inside them, letters in either case,
    /// the Kelvin sign for a `k` (it lowercases to ASCII), or one letter left out (a
    /// near miss).
    #[test]
    fn the_prefilter_answers_as_a_search_of_the_normalized_text() {
        use proptest::prelude::*;
        use proptest::strategy::ValueTree;
        let keys: Vec<String> = DEFAULT_REDACTED_KEYS
            .iter()
            .map(|s| s.to_string())
            .chain(["ken".to_owned(), "pw".to_owned()])
            .collect();
        let r = Redactor::new(&keys);
        let needles: Vec<String> = keys.iter().map(|k| normalize(k)).collect();
        let reference = |raw: &str| {
            raw.contains("\\u") || {
                let flat = normalize(raw);
                needles.iter().any(|n| flat.contains(n.as_str()))
            }
        };
        let noise = prop::sample::select(vec![
            "x", "e", "\"", ":", "{", "}", " ", "é", "\\u0070", "\\", "-", "_", "pass", "to",
        ])
        .prop_map(str::to_owned);
        // A key, each letter in upper or lower case (or a Kelvin sign for `k`), a
        // separator or nothing after each, and maybe one letter left out.
        let disguised = (
            prop::sample::select(needles.clone()),
            prop::collection::vec((0u8..4, 0u8..3), 16),
            prop::option::of(0usize..16),
        )
            .prop_map(|(key, marks, dropped)| {
                let mut out = String::new();
                for (i, (c, (case, sep))) in key.chars().zip(marks).enumerate() {
                    if dropped == Some(i) {
                        continue;
                    }
                    match (case, c) {
                        (3, 'k') => out.push('\u{212a}'),
                        (0 | 1, _) => out.push(c),
                        _ => out.extend(c.to_uppercase()),
                    }
                    out.push_str(["", "-", "_"][usize::from(sep)]);
                }
                out
            });
        let text = prop::collection::vec(prop_oneof![noise, disguised], 0..8)
            .prop_map(|pieces| pieces.concat());
        let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
            cases: 2048,
            ..Default::default()
        });
        runner
            .run(&text, |raw| {
                prop_assert_eq!(r.may_need(raw.as_bytes()), reference(&raw), "{}", raw);
                Ok(())
            })
            .expect("the prefilter agrees with the reference");
        // Both answers come up often, and not only by the `\u` rule: the property is
        // not checked on one side alone.
        let mut probe = proptest::test_runner::TestRunner::deterministic();
        let (mut hits, mut misses) = (0, 0);
        for _ in 0..1000 {
            let raw = text
                .new_tree(&mut probe)
                .expect("a generated text")
                .current();
            if raw.contains("\\u") {
                continue;
            }
            if reference(&raw) {
                hits += 1;
            } else {
                misses += 1;
            }
        }
        assert!(hits > 200 && misses > 100, "hits {hits}, misses {misses}");
    }
}
