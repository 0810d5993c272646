//! Starting a session: `initialize` negotiates the revision, answers with the
//! endpoint's capabilities and creates the session every replica will accept.

use std::sync::Arc;

use serde_json::value::RawValue;

use super::error::{Error, Result};
use super::reply::{self, Reply};
use super::state::Front;
use super::version;
use super::wire::{MAX_CAPABILITIES_BYTES, MAX_CLIENT_INFO_BYTES, bounded};
use crate::endpoint::Endpoint;
use crate::headers::MCP_SESSION_ID;
use crate::identity::Identity;
use crate::jsonrpc::{self, Id, Message, RawParams, raw_string};
use crate::upstream::{ClientInit, Upstream, UpstreamError};
use crate::view::View;

/// A request sent without a session: `initialize`, or the probe of a client trying
/// the sessionless revision first. `None` for anything else.
pub async fn sessionless(
    front: &Front,
    endpoint: &Endpoint,
    identity: &Identity,
    msg: &Message<'_>,
) -> Option<Reply> {
    let id = msg.id.map(Id::from_raw).unwrap_or_else(|| Id::string(""));
    let reply = match msg.method() {
        "initialize" => initialize(front, endpoint, identity, msg, &id).await,
        // Newer clients probe for the stateless revision first; answering "no" makes
        // them fall back to initialize.
        "server/discover" => Err(Error::MethodNotFound {
            method: "server/discover".into(),
            hint: Some(
                "server/discover is a 2026-07-28 request: send it with MCP-Protocol-Version: 2026-07-28 and Mcp-Method, or use initialize",
            ),
        }),
        _ => return None,
    };
    Some(reply.unwrap_or_else(|e| e.reply(Some(&id))))
}

/// What an `initialize` asks for. Capabilities and client info stay the client's JSON
/// text: a session keeps them as they came, bounded, instead of decoding them.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Params {
    protocol_version: Option<String>,
    capabilities: Option<Box<RawValue>>,
    client_info: Option<Box<RawValue>>,
}

impl Params {
    fn parse(msg: &Message<'_>) -> Result<Self> {
        // The lifecycle requires params (protocolVersion, capabilities, clientInfo);
        // within them Hawser is lenient, as the SDKs are.
        let params = msg.params.ok_or_else(|| {
            Error::InvalidParams(
                "initialize needs params: protocolVersion, capabilities and clientInfo".into(),
            )
        })?;
        let params: Self = serde_json::from_str(params.get())
            .map_err(|e| Error::InvalidParams(format!("invalid initialize params: {e}")))?;
        bounded(
            "params.capabilities",
            params.capabilities.as_deref(),
            MAX_CAPABILITIES_BYTES,
        )?;
        bounded(
            "params.clientInfo",
            params.client_info.as_deref(),
            MAX_CLIENT_INFO_BYTES,
        )?;
        Ok(params)
    }
}

async fn initialize(
    front: &Front,
    endpoint: &Endpoint,
    identity: &Identity,
    msg: &Message<'_>,
    id: &Id,
) -> Result<Reply> {
    let params = Params::parse(msg)?;
    let version = version::negotiate(params.protocol_version.as_deref());
    let view = front.registry.view();
    let result = match endpoint {
        Endpoint::Aggregated => aggregated_result(version, view.connections.len()),
        Endpoint::Connection(name) => {
            let upstream = connection_upstream(&view, name)?;
            connection_result(&upstream, version).map_err(|e| Error::upstream(name, e))?
        }
    };
    let init = ClientInit::new(version.to_owned(), params.capabilities, params.client_info);
    let (session_id, session) = front
        .sessions
        .create(identity, endpoint, init)
        .await
        .map_err(Error::Store)?;
    tracing::info!(session = %session.handle, subject = %identity.subject, %endpoint, version, "session started");
    Ok(reply::with_session(
        reply::json(jsonrpc::result(id.json(), &result)),
        &session_id,
    ))
}

/// Whether a reply to `initialize` started a session.
pub fn started(reply: &Reply) -> bool {
    reply.headers().contains_key(MCP_SESSION_ID)
}

/// What the aggregated endpoint offers.
pub const AGGREGATED_CAPABILITIES: &str = r#"{"tools":{"listChanged":true},"prompts":{"listChanged":true},"resources":{"listChanged":true,"subscribe":true},"logging":{},"completions":{}}"#;

/// Hawser's `serverInfo` (JSON text).
pub fn hawser_server_info() -> String {
    crate::view::hawser_info().to_owned()
}

/// The aggregated endpoint's `instructions` (a JSON string).
pub fn aggregated_instructions(connections: usize) -> Option<String> {
    Some(
        serde_json::json!(format!(
            "Hawser aggregates {connections} MCP connection(s); each tool and prompt is named <connection>__<name>."
        ))
        .to_string(),
    )
}

/// The `initialize` result of the aggregated endpoint.
fn aggregated_result(version: &str, connections: usize) -> String {
    format!(
        r#"{{"protocolVersion":{},"capabilities":{AGGREGATED_CAPABILITIES},"serverInfo":{},"instructions":{}}}"#,
        serde_json::json!(version),
        hawser_server_info(),
        aggregated_instructions(connections).unwrap_or_else(|| "\"\"".into()),
    )
}

/// What a connection's endpoint says about itself: the upstream's own capabilities
/// (list changes announced: Hawser sends them on reloads), `serverInfo` and
/// `instructions` (JSON text each).
pub struct ConnectionParts {
    pub capabilities: String,
    pub server_info: String,
    pub instructions: Option<String>,
}

/// The parts of a connection endpoint's self-description.
/// The upstream a connection endpoint serves, when it is connected.
pub fn connection_upstream(view: &View, name: &str) -> Result<Arc<Upstream>> {
    view.connections
        .get(name)
        .and_then(|e| e.upstream.clone())
        .ok_or(Error::ConnectionUnavailable)
}

pub fn connection_parts(upstream: &Upstream) -> Result<ConnectionParts, UpstreamError> {
    let catalog = upstream
        .catalog()
        .ok_or_else(|| UpstreamError::Unavailable("not connected yet".into()))?;
    let members = RawParams::parse(Some(&catalog.initialize))
        .map_err(|e| UpstreamError::Protocol(e.message))?;
    let mut caps: serde_json::Value = members
        .0
        .get("capabilities")
        .and_then(|c| serde_json::from_str(c.get()).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    for key in ["tools", "prompts", "resources"] {
        if let Some(obj) = caps.get_mut(key).and_then(|v| v.as_object_mut()) {
            obj.insert("listChanged".into(), serde_json::Value::Bool(true));
        }
    }
    Ok(ConnectionParts {
        capabilities: caps.to_string(),
        server_info: members.0.get("serverInfo").map_or_else(
            || r#"{"name":"unknown","version":"0"}"#.to_owned(),
            |v| v.get().to_owned(),
        ),
        instructions: members.0.get("instructions").map(|v| v.get().to_owned()),
    })
}

/// The `initialize` result of a connection's endpoint: the upstream's own, with the
/// negotiated version and list changes announced (Hawser sends them on reloads).
fn connection_result(upstream: &Upstream, version: &str) -> Result<String, UpstreamError> {
    let catalog = upstream
        .catalog()
        .ok_or_else(|| UpstreamError::Unavailable("not connected yet".into()))?;
    let raw: &RawValue = &catalog.initialize;
    let mut members =
        RawParams::parse(Some(raw)).map_err(|e| UpstreamError::Protocol(e.message))?;
    members.0.set("protocolVersion", raw_string(version));
    if let Some(caps) = members.0.get("capabilities") {
        let mut caps: serde_json::Value = serde_json::from_str(caps.get()).unwrap_or_default();
        for key in ["tools", "prompts", "resources"] {
            if let Some(obj) = caps.get_mut(key).and_then(|v| v.as_object_mut()) {
                obj.insert("listChanged".into(), serde_json::Value::Bool(true));
            }
        }
        if let Ok(caps) = RawValue::from_string(caps.to_string()) {
            members.0.set("capabilities", caps);
        }
    }
    Ok(members.to_json())
}
