//! The Secrets an `McpConnection` references: which ones, reading them, and turning
//! each `secretKeyRef` into its value for [`hawser_gateway::config::resolve`].
//!
//! Secret values live only in [`Fetched`] for the length of one reconciliation; its
//! `Debug` shows names and keys, never values.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use hawser_crds::{McpConnectionSpec, SecretValue};
use hawser_gateway::config::{SecretResolver, SpecError};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::{Error, Result};

/// Names of the Secrets a spec references, sorted and without repeats.
pub fn referenced(spec: &McpConnectionSpec) -> BTreeSet<String> {
    spec.secrets()
        .into_iter()
        .filter_map(|(_, value)| match value {
            SecretValue::SecretKeyRef(selector) => Some(selector.name.clone()),
            SecretValue::Inline(_) | SecretValue::Env(_) => None,
        })
        .collect()
}

/// The field a secret's JSON pointer addresses, spelled as `resolve` reports it
/// (`/auth/headers/X-Key` → `auth.headers.X-Key`).
fn field_of(pointer: &str) -> String {
    pointer.trim_start_matches('/').replace('/', ".")
}

/// One `secretKeyRef` whose Secret or key does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingRef {
    pub field: String,
    pub secret: String,
    pub key: String,
    /// Whether the Secret exists (and only the key is missing).
    pub secret_exists: bool,
}

/// Every unresolvable `secretKeyRef` of a spec (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing(pub Vec<MissingRef>);

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, m) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            if m.secret_exists {
                write!(
                    f,
                    "{}: key {:?} not found in Secret {:?}",
                    m.field, m.key, m.secret
                )?;
            } else {
                write!(f, "{}: Secret {:?} not found", m.field, m.secret)?;
            }
        }
        Ok(())
    }
}

/// The referenced Secrets' data as read for one reconciliation (`None`: no such Secret).
#[derive(Default)]
pub struct Fetched {
    secrets: BTreeMap<String, Option<BTreeMap<String, Vec<u8>>>>,
}

impl fmt::Debug for Fetched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, data) in &self.secrets {
            let keys: Option<Vec<&str>> = data
                .as_ref()
                .map(|d| d.keys().map(String::as_str).collect());
            map.entry(name, &keys);
        }
        map.finish()
    }
}

impl Fetched {
    /// Reads every Secret `spec` references from `api` (the resource's namespace), one
    /// GET per Secret, in name order.
    pub async fn read(api: &Api<Secret>, spec: &McpConnectionSpec) -> Result<Self> {
        let mut secrets = BTreeMap::new();
        for name in referenced(spec) {
            let data = api.get_opt(&name).await.map_err(|e| read_error(&name, e))?;
            let data = data.map(|secret| {
                secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect()
            });
            secrets.insert(name, data);
        }
        Ok(Self { secrets })
    }

    /// The references in `spec` that cannot be resolved from what was read.
    pub fn missing(&self, spec: &McpConnectionSpec) -> Option<Missing> {
        let missing: Vec<MissingRef> = spec
            .secrets()
            .into_iter()
            .filter_map(|(pointer, value)| {
                let SecretValue::SecretKeyRef(selector) = value else {
                    return None;
                };
                let data = self.secrets.get(&selector.name).and_then(Option::as_ref);
                if data.is_some_and(|d| d.contains_key(&selector.key)) {
                    return None;
                }
                Some(MissingRef {
                    field: field_of(&pointer),
                    secret: selector.name.clone(),
                    key: selector.key.clone(),
                    secret_exists: data.is_some(),
                })
            })
            .collect();
        (!missing.is_empty()).then_some(Missing(missing))
    }

    #[cfg(test)]
    pub fn from_map(secrets: BTreeMap<String, Option<BTreeMap<String, Vec<u8>>>>) -> Self {
        Self { secrets }
    }
}

/// Keeps the API server's message (it names the Secret, never its data) and drops
/// decoding errors' details, which could quote a value.
fn read_error(name: &str, error: kube::Error) -> Error {
    match error {
        kube::Error::Api(status) => Error::SecretRead {
            name: name.to_owned(),
            reason: status.message,
        },
        kube::Error::SerdeError(_) => Error::SecretRead {
            name: name.to_owned(),
            reason: "the API server's answer could not be decoded".to_owned(),
        },
        other => Error::Kube(other),
    }
}

impl SecretResolver for Fetched {
    fn resolve(&self, value: &SecretValue, field: &str) -> Result<String, SpecError> {
        let error = |message: String| SpecError {
            field: field.to_owned(),
            message,
        };
        match value {
            SecretValue::SecretKeyRef(selector) => {
                let bytes = self
                    .secrets
                    .get(&selector.name)
                    .and_then(Option::as_ref)
                    .and_then(|data| data.get(&selector.key))
                    .ok_or_else(|| {
                        error(format!(
                            "key {:?} of Secret {:?} not found",
                            selector.key, selector.name
                        ))
                    })?;
                String::from_utf8(bytes.clone()).map_err(|_| {
                    error(format!(
                        "key {:?} of Secret {:?} is not valid UTF-8",
                        selector.key, selector.name
                    ))
                })
            }
            SecretValue::Inline(_) => Err(error(
                "an McpConnection takes secret values only as secretKeyRef".to_owned(),
            )),
            SecretValue::Env(_) => Err(error(
                "env is only valid in the gateway's config file; use secretKeyRef".to_owned(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> McpConnectionSpec {
        serde_json::from_value(json).unwrap()
    }

    fn header_spec() -> McpConnectionSpec {
        spec(serde_json::json!({
            "url": "http://x",
            "auth": {"type": "header", "headers": {
                "X-A": {"secretKeyRef": {"name": "s2", "key": "a"}},
                "X-B": {"secretKeyRef": {"name": "s1", "key": "b"}},
                "X-C": {"secretKeyRef": {"name": "s2", "key": "c"}}
            }}
        }))
    }

    #[test]
    fn referenced_names_are_sorted_and_unique() {
        let names: Vec<String> = referenced(&header_spec()).into_iter().collect();
        assert_eq!(names, ["s1", "s2"]);
        assert!(referenced(&spec(serde_json::json!({"url": "http://x"}))).is_empty());
    }

    #[test]
    fn missing_secrets_and_keys_are_each_named() {
        let fetched = Fetched::from_map(BTreeMap::from([
            ("s1".to_owned(), None),
            (
                "s2".to_owned(),
                Some(BTreeMap::from([("a".to_owned(), b"value-a".to_vec())])),
            ),
        ]));
        let missing = fetched.missing(&header_spec()).unwrap();
        assert_eq!(
            missing.to_string(),
            "auth.headers.X-B: Secret \"s1\" not found; auth.headers.X-C: key \"c\" not found in Secret \"s2\""
        );
    }

    #[test]
    fn resolves_keys_and_never_shows_values() {
        let fetched = Fetched::from_map(BTreeMap::from([(
            "gh".to_owned(),
            Some(BTreeMap::from([
                ("token".to_owned(), b"s3cret-value".to_vec()),
                ("binary".to_owned(), vec![0xff, 0xfe]),
            ])),
        )]));
        let selector = |key: &str| {
            SecretValue::SecretKeyRef(hawser_crds::SecretKeySelector {
                name: "gh".into(),
                key: key.into(),
            })
        };
        assert_eq!(
            fetched.resolve(&selector("token"), "auth.token").unwrap(),
            "s3cret-value"
        );
        let e = fetched
            .resolve(&selector("binary"), "auth.token")
            .unwrap_err();
        assert!(e.message.contains("UTF-8"), "{e}");
        assert!(
            fetched
                .resolve(&SecretValue::Inline("x".into()), "auth.token")
                .is_err()
        );
        assert!(!format!("{fetched:?}").contains("s3cret"));
    }
}
