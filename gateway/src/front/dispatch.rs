//! What each MCP method does in a live session: answered here (ping, lists), routed
//! to one upstream (calls, reads, prompts, completions), or fanned out (log level,
//! roots changes); on a connection's own endpoint anything else goes upstream as is.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;
use tracing::Instrument as _;

use super::bus;
use super::error::{Error, Result};
use super::forward::{Forward, forward};
use super::record;
use super::reply::{self, Reply};
use super::request::RequestInfo;
use super::session::ClientSession;
use super::state::Front;
use super::subscribed;
use super::tasks;
use crate::config::PREFIX_SEPARATOR;
use crate::jsonrpc::{self, Id, Kind, Message, ParamsView, RawParams, raw_string};
use crate::policy;
use crate::upstream::Upstream;
use crate::view::{EndpointView, ListKind, Route};

/// Handles a message in a live session.
pub async fn message(
    front: &Front,
    session: &Arc<ClientSession>,
    msg: &Message<'_>,
    info: &RequestInfo,
) -> Reply {
    match msg.kind() {
        Kind::Request => {
            let id = msg.id.map(Id::from_raw).unwrap_or_else(|| Id::string(""));
            match request(front, session, msg, &id, info).await {
                Ok(reply) => reply,
                Err(error) => {
                    record::answered(front, info, msg.method(), error.metric_label());
                    error.reply_in(Some(&id), session.is_modern())
                }
            }
        }
        Kind::Notification => {
            notification(front, session, msg).await;
            reply::accepted()
        }
        Kind::Response => {
            bus::deliver_answer(front, session, msg).await;
            reply::accepted()
        }
    }
}

async fn request(
    front: &Front,
    session: &Arc<ClientSession>,
    msg: &Message<'_>,
    id: &Id,
    info: &RequestInfo,
) -> Result<Reply> {
    let view = front.registry.view();
    let endpoint = view.endpoint(&session.endpoint).cloned().ok_or_else(|| {
        Error::ConnectionGone(session.endpoint.connection().unwrap_or_default().to_owned())
    })?;
    let method = msg.method();
    match method {
        "ping" => {
            record::answered(front, info, method, "ok");
            Ok(reply::json(jsonrpc::result(id.json(), "{}")))
        }
        "initialize" => Err(Error::AlreadyInitialized),
        _ => {
            if let Some(kind) = ListKind::of_method(method) {
                return list(front, &endpoint, kind, msg, id, info);
            }
            routed(front, session, &endpoint, msg, id, info).await
        }
    }
}

/// A list, answered from the endpoint's prebuilt result.
fn list(
    front: &Front,
    endpoint: &EndpointView,
    kind: ListKind,
    msg: &Message<'_>,
    id: &Id,
    info: &RequestInfo,
) -> Result<Reply> {
    if msg.params.is_some_and(|p| p.get().contains("\"cursor\"")) {
        return Err(Error::InvalidParams(
            "unknown cursor: lists are not paginated".into(),
        ));
    }
    // Each caller sees what the policies let it use.
    let result = match &info.caller {
        Some(caller) => front.policy.list(caller, endpoint, kind),
        None => endpoint.list(kind),
    };
    let message = jsonrpc::result(id.json(), std::str::from_utf8(&result).unwrap_or("{}"));
    record::answered(front, info, msg.method(), "ok");
    // A connection's endpoint answers in the framing its upstream uses.
    if endpoint
        .upstream
        .as_ref()
        .is_some_and(|u| u.streams_replies())
    {
        Ok(reply::sse_once(message))
    } else {
        Ok(reply::json(message))
    }
}

fn params(msg: &Message<'_>) -> Result<RawParams> {
    RawParams::parse(msg.params).map_err(|e| Error::InvalidParams(e.message))
}

/// The params read in place (routing reads a member or two and copies nothing).
fn view<'m, 'a>(msg: &'m Message<'a>) -> Result<&'m ParamsView<'a>> {
    msg.members().map_err(|e| Error::InvalidParams(e.message))
}

/// A request on its way to one upstream.
struct Routing<'a, 'm> {
    front: &'a Front,
    session: &'a Arc<ClientSession>,
    info: &'a RequestInfo,
    id: &'a Id,
    msg: &'a Message<'m>,
}

impl Routing<'_, '_> {
    async fn send(
        &self,
        upstream: &Arc<Upstream>,
        params: Option<&RawValue>,
        target: Option<String>,
    ) -> Result<Reply> {
        // A task the request relates to is named as the client knows it; the upstream
        // knows it by its own id. One that is not this caller's is refused.
        let names = super::task_ids::Names::new(
            self.front.task_tagger(),
            self.session.endpoint.is_aggregated(),
            upstream,
            &self.session.subject,
        );
        let renamed = match params.map(|p| super::task_ids::own_request(p, &names)) {
            Some(Err(refused)) => return Err(Error::InvalidParams(refused)),
            Some(Ok(renamed)) => renamed,
            None => None,
        };
        let params = renamed.as_deref().or(params);
        // The client's own params were read for routing; forwarding reuses that.
        let own = params.is_some_and(|p| self.msg.params.is_some_and(|o| std::ptr::eq(p, o)));
        let members = own.then(|| self.msg.members().ok()).flatten();
        let request = Forward {
            method: self.msg.method(),
            params,
            members,
            id: self.id.clone(),
            target,
        };
        Ok(forward(self.front, self.session, upstream, request, self.info).await)
    }
}

/// Requests that go to one upstream, chosen by what they name.
async fn routed(
    front: &Front,
    session: &Arc<ClientSession>,
    endpoint: &EndpointView,
    msg: &Message<'_>,
    id: &Id,
    info: &RequestInfo,
) -> Result<Reply> {
    let method = msg.method();
    // Params that name a member twice are refused whatever the method (see
    // `Message::members`), even those passed on as they are.
    if msg.params.is_some_and(|p| p.get().starts_with('{')) {
        view(msg)?;
    }
    let to = Routing {
        front,
        session,
        info,
        id,
        msg,
    };
    match method {
        "tools/call" | "prompts/get" => {
            let (kind, routes) = if method == "tools/call" {
                ("tool", &endpoint.tools)
            } else {
                ("prompt", &endpoint.prompts)
            };
            let params = view(msg)?;
            let name = params
                .get_str("name")
                .ok_or_else(|| Error::InvalidParams("params.name is required".into()))?;
            let item = if method == "tools/call" {
                policy::Kind::Tool
            } else {
                policy::Kind::Prompt
            };
            // Unknown, or hidden (answered alike); a name of a connection not yet
            // discovered is not known to be unknown.
            let unknown = |name: String| {
                let error = match undiscovered(front, endpoint, info, item, &name) {
                    Some(connection) => Error::NotDiscovered(connection),
                    None => Error::UnknownName {
                        kind,
                        name: name.clone(),
                    },
                };
                record::refused(front, info, Some(session), method, Some(name), &error);
                error.reply_in(Some(id), session.is_modern())
            };
            let unlisted;
            let route = match routes.get(&name) {
                Some(route) => route,
                None => match per_user_route(front, endpoint, &name) {
                    Some(route) if method == "tools/call" => {
                        unlisted = route;
                        &unlisted
                    }
                    _ => return Ok(unknown(name)),
                },
            };
            // The tool as listed, for conditions on its annotations (only looked up
            // for a connection a policy governs).
            let catalog = front
                .policy
                .governs(route.upstream.name())
                .then(|| route.upstream.catalog())
                .flatten();
            let listed = catalog.as_ref().and_then(|c| {
                let items = if item == policy::Kind::Tool {
                    &c.tools
                } else {
                    &c.prompts
                };
                items.iter().find(|i| i.key == route.name).map(|i| &*i.raw)
            });
            let facts = policy::Facts {
                args: params.get("arguments"),
                client_address: info.remote_addr.as_deref(),
                tool: listed,
            };
            match permit(
                front,
                info,
                route.upstream.name(),
                item,
                &route.name,
                &facts,
            )
            .await
            {
                Permit::Go => {}
                // Hidden: exactly what an unknown name gets.
                Permit::Hidden => return Ok(unknown(name)),
                Permit::Refused(error) => {
                    record::refused(front, info, Some(session), method, Some(name), &error);
                    return Ok(error.reply_in(Some(id), session.is_modern()));
                }
            }
            let renamed = (route.name != name)
                .then(|| params.with("name", &jsonrpc::raw_string(&route.name)));
            let params = renamed.as_deref().or(msg.params);
            to.send(&route.upstream, params, Some(route.name.clone()))
                .await
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            let uri = view(msg)?
                .get_str("uri")
                .ok_or_else(|| Error::InvalidParams("params.uri is required".into()))?;
            let facts = policy::Facts {
                args: None,
                client_address: info.remote_addr.as_deref(),
                tool: None,
            };
            let routed = match route_uri(endpoint, &uri) {
                Some(upstream) => {
                    match permit(
                        front,
                        info,
                        upstream.name(),
                        policy::Kind::Resource,
                        &uri,
                        &facts,
                    )
                    .await
                    {
                        Permit::Go => Some(upstream),
                        Permit::Hidden => None,
                        Permit::Refused(error) => {
                            record::refused(front, info, Some(session), method, Some(uri), &error);
                            return Ok(error.reply_in(Some(id), session.is_modern()));
                        }
                    }
                }
                None => None,
            };
            // Unknown, or hidden (answered alike): unsubscribing still ends its record.
            let Some(upstream) = routed else {
                if method == "resources/unsubscribe" {
                    subscribed::forget(front, session, &uri).await;
                }
                return Err(match pending_owner(front, endpoint, info, &uri) {
                    Some(connection) => Error::NotDiscovered(connection),
                    None => Error::ResourceNotFound(uri),
                });
            };
            if method != "resources/read" {
                let subscribe = method == "resources/subscribe";
                if subscribed::bridged(session, &upstream) {
                    let reply =
                        subscribed::handle(front, session, &upstream, uri, subscribe, id).await?;
                    record::answered(front, info, method, "ok");
                    return Ok(reply);
                }
                if !session.is_modern() {
                    // Recorded once it went upstream: an upstream session opened
                    // by this very request is not sent it twice.
                    let reply = to.send(&upstream, msg.params, Some(uri.clone())).await?;
                    subscribed::remember(front, session, &upstream, &uri, subscribe).await;
                    return Ok(reply);
                }
            }
            to.send(&upstream, msg.params, Some(uri)).await
        }
        "completion/complete" => complete(&to, endpoint, msg).await,
        "logging/setLevel" if session.endpoint.is_aggregated() => {
            set_level(front, session, msg, id).await
        }
        // A connection's endpoint passes it on as it is (the upstream answers), and
        // keeps a level the upstream takes, to renew on a later upstream session
        // (first: one opened meanwhile is told it).
        "logging/setLevel" if !session.is_modern() => {
            let upstream = endpoint
                .upstream
                .clone()
                .ok_or(Error::ConnectionUnavailable)?;
            let logs = upstream
                .catalog()
                .is_some_and(|c| c.capabilities.logging.is_some());
            if logs && let Ok(level) = level_of(msg) {
                keep_level(front, session, &level).await;
            }
            to.send(&upstream, msg.params, None).await
        }
        "tasks/list" if session.endpoint.is_aggregated() => {
            let reply = tasks::list(front, session, info.caller.as_deref(), id).await?;
            record::answered(front, info, method, "ok");
            Ok(reply)
        }
        m if routes_task(front, session, m) => {
            let here = if session.endpoint.is_aggregated() {
                None
            } else {
                Some(
                    endpoint
                        .upstream
                        .clone()
                        .ok_or(Error::ConnectionUnavailable)?,
                )
            };
            let (upstream, params, task) = tasks::route(
                front,
                &front.registry.view(),
                here.as_ref(),
                &session.subject,
                msg.params,
            )?;
            // A connection the caller may see nothing of has no task of theirs.
            if !tasks::may_see(front, info.caller.as_deref(), &upstream) {
                return Err(Error::InvalidParams(format!("unknown task {task:?}")));
            }
            // 2026-07-28 has no tasks/result: Hawser waits for the task itself.
            if m == "tasks/result"
                && !session.is_modern()
                && upstream.era_for(crate::revision::Era::Legacy) == crate::revision::Era::Modern
            {
                let exposed = view(msg)?.get_str("taskId").unwrap_or_default();
                let answer =
                    super::task_status::result(front, session, info, (exposed, upstream, task), id)
                        .await?;
                record::answered(front, info, method, "ok");
                return Ok(reply::json(answer));
            }
            to.send(&upstream, Some(&params), Some(task)).await
        }
        // With task names bound to callers, a list that may hold other callers' tasks
        // is not shown (an upstream that sees every caller as one lists them all).
        "tasks/list"
            if front.task_tagger().is_some()
                && endpoint
                    .upstream
                    .as_ref()
                    .is_some_and(|u| !tasks::lists_callers_only(front, u)) =>
        {
            Err(Error::MethodNotFound {
                method: "tasks/list".into(),
                hint: Some(
                    "this connection's upstream does not know who the caller is, so its list may hold other callers' tasks",
                ),
            })
        }
        _ if session.endpoint.is_aggregated() => Err(Error::MethodNotFound {
            method: method.to_owned(),
            hint: None,
        }),
        // A connection's endpoint is a transparent proxy: anything else goes upstream as is.
        _ => {
            let upstream = endpoint
                .upstream
                .clone()
                .ok_or(Error::ConnectionUnavailable)?;
            to.send(&upstream, msg.params, None).await
        }
    }
}

/// Whether Hawser routes the task request `method` itself rather than passing it on
/// as it is: on `/mcp`, MCP's task requests; on a connection's endpoint, when task
/// names are bound to callers, any `tasks/…` but the list (their names are checked),
/// and a legacy client's `tasks/result` (answered here for a 2026-07-28 upstream).
fn routes_task(front: &Front, session: &ClientSession, method: &str) -> bool {
    if session.endpoint.is_aggregated() {
        return tasks::is_task_request(method, false);
    }
    let bound = front.task_tagger().is_some();
    tasks::is_task_request(method, bound)
        && (bound || (method == "tasks/result" && !session.is_modern()))
}

/// What the policies say about a call.
enum Permit {
    Go,
    Hidden,
    Refused(Error),
}

impl Permit {
    /// The decision as a trace attribute.
    fn label(&self) -> &'static str {
        match self {
            Self::Go => "allow",
            Self::Hidden => "hidden",
            Self::Refused(Error::RateLimited { .. }) => "rate_limited",
            Self::Refused(_) => "deny",
        }
    }
}

/// The policies' decision about a call to `connection`, as a span of the request's
/// trace when a policy governs the connection (otherwise nothing is decided).
async fn permit(
    front: &Front,
    info: &RequestInfo,
    connection: &str,
    kind: policy::Kind,
    name: &str,
    facts: &policy::Facts<'_>,
) -> Permit {
    if !front.policy.governs(connection) {
        return Permit::Go;
    }
    let label = match kind {
        policy::Kind::Tool => "tool",
        policy::Kind::Prompt => "prompt",
        policy::Kind::Resource => "resource",
    };
    let span = info.trace.policy(connection, label, name);
    let permit = decide(front, info, connection, kind, name, facts)
        .instrument(span.clone())
        .await;
    span.record("hawser.policy.decision", permit.label());
    if let Permit::Refused(Error::Denied { policy, .. }) = &permit {
        span.record("hawser.policy.name", policy.as_str());
    }
    crate::telemetry::span::end(&span, "ok");
    permit
}

async fn decide(
    front: &Front,
    info: &RequestInfo,
    connection: &str,
    kind: policy::Kind,
    name: &str,
    facts: &policy::Facts<'_>,
) -> Permit {
    let Some(caller) = &info.caller else {
        return Permit::Hidden;
    };
    match front
        .policy
        .check_call(caller, connection, kind, name, facts)
    {
        policy::Decision::Allow(_) if kind == policy::Kind::Tool => {
            match front
                .policy
                .limit(caller, connection, name, info.remote_addr.as_deref())
                .await
            {
                Ok(()) => Permit::Go,
                Err(limited) => {
                    front
                        .metrics
                        .rate_limited
                        .get_or_create(&crate::metrics::PolicyLabels {
                            policy: limited.policy.clone(),
                        })
                        .inc();
                    Permit::Refused(Error::RateLimited {
                        policy: limited.policy,
                        retry_after: limited.retry_after,
                    })
                }
            }
        }
        policy::Decision::Allow(_) => Permit::Go,
        policy::Decision::Hidden(_) => Permit::Hidden,
        policy::Decision::Denied(d) => Permit::Refused(Error::Denied {
            policy: d.policy,
            rule: d.rule,
        }),
    }
}

/// A tool name the view does not list, on a connection with per-user tokens: such a
/// connection lists nothing until someone connected an account (and an operator no
/// shared one), and its first list arrives a moment after the account does. The call
/// goes to it, so that it asks this caller's consent (or reaches the upstream, which
/// answers for a name it does not have), instead of being refused as unknown.
fn per_user_route(front: &Front, endpoint: &EndpointView, name: &str) -> Option<Route> {
    if let Some(upstream) = &endpoint.upstream {
        return upstream.per_user_tokens().then(|| Route {
            upstream: upstream.clone(),
            name: name.to_owned(),
        });
    }
    let (prefix, rest) = name.split_once(PREFIX_SEPARATOR)?;
    let view = front.registry.view();
    let upstream = view
        .connections
        .values()
        .filter_map(|v| v.upstream.as_ref())
        .find(|u| u.config().prefix == prefix && u.per_user_tokens())?;
    Some(Route {
        upstream: upstream.clone(),
        name: rest.to_owned(),
    })
}

/// The connection that would serve `name` but had not listed its items when the
/// view was built (it is starting, or has not been reached since), unless a policy
/// would hide the name from the caller: such a name is not known to be unknown.
fn undiscovered(
    front: &Front,
    endpoint: &EndpointView,
    info: &RequestInfo,
    kind: policy::Kind,
    name: &str,
) -> Option<String> {
    let (upstream, item) = if endpoint.upstream.is_some() {
        (endpoint.pending.first()?, name)
    } else {
        let (prefix, rest) = name.split_once(PREFIX_SEPARATOR)?;
        let upstream = endpoint
            .pending
            .iter()
            .find(|u| u.config().prefix == prefix)?;
        (upstream, rest)
    };
    // A tool the connection's filter leaves out is unknown whatever it lists.
    if kind == policy::Kind::Tool && !upstream.config().tools.allows(item) {
        return None;
    }
    seen(front, info, upstream.name(), kind, item).then(|| upstream.name().to_owned())
}

/// Whether the caller sees item `name` of `connection` (as in lists).
fn seen(
    front: &Front,
    info: &RequestInfo,
    connection: &str,
    kind: policy::Kind,
    name: &str,
) -> bool {
    !front.policy.governs(connection)
        || info
            .caller
            .as_ref()
            .is_some_and(|caller| front.policy.visible(caller, connection, kind, name))
}

/// The first upstream behind `endpoint` still in its first dial that could own `uri`
/// as far as the caller may see: a URI no one listed is not known to be unknown
/// then. (A URI names no connection: once every first dial has ended, one no
/// connection lists is unknown, also while a connection is down.)
fn pending_owner(
    front: &Front,
    endpoint: &EndpointView,
    info: &RequestInfo,
    uri: &str,
) -> Option<String> {
    endpoint
        .pending
        .iter()
        .find(|u| !u.dialled() && seen(front, info, u.name(), policy::Kind::Resource, uri))
        .map(|u| u.name().to_owned())
}

fn route_uri(endpoint: &EndpointView, uri: &str) -> Option<Arc<Upstream>> {
    endpoint
        .resource_owner(uri)
        .cloned()
        .or_else(|| endpoint.upstream.clone())
}

/// `completion/complete`: routed by the prompt (renamed) or the resource URI.
async fn complete(
    to: &Routing<'_, '_>,
    endpoint: &EndpointView,
    msg: &Message<'_>,
) -> Result<Reply> {
    let mut params = params(msg)?;
    let Ok(mut reference) = RawParams::parse(params.0.get("ref")) else {
        return Err(Error::InvalidParams("params.ref must be an object".into()));
    };
    // What is checked (the prompt's name, the URI) must be what the upstream reads.
    if let Some(name) = params
        .0
        .get("ref")
        .and_then(|r| ParamsView::of(r).ok())
        .and_then(|r| r.repeated().map(str::to_owned))
    {
        return Err(Error::InvalidParams(format!(
            "params.ref has the member {name:?} more than once"
        )));
    }
    match reference.0.get_str("type").as_deref() {
        Some("ref/prompt") => {
            let name = reference.0.get_str("name").unwrap_or_default();
            // A prompt the caller may not see is unknown here too.
            let route = endpoint.prompts.get(&name).filter(|r| {
                seen(
                    to.front,
                    to.info,
                    r.upstream.name(),
                    policy::Kind::Prompt,
                    &r.name,
                )
            });
            let Some(route) = route else {
                return Err(
                    match undiscovered(to.front, endpoint, to.info, policy::Kind::Prompt, &name) {
                        Some(connection) => Error::NotDiscovered(connection),
                        None => Error::InvalidParams(format!("unknown prompt {name:?}")),
                    },
                );
            };
            reference.0.set("name", raw_string(&route.name));
            params.0.set("ref", reference.to_raw());
            let params = params.to_raw();
            to.send(&route.upstream, Some(&params), Some(route.name.clone()))
                .await
        }
        Some("ref/resource") => {
            let uri = reference.0.get_str("uri").unwrap_or_default();
            let upstream = route_uri(endpoint, &uri)
                .filter(|u| seen(to.front, to.info, u.name(), policy::Kind::Resource, &uri));
            let Some(upstream) = upstream else {
                return Err(match pending_owner(to.front, endpoint, to.info, &uri) {
                    Some(connection) => Error::NotDiscovered(connection),
                    None => Error::InvalidParams(format!("unknown resource {uri:?}")),
                });
            };
            to.send(&upstream, msg.params, Some(uri)).await
        }
        _ => Err(Error::InvalidParams(
            "params.ref.type must be ref/prompt or ref/resource".into(),
        )),
    }
}

/// `logging/setLevel` on the aggregated endpoint: remembered for the session and sent
/// to every upstream session it has.
async fn set_level(
    front: &Front,
    session: &Arc<ClientSession>,
    msg: &Message<'_>,
    id: &Id,
) -> Result<Reply> {
    let level = level_of(msg)?;
    keep_level(front, session, &level).await;
    let body = msg.params.map(|p| p.get().to_owned());
    for (connection, slot) in session.upstream_slots() {
        if let Some(upstream) = front.registry.upstream(&connection) {
            let body = body.clone();
            tokio::spawn(async move {
                // A slot being filled (a new upstream session, told the level kept
                // before) is waited for: the level may have changed meanwhile.
                let Some(upstream_session) = slot.lock().await.clone() else {
                    return;
                };
                let timeout = upstream.config().call_timeout;
                let _ = upstream
                    .request(
                        &upstream_session,
                        "logging/setLevel",
                        body.as_deref(),
                        timeout,
                    )
                    .await;
            });
        }
    }
    Ok(reply::json(jsonrpc::result(id.json(), "{}")))
}

/// The level a `logging/setLevel` asks for, if it is one MCP defines.
fn level_of(msg: &Message<'_>) -> Result<String> {
    const LEVELS: &[&str] = &[
        "debug",
        "info",
        "notice",
        "warning",
        "error",
        "critical",
        "alert",
        "emergency",
    ];
    let level = RawParams::parse(msg.params)
        .unwrap_or_default()
        .0
        .get_str("level")
        .ok_or_else(|| Error::InvalidParams("params.level is required".into()))?;
    if !LEVELS.contains(&level.as_str()) {
        return Err(Error::InvalidParams(format!("unknown log level {level:?}")));
    }
    Ok(level)
}

/// Keeps a legacy client's log level with its session, so that an upstream session
/// opened for it later (on any replica) is told it.
async fn keep_level(front: &Front, session: &ClientSession, level: &str) {
    if let Err(error) = front.sessions.set_log_level(session, level).await {
        tracing::warn!(session = %session.handle, %error, "cannot keep the log level with the session");
    }
}

/// Handles a notification from the client.
async fn notification(front: &Front, session: &Arc<ClientSession>, msg: &Message<'_>) {
    match msg.method() {
        "notifications/cancelled" => {
            let params = RawParams::parse(msg.params).unwrap_or_default();
            if let Some(request_id) = params.0.get("requestId") {
                let id = Id::from_raw(request_id);
                if !session.cancel(&id) {
                    bus::cancel_elsewhere(front, session, &id).await;
                }
            }
        }
        "notifications/roots/list_changed" => {
            let note = jsonrpc::notification("notifications/roots/list_changed", None);
            for (connection, upstream_session) in session.upstream_sessions() {
                if let Some(upstream) = front.registry.upstream(&connection) {
                    let note: Bytes = note.clone();
                    tokio::spawn(async move {
                        let _ = upstream.send(&upstream_session, note).await;
                    });
                }
            }
        }
        _ => {}
    }
}
