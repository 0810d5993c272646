//! Removing secrets from audited parameters.

use memchr::memmem::Finder;
use serde_json::Value;

#[cfg(test)]
use crate::config::DEFAULT_REDACTED_KEYS;

/// Replaces the values of sensitive keys with `"[redacted]"`, at any depth.
#[derive(Debug, Clone)]
pub struct Redactor {
    /// Searchers for the normalized keys (lowercase, without `-` and `_`), built once.
    needles: Vec<Finder<'static>>,
}

fn normalize(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// [`normalize`] for text that is all ASCII, where lowercasing is per byte: the same
/// result, without decoding characters.
fn normalize_ascii(text: &[u8]) -> Vec<u8> {
    let mut flat = Vec::with_capacity(text.len());
    flat.extend(
        text.iter()
            .filter(|b| **b != b'-' && **b != b'_')
            .map(u8::to_ascii_lowercase),
    );
    flat
}

impl Redactor {
    pub fn new(keys: &[String]) -> Self {
        let needles = keys
            .iter()
            .map(|k| normalize(k))
            .filter(|k| !k.is_empty())
            .map(|k| Finder::new(k.as_bytes()).into_owned())
            .collect();
        Self { needles }
    }

    /// Whether `raw` JSON might hold a sensitive key: a conservative check (`false`
    /// means certainly not) that saves decoding the common case. Every key appears
    /// verbatim in the text unless it uses `\u` escapes, so the whole text, normalized
    /// like a key, contains a needle whenever one of its keys does.
    pub fn may_need(&self, raw: &[u8]) -> bool {
        if self.needles.is_empty() {
            return false;
        }
        if find_bytes!(raw, b"\\u").is_some() {
            return true;
        }
        if raw.is_ascii() {
            self.contains_needle(&normalize_ascii(raw))
        } else {
            self.contains_needle(normalize(&String::from_utf8_lossy(raw)).as_bytes())
        }
    }

    fn contains_needle(&self, flat: &[u8]) -> bool {
        self.needles.iter().any(|n| n.find(flat).is_some())
    }

    fn sensitive(&self, key: &str) -> bool {
        self.contains_needle(normalize(key).as_bytes())
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
}
