//! Secret material inside a connection spec.
//!
//! A secret value is written one of three ways:
//! - `secretKeyRef: {name, key}`: a key of a Secret in the resource's namespace. The
//!   only form the CRD accepts; the operator reads it and seals the value.
//! - `env: VAR`: read from the gateway's environment when the config file loads
//!   (config file only), so files can be committed without the secret.
//! - a plain string: config file and admin API (the admin API seals it at rest).
//!
//! `Debug` never shows a value.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A key of a Secret in the same namespace as the resource.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeySelector {
    /// Name of the Secret.
    pub name: String,
    /// Key within the Secret's data.
    pub key: String,
}

/// A secret value or a reference to one. See the module docs for the accepted forms.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretValue {
    /// The value itself (config file, admin API).
    Inline(String),
    /// A Secret key (CRD).
    SecretKeyRef(SecretKeySelector),
    /// An environment variable of the gateway process (config file).
    Env(String),
}

impl SecretValue {
    /// The inline value, if this is one.
    pub fn inline(&self) -> Option<&str> {
        match self {
            Self::Inline(v) => Some(v),
            _ => None,
        }
    }

    /// A short description of where the value comes from, safe to log.
    pub fn source(&self) -> String {
        match self {
            Self::Inline(_) => "inline value".to_owned(),
            Self::SecretKeyRef(r) => format!("Secret {}/{}", r.name, r.key),
            Self::Env(var) => format!("environment variable {var}"),
        }
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inline(_) => f.write_str("Inline(<redacted>)"),
            Self::SecretKeyRef(r) => f.debug_tuple("SecretKeyRef").field(r).finish(),
            Self::Env(var) => f.debug_tuple("Env").field(var).finish(),
        }
    }
}

impl From<&str> for SecretValue {
    fn from(v: &str) -> Self {
        Self::Inline(v.to_owned())
    }
}

impl Serialize for SecretValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Inline(v) => serializer.serialize_str(v),
            Self::SecretKeyRef(r) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("secretKeyRef", r)?;
                map.end()
            }
            Self::Env(var) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("env", var)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

const FORMS: &str = "a string, {secretKeyRef: {name, key}} or {env: VARIABLE}";

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = SecretValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(FORMS)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretValue, E> {
        Ok(SecretValue::Inline(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<SecretValue, E> {
        Ok(SecretValue::Inline(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretValue, A::Error> {
        let Some(key) = map.next_key::<Cow<'de, str>>()? else {
            return Err(de::Error::custom(format!("empty map: expected {FORMS}")));
        };
        let value = match key.as_ref() {
            "secretKeyRef" => SecretValue::SecretKeyRef(map.next_value()?),
            "env" => SecretValue::Env(map.next_value()?),
            other => return Err(de::Error::unknown_field(other, &["secretKeyRef", "env"])),
        };
        if let Some(extra) = map.next_key::<Cow<'de, str>>()? {
            return Err(de::Error::custom(format!(
                "unexpected field `{extra}`: a secret is exactly one of {FORMS}"
            )));
        }
        Ok(value)
    }
}

impl JsonSchema for SecretValue {
    fn schema_name() -> Cow<'static, str> {
        "SecretValue".into()
    }

    fn inline_schema() -> bool {
        true
    }

    /// The schema describes only the `secretKeyRef` form: the schema's one consumer is
    /// the CRD, where secret material must never sit in the resource itself.
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "description": "A key of a Secret in the resource's namespace.",
            "required": ["secretKeyRef"],
            "properties": {
                "secretKeyRef": {
                    "type": "object",
                    "required": ["name", "key"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1, "description": "Name of the Secret."},
                        "key": {"type": "string", "minLength": 1, "description": "Key within the Secret's data."}
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_three_forms() {
        let v: SecretValue = serde_json::from_str(r#""s3cret""#).unwrap();
        assert_eq!(v, SecretValue::Inline("s3cret".into()));
        let v: SecretValue =
            serde_json::from_str(r#"{"secretKeyRef":{"name":"gh","key":"token"}}"#).unwrap();
        assert_eq!(
            v,
            SecretValue::SecretKeyRef(SecretKeySelector {
                name: "gh".into(),
                key: "token".into()
            })
        );
        let v: SecretValue = serde_json::from_str(r#"{"env":"GH_TOKEN"}"#).unwrap();
        assert_eq!(v, SecretValue::Env("GH_TOKEN".into()));
    }

    #[test]
    fn rejects_unknown_and_extra_fields() {
        let e = serde_json::from_str::<SecretValue>(r#"{"value":"x"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("value"), "{e}");
        let e = serde_json::from_str::<SecretValue>(
            r#"{"env":"A","secretKeyRef":{"name":"a","key":"b"}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("secretKeyRef"), "{e}");
    }

    #[test]
    fn debug_never_shows_an_inline_value() {
        let v = SecretValue::Inline("hunter2".into());
        assert!(!format!("{v:?}").contains("hunter2"));
    }

    #[test]
    fn serializes_back_to_the_same_form() {
        for json in [
            r#""x""#,
            r#"{"env":"A"}"#,
            r#"{"secretKeyRef":{"name":"a","key":"b"}}"#,
        ] {
            let v: SecretValue = serde_json::from_str(json).unwrap();
            assert_eq!(serde_json::to_string(&v).unwrap(), json);
        }
    }
}
