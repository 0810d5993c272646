//! The two eras of MCP and what a request says about its own: the revisions Hawser
//! speaks, the 2026-07-28 per-request `_meta` envelope, and the encoding of header
//! values that mirror the body (`Mcp-Name`, `Mcp-Param-*`).
//!
//! Both the front (clients) and the upstream side use this vocabulary; neither owns it.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::value::RawValue;

/// The sessionless revision: `server/discover`, per-request `_meta`, multi-round-trip
/// requests, `subscriptions/listen`.
pub const MODERN: &str = "2026-07-28";

/// The session-based revisions Hawser speaks, newest first.
pub const LEGACY: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];

/// Every revision Hawser speaks, newest first (as `server/discover` lists them).
pub const ALL: &[&str] = &[MODERN, "2025-11-25", "2025-06-18", "2025-03-26"];

/// Which lifecycle a peer speaks.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Era {
    /// 2025-11-25 and earlier: `initialize`, sessions, server→client requests.
    #[default]
    Legacy,
    /// 2026-07-28: no sessions, everything a server needs travels with each request.
    Modern,
}

impl Era {
    /// The era of a revision (unknown later revisions count as modern).
    pub fn of(version: &str) -> Self {
        if version >= MODERN {
            Self::Modern
        } else {
            Self::Legacy
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Legacy => "legacy",
            Self::Modern => "modern",
        }
    }
}

impl std::fmt::Display for Era {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Keys of the 2026-07-28 `_meta` envelope.
pub mod meta {
    pub const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
    pub const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
    pub const CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
    pub const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
    pub const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
    pub const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

    /// The members of a request's envelope.
    pub const ENVELOPE: [&str; 4] = [
        PROTOCOL_VERSION,
        CLIENT_CAPABILITIES,
        CLIENT_INFO,
        LOG_LEVEL,
    ];
}

/// Error codes of 2026-07-28.
pub mod code {
    /// A header disagrees with the body, or a required one is missing.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// The request needs a client capability it did not declare.
    pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
    /// The revision asked for is not spoken here (`data: {supported, requested}`).
    pub const UNSUPPORTED_VERSION: i64 = -32022;
}

/// The envelope one 2026-07-28 request carries in `params._meta`, as sent.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    pub protocol_version: Option<String>,
    pub capabilities: Option<Box<RawValue>>,
    pub client_info: Option<Box<RawValue>>,
    pub log_level: Option<String>,
    /// Whether the request's `_meta` holds members besides the envelope's, such as
    /// a progress token, a trace context or a related task.
    pub meta_others: bool,
}

impl Envelope {
    /// Reads the envelope out of a request's params, read in place (`None` without
    /// `_meta`). Members of the wrong type are left out, so the caller says which is
    /// missing.
    pub fn of(params: &crate::jsonrpc::ParamsView<'_>) -> Option<Self> {
        Self::of_meta(params.get("_meta")?)
    }

    /// Reads the envelope out of a request's `_meta`, in one pass over its members.
    fn of_meta(meta: &RawValue) -> Option<Self> {
        let members = crate::jsonrpc::ParamsView::of(meta).ok()?;
        let string = |v: &RawValue| serde_json::from_str::<String>(v.get()).ok();
        let object = |v: &RawValue| v.get().trim_start().starts_with('{').then(|| v.to_owned());
        let mut envelope = Self::default();
        for (key, value) in &members.0 {
            match key.as_ref() {
                meta::PROTOCOL_VERSION => envelope.protocol_version = string(value),
                meta::CLIENT_CAPABILITIES => envelope.capabilities = object(value),
                meta::CLIENT_INFO => envelope.client_info = object(value),
                meta::LOG_LEVEL => envelope.log_level = string(value),
                _ => envelope.meta_others = true,
            }
        }
        Some(envelope)
    }

    /// The `_meta` members of this envelope, as name and JSON value (the version
    /// defaults to this revision's, capabilities to none).
    pub fn members(&self) -> Vec<(&'static str, Cow<'_, RawValue>)> {
        let text = |s: &str| Cow::Owned(crate::jsonrpc::raw_string(s));
        let version = self.protocol_version.as_deref().unwrap_or(MODERN);
        let capabilities = match self.capabilities.as_deref() {
            Some(c) => Cow::Borrowed(c),
            None => Cow::Owned(crate::jsonrpc::raw_or_null("{}".to_owned())),
        };
        let mut out = Vec::with_capacity(4);
        out.push((meta::PROTOCOL_VERSION, text(version)));
        out.push((meta::CLIENT_CAPABILITIES, capabilities));
        if let Some(info) = self.client_info.as_deref() {
            out.push((meta::CLIENT_INFO, Cow::Borrowed(info)));
        }
        if let Some(level) = &self.log_level {
            out.push((meta::LOG_LEVEL, text(level)));
        }
        out
    }
}

const B64_PREFIX: &str = "=?base64?";
const B64_SUFFIX: &str = "?=";

/// A value as an `Mcp-Name` / `Mcp-Param-*` header carries it: plain when it is
/// printable ASCII without surrounding whitespace, else `=?base64?…?=`.
pub fn encode_header_value(value: &str) -> Cow<'_, str> {
    let plain = value.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && value.trim() == value
        && !(value.starts_with(B64_PREFIX) && value.ends_with(B64_SUFFIX));
    if plain {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(format!("{B64_PREFIX}{}{B64_SUFFIX}", B64.encode(value)))
    }
}

/// The value a header carries (decoding `=?base64?…?=`); `None` when it does not
/// decode to UTF-8.
pub fn decode_header_value(raw: &[u8]) -> Option<Cow<'_, str>> {
    let text = std::str::from_utf8(raw).ok()?;
    match text
        .strip_prefix(B64_PREFIX)
        .and_then(|t| t.strip_suffix(B64_SUFFIX))
    {
        Some(encoded) => {
            let bytes = B64.decode(encoded).ok()?;
            String::from_utf8(bytes).ok().map(Cow::Owned)
        }
        // Surrounding whitespace is not part of a plain value (RFC 9110 field values).
        None => Some(Cow::Borrowed(text.trim_matches([' ', '\t']))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::ParamsView;

    #[test]
    fn header_values_round_trip_and_plain_ascii_stays_plain() {
        for v in ["execute_sql", "us-west1", "a b", "42"] {
            assert_eq!(encode_header_value(v), v);
        }
        for v in [
            "Hello, 世界",
            " padded ",
            "line1\nline2",
            "=?base64?literal?=",
        ] {
            let e = encode_header_value(v);
            assert!(e.starts_with("=?base64?"), "{v:?} → {e}");
            assert_eq!(decode_header_value(e.as_bytes()).as_deref(), Some(v));
        }
        assert_eq!(
            encode_header_value("Hello, 世界"),
            "=?base64?SGVsbG8sIOS4lueVjA==?="
        );
        assert_eq!(decode_header_value(b"=?base64?!!?="), None);
        assert_eq!(decode_header_value(b" x ").as_deref(), Some("x"));
    }

    #[test]
    fn the_envelope_is_read_from_meta_and_written_back() {
        let params = RawValue::from_string(
            r#"{"name":"t","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{}},"progressToken":1}}"#.into(),
        )
        .unwrap();
        let e = Envelope::of(&ParamsView::of(&params).unwrap()).unwrap();
        assert_eq!(e.protocol_version.as_deref(), Some("2026-07-28"));
        assert_eq!(
            e.capabilities.as_deref().map(RawValue::get),
            Some(r#"{"elicitation":{}}"#)
        );
        let meta: serde_json::Map<String, serde_json::Value> = e
            .members()
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::from_str(v.get()).unwrap()))
            .collect();
        assert_eq!(meta[meta::PROTOCOL_VERSION], "2026-07-28");
        assert_eq!(
            meta[meta::CLIENT_CAPABILITIES]["elicitation"],
            serde_json::json!({})
        );
        let empty = RawValue::from_string("{}".into()).unwrap();
        assert!(Envelope::of(&ParamsView::of(&empty).unwrap()).is_none());
        assert_eq!(Era::of("2025-11-25"), Era::Legacy);
        assert_eq!(Era::of("2026-07-28"), Era::Modern);
    }
}
