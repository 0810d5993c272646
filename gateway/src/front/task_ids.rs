//! Task ids in messages on the aggregated endpoint, where a task is named like a tool
//! (`<prefix>__<upstream's task id>`): the rewrites of what upstreams send towards
//! clients and of clients' answers back. Pure functions of the bytes; routing task
//! requests is [`super::tasks`].

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::config::PREFIX_SEPARATOR;
use crate::jsonrpc::{self, Message, RawParams, raw_string};

/// The `_meta` member that ties a message to the task it belongs to.
const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

/// Task status notifications: 2026-07-28's extension and 2025-11-25.
const STATUS_NOTIFICATIONS: [&str; 2] = ["notifications/tasks", "notifications/tasks/status"];

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
                renamed |= prefix_task(item, prefix);
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
    let renamed = answer
        .result
        .and_then(|result| own_related(result, prefix))
        .map(|result| jsonrpc::result(id, result.get()));
    renamed.unwrap_or_else(|| answer.with_id(id))
}

/// A client's request params on the aggregated endpoint, routed to the connection of
/// `prefix`, with the task it names in `_meta["io.modelcontextprotocol/related-task"]`
/// given back the upstream's own id, when it carries that connection's prefix (a task
/// the client knows from this connection). `None`: nothing to change (no related
/// task, or one named otherwise, such as the client's own).
pub fn own_request(params: &RawValue, prefix: &str) -> Option<Box<RawValue>> {
    own_related(params, prefix)
}

/// `object` with `_meta`'s related task id stripped of `<prefix>__`; `None` when it
/// has no related task with that prefix.
fn own_related(object: &RawValue, prefix: &str) -> Option<Box<RawValue>> {
    if !object.get().contains(RELATED_TASK) {
        return None;
    }
    let mut object = RawParams::parse(Some(object)).ok()?;
    let mut meta = RawParams::parse(object.0.get("_meta")).ok()?;
    let mut related = RawParams::parse(meta.0.get(RELATED_TASK)).ok()?;
    let exposed = related.0.get_str("taskId")?;
    let own = exposed
        .strip_prefix(prefix)?
        .strip_prefix(PREFIX_SEPARATOR)?;
    related.0.set("taskId", raw_string(own));
    meta.0.set(RELATED_TASK, related.to_raw());
    object.0.set("_meta", meta.to_raw());
    Some(object.to_raw())
}

/// Prefixes a task object's `taskId`; whether it had one.
pub fn prefix_task(task: &mut serde_json::Value, prefix: &str) -> bool {
    let Some(own) = task.get("taskId").and_then(|t| t.as_str()) else {
        return false;
    };
    task["taskId"] = serde_json::Value::String(format!("{prefix}{PREFIX_SEPARATOR}{own}"));
    true
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
    fn a_clients_request_names_this_connections_task_as_the_upstream_knows_it() {
        let raw = |s: &str| RawValue::from_string(s.to_owned()).unwrap();
        let params = raw(
            r#"{"name":"echo","arguments":{"taskId":"fx__data"},"_meta":{"progressToken":3,"io.modelcontextprotocol/related-task":{"taskId":"fx__t-1"}}}"#,
        );
        let own = super::own_request(&params, "fx").expect("renamed");
        let own: serde_json::Value = serde_json::from_str(own.get()).unwrap();
        assert_eq!(
            own["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
            "t-1"
        );
        // Everything else as the client sent it.
        assert_eq!(own["_meta"]["progressToken"], 3);
        assert_eq!(own["arguments"]["taskId"], "fx__data");
        assert_eq!(own["name"], "echo");

        // Another connection's prefix, the client's own task, a look-alike prefix, no
        // related task: left as they are.
        for (params, prefix) in [
            (params.get(), "gh"),
            (
                r#"{"_meta":{"io.modelcontextprotocol/related-task":{"taskId":"mine-1"}}}"#,
                "fx",
            ),
            (
                r#"{"_meta":{"io.modelcontextprotocol/related-task":{"taskId":"fxx__t-1"}}}"#,
                "fx",
            ),
            (
                r#"{"_meta":{"io.modelcontextprotocol/related-task":{"taskId":"fx_t-1"}}}"#,
                "fx",
            ),
            (
                r#"{"arguments":{"note":"io.modelcontextprotocol/related-task"}}"#,
                "fx",
            ),
            (r#"{"name":"echo"}"#, "fx"),
        ] {
            assert!(
                super::own_request(&raw(params), prefix).is_none(),
                "{params}"
            );
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
