//! Evaluating rules' CEL conditions for one call. Each variable is converted at most
//! once per call, and only when a condition reads it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, json};

use super::Facts;
use super::compile::{Condition, ENV};
use crate::identity::Identity;

/// The CEL variables of one call, added as conditions need them.
pub struct Scope<'a> {
    caller: &'a Identity,
    connection: &'a str,
    name: &'a str,
    facts: &'a Facts<'a>,
    context: Option<cel::Context<'static, 'static>>,
    /// Which of `caller`, `tool`, `args`, `request` the context holds.
    added: [bool; 4],
    /// Which could not be converted: not tried again for the next condition.
    failed: [bool; 4],
}

impl<'a> Scope<'a> {
    pub fn new(
        caller: &'a Identity,
        connection: &'a str,
        name: &'a str,
        facts: &'a Facts<'a>,
    ) -> Self {
        Self {
            caller,
            connection,
            name,
            facts,
            context: None,
            added: [false; 4],
            failed: [false; 4],
        }
    }

    /// Variable `variable`'s value; `None` when it cannot be converted. `args` is
    /// read straight from the call's JSON text (no arguments: an empty map; arguments
    /// naming a member twice, at any depth: `None`); the others are made as JSON and
    /// converted.
    fn value(&self, variable: usize) -> Option<cel::Value> {
        if variable == 2 {
            return match self.facts.args {
                None => Some(cel::Value::Map(
                    HashMap::<cel::objects::Key, cel::Value>::new().into(),
                )),
                Some(args) => serde_json::from_str::<Cel>(args.get()).ok().map(|v| v.0),
            };
        }
        cel::to_value(self.json(variable)).ok()
    }

    fn json(&self, variable: usize) -> Value {
        match variable {
            0 => json!({
                "subject": self.caller.subject, "groups": self.caller.groups,
                "method": self.caller.method.as_str(), "scopes": self.caller.scopes,
                "claims": self.caller.claims.as_deref().cloned().unwrap_or_default(),
            }),
            1 => {
                let annotations = self
                    .facts
                    .tool
                    .and_then(|t| serde_json::from_str::<Value>(t.get()).ok())
                    .and_then(|mut t| t.get_mut("annotations").map(Value::take))
                    .filter(Value::is_object)
                    .unwrap_or_else(|| json!({}));
                json!({"connection": self.connection, "name": self.name, "annotations": annotations})
            }
            _ => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                json!({"time": now, "clientAddress": self.facts.client_address.unwrap_or_default()})
            }
        }
    }

    /// Whether `condition` holds; `None` when it cannot be evaluated (an error, or a
    /// result that is not a boolean).
    pub fn holds(&mut self, condition: &Condition) -> Option<bool> {
        let mut context = self
            .context
            .take()
            .unwrap_or_else(|| cel::Context::with_env(Arc::clone(&ENV)));
        for (i, name) in super::compile::VARIABLES.iter().enumerate() {
            if condition.reads[i] && !self.added[i] {
                let value = if self.failed[i] { None } else { self.value(i) };
                let Some(value) = value else {
                    self.failed[i] = true;
                    self.context = Some(context);
                    return None;
                };
                context.add_variable_from_value(*name, value);
                self.added[i] = true;
            }
        }
        let result = condition.program.execute(&context);
        self.context = Some(context);
        match result {
            Ok(cel::Value::Bool(b)) => Some(b),
            _ => None,
        }
    }
}

/// A CEL value read directly from JSON text: the value `cel::to_value` makes of the
/// parsed `serde_json::Value`, without building that value first.
struct Cel(cel::Value);

impl<'de> Deserialize<'de> for Cel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CelVisitor)
    }
}

struct CelVisitor;

impl<'de> Visitor<'de> for CelVisitor {
    type Value = Cel;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Cel, E> {
        Ok(Cel(cel::Value::Bool(v)))
    }

    /// serde_json reads a non-negative integer as `u64`: only negative ones come here.
    fn visit_i64<E>(self, v: i64) -> Result<Cel, E> {
        Ok(Cel(cel::Value::Int(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Cel, E> {
        Ok(Cel(cel::Value::UInt(v)))
    }

    /// Always finite: serde_json refuses a number out of `f64`'s range.
    fn visit_f64<E>(self, v: f64) -> Result<Cel, E> {
        Ok(Cel(cel::Value::Float(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Cel, E> {
        Ok(Cel(cel::Value::String(Arc::new(v.to_owned()))))
    }

    fn visit_string<E>(self, v: String) -> Result<Cel, E> {
        Ok(Cel(cel::Value::String(Arc::new(v))))
    }

    fn visit_unit<E>(self) -> Result<Cel, E> {
        Ok(Cel(cel::Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Cel, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(Cel(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Cel(cel::Value::List(Arc::new(items))))
    }

    /// A repeated member is an error: a condition would read one of its values and
    /// an upstream may run with the other (parsers differ on which one wins), so a
    /// condition on such arguments cannot be evaluated, and fails closed.
    /// Names that differ only in case count as one ([`crate::jsonrpc::folded`]): some
    /// servers read them so.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Cel, A::Error> {
        let mut members = HashMap::with_capacity(map.size_hint().unwrap_or(0));
        let mut names = HashSet::with_capacity(map.size_hint().unwrap_or(0));
        while let Some((key, Cel(value))) = map.next_entry::<String, Cel>()? {
            if !names.insert(crate::jsonrpc::folded(&key).into_owned()) {
                return Err(serde::de::Error::custom(format!(
                    "the member {key:?} more than once"
                )));
            }
            members.insert(cel::objects::Key::String(Arc::new(key)), value);
        }
        Ok(Cel(cel::Value::Map(cel::objects::Map {
            map: Arc::new(members),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            prop::sample::select(vec![0i64, -1, 1, i64::MIN]).prop_map(Value::from),
            "(?s).{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-c]{0,2}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        /// Reading `args` straight from the text gives conditions the value they got
        /// from the parsed JSON, numbers' types included.
        #[test]
        fn args_read_directly_are_what_the_parsed_json_converts_to(v in json()) {
            let text = v.to_string();
            let parsed: Value = serde_json::from_str(&text).expect("serde_json's own text");
            let expected = cel::to_value(&parsed).expect("JSON converts");
            let direct = serde_json::from_str::<Cel>(&text).expect("reads").0;
            prop_assert_eq!(direct, expected, "{}", text);
        }

        /// Arguments naming a member twice, at any depth, are not read at all.
        #[test]
        fn args_with_a_repeated_member_anywhere_are_not_read(v in json(), depth in 0usize..4) {
            let mut text = format!(r#"{{"a":"first","b":{v},"a":1}}"#);
            for _ in 0..depth {
                text = format!(r#"{{"x":[{text}]}}"#);
            }
            prop_assert!(serde_json::from_str::<Cel>(&text).is_err(), "{}", text);
        }
    }

    #[test]
    fn numbers_keep_the_types_conditions_compare() {
        for (text, want) in [
            ("3", cel::Value::UInt(3)),
            ("-3", cel::Value::Int(-3)),
            (
                "-0",
                cel::to_value(serde_json::from_str::<Value>("-0").expect("json")).expect("cel"),
            ),
            ("3.5", cel::Value::Float(3.5)),
            ("18446744073709551615", cel::Value::UInt(u64::MAX)),
        ] {
            assert_eq!(
                serde_json::from_str::<Cel>(text).expect("reads").0,
                want,
                "{text}"
            );
        }
        assert!(serde_json::from_str::<Cel>("1e400").is_err());
        assert!(serde_json::from_str::<Cel>("{\"a\":").is_err());
    }
}
