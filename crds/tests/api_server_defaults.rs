//! The API server fills in a CRD schema's `default`s before the operator reads a
//! resource. Whatever it fills in must still deserialize: the spec types reject
//! unknown fields, so a default on a field that belongs to another variant (say, an
//! OAuth field in a bearer `auth`) would make every such resource unreadable.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use hawser_crds::{McpConnection, McpConnectionSpec};
use kube::CustomResourceExt;
use serde_json::{Value, json};

/// Structural-schema defaulting, as the API server does it: for every object that is
/// present, absent properties with a `default` get it; recurse into what is present.
fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (name, prop) in props {
                    if !map.contains_key(name)
                        && let Some(default) = prop.get("default")
                    {
                        map.insert(name.clone(), default.clone());
                    }
                    if let Some(child) = map.get_mut(name) {
                        apply_defaults(prop, child);
                    }
                }
            }
            if let Some(extra) = schema.get("additionalProperties").filter(|s| s.is_object()) {
                let known: Vec<String> = schema
                    .get("properties")
                    .and_then(Value::as_object)
                    .map(|p| p.keys().cloned().collect())
                    .unwrap_or_default();
                for (name, child) in map.iter_mut() {
                    if !known.contains(name) {
                        apply_defaults(extra, child);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

fn spec_schema() -> Value {
    let crd = serde_json::to_value(McpConnection::crd()).expect("CRD serializes");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

#[test]
fn every_auth_type_and_transport_survives_api_server_defaulting() {
    let secret = json!({"secretKeyRef": {"name": "s", "key": "k"}});
    let specs = [
        json!({"url": "https://mcp.example.com/mcp"}),
        json!({"url": "https://mcp.example.com/mcp", "auth": {"type": "none"}}),
        json!({"url": "https://mcp.example.com/mcp", "auth": {"type": "bearer", "token": secret}}),
        json!({"url": "https://mcp.example.com/mcp", "auth": {"type": "header", "headers": {"X-API-Key": secret}}}),
        json!({"url": "https://mcp.example.com/mcp", "auth": {"type": "oauth2", "grant": "client_credentials", "clientId": "c", "clientSecret": secret}}),
        json!({"url": "https://mcp.example.com/mcp", "auth": {"type": "oauth2", "grant": "authorization_code", "clientId": "c"}}),
        json!({"url": "https://mcp.example.com/sse", "transport": "sse", "tools": {"include": ["a*"]}}),
        json!({"transport": "stdio", "command": "mcp-server", "args": ["--x"]}),
    ];
    let schema = spec_schema();
    for spec in specs {
        let mut defaulted = spec.clone();
        apply_defaults(&schema, &mut defaulted);
        if let Err(e) = serde_json::from_value::<McpConnectionSpec>(defaulted.clone()) {
            panic!(
                "{spec} becomes {defaulted} on the API server, which the operator cannot read: {e}"
            );
        }
    }
}

#[test]
fn the_defaulting_above_does_apply_the_schema_defaults() {
    // Guards the test itself: timeouts get their defaults when the object is present.
    let mut spec = json!({"url": "https://x/mcp", "timeouts": {}});
    apply_defaults(&spec_schema(), &mut spec);
    assert!(
        spec["timeouts"].as_object().is_some_and(|t| !t.is_empty()),
        "{spec}"
    );
}
