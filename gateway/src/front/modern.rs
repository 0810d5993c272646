//! 2026-07-28 requests: no session, every request carries what the server must know.
//! Hawser answers `server/discover` itself, refuses what the revision removed, opens
//! `subscriptions/listen` streams, resumes calls it bridged to a legacy upstream, and
//! dispatches the rest as it does in a session — with a stand-in session that lives
//! for the request.

use std::sync::Arc;

use axum::http::HeaderMap;
use bytes::Bytes;

use super::bridge::{self, Arrived};
use super::error::{Error, Result};
use super::record;
use super::reply::{self, Reply};
use super::request::RequestInfo;
use super::session::ClientSession;
use super::state::Front;
use super::wire::Modern;
use super::{dispatch, initialize, subscriptions, tasks};
use crate::endpoint::Endpoint;
use crate::identity::Identity;
use crate::jsonrpc::{self, Id, Kind, Message};
use crate::revision;
use crate::view::DEFAULT_TTL_MS;

/// Methods 2026-07-28 removed.
const REMOVED: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// The request as it arrived (a retry may be passed on to another replica as is).
pub struct Raw<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
}

/// Answers one 2026-07-28 message.
pub async fn handle(
    front: &Arc<Front>,
    endpoint: &Endpoint,
    identity: &Identity,
    msg: &Message<'_>,
    modern: Modern,
    info: &RequestInfo,
    raw: Raw<'_>,
) -> Reply {
    if msg.kind() != Kind::Request {
        // The revision defines no client notifications over HTTP.
        return reply::accepted();
    }
    let id = msg.id.map(Id::from_raw).unwrap_or_else(|| Id::string(""));
    let method = msg.method();
    let answered = match method {
        "server/discover" => discover(front, endpoint, &id),
        "subscriptions/listen" => {
            subscriptions::open(front, endpoint, identity, msg, &id, &modern, info)
                .await
                .inspect(|_| record::answered(front, info, method, "ok"))
        }
        m if REMOVED.contains(&m) => Err(Error::MethodNotFound {
            method: m.to_owned(),
            hint: Some("removed in MCP 2026-07-28"),
        }),
        _ => {
            // A retry that resumes a call bridged on another replica goes there; one
            // bridged here is routed like any request, then resumed where forwarding
            // would call the upstream.
            if let Some(state) = bridge::hawser_state(msg.params) {
                let arrived = Arrived {
                    endpoint,
                    headers: raw.headers,
                    body: raw.body,
                    subject: &identity.subject,
                    id: &id,
                };
                if let Some(reply) = bridge::pass_on(&front.bridge, &state, arrived).await {
                    return reply;
                }
            }
            let session = ClientSession::ephemeral(identity, endpoint, modern);
            return dispatch::message(front, &session, msg, info).await;
        }
    };
    match answered {
        Ok(reply) => reply,
        Err(error) => {
            record::answered(front, info, method, error.metric_label());
            error.reply_modern(Some(&id))
        }
    }
}

/// The aggregated endpoint's capabilities: with the tasks extension when a
/// connection offers it (its tasks are routed by their prefixed ids).
fn aggregated_capabilities(view: &crate::view::View) -> String {
    let own = initialize::AGGREGATED_CAPABILITIES;
    if !tasks::offered(view) {
        return own.to_owned();
    }
    let open = own.strip_suffix('}').unwrap_or(own);
    format!(r#"{open},"extensions":{{"{}":{{}}}}}}"#, tasks::EXTENSION)
}

/// `server/discover`: the revisions Hawser speaks and what the endpoint offers.
fn discover(front: &Front, endpoint: &Endpoint, id: &Id) -> Result<Reply> {
    let view = front.registry.view();
    let (capabilities, server_info, instructions) = match endpoint {
        Endpoint::Aggregated => (
            aggregated_capabilities(&view),
            initialize::hawser_server_info(),
            initialize::aggregated_instructions(view.connections.len()),
        ),
        Endpoint::Connection(name) => {
            let upstream = initialize::connection_upstream(&view, name)?;
            let parts =
                initialize::connection_parts(&upstream).map_err(|e| Error::upstream(name, e))?;
            (parts.capabilities, parts.server_info, parts.instructions)
        }
    };
    let mut result = format!(
        r#"{{"resultType":"complete","supportedVersions":{},"capabilities":{capabilities},"ttlMs":{DEFAULT_TTL_MS},"cacheScope":"public","_meta":{{{}:{server_info}}}"#,
        serde_json::json!(revision::ALL),
        jsonrpc::raw_string(revision::meta::SERVER_INFO).get(),
    );
    if let Some(instructions) = instructions {
        result.push_str(",\"instructions\":");
        result.push_str(&instructions);
    }
    result.push('}');
    Ok(reply::json(jsonrpc::result(id.json(), &result)))
}
