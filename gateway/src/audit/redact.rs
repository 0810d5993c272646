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
}

fn normalize(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

impl Redactor {
    pub fn new(keys: &[String]) -> Self {
        Self {
            needles: keys
                .iter()
                .map(|k| normalize(k))
                .filter(|k| !k.is_empty())
                .collect(),
        }
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
}
