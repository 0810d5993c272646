//! Task ids in messages, as [`Names`] names them towards a caller: the rewrites of
//! what upstreams send towards clients and of clients' requests and answers back.
//! Pure functions of the bytes; routing task requests is [`super::tasks`].

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::config::PREFIX_SEPARATOR;
use crate::crypto::{TAG_LEN, Tagger};
use crate::jsonrpc::{self, Message, ParamsView, RawParams, raw_string};
use crate::upstream::Upstream;

/// How task ids are named towards one caller. When callers authenticate, the
/// upstream's own id is bound to the caller and the connection by a tag
/// (`<tag>.<own>`), checked on every request that names a task: another caller who
/// learns the id is told the task is unknown, as MCP asks of a receiver with an
/// authorization context. On the aggregated endpoint a task is named like a tool,
/// `<prefix>__` first. With neither (a connection's endpoint, no client
/// authentication) ids pass as the upstream makes them.
#[derive(Clone, Copy)]
pub struct Names<'a> {
    prefix: Option<&'a str>,
    owner: Option<Owner<'a>>,
}

#[derive(Clone, Copy)]
struct Owner<'a> {
    tagger: &'a Tagger,
    connection: &'a str,
    subject: &'a str,
}

impl Owner<'_> {
    fn tag(&self, own: &str) -> String {
        self.tagger.tag(&self.parts(own))
    }

    fn parts<'p>(&'p self, own: &'p str) -> [&'p [u8]; 4] {
        [
            b"task",
            self.connection.as_bytes(),
            self.subject.as_bytes(),
            own.as_bytes(),
        ]
    }
}

impl<'a> Names<'a> {
    /// Task ids of `upstream` towards `subject`: prefixed on the aggregated endpoint,
    /// bound to the subject when there is a `tagger` (callers authenticate).
    pub fn new(
        tagger: Option<&'a Tagger>,
        aggregated: bool,
        upstream: &'a Upstream,
        subject: &'a str,
    ) -> Self {
        Self {
            prefix: aggregated.then(|| upstream.config().prefix.as_str()),
            owner: tagger.map(|tagger| Owner {
                tagger,
                connection: upstream.name(),
                subject,
            }),
        }
    }

    /// Ids prefixed with `prefix` only (no caller binding).
    #[cfg(test)]
    pub fn prefixed(prefix: &'a str) -> Self {
        Self {
            prefix: Some(prefix),
            owner: None,
        }
    }

    /// Ids of connection `connection` bound to `subject` (prefixed when `prefix`).
    #[cfg(test)]
    pub fn bound(
        tagger: &'a Tagger,
        prefix: Option<&'a str>,
        connection: &'a str,
        subject: &'a str,
    ) -> Self {
        Self {
            prefix,
            owner: Some(Owner {
                tagger,
                connection,
                subject,
            }),
        }
    }

    /// The same names without the caller's binding: for a message whose task may not
    /// be this caller's (the name it gets is none a task request accepts).
    pub fn unbound(self) -> Self {
        Self {
            owner: None,
            ..self
        }
    }

    /// Whether ids are named otherwise than the upstream names them.
    pub fn rename(&self) -> bool {
        self.prefix.is_some() || self.owner.is_some()
    }

    /// The name the caller knows the upstream's task `own` by.
    pub fn exposed(&self, own: &str) -> String {
        let mut out = String::with_capacity(own.len() + TAG_LEN + 24);
        if let Some(prefix) = self.prefix {
            out.push_str(prefix);
            out.push_str(PREFIX_SEPARATOR);
        }
        if let Some(owner) = &self.owner {
            out.push_str(&owner.tag(own));
            out.push('.');
        }
        out.push_str(own);
        out
    }

    /// The upstream's own id of a task the caller names `exposed`; `None` unless it
    /// was named so for this caller and connection.
    pub fn own<'e>(&self, exposed: &'e str) -> Option<&'e str> {
        let rest = match self.prefix {
            Some(prefix) => exposed
                .strip_prefix(prefix)?
                .strip_prefix(PREFIX_SEPARATOR)?,
            None => exposed,
        };
        let Some(owner) = &self.owner else {
            return Some(rest);
        };
        let tag = rest.get(..TAG_LEN)?;
        let own = rest.get(TAG_LEN..)?.strip_prefix('.')?;
        owner.tagger.check(tag, &owner.parts(own)).then_some(own)
    }
}

/// The `_meta` member that ties a message to the task it belongs to.
pub const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

/// Task status notifications: 2026-07-28's extension and 2025-11-25.
const STATUS_NOTIFICATIONS: [&str; 2] = ["notifications/tasks", "notifications/tasks/status"];

/// Whether the answer to `method` may name tasks (rewritten by [`expose`]).
fn may_name_tasks(method: &str) -> bool {
    method == "tools/call" || method.starts_with("tasks/")
}

/// The response to `method` with the task ids it names as `names` names them: a
/// created task (2026-07-28 `resultType: "task"`, 2025-11-25 `task`), a task's state,
/// a list of tasks, for a method that may name them ([`may_name_tasks`]). Anything
/// else is returned as it came.
pub fn expose(bytes: Bytes, method: &str, names: &Names<'_>) -> Bytes {
    if !names.rename() || !may_name_tasks(method) || find_bytes!(&bytes, b"\"taskId\"").is_none() {
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
            result.0.set("taskId", raw_string(&names.exposed(&own)));
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
                renamed |= name_task(item, names);
            }
            if renamed {
                result
                    .0
                    .set(member, jsonrpc::raw_or_null(value.to_string()));
                changed = true;
            }
        }
        changed |= expose_related(&mut result.0, names);
        if !changed {
            return bytes;
        }
        jsonrpc::result(id.get(), result.to_raw().get())
    }
}

/// An upstream's notification or request, relayed to the caller, with the task ids
/// it names as [`expose`] names them: a status notification's `params.taskId`, and
/// the task any message names in `params._meta["io.modelcontextprotocol/related-task"]`.
/// Anything else is returned as it came.
pub fn expose_message(bytes: Bytes, names: &Names<'_>) -> Bytes {
    if !names.rename() || find_bytes!(&bytes, b"\"taskId\"").is_none() {
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
        params.0.set("taskId", raw_string(&names.exposed(&own)));
        changed = true;
    }
    changed |= expose_related(&mut params.0, names);
    if !changed {
        return bytes;
    }
    let params = params.to_json();
    match msg.id {
        Some(id) => jsonrpc::request(id.get(), msg.method(), Some(&params)),
        None => jsonrpc::notification(msg.method(), Some(&params)),
    }
}

/// A client's answer to an upstream's request, with the task it names in
/// `result._meta["io.modelcontextprotocol/related-task"]` given back the upstream's
/// own id (the client saw it named by [`expose_message`]). `id` is the upstream's id
/// for the answer (JSON text). A task id not named so for this caller is left as it
/// is.
pub fn own_answer(answer: &Message<'_>, id: &str, names: &Names<'_>) -> Bytes {
    let renamed = answer
        .result
        .filter(|_| names.rename())
        .and_then(|result| own_related(result, names))
        .map(|result| jsonrpc::result(id, result.get()));
    renamed.unwrap_or_else(|| answer.with_id(id))
}

/// A client's request params, routed to a connection, with the task it names in
/// `_meta["io.modelcontextprotocol/related-task"]` given back the upstream's own id,
/// when it is named as `names` names this connection's tasks to this caller.
/// `Ok(None)`: nothing to change (no related task; without a binding to the caller,
/// also one named otherwise, such as the client's own). `Err`, why the request is
/// refused: when task names are bound to callers, a related task that is not this
/// caller's (it may be the upstream's own id for another caller's task), or one
/// given ambiguously.
pub fn own_request(params: &RawValue, names: &Names<'_>) -> Result<Option<Box<RawValue>>, String> {
    if names.owner.is_some() {
        return own_bound_request(params, names);
    }
    if !names.rename() || !params.get().contains(RELATED_TASK) {
        return Ok(None);
    }
    Ok(own_related(params, names))
}

/// [`own_request`] with names bound to the caller. Members are read by their decoded
/// names, as upstreams read them (an escaped `\/` or `\u…` in a name hides nothing),
/// names differing only in case count as the same (some upstreams match them so), and
/// `_meta`, the related task or its `taskId` given twice is refused: upstreams keep
/// one or the other, so either must be the caller's.
fn own_bound_request(
    params: &RawValue,
    names: &Names<'_>,
) -> Result<Option<Box<RawValue>>, String> {
    // The related task's member is named so in some case, or with an escape, or with a
    // character that folds to ASCII (`ſ`, the Kelvin sign): without any of these the
    // params name no related task, and are not read (2026-07-28 requests always carry
    // `_meta`, for their envelope).
    let text = params.get().as_bytes();
    if text.is_ascii() && memchr::memchr(b'\\', text).is_none() && !names_related_task(text) {
        return Ok(None);
    }
    let Ok(view) = ParamsView::of(params) else {
        return Ok(None);
    };
    let repeated = |view: &ParamsView<'_>, what: &str| match view.repeated() {
        Some(name) => Err(format!("{what} has the member {name:?} more than once")),
        None => Ok(()),
    };
    repeated(&view, "params")?;
    let Some((meta_key, meta)) = member(&view, "_meta") else {
        return Ok(None);
    };
    let Ok(meta_view) = ParamsView::of(meta) else {
        return Ok(None);
    };
    repeated(&meta_view, "_meta")?;
    let Some((related_key, related)) = member(&meta_view, RELATED_TASK) else {
        return Ok(None);
    };
    let unknown = |id: &str| format!("unknown task {id:?} in _meta[\"{RELATED_TASK}\"]");
    let related_view = ParamsView::of(related).map_err(|_| unknown(related.get()))?;
    repeated(&related_view, RELATED_TASK)?;
    let (id_key, exposed) = member(&related_view, "taskId")
        .and_then(|(k, v)| Some((k, serde_json::from_str::<String>(v.get()).ok()?)))
        .ok_or_else(|| unknown(related.get()))?;
    let own = names.own(&exposed).ok_or_else(|| unknown(&exposed))?;
    let related = related_view.with(&id_key, &raw_string(own));
    let meta = meta_view.with(&related_key, &related);
    Ok(Some(view.with(&meta_key, &meta)))
}

/// The member of `view` named `name` (case aside, see [`jsonrpc::same_name`]): its
/// name as given, and its value.
fn member<'a>(view: &ParamsView<'a>, name: &str) -> Option<(String, &'a RawValue)> {
    view.0
        .iter()
        .find(|(k, _)| jsonrpc::same_name(k, name))
        .map(|(k, v)| (k.to_string(), *v))
}

/// Whether `text` holds `related-task` in any case (found by its `-`).
fn names_related_task(text: &[u8]) -> bool {
    const NAME: &[u8] = b"related-task";
    const DASH: usize = 7;
    memchr::memchr_iter(b'-', text).any(|i| {
        i.checked_sub(DASH)
            .and_then(|start| text.get(start..start + NAME.len()))
            .is_some_and(|w| w.eq_ignore_ascii_case(NAME))
    })
}

/// `object` with `_meta`'s related task id given back the upstream's own id; `None`
/// when it has no related task named as `names` names them.
fn own_related(object: &RawValue, names: &Names<'_>) -> Option<Box<RawValue>> {
    if !object.get().contains(RELATED_TASK) {
        return None;
    }
    let mut object = RawParams::parse(Some(object)).ok()?;
    let mut meta = RawParams::parse(object.0.get("_meta")).ok()?;
    let mut related = RawParams::parse(meta.0.get(RELATED_TASK)).ok()?;
    let exposed = related.0.get_str("taskId")?;
    let own = names.own(&exposed)?;
    related.0.set("taskId", raw_string(own));
    meta.0.set(RELATED_TASK, related.to_raw());
    object.0.set("_meta", meta.to_raw());
    Some(object.to_raw())
}

/// Names a task object's `taskId` as `names` does; whether it had one.
pub fn name_task(task: &mut serde_json::Value, names: &Names<'_>) -> bool {
    let Some(own) = task.get("taskId").and_then(|t| t.as_str()) else {
        return false;
    };
    task["taskId"] = serde_json::Value::String(names.exposed(own));
    true
}

/// Names the task id in `_meta["io.modelcontextprotocol/related-task"]` of an
/// object's members as `names` does; whether there was one.
fn expose_related(members: &mut jsonrpc::members::Members, names: &Names<'_>) -> bool {
    let Some(Ok(mut meta)) = members.get("_meta").map(|m| RawParams::parse(Some(m))) else {
        return false;
    };
    let Some(Ok(mut related)) = meta.0.get(RELATED_TASK).map(|r| RawParams::parse(Some(r))) else {
        return false;
    };
    let Some(own) = related.0.get_str("taskId") else {
        return false;
    };
    related.0.set("taskId", raw_string(&names.exposed(&own)));
    meta.0.set(RELATED_TASK, related.to_raw());
    members.set("_meta", meta.to_raw());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`own_request`]'s outcome, the params as text.
    fn own_req(params: &RawValue, names: &Names<'_>) -> Result<Option<String>, String> {
        super::own_request(params, names).map(|o| o.map(|r| r.get().to_owned()))
    }

    fn result_of(bytes: &[u8]) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
        v["result"].clone()
    }

    #[test]
    fn created_tasks_and_task_states_are_prefixed() {
        let created = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":7,"result":{"resultType":"task","taskId":"t-1","status":"working"}}"#,
        );
        let out = expose(created, "tools/call", &Names::prefixed("fx"));
        assert_eq!(result_of(&out)["taskId"], "fx__t-1");
        assert_eq!(result_of(&out)["status"], "working");

        let legacy = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":"a","result":{"task":{"taskId":"t-2","status":"working"}}}"#,
        );
        assert_eq!(
            result_of(&expose(legacy, "tools/call", &Names::prefixed("fx")))["task"]["taskId"],
            "fx__t-2"
        );

        let state = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":8,"result":{"resultType":"complete","taskId":"t-1","status":"completed"}}"#,
        );
        assert_eq!(
            result_of(&expose(state, "tasks/get", &Names::prefixed("fx")))["taskId"],
            "fx__t-1"
        );

        let list = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":9,"result":{"tasks":[{"taskId":"a"},{"taskId":"b"}]}}"#,
        );
        let out = result_of(&expose(list, "tasks/list", &Names::prefixed("fx")));
        assert_eq!(out["tasks"][1]["taskId"], "fx__b");
    }

    #[test]
    fn an_ordinary_tool_result_is_left_alone() {
        let plain = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"x"}],"taskId":"not mine"}}"#,
        );
        let out = expose(plain.clone(), "tools/call", &Names::prefixed("fx"));
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
            let out = json(&expose_message(Bytes::from(note), &Names::prefixed("fx")));
            assert_eq!(out["params"]["taskId"], "fx__t-1", "{method}");
            assert_eq!(out["params"]["status"], "completed");
            assert_eq!(out["method"], method);
            assert!(out.get("id").is_none());
        }

        // 2025-11-25: progress and server→client requests of a task name it in _meta.
        let progress = Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":3,"progress":1,"_meta":{"io.modelcontextprotocol/related-task":{"taskId":"t-2"},"other":1}}}"#,
        );
        let out = json(&expose_message(progress, &Names::prefixed("fx")));
        assert_eq!(
            out["params"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
            "fx__t-2"
        );
        assert_eq!(out["params"]["_meta"]["other"], 1);
        assert_eq!(out["params"]["progressToken"], 3);

        let ask = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":"u-9","method":"elicitation/create","params":{"message":"name?","_meta":{"io.modelcontextprotocol/related-task":{"taskId":"t-3"}}}}"#,
        );
        let out = json(&expose_message(ask, &Names::prefixed("fx")));
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
        let out = result_of(&expose(result, "tasks/result", &Names::prefixed("fx")));
        assert_eq!(
            out["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
            "fx__t-4"
        );
    }

    #[test]
    fn a_clients_answer_names_the_task_as_the_upstream_knows_it() {
        let answer = br#"{"jsonrpc":"2.0","id":"hw-r1-7","result":{"action":"accept","content":{"taskId":"fx__mine"},"_meta":{"io.modelcontextprotocol/related-task":{"taskId":"fx__t-1"}}}}"#;
        let msg = Message::parse(answer).unwrap();
        let relayed = json(&super::own_answer(&msg, "42", &Names::prefixed("fx")));
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
            assert_eq!(json(&super::own_answer(&msg, "42", &Names::prefixed(prefix))), expected);
        }
    }

    #[test]
    fn a_clients_request_names_this_connections_task_as_the_upstream_knows_it() {
        let raw = |s: &str| RawValue::from_string(s.to_owned()).unwrap();
        let params = raw(
            r#"{"name":"echo","arguments":{"taskId":"fx__data"},"_meta":{"progressToken":3,"io.modelcontextprotocol/related-task":{"taskId":"fx__t-1"}}}"#,
        );
        let own = super::own_request(&params, &Names::prefixed("fx"))
            .ok()
            .flatten()
            .expect("renamed");
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
            assert_eq!(
                own_req(&raw(params), &Names::prefixed(prefix)),
                Ok(None),
                "{params}"
            );
        }
    }

    #[test]
    fn a_bound_name_is_its_callers_only() {
        let keyring = crate::crypto::Keyring::ephemeral();
        let tagger = keyring.tagger();
        let alice = Names::bound(tagger, None, "fx", "alice");
        let exposed = alice.exposed("t-1");
        assert_ne!(exposed, "t-1");
        assert!(exposed.ends_with(".t-1"), "{exposed}");
        assert_eq!(alice.own(&exposed), Some("t-1"));
        // Another caller, another connection, the upstream's own id, a forged or
        // altered tag, another task under alice's tag: unknown.
        let bob = Names::bound(tagger, None, "fx", "bob");
        assert_eq!(bob.own(&exposed), None);
        assert_eq!(
            Names::bound(tagger, None, "gh", "alice").own(&exposed),
            None
        );
        assert_eq!(alice.own("t-1"), None);
        let tag = &exposed[..TAG_LEN];
        assert_eq!(alice.own(&format!("{tag}.t-2")), None);
        assert_eq!(alice.own(&format!("{}.t-1", "A".repeat(TAG_LEN))), None);
        let mut flipped = exposed.clone().into_bytes();
        flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
        assert_eq!(alice.own(&String::from_utf8(flipped).unwrap()), None);
        assert_eq!(alice.own(""), None);
        assert_eq!(alice.own("é"), None);
        // A character across the tag's end.
        assert_eq!(
            alice.own(&format!("{}é.t-1", "a".repeat(TAG_LEN - 1))),
            None
        );
        assert_eq!(alice.own(&format!("{}é.t-1", "a".repeat(TAG_LEN))), None);
        // Another deployment's keys.
        let other = crate::crypto::Keyring::ephemeral();
        assert_eq!(
            Names::bound(other.tagger(), None, "fx", "alice").own(&exposed),
            None
        );

        // Unbound (a message that may be someone else's): no name a request accepts.
        assert_eq!(alice.unbound().exposed("t-1"), "t-1");
        assert_eq!(alice.own(&alice.unbound().exposed("t-1")), None);

        // On the aggregated endpoint: the prefix, then the same bound name.
        let aggregated = Names::bound(tagger, Some("f"), "fx", "alice");
        let there = aggregated.exposed("t-1");
        assert_eq!(there, format!("f__{exposed}"));
        assert_eq!(aggregated.own(&there), Some("t-1"));
        assert_eq!(aggregated.own(&exposed), None);
        assert_eq!(
            Names::bound(tagger, Some("f"), "fx", "bob").own(&there),
            None
        );
    }

    #[test]
    fn bound_names_are_given_and_taken_back_in_messages() {
        let keyring = crate::crypto::Keyring::ephemeral();
        let alice = Names::bound(keyring.tagger(), None, "fx", "alice");
        let bob = Names::bound(keyring.tagger(), None, "fx", "bob");
        let created = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":7,"result":{"resultType":"task","taskId":"t-1","status":"working"}}"#,
        );
        let named = result_of(&expose(created, "tools/call", &alice))["taskId"].clone();
        assert_eq!(named, alice.exposed("t-1"));
        let note = Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/tasks/status","params":{"taskId":"t-1","status":"completed"}}"#,
        );
        assert_eq!(
            json(&expose_message(note, &alice))["params"]["taskId"],
            named
        );

        let raw = |s: String| RawValue::from_string(s).unwrap();
        let params = raw(format!(
            r#"{{"_meta":{{"io.modelcontextprotocol/related-task":{{"taskId":{named}}}}}}}"#
        ));
        let own = super::own_request(&params, &alice)
            .ok()
            .flatten()
            .expect("alice's task");
        assert!(own.get().contains(r#""taskId":"t-1""#), "{}", own.get());
        // Bob presenting alice's name, or anyone the upstream's own id: refused.
        let refused = own_req(&params, &bob).expect_err("bob");
        assert!(
            refused.starts_with(&format!("unknown task {named}")),
            "{refused}"
        );
        let bare =
            raw(r#"{"_meta":{"io.modelcontextprotocol/related-task":{"taskId":"t-1"}}}"#.into());
        assert_eq!(
            own_req(&bare, &alice),
            Err(
                r#"unknown task "t-1" in _meta["io.modelcontextprotocol/related-task"]"#.to_owned()
            )
        );
        let odd = raw(r#"{"_meta":{"io.modelcontextprotocol/related-task":{"taskId":7}}}"#.into());
        assert!(super::own_request(&odd, &alice).is_err());
        // No related task: nothing to do.
        let plain = raw(r#"{"name":"echo","_meta":{"progressToken":1}}"#.into());
        assert_eq!(own_req(&plain, &alice), Ok(None));
        assert_eq!(own_req(&raw(r#"{"name":"echo"}"#.into()), &alice), Ok(None));
    }

    #[test]
    fn a_bound_related_task_is_read_as_upstreams_read_it() {
        let keyring = crate::crypto::Keyring::ephemeral();
        let alice = Names::bound(keyring.tagger(), None, "fx", "alice");
        let named = alice.exposed("t-1");
        let raw = |s: String| RawValue::from_string(s).unwrap();
        let taken = |params: String| {
            let out = own_req(&raw(params.clone()), &alice)
                .unwrap_or_else(|e| panic!("{params}: {e}"))
                .unwrap_or_else(|| panic!("{params}: unchanged"));
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            (v, out)
        };
        // Escaped names and a name in another case still name the related task.
        for params in [
            format!(
                r#"{{"_meta":{{"io.modelcontextprotocol\/related-task":{{"taskId":"{named}"}}}}}}"#
            ),
            format!(
                r#"{{"\u005fmeta":{{"io.modelcontextprotocol/related-task":{{"task\u0049d":"{named}"}}}}}}"#
            ),
            format!(
                r#"{{"_Meta":{{"io.modelcontextprotocol/related-task":{{"taskId":"{named}"}}}},"name":"echo"}}"#
            ),
        ] {
            let (v, out) = taken(params);
            assert!(out.contains(r#""t-1""#), "{out}");
            assert!(!out.contains(&named), "{out}");
            assert!(v.is_object(), "{out}");
        }
        // The same with the upstream's id, or another caller's name: refused.
        for params in [
            r#"{"_meta":{"io.modelcontextprotocol\/related-task":{"taskId":"t-1"}}}"#.to_owned(),
            r#"{"\u005fmeta":{"io.modelcontextprotocol/related-task":{"taskId":"t-1"}}}"#
                .to_owned(),
            r#"{"_META":{"io.modelcontextprotocol/related-task":{"TaskId":"t-1"}}}"#.to_owned(),
            r#"{"_meta":{"IO.ModelContextProtocol/Related-Task":{"taskId":"t-1"}}}"#.to_owned(),
            r#"{"_meta":{"io.modelcontextprotocol/related-taſk":{"taskId":"t-1"}}}"#.to_owned(),
            r#"{"_meta":{"io.modelcontextprotocol/related-tas\u212a":{"taskId":"t-1"}}}"#
                .to_owned(),
            r#"{"_meta":{"io.modelcontextprotocol/related-task":"t-1"}}"#.to_owned(),
            r#"{"_meta":{"io.modelcontextprotocol/related-task":{"taskId":["t-1"]}}}"#.to_owned(),
            r#"{"_meta":{"io.modelcontextprotocol/related-task":{}}}"#.to_owned(),
        ] {
            assert!(own_req(&raw(params.clone()), &alice).is_err(), "{params}");
        }
        // Given twice, each copy could be the one an upstream keeps: refused even when
        // one of them is alice's.
        for params in [
            format!(
                r#"{{"_meta":{{"io.modelcontextprotocol/related-task":{{"taskId":"{named}"}},"io.modelcontextprotocol/related-task":{{"taskId":"t-2"}}}}}}"#
            ),
            format!(
                r#"{{"_meta":{{"io.modelcontextprotocol/related-task":{{"taskId":"{named}","taskId":"t-2"}}}}}}"#
            ),
            format!(
                r#"{{"_meta":{{"io.modelcontextprotocol/related-task":{{"taskId":"{named}"}}}},"_meta":{{}}}}"#
            ),
            format!(
                r#"{{"_meta":{{"io.modelcontextprotocol/related-task":{{"taskId":"{named}","taskid":"t-2"}}}}}}"#
            ),
        ] {
            assert!(own_req(&raw(params.clone()), &alice).is_err(), "{params}");
        }
        // Escapes elsewhere change nothing.
        assert_eq!(
            own_req(
                &raw(r#"{"name":"echo","arguments":{"text":"a\"b"}}"#.into()),
                &alice
            ),
            Ok(None)
        );
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
            assert_eq!(expose_message(bytes.clone(), &Names::prefixed("fx")), bytes);
        }
    }
}
