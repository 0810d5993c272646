//! Task status on a listen stream (the tasks extension): a 2026-07-28 client's
//! `subscriptions/listen` may name tasks (`notifications.taskIds`) it wants
//! `notifications/tasks` for. Hawser follows each one it can route by asking its
//! upstream `tasks/get` on the client's behalf, as the client itself would (same
//! envelope, identity and policies, at the task's `pollIntervalMs`), and sends the
//! task's state on the stream whenever it changed, until the task ends or the stream
//! closes. Upstreams need no push support of their own, in either era.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::error::{Error, Result};
use super::forward::{Forward, forward};
use super::listeners::tagged;
use super::request::RequestInfo;
use super::session::ClientSession;
use super::state::Front;
use super::task_ids::RELATED_TASK;
use super::tasks;
use super::wire::Modern;
use crate::endpoint::Endpoint;
use crate::identity::Identity;
use crate::jsonrpc::{self, Id, Message, RawParams, raw_string};
use crate::sse;
use crate::upstream::Upstream;

/// Tasks one listen request may follow.
pub const MAX_TASKS: usize = 64;
/// Bounds of the interval between two `tasks/get` of one task, whatever the task's
/// `pollIntervalMs` says; the lower one also applies when it says nothing.
const MIN_POLL: Duration = Duration::from_millis(250);
const MAX_POLL: Duration = Duration::from_secs(30);
const DEFAULT_POLL: Duration = Duration::from_secs(1);
/// Largest `tasks/get` answer read (a completed task carries its result).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// A task a listen stream follows: its id as the client knows it, the upstream that
/// holds it, and its id there.
pub struct Followed {
    pub exposed: String,
    upstream: Arc<Upstream>,
    own: String,
}

/// The tasks of `ids` Hawser agrees to follow for this listen request, sorted and
/// each once: those it can route on `endpoint` to a connection the caller may see.
/// Naming tasks needs the tasks extension in the request's capabilities.
pub fn accept(
    front: &Front,
    endpoint: &Endpoint,
    identity: &Identity,
    modern: &Modern,
    mut ids: Vec<String>,
) -> Result<Vec<Followed>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    if !tasks::declared(modern.envelope.capabilities.as_deref()) {
        return Err(Error::MissingExtension {
            extension: tasks::EXTENSION,
            what: "notifications.taskIds".into(),
        });
    }
    ids.sort();
    ids.dedup();
    if ids.len() > MAX_TASKS {
        return Err(Error::InvalidParams(format!(
            "at most {MAX_TASKS} taskIds per listen request"
        )));
    }
    let view = front.registry.view();
    let followed = ids.into_iter().filter_map(|exposed| {
        let here = match endpoint {
            Endpoint::Aggregated => None,
            Endpoint::Connection(_) => Some(view.endpoint(endpoint)?.upstream.clone()?),
        };
        let (upstream, own) =
            tasks::owner(front, &view, here.as_ref(), &identity.subject, &exposed)?;
        tasks::may_see(front, Some(identity), &upstream).then_some(Followed {
            exposed,
            upstream,
            own,
        })
    });
    Ok(followed.collect())
}

/// The tasks whose upstream knows them, each with its state now: asked once, all at
/// once, before the stream is acknowledged, so the acknowledgement names only tasks
/// that exist.
pub async fn known(
    front: &Front,
    session: &Arc<ClientSession>,
    info: &RequestInfo,
    tasks: Vec<Followed>,
) -> Vec<(Followed, Box<RawValue>)> {
    let asked = tasks.into_iter().map(|task| async move {
        let state = state_now(front, session, info, &task, 0).await;
        state.map(|s| (task, s))
    });
    futures::future::join_all(asked)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Follows `task` for the listen stream `tx` (subscription `subscription`, JSON
/// text), from its state `first`: sends each state that differs from the last one
/// sent, asks again after the task's poll interval, until the task ends, the upstream
/// no longer knows it, or the stream closes.
pub async fn follow(
    front: Arc<Front>,
    session: Arc<ClientSession>,
    info: RequestInfo,
    (task, first): (Followed, Box<RawValue>),
    tx: mpsc::Sender<Bytes>,
    subscription: String,
) {
    let mut state = first;
    let mut last_sent: Option<Box<RawValue>> = None;
    for n in 1u64.. {
        let (params, next, done) = notification_params(&state, &task.exposed);
        if last_sent.as_ref().is_none_or(|l| l.get() != params.get()) {
            let members = params
                .get()
                .strip_prefix('{')
                .and_then(|m| m.strip_suffix('}'));
            let members = members.filter(|m| !m.trim().is_empty());
            let frame = sse::event(&tagged("notifications/tasks", &subscription, members));
            if tx.send(frame).await.is_err() {
                return;
            }
            last_sent = Some(params);
        }
        if done {
            return;
        }
        let asked = async {
            tokio::time::sleep(next).await;
            state_now(&front, &session, &info, &task, n).await
        };
        state = tokio::select! {
            () = tx.closed() => return,
            state = asked => match state {
                Some(s) => s,
                None => {
                    tracing::debug!(task = %task.exposed, "a followed task is no longer known upstream; not following it");
                    return;
                }
            },
        };
    }
}

/// 2025-11-25's `tasks/result` for a task whose upstream speaks 2026-07-28, which has
/// no such method: Hawser asks `tasks/get` on the client's behalf, after each poll
/// interval the task gives, until the task ends (for at most the connection's call
/// timeout), then answers as `tasks/result` would: the task's result tied to the task
/// in `_meta`, or its error. A task that needs input cannot be answered so (2025-11-25
/// has no way to give it): that is an error at once.
pub async fn result(
    front: &Front,
    session: &Arc<ClientSession>,
    info: &RequestInfo,
    (exposed, upstream, own): (String, Arc<Upstream>, String),
    id: &Id,
) -> Result<Bytes> {
    let task = Followed {
        exposed,
        upstream,
        own,
    };
    let timeout = task.upstream.config().call_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut n = 0u64;
    loop {
        let Some(state) = state_now(front, session, info, &task, n).await else {
            return Err(Error::InvalidParams(format!(
                "unknown task {:?}",
                task.exposed
            )));
        };
        if let Some(answer) = ended(&state, &task.exposed, id) {
            return answer;
        }
        // Asked again after the task's interval, and once more at the deadline.
        let (_, next, _) = notification_params(&state, &task.exposed);
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(Error::upstream(
                task.upstream.name(),
                crate::upstream::UpstreamError::Timeout(timeout),
            ));
        }
        tokio::time::sleep(next.min(deadline - now)).await;
        n += 1;
    }
}

/// What `tasks/result` answers for a task in `state` (a 2026-07-28 `tasks/get`
/// result), when it has ended or needs input; `None` while it works.
fn ended(state: &RawValue, exposed: &str, id: &Id) -> Option<Result<Bytes>> {
    let Ok(task) = RawParams::parse(Some(state)) else {
        return Some(Err(Error::InvalidParams(format!(
            "the upstream's state of task {exposed:?} is not an object"
        ))));
    };
    match task.0.get_str("status").as_deref() {
        Some("completed") => {
            let result = task.0.get("result").unwrap_or(RawValue::NULL);
            let Ok(mut result) = RawParams::parse(Some(result)) else {
                return Some(Err(Error::InvalidParams(format!(
                    "the upstream's result of task {exposed:?} is not an object"
                ))));
            };
            let mut meta = RawParams::parse(result.0.get("_meta")).unwrap_or_default();
            let related =
                jsonrpc::raw_or_null(format!(r#"{{"taskId":{}}}"#, raw_string(exposed).get()));
            meta.0.set(RELATED_TASK, related);
            result.0.set("_meta", meta.to_raw());
            Some(Ok(jsonrpc::result(id.json(), result.to_raw().get())))
        }
        Some("failed") => Some(Ok(
            match task.0.get("error").filter(|e| e.get().starts_with('{')) {
                Some(error) => jsonrpc::write(Some(id.json()), None, None, None, Some(error.get())),
                None => jsonrpc::error(
                    Some(id.json()),
                    jsonrpc::code::INTERNAL_ERROR,
                    &format!("task {exposed} failed"),
                    None,
                ),
            },
        )),
        Some("cancelled") => Some(Ok(jsonrpc::error(
            Some(id.json()),
            jsonrpc::code::INTERNAL_ERROR,
            &format!("task {exposed} was cancelled"),
            None,
        ))),
        Some("input_required") => Some(Err(Error::InvalidParams(format!(
            "task {exposed:?} needs input, which a 2026-07-28 upstream asks in tasks/get \
             and 2025-11-25's tasks/result cannot carry: ask tasks/get instead"
        )))),
        _ => None,
    }
}

/// The task's state, as `tasks/get` asked on the client's behalf answers it (`None`
/// for an error or no answer). `n` numbers the request.
async fn state_now(
    front: &Front,
    session: &Arc<ClientSession>,
    info: &RequestInfo,
    task: &Followed,
    n: u64,
) -> Option<Box<RawValue>> {
    let params = jsonrpc::raw_or_null(format!(r#"{{"taskId":{}}}"#, raw_string(&task.own).get()));
    let reply = forward(
        front,
        session,
        &task.upstream,
        Forward {
            method: "tasks/get",
            params: Some(&params),
            members: None,
            id: Id::string(&format!("hawser-task-status-{n}")),
            target: Some(task.own.clone()),
        },
        info,
    )
    .await;
    let answer = answer_of(reply).await?;
    state_of(&answer)
}

/// The result of a `tasks/get` answer (`None` for an error, or no answer).
fn state_of(answer: &[u8]) -> Option<Box<RawValue>> {
    let msg = Message::parse(answer).ok()?;
    msg.result.map(ToOwned::to_owned)
}

/// A task's state as `notifications/tasks` carries it (the `tasks/get` result
/// without `resultType`, named as the client knows it), how long to wait before the
/// next look, and whether the task has ended.
fn notification_params(state: &RawValue, exposed: &str) -> (Box<RawValue>, Duration, bool) {
    let Ok(mut task) = RawParams::parse(Some(state)) else {
        return (state.to_owned(), DEFAULT_POLL, true);
    };
    // `_meta` is the stream's own (its subscription id); `resultType` is tasks/get's.
    task.0.0.retain(|(k, _)| k != "resultType" && k != "_meta");
    task.0.set("taskId", raw_string(exposed));
    let status = task.0.get_str("status").unwrap_or_default();
    let done = matches!(status.as_str(), "completed" | "failed" | "cancelled");
    // `pollInterval` is 2025-11-25's name for it.
    let next = task
        .0
        .get("pollIntervalMs")
        .or_else(|| task.0.get("pollInterval"))
        .and_then(|v| v.get().parse::<u64>().ok())
        .map_or(DEFAULT_POLL, Duration::from_millis)
        .clamp(MIN_POLL, MAX_POLL);
    (task.to_raw(), next, done)
}

/// The JSON-RPC answer in a reply, whether framed as JSON or as SSE events.
async fn answer_of(reply: super::reply::Reply) -> Option<Bytes> {
    let sse = reply
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let body = reply.into_body();
    if !sse {
        return axum::body::to_bytes(body, MAX_ANSWER).await.ok();
    }
    let mut events = sse_stream::SseStream::from_bytes_stream(body.into_data_stream()).take(64);
    while let Some(Ok(event)) = events.next().await {
        let Some(data) = event.data else { continue };
        if let Ok(msg) = Message::parse(data.as_bytes())
            && (msg.result.is_some() || msg.error.is_some())
        {
            return Some(Bytes::from(data));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_state_becomes_a_notification_named_as_the_client_knows_it() {
        let state = jsonrpc::raw_or_null(
            r#"{"resultType":"complete","taskId":"t-1","status":"working","pollIntervalMs":5000,"ttlMs":null}"#
                .into(),
        );
        let (params, next, done) = notification_params(&state, "fx__t-1");
        let params: serde_json::Value = serde_json::from_str(params.get()).unwrap();
        assert_eq!(
            params,
            serde_json::json!({"taskId": "fx__t-1", "status": "working", "pollIntervalMs": 5000, "ttlMs": null})
        );
        assert_eq!(next, Duration::from_secs(5));
        assert!(!done);

        for (status, ended) in [
            ("input_required", false),
            ("completed", true),
            ("failed", true),
            ("cancelled", true),
        ] {
            let state = jsonrpc::raw_or_null(format!(
                r#"{{"taskId":"t","status":"{status}","pollIntervalMs":1}}"#
            ));
            let (_, next, done) = notification_params(&state, "t");
            assert_eq!(done, ended, "{status}");
            assert_eq!(next, MIN_POLL, "a poll interval below the floor is raised");
        }
        let state = jsonrpc::raw_or_null(r#"{"taskId":"t","status":"working"}"#.into());
        assert_eq!(notification_params(&state, "t").1, DEFAULT_POLL);
        let state = jsonrpc::raw_or_null(
            r#"{"taskId":"t","status":"working","pollIntervalMs":86400000}"#.into(),
        );
        assert_eq!(notification_params(&state, "t").1, MAX_POLL);
    }

    #[test]
    fn naming_tasks_needs_the_extension_declared() {
        let caps = |s: &str| jsonrpc::raw_or_null(s.to_owned());
        assert!(tasks::declared(Some(&caps(
            r#"{"extensions":{"io.modelcontextprotocol/tasks":{}}}"#
        ))));
        for without in [
            "{}",
            r#"{"extensions":{}}"#,
            r#"{"extensions":{"io.modelcontextprotocol/tasks":null}}"#,
            r#"{"extensions":{"io.modelcontextprotocol/other":{}}}"#,
            r#"{"io.modelcontextprotocol/tasks":{}}"#,
            r#"{"extensions":"io.modelcontextprotocol/tasks"}"#,
        ] {
            assert!(!tasks::declared(Some(&caps(without))), "{without}");
        }
        assert!(!tasks::declared(None));
    }

    #[test]
    fn only_a_result_is_a_task_state() {
        assert!(state_of(br#"{"jsonrpc":"2.0","id":1,"result":{"taskId":"t"}}"#).is_some());
        assert!(
            state_of(br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"no"}}"#)
                .is_none()
        );
        assert!(state_of(b"not json").is_none());
    }
}
