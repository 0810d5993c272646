//! Removing secrets from audited parameters.

use serde_json::Value;

/// Keys whose values are never stored: matched case-insensitively, ignoring `-` and
/// `_`, anywhere in the key (`apiKey`, `X-Api-Key`, `access_token`, `client_secret`).
pub const DEFAULT_REDACTED_KEYS: &[&str] = &[
    "password",
    "token",
    "secret",
    "authorization",
    "api_key",
    "cookie",
];

/// Replaces the values of sensitive keys with `"[redacted]"`, at any depth.
#[derive(Debug, Clone)]
pub struct Redactor {
    needles: Vec<String>,
    /// Case-insensitive prefilter: for each needle, searchers for its lowercase form
    /// and its first letter upper-cased (camelCase keys).
    finders: Vec<memchr::memmem::Finder<'static>>,
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
        // The prefilter looks for the needle's longest run of letters without
        // separators, in lower and upper case (e.g. "key" of "api_key").
        let mut finders = Vec::new();
        for k in keys {
            for part in k.split(['-', '_']).filter(|p| p.len() >= 3) {
                for form in [
                    part.to_ascii_lowercase(),
                    part.to_ascii_uppercase(),
                    capitalize(part),
                ] {
                    finders.push(memchr::memmem::Finder::new(form.as_bytes()).into_owned());
                }
            }
        }
        Self { needles, finders }
    }

    /// Whether `raw` JSON might hold a sensitive key (a cheap, conservative check:
    /// `false` means certainly not).
    pub fn may_need(&self, raw: &[u8]) -> bool {
        self.finders.iter().any(|f| f.find(raw).is_some())
    }

    fn sensitive(&self, key: &str) -> bool {
        let k = normalize(key);
        self.needles.iter().any(|n| k.contains(n))
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

fn capitalize(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let mut chars = lower.chars();
    match chars.next() {
        Some(c) => c.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
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
        ] {
            assert!(r.may_need(raw.as_bytes()), "{raw}");
        }
        assert!(!r.may_need(br#"{"name":"echo","arguments":{"text":"hello"}}"#));
    }
}
