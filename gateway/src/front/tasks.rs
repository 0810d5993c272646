//! The tasks extension (`io.modelcontextprotocol/tasks`) on the aggregated endpoint.
//! A task id is named like a tool there, `<prefix>__<upstream's task id>`: the
//! answer that creates a task is rewritten so, and `tasks/get`, `tasks/update`,
//! `tasks/cancel` (and 2025-11-25's `tasks/result`) go to the connection the prefix
//! names, with the upstream's own id. On a connection's own endpoint tasks pass
//! through unchanged, like every other method.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::error::{Error, Result};
use super::reply::{self, Reply};
use super::session::ClientSession;
use super::state::Front;
use crate::config::PREFIX_SEPARATOR;
use crate::identity::Identity;
use crate::jsonrpc::{self, Id, Message, RawParams, raw_string};
use crate::policy;
use crate::revision::Era;
use crate::upstream::Upstream;
use crate::view::View;

/// Requests that name a task by `params.taskId`.
pub const METHODS: [&str; 4] = ["tasks/get", "tasks/update", "tasks/cancel", "tasks/result"];

/// The extension, as servers declare it under `capabilities.extensions`.
pub const EXTENSION: &str = "io.modelcontextprotocol/tasks";

/// The `_meta` member that ties a message to the task it belongs to.
const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

/// Task status notifications: 2026-07-28's extension and 2025-11-25.
const STATUS_NOTIFICATIONS: [&str; 2] = ["notifications/tasks", "notifications/tasks/status"];

/// Whether some connection of `view` declares the tasks extension.
pub fn offered(view: &View) -> bool {
    view.connections.values().any(|c| {
        c.upstream
            .as_ref()
            .and_then(|u| u.catalog())
            .is_some_and(|c| c.capabilities.supports_tasks())
    })
}

/// A task request on the aggregated endpoint: the upstream its id's prefix names,
/// the params with the upstream's own id, and that id.
pub fn route(
    view: &View,
    params: Option<&RawValue>,
) -> Result<(Arc<Upstream>, Box<RawValue>, String)> {
    let mut params = RawParams::parse(params).map_err(|e| Error::InvalidParams(e.message))?;
    let exposed = params
        .0
        .get_str("taskId")
        .ok_or_else(|| Error::InvalidParams("params.taskId is required".into()))?;
    let unknown = || Error::InvalidParams(format!("unknown task {exposed:?}"));
    let (prefix, own) = exposed.split_once(PREFIX_SEPARATOR).ok_or_else(unknown)?;
    let upstream = view
        .connections
        .values()
        .filter_map(|c| c.upstream.as_ref())
        .find(|u| u.config().prefix == prefix)
        .cloned()
        .ok_or_else(unknown)?;
    params.0.set("taskId", raw_string(own));
    Ok((upstream, params.to_raw(), own.to_owned()))
}

/// `tasks/list` (2025-11-25) on the aggregated endpoint, in a session: every page of
/// each connection that lists tasks in its upstream sessions and that the caller may
/// see, merged into one page, ids prefixed. A connection that fails is left out (logged).
/// Connections without per-client upstream sessions (2026-07-28, stdio, legacy SSE)
/// would list other clients' tasks: they are not asked.
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
            !u.is_shared()
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
    for (upstream, listed) in futures::future::join_all(asked).await {
        let tasks = match listed {
            Ok(tasks) => tasks,
            Err(error) => {
                tracing::warn!(connection = %upstream.name(), %error, "tasks/list left out a connection");
                continue;
            }
        };
        let prefix = &upstream.config().prefix;
        for mut task in tasks {
            if let Some(own) = task
                .get("taskId")
                .and_then(|t| t.as_str())
                .map(str::to_owned)
            {
                task["taskId"] =
                    serde_json::Value::String(format!("{prefix}{PREFIX_SEPARATOR}{own}"));
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

/// Whether the answer to `method` may name tasks (rewritten by [`expose`]).
pub fn may_name_tasks(method: &str) -> bool {
    method == "tools/call" || method.starts_with("tasks/")
}

/// The response to `method` with the task ids it names prefixed with `prefix`: a
/// created task (2026-07-28 `resultType: "task"`, 2025-11-25 `task`), a task's state,
/// a list of tasks. Anything else is returned as it came.
pub fn expose(bytes: Bytes, method: &str, prefix: &str) -> Bytes {
    if find_bytes!(&bytes, b"\"taskId\"").is_none() {
        return bytes;
    }
    {
        let Ok(msg) = Message::parse(&bytes) else {
            return bytes;
        };
        let (Some(id), Some(result)) = (msg.id, msg.result) else {
            return bytes;
        };
        let Ok(mut result) = RawParams::parse(Some(result)) else {
            return bytes;
        };
        let mut changed = false;
        let created = result.0.get_str("resultType").as_deref() == Some("task");
        if (created || method != "tools/call")
            && let Some(own) = result.0.get_str("taskId")
        {
            result.0.set("taskId", prefixed(prefix, &own));
            changed = true;
        }
        let members: &[&str] = if method == "tools/call" {
            &["task"]
        } else {
            &["task", "tasks"]
        };
        for member in members {
            let Some(raw) = result.0.get(member) else {
                continue;
            };
            let Ok(mut value) = serde_json::from_str::<serde_json::Value>(raw.get()) else {
                continue;
            };
            let items: Vec<&mut serde_json::Value> = match &mut value {
                serde_json::Value::Array(items) => items.iter_mut().collect(),
                one => vec![one],
            };
            let mut renamed = false;
            for item in items {
                if let Some(own) = item
                    .get("taskId")
                    .and_then(|t| t.as_str())
                    .map(str::to_owned)
                {
                    item["taskId"] =
                        serde_json::Value::String(format!("{prefix}{PREFIX_SEPARATOR}{own}"));
                    renamed = true;
                }
            }
            if renamed {
                result
                    .0
                    .set(member, jsonrpc::raw_or_null(value.to_string()));
                changed = true;
            }
        }
        changed |= expose_related(&mut result.0, prefix);
        if !changed {
            return bytes;
        }
        jsonrpc::result(id.get(), result.to_raw().get())
    }
}

/// An upstream's notification or request, relayed on the aggregated endpoint, with
/// the task ids it names prefixed like [`expose`] does: a status notification's
/// `params.taskId`, and the task any message names in
/// `params._meta["io.modelcontextprotocol/related-task"]`. Anything else is returned
/// as it came.
pub fn expose_message(bytes: Bytes, prefix: &str) -> Bytes {
    if find_bytes!(&bytes, b"\"taskId\"").is_none() {
        return bytes;
    }
    let Ok(msg) = Message::parse(&bytes) else {
        return bytes;
    };
    if msg.result.is_some() || msg.error.is_some() {
        return bytes;
    }
    let Ok(mut params) = RawParams::parse(msg.params) else {
        return bytes;
    };
    let mut changed = false;
    if STATUS_NOTIFICATIONS.contains(&msg.method())
        && let Some(own) = params.0.get_str("taskId")
    {
        params.0.set("taskId", prefixed(prefix, &own));
        changed = true;
    }
    changed |= expose_related(&mut params.0, prefix);
    if !changed {
        return bytes;
    }
    let params = params.to_json();
    match msg.id {
        Some(id) => jsonrpc::request(id.get(), msg.method(), Some(&params)),
        None => jsonrpc::notification(msg.method(), Some(&params)),
    }
}

/// A client's answer to an upstream's request, relayed from the aggregated endpoint,
/// with the task it names in `result._meta["io.modelcontextprotocol/related-task"]`
/// given back the upstream's own id (the client saw it prefixed by
/// [`expose_message`]). `id` is the upstream's id for the answer (JSON text). A task
/// id without the prefix is left as it is.
pub fn own_answer(answer: &Message<'_>, id: &str, prefix: &str) -> Bytes {
    let renamed = answer.result.and_then(|result| {
        if !result.get().contains("\"taskId\"") {
            return None;
        }
        let mut result = RawParams::parse(Some(result)).ok()?;
        let mut meta = RawParams::parse(result.0.get("_meta")).ok()?;
        let mut related = RawParams::parse(meta.0.get(RELATED_TASK)).ok()?;
        let exposed = related.0.get_str("taskId")?;
        let own = exposed
            .strip_prefix(prefix)?
            .strip_prefix(PREFIX_SEPARATOR)?;
        related.0.set("taskId", raw_string(own));
        meta.0.set(RELATED_TASK, related.to_raw());
        result.0.set("_meta", meta.to_raw());
        Some(jsonrpc::result(id, result.to_raw().get()))
    });
    renamed.unwrap_or_else(|| answer.with_id(id))
}

/// `<prefix>__<own>` as a JSON string.
fn prefixed(prefix: &str, own: &str) -> Box<RawValue> {
    raw_string(&format!("{prefix}{PREFIX_SEPARATOR}{own}"))
}

/// Prefixes the task id in `_meta["io.modelcontextprotocol/related-task"]` of an
/// object's members; whether there was one.
fn expose_related(members: &mut jsonrpc::members::Members, prefix: &str) -> bool {
    let Some(Ok(mut meta)) = members.get("_meta").map(|m| RawParams::parse(Some(m))) else {
        return false;
    };
    let Some(Ok(mut related)) = meta.0.get(RELATED_TASK).map(|r| RawParams::parse(Some(r))) else {
        return false;
    };
    let Some(own) = related.0.get_str("taskId") else {
        return false;
    };
    related.0.set("taskId", prefixed(prefix, &own));
    meta.0.set(RELATED_TASK, related.to_raw());
    members.set("_meta", meta.to_raw());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result_of(bytes: &[u8]) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
        v["result"].clone()
    }

    #[test]
    fn created_tasks_and_task_states_are_prefixed() {
        let created = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":7,"result":{"resultType":"task","taskId":"t-1","status":"working"}}"#,
        );
        let out = expose(created, "tools/call", "fx");
        assert_eq!(result_of(&out)["taskId"], "fx__t-1");
        assert_eq!(result_of(&out)["status"], "working");

        let legacy = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":"a","result":{"task":{"taskId":"t-2","status":"working"}}}"#,
        );
        assert_eq!(
            result_of(&expose(legacy, "tools/call", "fx"))["task"]["taskId"],
            "fx__t-2"
        );

        let state = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":8,"result":{"resultType":"complete","taskId":"t-1","status":"completed"}}"#,
        );
        assert_eq!(
            result_of(&expose(state, "tasks/get", "fx"))["taskId"],
            "fx__t-1"
        );

        let list = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":9,"result":{"tasks":[{"taskId":"a"},{"taskId":"b"}]}}"#,
        );
        let out = result_of(&expose(list, "tasks/list", "fx"));
        assert_eq!(out["tasks"][1]["taskId"], "fx__b");
    }

    #[test]
    fn an_ordinary_tool_result_is_left_alone() {
        let plain = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"x"}],"taskId":"not mine"}}"#,
        );
        let out = expose(plain.clone(), "tools/call", "fx");
        assert_eq!(out, plain);
    }

    fn json(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    #[test]
    fn task_status_notifications_and_related_tasks_are_prefixed() {
        for method in STATUS_NOTIFICATIONS {
            let note = format!(
                r#"{{"jsonrpc":"2.0","method":"{method}","params":{{"taskId":"t-1","status":"completed","result":{{"content":[]}}}}}}"#
            );
            let out = json(&expose_message(Bytes::from(note), "fx"));
            assert_eq!(out["params"]["taskId"], "fx__t-1", "{method}");
            assert_eq!(out["params"]["status"], "completed");
            assert_eq!(out["method"], method);
            assert!(out.get("id").is_none());
        }

        // 2025-11-25: progress and server→client requests of a task name it in _meta.
        let progress = Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":3,"progress":1,"_meta":{"io.modelcontextprotocol/related-task":{"taskId":"t-2"},"other":1}}}"#,
        );
        let out = json(&expose_message(progress, "fx"));
        assert_eq!(
            out["params"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
            "fx__t-2"
        );
        assert_eq!(out["params"]["_meta"]["other"], 1);
        assert_eq!(out["params"]["progressToken"], 3);

        let ask = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":"u-9","method":"elicitation/create","params":{"message":"name?","_meta":{"io.modelcontextprotocol/related-task":{"taskId":"t-3"}}}}"#,
        );
        let out = json(&expose_message(ask, "fx"));
        assert_eq!(out["id"], "u-9");
        assert_eq!(out["method"], "elicitation/create");
        assert_eq!(
            out["params"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
            "fx__t-3"
        );

        // tasks/result answers with the task's result, tied to it in _meta.
        let result = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":4,"result":{"content":[],"_meta":{"io.modelcontextprotocol/related-task":{"taskId":"t-4"}}}}"#,
        );
        let out = result_of(&expose(result, "tasks/result", "fx"));
        assert_eq!(
            out["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
            "fx__t-4"
        );
    }

    #[test]
    fn a_clients_answer_names_the_task_as_the_upstream_knows_it() {
        let answer = br#"{"jsonrpc":"2.0","id":"hw-r1-7","result":{"action":"accept","content":{"taskId":"fx__mine"},"_meta":{"io.modelcontextprotocol/related-task":{"taskId":"fx__t-1"}}}}"#;
        let msg = Message::parse(answer).unwrap();
        let relayed = json(&super::own_answer(&msg, "42", "fx"));
        assert_eq!(relayed["id"], 42);
        assert_eq!(
            relayed["result"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
            "t-1"
        );
        // The answer's own data is the client's, not a task id of the gateway's.
        assert_eq!(relayed["result"]["content"]["taskId"], "fx__mine");
        assert_eq!(relayed["result"]["action"], "accept");

        // Another connection's task, a task id without the prefix, no task at all:
        // only the id changes.
        for (answer, prefix) in [
            (&answer[..], "gh"),
            (br#"{"jsonrpc":"2.0","id":"hw-r1-7","result":{"_meta":{"io.modelcontextprotocol/related-task":{"taskId":"t-1"}}}}"#, "fx"),
            (br#"{"jsonrpc":"2.0","id":"hw-r1-7","result":{"action":"decline"}}"#, "fx"),
            (br#"{"jsonrpc":"2.0","id":"hw-r1-7","error":{"code":-1,"message":"no"}}"#, "fx"),
        ] {
            let msg = Message::parse(answer).unwrap();
            let mut expected = json(answer);
            expected["id"] = serde_json::json!(42);
            assert_eq!(json(&super::own_answer(&msg, "42", prefix)), expected);
        }
    }

    #[test]
    fn other_messages_pass_unchanged() {
        for same in [
            // A tool's own data that happens to say taskId.
            &br#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":{"taskId":"x"}}}"#[..],
            br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}"#,
            br#"{"jsonrpc":"2.0","method":"notifications/tasks","params":{"taskId":7}}"#,
            br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"_meta":{"io.modelcontextprotocol/related-task":"t-1"}}}"#,
            br#"not json "taskId""#,
        ] {
            let bytes = Bytes::copy_from_slice(same);
            assert_eq!(expose_message(bytes.clone(), "fx"), bytes);
        }
    }
}
