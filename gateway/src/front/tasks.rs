//! The tasks extension (`io.modelcontextprotocol/tasks`) and 2025-11-25's tasks. A
//! task id is named towards the caller as [`super::task_ids::Names`] says: bound to
//! the caller when callers authenticate, and on the aggregated endpoint named like a
//! tool, `<prefix>__…`. `tasks/get`, `tasks/update`, `tasks/cancel` (and 2025-11-25's
//! `tasks/result`) go to the connection with the upstream's own id, once the name is
//! checked; a name made for another caller is an unknown task. How ids are rewritten
//! in messages is [`super::task_ids`].

use std::sync::Arc;

use serde_json::value::RawValue;

use super::error::{Error, Result};
use super::reply::{self, Reply};
use super::session::ClientSession;
use super::state::Front;
use super::task_ids::Names;
use crate::config::PREFIX_SEPARATOR;
use crate::identity::Identity;
use crate::jsonrpc::{self, Id, RawParams, raw_string};
use crate::policy;
use crate::revision::Era;
use crate::upstream::Upstream;
use crate::view::View;

/// Requests that name a task by `params.taskId`.
pub const METHODS: [&str; 4] = ["tasks/get", "tasks/update", "tasks/cancel", "tasks/result"];

/// Whether `method` names a task by `params.taskId` and is routed by it: the task
/// requests of MCP, and, when task names are bound to callers (`bound`), any other
/// `tasks/…` method (in any case) but `tasks/list`: an upstream's own task methods get
/// no name unchecked.
pub fn is_task_request(method: &str, bound: bool) -> bool {
    METHODS.contains(&method)
        || (bound
            && method != "tasks/list"
            && method
                .get(..6)
                .is_some_and(|p| p.eq_ignore_ascii_case("tasks/")))
}

/// The extension, as servers declare it under `capabilities.extensions`.
pub const EXTENSION: &str = "io.modelcontextprotocol/tasks";

/// Whether a client's capabilities declare the tasks extension
/// (`extensions["io.modelcontextprotocol/tasks"]`, present and not `null`).
pub fn declared(capabilities: Option<&RawValue>) -> bool {
    #[derive(serde::Deserialize)]
    struct Caps<'a> {
        #[serde(borrow, default)]
        extensions: Option<RawParamsView<'a>>,
    }
    type RawParamsView<'a> = std::collections::HashMap<std::borrow::Cow<'a, str>, &'a RawValue>;
    capabilities
        .and_then(|c| serde_json::from_str::<Caps<'_>>(c.get()).ok())
        .and_then(|c| c.extensions)
        .and_then(|e| e.get(EXTENSION).copied())
        .is_some_and(|v| v.get() != "null")
}

/// Whether some connection of `view` declares the tasks extension.
pub fn offered(view: &View) -> bool {
    view.connections.values().any(|c| {
        c.upstream
            .as_ref()
            .and_then(|u| u.catalog())
            .is_some_and(|c| c.capabilities.supports_tasks())
    })
}

/// A task request: the upstream that has the task (on the aggregated endpoint, the
/// one its prefix names; else `endpoint_upstream`), the params with the upstream's
/// own id, and that id. A name not made for this caller is an unknown task.
pub fn route(
    front: &Front,
    view: &View,
    endpoint_upstream: Option<&Arc<Upstream>>,
    subject: &str,
    params: Option<&RawValue>,
) -> Result<(Arc<Upstream>, Box<RawValue>, String)> {
    let mut params = RawParams::parse(params).map_err(|e| Error::InvalidParams(e.message))?;
    let exposed = params
        .0
        .get_str("taskId")
        .ok_or_else(|| Error::InvalidParams("params.taskId is required".into()))?;
    let (upstream, own) = owner(front, view, endpoint_upstream, subject, &exposed)
        .ok_or_else(|| Error::InvalidParams(format!("unknown task {exposed:?}")))?;
    params.0.set("taskId", raw_string(&own));
    Ok((upstream, params.to_raw(), own))
}

/// The upstream that has the task the caller names `exposed`, and the upstream's own
/// id for it: on the aggregated endpoint (`endpoint_upstream` is `None`) the
/// connection its prefix names. `None` when the name was not made for this caller.
pub fn owner(
    front: &Front,
    view: &View,
    endpoint_upstream: Option<&Arc<Upstream>>,
    subject: &str,
    exposed: &str,
) -> Option<(Arc<Upstream>, String)> {
    let upstream = match endpoint_upstream {
        Some(upstream) => upstream.clone(),
        None => {
            let (prefix, _) = exposed.split_once(PREFIX_SEPARATOR)?;
            view.connections
                .values()
                .filter_map(|c| c.upstream.as_ref())
                .find(|u| u.config().prefix == prefix)
                .cloned()?
        }
    };
    let names = Names::new(
        front.task_tagger(),
        endpoint_upstream.is_none(),
        &upstream,
        subject,
    );
    let own = names.own(exposed)?.to_owned();
    Some((upstream, own))
}

/// `tasks/list` (2025-11-25) on the aggregated endpoint, in a session: every page of
/// each connection that lists tasks in its upstream sessions, lists only the caller's
/// ([`lists_callers_only`]) and that the caller may see, merged into one page, ids
/// named for the caller. A connection that fails is left out (logged).
pub async fn list(
    front: &Front,
    session: &Arc<ClientSession>,
    caller: Option<&Identity>,
    id: &Id,
) -> Result<Reply> {
    if session.is_modern() {
        return Err(Error::MethodNotFound {
            method: "tasks/list".into(),
            hint: Some("the tasks extension has no tasks/list"),
        });
    }
    let view = front.registry.view();
    let mut upstreams: Vec<Arc<Upstream>> = view
        .connections
        .values()
        .filter_map(|c| c.upstream.clone())
        .filter(|u| {
            lists_callers_only(front, u)
                && u.era_for(Era::Legacy) == Era::Legacy
                && lists_tasks(u)
                && may_see(front, caller, u)
        })
        .collect();
    upstreams.sort_by(|a, b| a.name().cmp(b.name()));
    let asked = upstreams.iter().map(|upstream| async move {
        let listed = async {
            let upstream_session = front.sessions.upstream_session(session, upstream).await?;
            every_page(upstream, &upstream_session).await
        }
        .await;
        (upstream, listed)
    });
    let mut merged = Vec::new();
    let tagger = front.task_tagger();
    for (upstream, listed) in futures::future::join_all(asked).await {
        let tasks = match listed {
            Ok(tasks) => tasks,
            Err(error) => {
                tracing::warn!(connection = %upstream.name(), %error, "tasks/list left out a connection");
                continue;
            }
        };
        let names = Names::new(tagger, true, upstream, &session.subject);
        for mut task in tasks {
            if super::task_ids::name_task(&mut task, &names) {
                merged.push(task);
            }
        }
    }
    let result = serde_json::json!({ "tasks": merged }).to_string();
    Ok(reply::json(jsonrpc::result(id.json(), &result)))
}

/// Pages of one connection's `tasks/list` followed at most in one merged list.
const MAX_TASK_PAGES: usize = 20;

/// Every page of an upstream's `tasks/list` in the session (up to
/// [`MAX_TASK_PAGES`]): the merged list has one page, so a connection's later pages
/// are not left out.
async fn every_page(
    upstream: &Arc<Upstream>,
    upstream_session: &crate::store::UpstreamSession,
) -> std::result::Result<Vec<serde_json::Value>, crate::upstream::UpstreamError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Page {
        tasks: Vec<serde_json::Value>,
        #[serde(default)]
        next_cursor: Option<String>,
    }
    let timeout = upstream.config().call_timeout;
    let mut tasks = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_TASK_PAGES {
        let params = cursor.map(|c| serde_json::json!({ "cursor": c }).to_string());
        let result = upstream
            .request(upstream_session, "tasks/list", params.as_deref(), timeout)
            .await?;
        let page: Page = serde_json::from_str(result.get()).map_err(|e| {
            crate::upstream::UpstreamError::Protocol(format!("invalid tasks/list result: {e}"))
        })?;
        tasks.extend(page.tasks);
        match page.next_cursor {
            Some(next) if !next.is_empty() => cursor = Some(next),
            _ => return Ok(tasks),
        }
    }
    tracing::warn!(
        connection = %upstream.name(),
        "tasks/list has more than {MAX_TASK_PAGES} pages; the later ones are left out"
    );
    Ok(tasks)
}

/// Whether `upstream`'s `tasks/list` holds only the caller's tasks, as far as Hawser
/// can tell: the upstream session must be the client's own (not one every client
/// shares: stdio, legacy SSE), and when callers authenticate the upstream
/// must know who the caller is (a token of their own, or their identity passed on),
/// to bind tasks to them as MCP asks. Behind a shared credential every caller is one
/// to the upstream, and its list may hold anyone's tasks.
pub fn lists_callers_only(front: &Front, upstream: &Upstream) -> bool {
    if upstream.is_shared() {
        return false;
    }
    let config = upstream.config();
    front.task_tagger().is_none()
        || config.per_user_tokens()
        || !matches!(config.caller.mode, crate::config::CallerMode::None)
}

/// Whether an upstream declared tasks: 2025-11-25 `capabilities.tasks.list`, or the
/// extension.
fn lists_tasks(upstream: &Upstream) -> bool {
    let Some(catalog) = upstream.catalog() else {
        return false;
    };
    if catalog.capabilities.supports_tasks() {
        return true;
    }
    serde_json::from_str::<serde_json::Value>(catalog.initialize.get())
        .is_ok_and(|i| i["capabilities"]["tasks"].get("list").is_some())
}

/// Whether the caller may see anything of a connection (its tasks are listed then).
pub fn may_see(front: &Front, caller: Option<&Identity>, upstream: &Upstream) -> bool {
    if !front.policy.governs(upstream.name()) {
        return true;
    }
    let (Some(caller), Some(catalog)) = (caller, upstream.catalog()) else {
        return false;
    };
    catalog.tools.iter().any(|t| {
        front
            .policy
            .visible(caller, upstream.name(), policy::Kind::Tool, &t.key)
    })
}

#[cfg(test)]
mod tests {
    use super::is_task_request;

    #[test]
    fn with_bound_names_every_tasks_method_but_the_list_names_a_task() {
        for method in ["tasks/get", "tasks/update", "tasks/cancel", "tasks/result"] {
            assert!(is_task_request(method, false), "{method}");
            assert!(is_task_request(method, true), "{method}");
        }
        for method in ["tasks/delete", "Tasks/get", "TASKS/subscribe"] {
            assert!(!is_task_request(method, false), "{method}");
            assert!(is_task_request(method, true), "{method}");
        }
        for method in [
            "tasks/list",
            "tools/call",
            "tasks",
            "task/get",
            "",
            "tasksé",
        ] {
            assert!(!is_task_request(method, true), "{method}");
        }
    }
}
