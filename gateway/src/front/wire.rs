//! Which era a request speaks, decided once per request from its headers and body and
//! validated before anything else reads it: a 2026-07-28 request's headers must agree
//! with its body, and its `_meta` envelope must say what the revision requires. The
//! rest of the pipeline (routing, policy, limits, audit) reads the typed result.

use axum::http::HeaderMap;
use serde_json::value::RawValue;

use super::error::{Error, Result};
use crate::headers::{MCP_METHOD, MCP_NAME, MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use crate::jsonrpc::{Kind, Message};
use crate::revision::{self, Envelope};
use crate::upstream::Declared;

/// A request's era, validated.
#[derive(Debug)]
pub enum Wire {
    /// 2025-11-25 and earlier: the session (or `initialize`) says the rest.
    Legacy,
    /// 2026-07-28: everything travels with the request.
    Modern(Modern),
}

/// A validated 2026-07-28 request.
#[derive(Debug, Clone)]
pub struct Modern {
    /// The envelope of `params._meta` (absent on notifications).
    pub envelope: Envelope,
    /// What the client can answer, from `clientCapabilities`.
    pub declared: Declared,
}

/// Methods whose `Mcp-Name` header mirrors a member of `params`.
fn name_member(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

fn header(headers: &HeaderMap, name: http::HeaderName) -> Option<&[u8]> {
    headers.get(name).map(|v| v.as_bytes())
}

/// Classifies and validates a request. A request without `MCP-Protocol-Version` is
/// legacy (2025-03-26 allowed it) unless its body carries the modern envelope.
pub fn classify(headers: &HeaderMap, msg: &Message<'_>) -> Result<Wire> {
    let version =
        header(headers, MCP_PROTOCOL_VERSION).map(|v| String::from_utf8_lossy(v).trim().to_owned());
    let Some(version) = version else {
        let envelope = msg.members().ok().and_then(Envelope::of);
        if envelope.is_some_and(|e| e.protocol_version.is_some())
            && !headers.contains_key(MCP_SESSION_ID)
            && msg.kind() == Kind::Request
        {
            return Err(Error::HeaderMismatch(
                "MCP-Protocol-Version header is required".into(),
            ));
        }
        return Ok(Wire::Legacy);
    };
    if revision::LEGACY.contains(&version.as_str()) {
        return Ok(Wire::Legacy);
    }
    if version != revision::MODERN {
        return Err(Error::UnsupportedVersion { version });
    }
    match msg.kind() {
        Kind::Request => modern_request(headers, msg).map(Wire::Modern),
        // The revision defines no client notifications over HTTP; they are accepted
        // and dropped.
        Kind::Notification => Ok(Wire::Modern(Modern {
            envelope: Envelope::default(),
            declared: Declared::default(),
        })),
        Kind::Response => Err(Error::InvalidRequest(
            "2026-07-28 clients send no responses: answer input requests in the retried request"
                .into(),
        )),
    }
}

fn modern_request(headers: &HeaderMap, msg: &Message<'_>) -> Result<Modern> {
    let method = msg.method();
    match header(headers, MCP_METHOD) {
        None => {
            return Err(Error::HeaderMismatch(
                "Mcp-Method header is required".into(),
            ));
        }
        Some(h) if h != method.as_bytes() => {
            return Err(Error::HeaderMismatch(format!(
                "Mcp-Method header {:?} does not match the body's method {method:?}",
                String::from_utf8_lossy(h)
            )));
        }
        Some(_) => {}
    }
    let members = msg.members().map_err(|e| Error::InvalidParams(e.message))?;
    let envelope = Envelope::of(members)
        .ok_or_else(|| Error::MetaInvalid("params._meta is required in 2026-07-28".into()))?;
    let Some(body_version) = envelope.protocol_version.as_deref() else {
        return Err(Error::MetaInvalid(format!(
            "params._meta[{:?}] is required",
            revision::meta::PROTOCOL_VERSION
        )));
    };
    if envelope.capabilities.is_none() {
        return Err(Error::MetaInvalid(format!(
            "params._meta[{:?}] is required (an object; {{}} declares none)",
            revision::meta::CLIENT_CAPABILITIES
        )));
    }
    // Kept with the pooled upstream session it opens, as `initialize`'s are.
    for (key, value, max) in [
        (
            revision::meta::CLIENT_CAPABILITIES,
            &envelope.capabilities,
            MAX_CAPABILITIES_BYTES,
        ),
        (
            revision::meta::CLIENT_INFO,
            &envelope.client_info,
            MAX_CLIENT_INFO_BYTES,
        ),
    ] {
        bounded(MetaField(key), value.as_deref(), max)?;
    }
    if body_version != revision::MODERN {
        return Err(Error::HeaderMismatch(format!(
            "MCP-Protocol-Version header {:?} does not match params._meta protocolVersion {body_version:?}",
            revision::MODERN
        )));
    }
    if let Some(member) = name_member(method) {
        check_name(headers, msg, member)?;
    }
    // The tasks extension names the task in `Mcp-Name` too; the official SDKs do not
    // send it yet, so it is checked only when present.
    if matches!(method, "tasks/get" | "tasks/update" | "tasks/cancel")
        && headers.contains_key(MCP_NAME)
    {
        check_name(headers, msg, "taskId")?;
    }
    let declared = Declared::of(envelope.capabilities.as_deref());
    Ok(Modern { envelope, declared })
}

/// Most a session keeps of a client's `capabilities` (JSON text) …
pub const MAX_CAPABILITIES_BYTES: usize = 16 * 1024;
/// … and of its `clientInfo`.
pub const MAX_CLIENT_INFO_BYTES: usize = 4 * 1024;
/// Deepest nesting accepted in either.
pub const MAX_DEPTH: usize = 8;

/// What a client declares about itself (`field`: capabilities, client info), kept
/// with its session or pooled upstream session: an object of at most `max` bytes,
/// nested at most [`MAX_DEPTH`] levels. The same bounds hold for `initialize` and for
/// a 2026-07-28 request's envelope.
pub fn bounded(field: impl std::fmt::Display, value: Option<&RawValue>, max: usize) -> Result<()> {
    let Some(value) = value else { return Ok(()) };
    let text = value.get();
    if !text.trim_start().starts_with('{') {
        return Err(Error::InvalidParams(format!("{field} must be an object")));
    }
    if text.len() > max {
        return Err(Error::InvalidParams(format!(
            "{field} is larger than {max} bytes"
        )));
    }
    // No deeper than it has brackets (a 2026-07-28 request's are checked every time).
    let brackets = text.bytes().filter(|b| matches!(b, b'{' | b'[')).count();
    if brackets > MAX_DEPTH && crate::jsonrpc::depth(text) > MAX_DEPTH {
        return Err(Error::InvalidParams(format!(
            "{field} nests deeper than {MAX_DEPTH} levels"
        )));
    }
    Ok(())
}

/// A member of `params._meta`, as an error names it (written only for an error).
struct MetaField(&'static str);

impl std::fmt::Display for MetaField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "params._meta[{:?}]", self.0)
    }
}

/// `Mcp-Name` must be present and equal `params.{member}` (when the body has it).
fn check_name(headers: &HeaderMap, msg: &Message<'_>, member: &str) -> Result<()> {
    let body = msg.members().ok().and_then(|p| p.get_str(member));
    let Some(body) = body else {
        // The body itself is wrong; routing says how.
        return Ok(());
    };
    let Some(raw) = header(headers, MCP_NAME) else {
        return Err(Error::HeaderMismatch("Mcp-Name header is required".into()));
    };
    let value = revision::decode_header_value(raw).ok_or_else(|| {
        Error::HeaderMismatch("Mcp-Name header is not valid =?base64?…?= text".into())
    })?;
    if value != body {
        return Err(Error::HeaderMismatch(format!(
            "Mcp-Name header {value:?} does not match params.{member} {body:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::headers::test_map as headers;

    const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{}}}}}"#;

    fn modern(name: &str) -> HeaderMap {
        headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", name),
        ])
    }

    fn code(r: Result<Wire>) -> i64 {
        r.map(|_| 0).unwrap_or_else(|e| e.jsonrpc_code())
    }

    #[test]
    fn a_consistent_modern_request_is_typed_with_its_capabilities() {
        let msg = Message::parse(CALL.as_bytes()).unwrap();
        let Ok(Wire::Modern(m)) = classify(&modern("echo"), &msg) else {
            panic!("not modern")
        };
        assert!(m.declared.elicitation && !m.declared.sampling);
    }

    #[test]
    fn headers_that_disagree_with_the_body_are_refused_with_32020() {
        let msg = Message::parse(CALL.as_bytes()).unwrap();
        assert_eq!(code(classify(&modern("other"), &msg)), -32020);
        let mut h = modern("echo");
        h.remove("mcp-method");
        assert_eq!(code(classify(&h, &msg)), -32020);
        h.insert("mcp-method", "tools/list".parse().unwrap());
        assert_eq!(code(classify(&h, &msg)), -32020);
        let mut h = modern("echo");
        h.remove("mcp-name");
        assert_eq!(code(classify(&h, &msg)), -32020);
        // The body says modern, the header is missing.
        assert_eq!(code(classify(&HeaderMap::new(), &msg)), -32020);
        // Base64-encoded names are decoded before comparing.
        let msg2 = CALL.replace("\"echo\"", "\"h\u{e9}\"");
        let msg2 = Message::parse(msg2.as_bytes()).unwrap();
        let encoded = revision::encode_header_value("h\u{e9}").into_owned();
        assert!(matches!(
            classify(&modern(&encoded), &msg2),
            Ok(Wire::Modern(_))
        ));
    }

    #[test]
    fn a_task_named_in_mcp_name_must_be_the_task_of_the_body() {
        let get = r#"{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"fx__t1","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
        let msg = Message::parse(get.as_bytes()).unwrap();
        let task = |name: Option<&str>| {
            let mut h = headers(&[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tasks/get"),
            ]);
            if let Some(name) = name {
                h.insert("mcp-name", name.parse().unwrap());
            }
            h
        };
        assert!(matches!(
            classify(&task(Some("fx__t1")), &msg),
            Ok(Wire::Modern(_))
        ));
        assert_eq!(code(classify(&task(Some("fx__t2")), &msg)), -32020);
        // Not sent: accepted, as the official SDKs send none for tasks.
        assert!(matches!(classify(&task(None), &msg), Ok(Wire::Modern(_))));
    }

    #[test]
    fn a_missing_envelope_is_invalid_params_and_unknown_versions_name_the_supported() {
        let bare = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#;
        let msg = Message::parse(bare.as_bytes()).unwrap();
        let h = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ]);
        assert_eq!(code(classify(&h, &msg)), -32602);
        let h = headers(&[("mcp-protocol-version", "2099-01-01")]);
        let e = classify(&h, &msg).unwrap_err();
        assert_eq!(e.jsonrpc_code(), -32022);
        assert_eq!(e.status(), 400);
        // Legacy revisions and no header at all stay on the session path.
        let h = headers(&[("mcp-protocol-version", "2025-06-18")]);
        assert!(matches!(classify(&h, &msg), Ok(Wire::Legacy)));
        assert!(matches!(
            classify(&HeaderMap::new(), &msg),
            Ok(Wire::Legacy)
        ));
    }
}
