//! Evaluating rules' CEL conditions for one call. The variables are converted once
//! per call, however many conditions read them.

use std::sync::Arc;

use serde_json::{Value, json};

use super::Facts;
use super::compile::{Condition, ENV};
use crate::identity::Identity;

/// The CEL variables of one call, built when the first condition needs them.
pub struct Scope<'a> {
    caller: &'a Identity,
    connection: &'a str,
    name: &'a str,
    facts: &'a Facts<'a>,
    context: Option<cel::Context<'static, 'static>>,
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
        }
    }

    fn context(&mut self) -> Option<&cel::Context<'static, 'static>> {
        if self.context.is_none() {
            let mut context = cel::Context::with_env(Arc::clone(&ENV));
            let caller = json!({
                "subject": self.caller.subject, "groups": self.caller.groups,
                "method": self.caller.method.as_str(), "scopes": self.caller.scopes,
            });
            context.add_variable("caller", caller).ok()?;
            context
                .add_variable(
                    "tool",
                    json!({"connection": self.connection, "name": self.name}),
                )
                .ok()?;
            let args = self
                .facts
                .args
                .and_then(|a| serde_json::from_str::<Value>(a.get()).ok())
                .unwrap_or_else(|| json!({}));
            context.add_variable("args", args).ok()?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            context
                .add_variable(
                    "request",
                    json!({"time": now, "clientAddress": self.facts.client_address.unwrap_or_default()}),
                )
                .ok()?;
            self.context = Some(context);
        }
        self.context.as_ref()
    }

    /// Whether `condition` holds; `None` when it cannot be evaluated (an error, or a
    /// result that is not a boolean).
    pub fn holds(&mut self, condition: &Condition) -> Option<bool> {
        let context = self.context()?;
        match condition.program.execute(context) {
            Ok(cel::Value::Bool(b)) => Some(b),
            _ => None,
        }
    }
}
