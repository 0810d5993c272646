//! The upstream side of the eras: finding out which one an upstream speaks
//! (`server/discover` first, `initialize` when that is refused), and dressing a request
//! for a 2026-07-28 upstream — the `_meta` envelope, and the headers that mirror the
//! body (`Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`).

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, HeaderValue};
use rmcp::model::ServerCapabilities;
use serde_json::Value;
use serde_json::value::RawValue;

use super::streamable::{Reply, SessionRef};
use super::{Upstream, UpstreamError, hawser_info};
use crate::headers::{MCP_METHOD, MCP_NAME, MCP_PARAM_PREFIX};
use crate::jsonrpc::{self, Message, ParamsView};
use crate::revision::{self, Envelope, encode_header_value};

/// What Hawser can relay to its clients, declared to upstreams so that they offer
/// everything; a client that cannot answer what an upstream then asks gets a clear
/// error at that moment (see `front::stream`).
pub const RELAYABLE_CAPABILITIES: &str =
    r#"{"elicitation":{"form":{},"url":{}},"sampling":{},"roots":{"listChanged":true}}"#;

/// The envelope of Hawser's own requests (discovery, lists, liveness).
pub fn hawser_envelope() -> Envelope {
    Envelope {
        protocol_version: Some(revision::MODERN.to_owned()),
        capabilities: Some(jsonrpc::raw_or_null(RELAYABLE_CAPABILITIES.to_owned())),
        client_info: Some(jsonrpc::raw_or_null(hawser_info().to_string())),
        log_level: None,
        meta_others: false,
    }
}

/// `params` with the envelope's members set in `params._meta` (other `_meta` members,
/// such as `progressToken`, kept).
pub fn with_envelope(params: Option<&RawValue>, envelope: &Envelope) -> Box<RawValue> {
    with_meta(params, Some(envelope), &[]).into_owned()
}

/// `params` with the envelope's members (if any) and the string members `extra`
/// (the trace context, SEP-414's `traceparent` and `tracestate`) set in
/// `params._meta`; other `_meta` members kept. A 2026-07-28 client's request already
/// carries its envelope: members `_meta` holds once with the same text stay as they
/// are, and the rest of the text is not written again (see [`added`]).
pub fn with_meta<'a>(
    params: Option<&'a RawValue>,
    envelope: Option<&Envelope>,
    extra: &[(&str, &str)],
) -> Cow<'a, RawValue> {
    let mut set: Vec<(&str, Cow<'_, RawValue>)> =
        envelope.map(Envelope::members).unwrap_or_default();
    for (k, v) in extra {
        set.push((k, Cow::Owned(jsonrpc::raw_string(v))));
    }
    // Params that are not an object become one, as do a `_meta` that is not.
    let members = params
        .and_then(|p| ParamsView::of(p).ok())
        .unwrap_or_default();
    let once = members.0.iter().filter(|(k, _)| k == "_meta").count() == 1;
    let meta = members
        .get("_meta")
        .and_then(|m| ParamsView::of(m).ok())
        .unwrap_or_default();
    if let Some(params) = params
        && once
        && let Some(dressed) = added(params, members.get("_meta"), &meta, &set)
    {
        return dressed;
    }
    let set: Vec<(&str, &RawValue)> = set.iter().map(|(k, v)| (*k, v.as_ref())).collect();
    let meta = meta.with_all(&set);
    Cow::Owned(members.with("_meta", &meta))
}

/// The usual case of [`with_meta`], without writing the params again: `_meta` holds
/// each member of `set` once with the same text, or not at all (a 2026-07-28 client's
/// envelope is there already; the trace context is not). The missing members are put
/// in at the start of `_meta`, the rest of the text kept as it is. `None` when a member
/// is there with another value, or twice.
fn added<'a>(
    params: &'a RawValue,
    raw_meta: Option<&RawValue>,
    meta: &ParamsView<'_>,
    set: &[(&str, Cow<'_, RawValue>)],
) -> Option<Cow<'a, RawValue>> {
    let mut missing = Vec::new();
    for (k, v) in set {
        let mut copies = meta.0.iter().filter(|(m, _)| m == k);
        match (copies.next(), copies.next()) {
            (None, _) => missing.push((*k, v.get())),
            (Some((_, held)), None) if held.get() == v.get() => {}
            _ => return None,
        }
    }
    if missing.is_empty() {
        return Some(Cow::Borrowed(params));
    }
    let text = params.get();
    let raw_meta = raw_meta?.get();
    // Where `_meta`'s object starts in the params' text (it is borrowed from it).
    let start = (raw_meta.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    if !text.get(start..)?.starts_with('{') {
        return None;
    }
    let mut out = String::with_capacity(text.len() + 160);
    out.push_str(&text[..=start]);
    for (i, (k, v)) in missing.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(jsonrpc::raw_string(k).get());
        out.push(':');
        out.push_str(v);
    }
    if !meta.0.is_empty() {
        out.push(',');
    }
    out.push_str(&text[start + 1..]);
    RawValue::from_string(out).ok().map(Cow::Owned)
}

/// The trace context of an upstream request's headers, as `_meta` members.
pub fn trace_members(headers: &HeaderMap) -> Vec<(&'static str, &str)> {
    ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|name| Some((name, headers.get(name)?.to_str().ok()?)))
        .collect()
}

/// `params` without the 2026-07-28 envelope (for a legacy upstream, whose session
/// already says what the envelope would); other `_meta` members kept (a progress
/// token, a trace context, a related task). `members` are `params` already read,
/// when the caller has them; `meta_others` is false when the caller knows `_meta`
/// holds the envelope only (then it is not read again). `None`: nothing to take out.
pub fn without_envelope(
    params: &RawValue,
    members: Option<&ParamsView<'_>>,
    meta_others: bool,
) -> Option<Box<RawValue>> {
    let read;
    let members = match members {
        Some(members) => members,
        None => {
            read = ParamsView::of(params).ok()?;
            &read
        }
    };
    let meta = members.get("_meta")?;
    let kept = |k: &str| !revision::meta::ENVELOPE.contains(&k);
    if meta_others {
        let meta = ParamsView::of(meta).ok()?;
        if meta.0.iter().any(|(k, _)| kept(k)) {
            return Some(members.with("_meta", &meta.only(kept)));
        }
    }
    Some(members.only(|k| k != "_meta"))
}

/// `params` with `_meta.progressToken` replaced by one of Hawser's, unique to the
/// call, and the token it replaced; `None` when the params ask for no progress. For an
/// upstream session that carries the requests of many clients' calls, where their own
/// tokens could repeat.
pub fn own_progress_token(params: &RawValue) -> Option<(Box<RawValue>, Box<RawValue>)> {
    let members = ParamsView::of(params).ok()?;
    let meta = ParamsView::of(members.get("_meta")?).ok()?;
    let theirs = meta.get("progressToken")?;
    let ours = jsonrpc::raw_string(&crate::crypto::random_hex::<12>());
    let meta = meta.with("progressToken", &ours);
    Some((members.with("_meta", &meta), theirs.to_owned()))
}

/// A tool argument an upstream wants mirrored in an `Mcp-Param-{name}` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamHeader {
    /// The header's suffix, as the schema spells it.
    pub name: String,
    /// Property names from `arguments` down to the value.
    pub path: Vec<String>,
}

/// The `x-mcp-header` annotations of a tool's `inputSchema`, or why they are invalid
/// (clients must then drop the tool).
pub fn param_headers(tool: &Value) -> Result<Vec<ParamHeader>, String> {
    let mut out = Vec::new();
    if let Some(schema) = tool.get("inputSchema") {
        walk(schema, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

fn walk(schema: &Value, path: &mut Vec<String>, out: &mut Vec<ParamHeader>) -> Result<(), String> {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return Ok(());
    };
    for (key, property) in properties {
        path.push(key.clone());
        if let Some(name) = property.get("x-mcp-header") {
            let name = name
                .as_str()
                .filter(|n| !n.is_empty() && n.bytes().all(is_tchar))
                .ok_or_else(|| {
                    format!(
                        "x-mcp-header of {:?} is not a header name token",
                        path.join(".")
                    )
                })?;
            let kind = property.get("type").and_then(Value::as_str);
            if !matches!(kind, Some("string" | "integer" | "boolean")) {
                return Err(format!(
                    "x-mcp-header {name:?} sits on a property that is not a string, integer or boolean"
                ));
            }
            if out
                .iter()
                .any(|h: &ParamHeader| h.name.eq_ignore_ascii_case(name))
            {
                return Err(format!("x-mcp-header {name:?} appears twice"));
            }
            out.push(ParamHeader {
                name: name.to_owned(),
                path: path.clone(),
            });
        }
        walk(property, path, out)?;
        path.pop();
    }
    Ok(())
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The header text of the argument at `path` (`None` when absent or `null`).
pub fn param_value(arguments: Option<&RawValue>, path: &[String]) -> Option<String> {
    // A member given twice: the last, as the upstream's parser (and a policy
    // condition on the arguments) reads it.
    let mut current = arguments?;
    for key in path {
        let members = ParamsView::of(current).ok()?;
        current = members.0.iter().rev().find(|(k, _)| k == key)?.1;
    }
    match serde_json::from_str::<Value>(current.get()).ok()? {
        Value::String(s) => Some(s),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The headers of a 2026-07-28 request whose body is `method` with `params`.
pub fn request_headers(
    method: &str,
    params: Option<&RawValue>,
    annotated: &[ParamHeader],
) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(3);
    let set = |headers: &mut HeaderMap, name: HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(&encode_header_value(value)) {
            headers.insert(name, v);
        }
    };
    set(&mut headers, MCP_METHOD, method);
    let member = match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        // The tasks extension: intermediaries route by the task.
        "tasks/get" | "tasks/update" | "tasks/cancel" => Some("taskId"),
        _ => None,
    };
    if let Some(member) = member {
        let members = ParamsView::parse(params).unwrap_or_default();
        if let Some(name) = members.get_str(member) {
            set(&mut headers, MCP_NAME, &name);
        }
        if !annotated.is_empty() {
            let arguments = members.get("arguments");
            for h in annotated {
                let (Some(value), Ok(name)) = (
                    param_value(arguments, &h.path),
                    HeaderName::try_from(format!("{MCP_PARAM_PREFIX}{}", h.name)),
                ) else {
                    continue;
                };
                set(&mut headers, name, &value);
            }
        }
    }
    headers
}

/// What a `server/discover` result says: the capabilities, and an `initialize`-shaped
/// result (for legacy clients of this upstream's own endpoint).
pub fn parse_discover(
    result: &RawValue,
) -> Result<(ServerCapabilities, Box<RawValue>), UpstreamError> {
    let value: Value = serde_json::from_str(result.get())
        .map_err(|e| UpstreamError::Protocol(format!("invalid server/discover result: {e}")))?;
    let capabilities: ServerCapabilities = serde_json::from_value(
        value
            .get("capabilities")
            .cloned()
            .unwrap_or_else(|| serde_json::json!({})),
    )
    .map_err(|e| UpstreamError::Protocol(format!("invalid server/discover capabilities: {e}")))?;
    let server_info = value
        .pointer(&format!(
            "/_meta/{}",
            revision::meta::SERVER_INFO.replace('/', "~1")
        ))
        .or_else(|| value.get("serverInfo"))
        .cloned()
        .unwrap_or_else(|| serde_json::json!({"name": "unknown", "version": "0"}));
    let mut init = serde_json::json!({
        "protocolVersion": revision::MODERN,
        "capabilities": value.get("capabilities").cloned().unwrap_or_else(|| serde_json::json!({})),
        "serverInfo": server_info,
    });
    if let Some(instructions) = value.get("instructions") {
        init["instructions"] = instructions.clone();
    }
    Ok((capabilities, jsonrpc::raw_or_null(init.to_string())))
}

impl Upstream {
    /// Asks a Streamable HTTP upstream for `server/discover`. `Ok(Some(result))` when it
    /// speaks 2026-07-28; `Ok(None)` when it refuses in any way (a legacy server answers
    /// with an error of its choosing, or an HTTP 4xx); an outage is an error, never a
    /// verdict.
    pub(crate) async fn probe_modern(&self) -> Result<Option<Box<RawValue>>, UpstreamError> {
        let http = self.http().ok_or(UpstreamError::Closed)?;
        let id = self.next_upstream_id();
        let params = with_envelope(None, &hawser_envelope());
        let body = jsonrpc::request(&id, "server/discover", Some(params.get()));
        let headers = request_headers("server/discover", None, &[]);
        let timeout = self.config.connect_timeout;
        let modern = SessionRef {
            id: None,
            protocol_version: revision::MODERN,
            subject: None,
        };
        let answer = tokio::time::timeout(timeout, async {
            let (reply, _) = http.post(modern, body, &headers).await?;
            match reply {
                Reply::Message(b) => Ok(Some(b)),
                Reply::Events(mut events) => {
                    while let Some(m) = events.next_message().await {
                        let m = m?;
                        if Message::parse(&m)
                            .is_ok_and(|p| p.id.is_some_and(|i| i.get().trim() == id))
                        {
                            return Ok(Some(m));
                        }
                    }
                    Ok(None)
                }
                Reply::Accepted => Ok(None),
            }
        })
        .await
        .map_err(|_| UpstreamError::Timeout(timeout))?;
        let bytes = match answer {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            Err(UpstreamError::Http { status, .. }) if (400..500).contains(&status) => {
                return Ok(None);
            }
            Err(UpstreamError::Protocol(_) | UpstreamError::SessionExpired) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Ok(msg) = Message::parse(&bytes) else {
            return Ok(None);
        };
        let Some(result) = msg.result else {
            return Ok(None);
        };
        #[derive(serde::Deserialize)]
        struct Versions {
            #[serde(rename = "supportedVersions", default)]
            supported: Vec<String>,
        }
        let speaks_modern = serde_json::from_str::<Versions>(result.get())
            .is_ok_and(|v| v.supported.iter().any(|s| s == revision::MODERN));
        Ok(speaks_modern.then(|| result.to_owned()))
    }
}

/// Whether a `server/discover` result lists a session-based revision beside
/// 2026-07-28 (a dual-era server, which legacy clients can be served by as they are).
pub fn speaks_legacy_too(discovered: &RawValue) -> bool {
    #[derive(serde::Deserialize)]
    struct Versions {
        #[serde(rename = "supportedVersions", default)]
        supported: Vec<String>,
    }
    serde_json::from_str::<Versions>(discovered.get()).is_ok_and(|v| {
        v.supported
            .iter()
            .any(|s| revision::LEGACY.contains(&s.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_dual_era_server_is_told_from_a_modern_only_one() {
        let dual =
            jsonrpc::raw_or_null(r#"{"supportedVersions":["2026-07-28","2025-11-25"]}"#.into());
        let modern = jsonrpc::raw_or_null(r#"{"supportedVersions":["2026-07-28"]}"#.into());
        assert!(speaks_legacy_too(&dual));
        assert!(!speaks_legacy_too(&modern));
    }

    #[test]
    fn the_envelope_joins_what_meta_already_had() {
        let params = jsonrpc::raw_or_null(r#"{"name":"echo","_meta":{"progressToken":7}}"#.into());
        let out: Value =
            serde_json::from_str(with_envelope(Some(&params), &hawser_envelope()).get()).unwrap();
        assert_eq!(out["_meta"]["progressToken"], 7);
        assert_eq!(out["_meta"][revision::meta::PROTOCOL_VERSION], "2026-07-28");
        assert_eq!(
            out["_meta"][revision::meta::CLIENT_CAPABILITIES]["sampling"],
            json!({})
        );
        assert_eq!(out["name"], "echo");
    }

    #[test]
    fn a_clients_own_envelope_goes_upstream_as_the_client_wrote_it() {
        // As a 2026-07-28 client sends it: spacing, member order and a number's
        // spelling of its own.
        let text = r#"{"name":"echo", "arguments":{"n":1.50},"_meta":{"progressToken":7,
            "io.modelcontextprotocol/protocolVersion":"2026-07-28",
            "io.modelcontextprotocol/clientCapabilities":{"sampling":{}},
            "io.modelcontextprotocol/clientInfo":{"name":"c","version":"1"}}}"#;
        let params = jsonrpc::raw_or_null(text.into());
        let read = ParamsView::of(&params).unwrap();
        let envelope = Envelope::of(&read).unwrap();
        let out = with_meta(Some(&params), Some(&envelope), &[]);
        assert_eq!(out.get(), text, "the client's params, unchanged");

        // What `_meta` says otherwise is set: another version, a member twice, or a
        // trace context to add.
        let other = Envelope {
            protocol_version: Some("2026-08-01".into()),
            ..envelope.clone()
        };
        let out: Value =
            serde_json::from_str(with_meta(Some(&params), Some(&other), &[]).get()).unwrap();
        assert_eq!(out["_meta"][revision::meta::PROTOCOL_VERSION], "2026-08-01");
        assert_eq!(out["_meta"]["progressToken"], 7);
        assert_eq!(out["arguments"]["n"], 1.5);
        let twice = jsonrpc::raw_or_null(
            r#"{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/protocolVersion":"2025-11-25"}}"#.into(),
        );
        let envelope = Envelope::of(&ParamsView::of(&twice).unwrap()).unwrap();
        let out = with_meta(Some(&twice), Some(&envelope), &[]);
        // The version Hawser read (the last) in place of each: the upstream cannot
        // read another.
        assert!(!out.get().contains("2026-07-28"), "{}", out.get());
        // A trace context of the client's own, twice: ours replaces both.
        let traced = jsonrpc::raw_or_null(
            r#"{"_meta":{"traceparent":"00-1111","traceparent":"00-2222"}}"#.into(),
        );
        let out = with_meta(Some(&traced), None, &[("traceparent", "00-3333")]);
        assert!(
            !out.get().contains("00-1111") && !out.get().contains("00-2222"),
            "{}",
            out.get()
        );
        let ours = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let envelope = Envelope::of(&read).unwrap();
        let dressed = with_meta(Some(&params), Some(&envelope), &[("traceparent", ours)]);
        // Added to what the client wrote, which is kept as it was.
        assert!(
            dressed.get().contains(r#""arguments":{"n":1.50}"#),
            "{}",
            dressed.get()
        );
        let out: Value = serde_json::from_str(dressed.get()).unwrap();
        assert_eq!(out["_meta"]["traceparent"], ours);
        assert_eq!(out["_meta"]["progressToken"], 7);
        assert_eq!(out["_meta"][revision::meta::CLIENT_INFO]["name"], "c");
        // An empty `_meta`, and one with spaces inside, take the members too.
        for text in [
            r#"{"name":"e","_meta":{}}"#,
            r#"{"name":"e","_meta":{ "a" : 1 }}"#,
        ] {
            let params = jsonrpc::raw_or_null(text.into());
            let out: Value = serde_json::from_str(
                with_meta(
                    Some(&params),
                    Some(&hawser_envelope()),
                    &[("traceparent", ours)],
                )
                .get(),
            )
            .unwrap();
            assert_eq!(out["_meta"]["traceparent"], ours, "{text}");
            assert_eq!(out["_meta"][revision::meta::PROTOCOL_VERSION], "2026-07-28");
        }
    }

    #[test]
    fn the_trace_context_of_the_headers_replaces_the_one_meta_had() {
        let mut headers = HeaderMap::new();
        let ours = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        headers.insert("traceparent", HeaderValue::from_static(ours));
        headers.insert("x-request-id", HeaderValue::from_static("r1"));
        let members = trace_members(&headers);
        assert_eq!(members, vec![("traceparent", ours)]);
        let params = jsonrpc::raw_or_null(
            r#"{"name":"e","_meta":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","progressToken":1}}"#.into(),
        );
        let out: Value =
            serde_json::from_str(with_meta(Some(&params), None, &members).get()).unwrap();
        assert_eq!(
            out,
            json!({"name": "e", "_meta": {"traceparent": ours, "progressToken": 1}})
        );
        let out: Value =
            serde_json::from_str(with_meta(None, Some(&hawser_envelope()), &members).get())
                .unwrap();
        assert_eq!(out["_meta"]["traceparent"], ours);
        assert_eq!(out["_meta"][revision::meta::PROTOCOL_VERSION], "2026-07-28");
    }

    #[test]
    fn a_legacy_upstream_gets_the_params_without_the_envelope() {
        let strip = |params: &RawValue| -> Value {
            serde_json::from_str(without_envelope(params, None, true).unwrap().get()).unwrap()
        };
        let params = jsonrpc::raw_or_null(
            r#"{"name":"e","_meta":{"progressToken":3,"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/related-task":{"taskId":"t-1"}}}"#.into(),
        );
        let out = strip(&params);
        // The envelope goes; what else `_meta` says stays, a related task too.
        assert_eq!(
            out,
            json!({"name": "e", "_meta": {"progressToken": 3, "io.modelcontextprotocol/related-task": {"taskId": "t-1"}}})
        );
        // The same, from members already read.
        let read = ParamsView::of(&params).unwrap();
        let again = without_envelope(&params, Some(&read), true).unwrap();
        assert_eq!(serde_json::from_str::<Value>(again.get()).unwrap(), out);
        // Read by the envelope's own reader: it tells whether `_meta` holds more.
        let envelope = Envelope::of(&read).unwrap();
        assert!(envelope.meta_others);
        let again = without_envelope(&params, Some(&read), envelope.meta_others).unwrap();
        assert_eq!(serde_json::from_str::<Value>(again.get()).unwrap(), out);

        let params = jsonrpc::raw_or_null(
            r#"{"name":"e","_meta":{"io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}"#.into(),
        );
        assert_eq!(strip(&params), json!({"name": "e"}));
        let read = ParamsView::of(&params).unwrap();
        let envelope = Envelope::of(&read).unwrap();
        assert!(!envelope.meta_others);
        let known = without_envelope(&params, Some(&read), false).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(known.get()).unwrap(),
            json!({"name": "e"})
        );
        // No `_meta`: nothing to take out.
        let plain = jsonrpc::raw_or_null(r#"{"name":"e"}"#.into());
        assert!(without_envelope(&plain, None, true).is_none());
    }

    #[test]
    fn annotated_arguments_become_headers_and_invalid_annotations_are_errors() {
        let tool = json!({"name": "q", "inputSchema": {"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "opts": {"type": "object", "properties": {"limit": {"type": "integer", "x-mcp-header": "Limit"}}},
            "text": {"type": "string"}
        }}});
        let found = param_headers(&tool).unwrap();
        assert_eq!(found.len(), 2);
        let params = jsonrpc::raw_or_null(
            r#"{"name":"q","arguments":{"region":"eu west 世","opts":{"limit":42},"text":"x"}}"#
                .into(),
        );
        let h = request_headers("tools/call", Some(&params), &found);
        assert_eq!(h["mcp-method"], "tools/call");
        assert_eq!(h["mcp-name"], "q");
        assert_eq!(h["mcp-param-limit"], "42");
        assert_eq!(
            revision::decode_header_value(h["mcp-param-region"].as_bytes()).as_deref(),
            Some("eu west 世")
        );
        for bad in [
            json!({"inputSchema": {"properties": {"a": {"type": "number", "x-mcp-header": "A"}}}}),
            json!({"inputSchema": {"properties": {"a": {"type": "string", "x-mcp-header": "bad name"}}}}),
            json!({"inputSchema": {"properties": {"a": {"type": "string", "x-mcp-header": "A"}, "b": {"type": "string", "x-mcp-header": "a"}}}}),
        ] {
            assert!(param_headers(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_discover_result_gives_capabilities_and_server_info() {
        let result = jsonrpc::raw_or_null(
            json!({"resultType": "complete", "supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}},
                   "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "up", "version": "1"}},
                   "ttlMs": 0, "cacheScope": "public"})
            .to_string(),
        );
        let (caps, init) = parse_discover(&result).unwrap();
        assert!(caps.tools.is_some());
        let init: Value = serde_json::from_str(init.get()).unwrap();
        assert_eq!(init["serverInfo"]["name"], "up");
    }
}
