//! JSON-RPC 2.0 messages, parsed only as far as routing needs.
//!
//! A message is parsed into an envelope whose `id`, `params`, `result` and `error`
//! stay raw JSON slices of the input; outgoing messages are written by splicing
//! those slices into a new envelope. A large result is therefore copied once and
//! never decoded into values and encoded again.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

/// JSON-RPC and MCP error codes Hawser answers with.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The upstream did not answer within the connection's call timeout (same code
    /// as the MCP SDKs' request timeout).
    pub const REQUEST_TIMEOUT: i64 = -32001;
    /// MCP: the resource does not exist.
    pub const RESOURCE_NOT_FOUND: i64 = -32002;
    /// The upstream could not be reached or failed at the transport level.
    pub const UPSTREAM_UNAVAILABLE: i64 = -32010;
    /// The upstream needs an authorization an operator has not given yet.
    pub const UPSTREAM_UNAUTHORIZED: i64 = -32011;
    /// The gateway's policy refused the request (filtered tool, denied method).
    pub const POLICY_DENIED: i64 = -32012;
    /// A policy's rate limit refused the call; `data.retryAfterMs` says when to retry.
    pub const RATE_LIMITED: i64 = -32013;
    /// MCP's `URLElicitationRequired`: the user must open a link first (consent for a
    /// per-user upstream token); `data.elicitations` carries it.
    pub const URL_ELICITATION_REQUIRED: i64 = -32042;
}

/// A message that is not valid JSON-RPC 2.0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub message: String,
    /// Not JSON at all (JSON-RPC's parse error), rather than JSON that is not a valid
    /// request (invalid request).
    pub syntax: bool,
    /// The request's id, when it could be read although the request is invalid: the
    /// error answers it (JSON-RPC answers `null` only when the id cannot be read).
    pub id: Option<Id>,
}

impl ParseError {
    fn invalid(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            syntax: false,
            id: None,
        }
    }

    /// The JSON-RPC error code to answer with.
    pub fn code(&self) -> i64 {
        if self.syntax {
            code::PARSE_ERROR
        } else {
            code::INVALID_REQUEST
        }
    }
}

/// Keeps an explicit `null` (serde maps it to `None` otherwise): a request whose id
/// is `null` is invalid, not a notification.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

/// What kind of message a [`Message`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    Response,
}

/// One JSON-RPC message borrowing from its input.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub id: Option<&'a RawValue>,
    pub method: Option<Cow<'a, str>>,
    pub params: Option<&'a RawValue>,
    pub result: Option<&'a RawValue>,
    pub error: Option<&'a RawValue>,
    /// The params' members, read on first use (see [`Message::members`]).
    members: std::sync::OnceLock<Result<ParamsView<'a>, ParseError>>,
}

impl<'a> Message<'a> {
    /// The params' members (absent params are an empty object), read once however
    /// many parts of the gateway look at them: the 2026-07-28 header checks, the
    /// envelope, routing.
    /// Params that name a member twice are refused: which of the two a check reads and
    /// which one the upstream acts on could differ (a policy checking one tool name
    /// while the upstream runs the other).
    pub fn members(&self) -> Result<&ParamsView<'a>, ParseError> {
        self.members
            .get_or_init(|| {
                let view = ParamsView::parse(self.params)?;
                match view.repeated() {
                    Some(key) => Err(ParseError::invalid(format!(
                        "params has the member {key:?} more than once"
                    ))),
                    None => Ok(view),
                }
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Parses one message; batches (arrays) are rejected, MCP removed them.
    pub fn parse(input: &'a [u8]) -> Result<Self, ParseError> {
        let first = input.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'[') {
            // JSON-RPC 2.0 §5.1: what is not JSON is a parse error, batch or not.
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(input)
                && (e.is_syntax() || e.is_eof())
            {
                return Err(ParseError {
                    message: format!("invalid JSON: {e}"),
                    syntax: true,
                    id: None,
                });
            }
            return Err(ParseError::invalid(
                "JSON-RPC batches are not supported (removed in MCP 2025-06-18)",
            ));
        }
        let env: Envelope<'a> = serde_json::from_slice(input).map_err(|e| ParseError {
            message: format!("invalid JSON-RPC message: {e}"),
            syntax: e.is_syntax() || e.is_eof(),
            id: None,
        })?;
        if env.jsonrpc.as_deref() != Some("2.0") {
            return Err(ParseError::invalid(
                "not a JSON-RPC 2.0 message (jsonrpc must be \"2.0\")",
            ));
        }
        let mut msg = Message {
            id: env.id,
            method: env.method,
            params: env.params,
            result: env.result,
            error: env.error,
            members: std::sync::OnceLock::new(),
        };
        // JSON-RPC 2.0 §4.2: params, when present, are an object or an array.
        if let Some(params) = msg.params
            && !matches!(
                params.get().trim_start().as_bytes().first(),
                Some(b'{' | b'[')
            )
        {
            return Err(ParseError {
                id: msg
                    .id
                    .filter(|id| msg.method.is_some() && is_valid_id(id))
                    .map(Id::from_raw),
                ..ParseError::invalid("params must be an object or an array")
            });
        }
        if msg.method.is_none() && msg.result.is_none() && msg.error.is_none() {
            return Err(ParseError::invalid(
                "message has neither method, result nor error",
            ));
        }
        if let Some(id) = msg.id {
            // An error answering a request that could not be read has a null id.
            if msg.method.is_none() && id.get().trim() == "null" {
                msg.id = None;
            } else if !is_valid_id(id) {
                return Err(ParseError::invalid("id must be a string or an integer"));
            }
        }
        Ok(msg)
    }

    pub fn kind(&self) -> Kind {
        match (&self.method, self.id) {
            (Some(_), Some(_)) => Kind::Request,
            (Some(_), None) => Kind::Notification,
            (None, _) => Kind::Response,
        }
    }

    pub fn method(&self) -> &str {
        self.method.as_deref().unwrap_or_default()
    }
}

fn is_valid_id(id: &RawValue) -> bool {
    let text = id.get().trim();
    text.starts_with('"')
        || (text.bytes().all(|b| b.is_ascii_digit() || b == b'-') && !text.is_empty())
}

/// A member name as a server matching names without regard to case reads it: Go's
/// `encoding/json` does (`ſ` and the Kelvin sign matching `s` and `k` too), so an
/// object naming `name` and `Name` may be read by Hawser as one value and by such an
/// upstream as the other.
pub fn folded(name: &str) -> std::borrow::Cow<'_, str> {
    if name.is_ascii() {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return name.to_ascii_lowercase().into();
        }
        return name.into();
    }
    name.chars()
        .flat_map(char::to_lowercase)
        .map(|c| if c == '\u{17f}' { 's' } else { c })
        .collect::<String>()
        .into()
}

/// Whether two member names are one to a server that ignores case ([`folded`]).
pub fn same_name(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    folded(a) == folded(b)
}

/// A request id kept as its JSON text (`7`, `"abc"`): compared and echoed exactly.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Id(Box<str>);

impl Id {
    pub fn from_raw(raw: &RawValue) -> Self {
        Self(raw.get().trim().into())
    }

    /// A string id.
    pub fn string(s: &str) -> Self {
        Self(
            serde_json::to_string(s)
                .unwrap_or_else(|_| "\"\"".to_owned())
                .into(),
        )
    }

    /// The JSON text, ready to splice into a message.
    pub fn json(&self) -> &str {
        &self.0
    }

    /// The id's string value, if it is a string.
    pub fn as_str(&self) -> Option<String> {
        serde_json::from_str::<String>(&self.0).ok()
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Writes a message envelope from its raw parts.
pub fn write(
    id: Option<&str>,
    method: Option<&str>,
    params: Option<&str>,
    result: Option<&str>,
    error: Option<&str>,
) -> Bytes {
    assemble(
        id,
        method,
        params,
        result.map(|r| (&b""[..], r.as_bytes())),
        error,
    )
}

/// [`write`], with the result given as two pieces written one after the other (a
/// member spliced in front of an upstream's result without copying it twice).
fn assemble(
    id: Option<&str>,
    method: Option<&str>,
    params: Option<&str>,
    result: Option<(&[u8], &[u8])>,
    error: Option<&str>,
) -> Bytes {
    let len = 32
        + id.map_or(0, str::len)
        + method.map_or(0, |m| m.len() + 12)
        + params.map_or(0, str::len)
        + result.map_or(0, |(head, rest)| head.len() + rest.len())
        + error.map_or(0, str::len);
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(br#"{"jsonrpc":"2.0""#);
    if let Some(id) = id {
        out.extend_from_slice(br#","id":"#);
        out.extend_from_slice(id.as_bytes());
    }
    if let Some(method) = method {
        out.extend_from_slice(br#","method":"#);
        // Method names come from our own code or from a parsed message.
        out.extend_from_slice(serde_json::to_string(method).unwrap_or_default().as_bytes());
    }
    if let Some(params) = params {
        out.extend_from_slice(br#","params":"#);
        out.extend_from_slice(params.as_bytes());
    }
    if let Some((head, rest)) = result {
        out.extend_from_slice(br#","result":"#);
        out.extend_from_slice(head);
        out.extend_from_slice(rest);
    }
    if let Some(error) = error {
        out.extend_from_slice(br#","error":"#);
        out.extend_from_slice(error.as_bytes());
    }
    out.push(b'}');
    Bytes::from(out)
}

impl Message<'_> {
    /// The same message with another id (requests and responses).
    pub fn with_id(&self, id: &str) -> Bytes {
        write(
            Some(id),
            self.method.as_deref(),
            self.params.map(RawValue::get),
            self.result.map(RawValue::get),
            self.error.map(RawValue::get),
        )
    }

    /// The same response with `"resultType":"complete"` as the first member of its
    /// result object and `id` (JSON text; `None`: its own): what a 2026-07-28 client
    /// needs of an answer from an upstream of an earlier revision. The result is
    /// spliced, not decoded. `None` for anything else: an error, a result that is not
    /// an object or already says what it is.
    pub fn completed(&self, id: Option<&str>) -> Option<Bytes> {
        #[derive(Deserialize)]
        struct Tagged<'a> {
            #[serde(rename = "resultType", borrow, default)]
            result_type: Option<&'a RawValue>,
        }
        let text = self.result?.get();
        let rest = text.strip_prefix('{')?;
        // Reading the members means scanning the whole result; a result whose text
        // cannot name `resultType` (no such run of bytes and no escape that could
        // spell it) needs no reading.
        let text_bytes = text.as_bytes();
        if (find_bytes!(text_bytes, b"resultType").is_some()
            || find_bytes!(text_bytes, b"\\u").is_some())
            && serde_json::from_str::<Tagged<'_>>(text).map_or(true, |t| t.result_type.is_some())
        {
            return None;
        }
        let head: &[u8] = if rest.trim_start().starts_with('}') {
            br#"{"resultType":"complete""#
        } else {
            br#"{"resultType":"complete","#
        };
        Some(assemble(
            id.or(self.id.map(RawValue::get)),
            self.method.as_deref(),
            self.params.map(RawValue::get),
            Some((head, rest.as_bytes())),
            self.error.map(RawValue::get),
        ))
    }

    /// The same message with other params.
    pub fn with_params(&self, params: &str) -> Bytes {
        write(
            self.id.map(RawValue::get),
            self.method.as_deref(),
            Some(params),
            self.result.map(RawValue::get),
            self.error.map(RawValue::get),
        )
    }
}

/// A success response.
pub fn result(id: &str, result: &str) -> Bytes {
    write(Some(id), None, None, Some(result), None)
}

/// An error response. `id` is `None` when the request's id could not be read.
pub fn error(
    id: Option<&str>,
    code: i64,
    message: &str,
    data: Option<&serde_json::Value>,
) -> Bytes {
    let mut err = serde_json::json!({"code": code, "message": message});
    if let Some(data) = data {
        err["data"] = data.clone();
    }
    write(
        Some(id.unwrap_or("null")),
        None,
        None,
        None,
        Some(&err.to_string()),
    )
}

/// A request.
pub fn request(id: &str, method: &str, params: Option<&str>) -> Bytes {
    write(Some(id), Some(method), params, None, None)
}

/// A notification.
pub fn notification(method: &str, params: Option<&str>) -> Bytes {
    write(None, Some(method), params, None, None)
}

/// A params object read in place: each member's raw text borrowed from the request,
/// so reading a tool's `name` or `arguments` copies nothing. [`RawParams`] owns its
/// members, for changing them.
#[derive(Debug, Clone, Default)]
pub struct ParamsView<'a>(pub Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> ParamsView<'a> {
    /// Reads params (absent params are an empty object).
    pub fn parse(params: Option<&'a RawValue>) -> Result<Self, ParseError> {
        match params {
            None => Ok(Self::default()),
            Some(raw) => Self::of(raw)
                .map_err(|e| ParseError::invalid(format!("params must be an object: {e}"))),
        }
    }

    /// The members of any JSON object.
    pub fn of(object: &'a RawValue) -> Result<Self, serde_json::Error> {
        use serde::de::{Deserializer as _, MapAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ParamsView<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(Key(k)) = map.next_key()? {
                    out.push((k, map.next_value::<&'de RawValue>()?));
                }
                Ok(ParamsView(out))
            }
        }
        let mut de = serde_json::Deserializer::from_str(object.get());
        let view = de.deserialize_map(V)?;
        de.end()?;
        Ok(view)
    }

    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// A member name the object holds more than once, if any, names that differ only
    /// in case counting as one (see [`folded`]).
    pub fn repeated(&self) -> Option<&str> {
        let members = &self.0;
        if members.len() <= 16 {
            return members
                .iter()
                .enumerate()
                .find(|(i, (k, _))| members[..*i].iter().any(|(seen, _)| same_name(seen, k)))
                .map(|(_, (k, _))| k.as_ref());
        }
        let mut seen = std::collections::HashSet::with_capacity(members.len());
        members
            .iter()
            .find(|(k, _)| !seen.insert(folded(k)))
            .map(|(k, _)| k.as_ref())
    }

    /// Reads a string member.
    pub fn get_str(&self, key: &str) -> Option<String> {
        self.get(key)
            .and_then(|v| serde_json::from_str(v.get()).ok())
    }

    /// The object again, with `key` set to `value` (replaced in place, or appended).
    pub fn with(&self, key: &str, value: &RawValue) -> Box<RawValue> {
        self.with_all(&[(key, value)])
    }

    /// The object again, with each member of `set` set (replaced in place, or
    /// appended in `set`'s order).
    pub fn with_all(&self, set: &[(&str, &RawValue)]) -> Box<RawValue> {
        let value = |key: &str| set.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let mut members: Vec<(&str, &RawValue)> = self
            .0
            .iter()
            .map(|(k, v)| (k.as_ref(), value(k).unwrap_or(*v)))
            .collect();
        for &(key, v) in set {
            if self.get(key).is_none() {
                members.push((key, v));
            }
        }
        object(members)
    }

    /// The object again, keeping the members `keep` says yes to.
    pub fn only(&self, keep: impl Fn(&str) -> bool) -> Box<RawValue> {
        object(
            self.0
                .iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| (k.as_ref(), *v))
                .collect(),
        )
    }
}

/// A JSON object of raw members, written out as they are: keys escaped as JSON
/// strings, values copied. serde_json writes it, so the text is not parsed again.
fn object(members: Vec<(&str, &RawValue)>) -> Box<RawValue> {
    struct Object<'a>(Vec<(&'a str, &'a RawValue)>);
    impl serde::Serialize for Object<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap as _;
            let mut map = s.serialize_map(Some(self.0.len()))?;
            for (k, v) in &self.0 {
                map.serialize_entry(k, v)?;
            }
            map.end()
        }
    }
    serde_json::value::to_raw_value(&Object(members)).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// An object key, borrowed from the input unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A params object with raw member values: lets the gateway change one member (a
/// tool's `name`) without decoding the others (`arguments`).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct RawParams(pub members::Members);

/// Insertion-ordered members of a JSON object, with raw values.
pub mod members {
    use serde::de::{MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::value::RawValue;

    #[derive(Debug, Default)]
    pub struct Members(pub Vec<(String, Box<RawValue>)>);

    impl Members {
        pub fn get(&self, key: &str) -> Option<&RawValue> {
            self.0
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_ref())
        }

        /// Sets `key` (replacing it in place, or appending).
        pub fn set(&mut self, key: &str, value: Box<RawValue>) {
            match self.0.iter_mut().find(|(k, _)| k == key) {
                Some((_, v)) => *v = value,
                None => self.0.push((key.to_owned(), value)),
            }
        }

        /// Reads a string member.
        pub fn get_str(&self, key: &str) -> Option<String> {
            self.get(key)
                .and_then(|v| serde_json::from_str(v.get()).ok())
        }
    }

    impl Serialize for Members {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(Some(self.0.len()))?;
            for (k, v) in &self.0 {
                map.serialize_entry(k, v)?;
            }
            map.end()
        }
    }

    impl<'de> Deserialize<'de> for Members {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Members;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                    let mut out = Vec::with_capacity(map.size_hint().unwrap_or(4));
                    while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                        out.push((k, v));
                    }
                    Ok(Members(out))
                }
            }
            d.deserialize_map(V)
        }
    }
}

impl RawParams {
    /// Parses params (absent params are an empty object).
    pub fn parse(params: Option<&RawValue>) -> Result<Self, ParseError> {
        match params {
            None => Ok(Self::default()),
            Some(raw) => serde_json::from_str(raw.get())
                .map_err(|e| ParseError::invalid(format!("params must be an object: {e}"))),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The params as a raw value, ready to send.
    pub fn to_raw(&self) -> Box<RawValue> {
        serde_json::value::to_raw_value(self).unwrap_or_else(|_| RawValue::NULL.to_owned())
    }
}

/// A JSON string value as a raw value.
pub fn raw_string(s: &str) -> Box<RawValue> {
    serde_json::value::to_raw_value(s).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// JSON text this process produced (by serde_json, or spliced from parsed parts) as
/// a raw value. Text that is not JSON would be a bug here; it becomes `null` rather
/// than a panic.
pub fn raw_or_null(json: String) -> Box<RawValue> {
    RawValue::from_string(json).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// How deeply arrays and objects nest in valid JSON text (a scalar is 0), found by
/// a scan that builds nothing.
pub fn depth(json: &str) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in json.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// The `error.code` and `error.message` of an error response, for logs and audit.
pub fn error_summary(error: &RawValue) -> (i64, String) {
    #[derive(Deserialize)]
    struct E {
        #[serde(default)]
        code: i64,
        #[serde(default)]
        message: String,
    }
    serde_json::from_str::<E>(error.get())
        .map(|e| (e.code, e.message))
        .unwrap_or((code::INTERNAL_ERROR, "malformed error".into()))
}

#[cfg(test)]
mod tests;
