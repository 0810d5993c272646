//! `/api/v1/policies[/{name}]`: list, get, create/replace (`PUT`, body = the McpPolicy
//! schema; a broken CEL condition is 422 naming the field and position), delete; and
//! `/api/v1/policies/explain`: whether a caller may use a tool, and which policy and
//! rule decided.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hawser_crds::McpPolicySpec;
use serde_json::{Value, json};

use super::{Admin, Error, authorize, read_body};
use crate::config::{PREFIX_SEPARATOR, Source};
use crate::identity::{AuthMethod, Identity};
use crate::policy::{self, Decision, Facts, Kind};
use crate::store::StoredPolicy;

/// A stored policy, and whether this replica enforces it (`loaded`: compiled and in
/// force here; `false` for a broken one, or one this replica has not re-read yet).
fn describe(p: &StoredPolicy, loaded: &[String]) -> Value {
    let mut out = json!({
        "name": p.name,
        "source": p.source.as_str(),
        "connections": p.connections,
        "loaded": loaded.contains(&p.name),
    });
    match &p.spec {
        Ok(spec) => out["spec"] = serde_json::to_value(spec).unwrap_or(Value::Null),
        Err(e) => out["error"] = json!(e),
    }
    out
}

pub(super) async fn list(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    authorize(&admin, &headers)?;
    let (loaded, _) = admin.policies.names();
    let all = admin.store.list_policies().await?;
    let items: Vec<Value> = all.iter().map(|p| describe(p, &loaded)).collect();
    Ok(Json(json!({ "policies": items })).into_response())
}

async fn stored(admin: &Admin, name: &str) -> Result<StoredPolicy, Error> {
    admin
        .store
        .list_policies()
        .await?
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| Error::PolicyNotFound(name.to_owned()))
}

pub(super) async fn get_one(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    authorize(&admin, &headers)?;
    let (loaded, _) = admin.policies.names();
    Ok(Json(describe(&stored(&admin, &name).await?, &loaded)).into_response())
}

fn check_owner(existing: Option<&StoredPolicy>, name: &str) -> Result<(), Error> {
    match existing.map(|p| p.source) {
        Some(Source::Crd) => Err(Error::PolicyManagedByResource(name.to_owned())),
        Some(Source::File) => Err(Error::PolicyManagedByFile(name.to_owned())),
        _ => Ok(()),
    }
}

pub(super) async fn put(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    authorize(&admin, &headers)?;
    crate::config::validate_name(&name, Source::Api).map_err(|e| Error::Invalid {
        field: "name".into(),
        message: e.to_string(),
    })?;
    let body = read_body(&headers, body).await?;
    let mut spec: McpPolicySpec = serde_json::from_slice(&body).map_err(|e| Error::Invalid {
        field: "body".into(),
        message: e.to_string(),
    })?;
    if spec.name.take().is_some_and(|n| n != name) {
        return Err(Error::Invalid {
            field: "name".into(),
            message: "the body names another policy than the path".into(),
        });
    }
    policy::check(&spec).map_err(|e| Error::InvalidPolicy {
        field: e.field,
        message: e.message,
    })?;
    let mut targets = Vec::new();
    for (i, t) in spec.target_refs.iter().enumerate() {
        match (&t.name, &t.selector) {
            (Some(n), None) => targets.push(n.clone()),
            _ => {
                return Err(Error::InvalidPolicy {
                    field: format!("targetRefs[{i}].selector"),
                    message: "label selectors are for McpPolicy resources; name the connection"
                        .into(),
                });
            }
        }
    }
    let existing = admin
        .store
        .list_policies()
        .await?
        .into_iter()
        .find(|p| p.name == name);
    check_owner(existing.as_ref(), &name)?;
    let existed = admin
        .store
        .put_policy(&name, &spec, Source::Api, &targets, None)
        .await?;
    tracing::info!(policy = %name, "policy written");
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(json!({"name": name, "connections": targets}))).into_response())
}

pub(super) async fn delete(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    authorize(&admin, &headers)?;
    let existing = stored(&admin, &name).await?;
    check_owner(Some(&existing), &name)?;
    admin.store.delete_policy(&name).await?;
    tracing::info!(policy = %name, "policy deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(serde::Deserialize)]
pub(super) struct ExplainQuery {
    subject: String,
    #[serde(default)]
    groups: String,
    /// `connection__tool` as `/mcp` exposes it, or the tool's own name with `connection`.
    tool: String,
    connection: Option<String>,
    /// The call's arguments (JSON), for conditions on them.
    args: Option<String>,
}

/// Why a caller may or may not call a tool: the REST API's and the console's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explained {
    pub connection: String,
    pub tool: String,
    pub allowed: bool,
    /// `allow`, `hidden` or `deny`.
    pub decision: &'static str,
    /// The policy that decided, and its rule (0-based; `None`: no rule allowed it).
    pub decider: Option<(String, Option<usize>)>,
    /// Whether any policy targets the connection.
    pub governed: bool,
}

/// Decides whether `subject` (in `groups`) may call `tool` (`connection__tool` as
/// `/mcp` shows it, or the tool's own name with `connection`), with `args`.
pub fn explain_call(
    admin: &Admin,
    subject: &str,
    groups: Vec<String>,
    tool: &str,
    connection: Option<String>,
    args: Option<&serde_json::value::RawValue>,
) -> Result<Explained, Error> {
    let (connection, tool) = match connection.filter(|c| !c.is_empty()) {
        Some(c) => (c, tool.to_owned()),
        None => {
            let view = admin.registry.view();
            match view.aggregated.tools.get(tool) {
                Some(route) => (route.upstream.name().to_owned(), route.name.clone()),
                None => {
                    let (prefix, name) =
                        tool.split_once(PREFIX_SEPARATOR)
                            .ok_or_else(|| Error::Invalid {
                                field: "tool".into(),
                                message: "give connection, or the name /mcp shows (prefix__tool)"
                                    .into(),
                            })?;
                    (prefix.to_owned(), name.to_owned())
                }
            }
        }
    };
    let caller = Identity {
        subject: subject.to_owned(),
        method: AuthMethod::None,
        groups,
        scopes: Vec::new(),
        token: None,
        claims: None,
    };
    let facts = Facts {
        args,
        client_address: None,
        tool: None,
    };
    let decision = admin
        .policies
        .check_call(&caller, &connection, Kind::Tool, &tool, &facts);
    let (allowed, verdict, decider) = match decision {
        Decision::Allow(d) => (true, "allow", d),
        Decision::Hidden(d) => (false, "hidden", d),
        Decision::Denied(d) => (false, "deny", Some(d)),
    };
    Ok(Explained {
        governed: admin.policies.governs(&connection),
        connection,
        tool,
        allowed,
        decision: verdict,
        decider: decider.map(|d| (d.policy, d.rule)),
    })
}

pub(super) async fn explain(
    State(admin): State<Arc<Admin>>,
    Query(q): Query<ExplainQuery>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    authorize(&admin, &headers)?;
    let groups = q
        .groups
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect();
    let args = q
        .args
        .map(serde_json::value::RawValue::from_string)
        .transpose()
        .map_err(|e| Error::Invalid {
            field: "args".into(),
            message: e.to_string(),
        })?;
    let e = explain_call(
        &admin,
        &q.subject,
        groups,
        &q.tool,
        q.connection,
        args.as_deref(),
    )?;
    let mut out = json!({
        "connection": e.connection, "tool": e.tool, "allowed": e.allowed, "decision": e.decision,
        "governed": e.governed,
    });
    if let Some((policy, rule)) = e.decider {
        out["policy"] = json!(policy);
        out["rule"] = json!(rule);
    }
    Ok(Json(out).into_response())
}
