//! Evaluating rules' CEL conditions for one call. Each variable is converted at most
//! once per call, and only when a condition reads it.

use std::sync::Arc;

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
        }
    }

    fn value(&self, variable: usize) -> Value {
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
            2 => self
                .facts
                .args
                .and_then(|a| serde_json::from_str::<Value>(a.get()).ok())
                .unwrap_or_else(|| json!({})),
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
                if context.add_variable(*name, self.value(i)).is_err() {
                    self.context = Some(context);
                    return None;
                }
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
