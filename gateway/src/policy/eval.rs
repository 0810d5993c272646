//! Evaluating a rule's CEL condition for one call.

use std::sync::Arc;

use serde_json::{Value, json};

use super::Facts;
use super::compile::{Condition, ENV};
use crate::identity::Identity;

/// Whether `condition` holds; `None` when it cannot be evaluated (an error, or a
/// result that is not a boolean).
pub fn holds(
    condition: &Condition,
    caller: &Identity,
    connection: &str,
    name: &str,
    facts: &Facts<'_>,
) -> Option<bool> {
    let mut context = cel::Context::with_env(Arc::clone(&ENV));
    let caller = json!({
        "subject": caller.subject, "groups": caller.groups,
        "method": caller.method.as_str(), "scopes": caller.scopes,
    });
    context.add_variable("caller", caller).ok()?;
    context
        .add_variable("tool", json!({"connection": connection, "name": name}))
        .ok()?;
    let args = if condition.uses_args {
        facts
            .args
            .and_then(|a| serde_json::from_str::<Value>(a.get()).ok())
            .unwrap_or_else(|| json!({}))
    } else {
        json!({})
    };
    context.add_variable("args", args).ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    context
        .add_variable(
            "request",
            json!({"time": now, "clientAddress": facts.client_address.unwrap_or_default()}),
        )
        .ok()?;
    match condition.program.execute(&context) {
        Ok(cel::Value::Bool(b)) => Some(b),
        _ => None,
    }
}
