//! A corpus of bad input against one gateway. Each row is one request a broken or
//! hostile client might send and the exact answer it must get; after every row
//! `/healthz` must still answer, and over the whole corpus the gateway's memory must
//! stay put. Requests go over raw TCP so that every byte (two `Host` headers, a BOM,
//! a body that never ends) is what the test says. Rows that show a known defect are
//! kept apart: they assert what the protocol requires, and are printed, not failed.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hawser_e2e::harness::stack::{Fixture, Gateway};
use serde_json::Value;

const CLIENT_TOKEN: &str = "corpus-client-token";
const ADMIN_TOKEN: &str = "corpus-admin-token-0123456789";
const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
/// 2026-07-28 requests: no session, the envelope in `_meta`.
const MODERN_LIST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
const MODERN_CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fx__echo","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"corpus","version":"1"}}}"#;

/// Short limits, so the slow-client rows finish in seconds.
fn config(fixture: &Fixture) -> String {
    format!(
        "adminToken: {ADMIN_TOKEN}
publicUrl: http://127.0.0.1:9/
clientAuth:
  type: bearer
  tokens:
    - {{ subject: corpus, token: {CLIENT_TOKEN} }}
http: {{ headerReadTimeout: 2s, bodyReadTimeout: 2s, maxConnectionsPerClient: 20, maxRequestBytes: 1048576 }}
connections:
  - name: fx
    url: {url}
  - name: oa
    url: {url}
    auth: {{ type: oauth2, grant: authorization_code, clientId: corpus, authorizationUrl: 'http://127.0.0.1:9/authorize', tokenUrl: 'http://127.0.0.1:9/token' }}
",
        url = fixture.mcp_url()
    )
}

/// An HTTP answer read off a raw socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    elapsed: Duration,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Sends `request` on a new connection and reads the answer until the server closes.
/// The request is written from another thread: a server that answers before the body
/// has arrived (413) stops reading, and its answer must still be read.
fn exchange(addr: &str, request: Vec<u8>) -> Result<Answer, String> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&request);
    });
    let mut raw = Vec::new();
    let read = stream.read_to_end(&mut raw);
    let elapsed = started.elapsed();
    // Unblocks the writer if the server neither reads nor closes.
    let _ = stream.shutdown(Shutdown::Both);
    let _ = sender.join();
    if raw.is_empty() {
        return Err(format!("no answer ({read:?})"));
    }
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of head in {:?}", String::from_utf8_lossy(&raw)))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    // Every answer in this corpus carries Content-Length (nothing here streams).
    let body = raw[end + 4..].to_vec();
    Ok(Answer {
        status,
        headers,
        body,
        elapsed,
    })
}

/// An HTTP/1.1 request with `Connection: close`. `Host` and `Content-Length` are added
/// unless given; a header given with an empty value is left out.
fn request(method: &str, path: &str, headers: &[(&str, &str)], body: impl AsRef<[u8]>) -> Vec<u8> {
    let body = body.as_ref();
    let given = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !given("host") {
        head.push_str("Host: 127.0.0.1\r\n");
    }
    for (k, v) in headers.iter().filter(|(_, v)| !v.is_empty()) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !given("content-length") && !given("transfer-encoding") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A POST to an MCP path with what a well-behaved client sends, `changes` applied: a
/// header given replaces the default of that name (an empty value drops it).
fn mcp(
    path: &str,
    session: Option<&str>,
    changes: &[(&str, &str)],
    body: impl AsRef<[u8]>,
) -> Vec<u8> {
    let auth = format!("Bearer {CLIENT_TOKEN}");
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("Authorization", auth.as_str()),
    ];
    headers.extend(session.map(|s| ("Mcp-Session-Id", s)));
    request("POST", path, &changed(headers, changes), body)
}

/// `defaults` without the headers `changes` names, then `changes` (which may repeat a
/// name, for the duplicate-header rows).
fn changed<'a>(
    mut defaults: Vec<(&'a str, &'a str)>,
    changes: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    defaults.retain(|(k, _)| !changes.iter().any(|(name, _)| k.eq_ignore_ascii_case(name)));
    defaults.extend_from_slice(changes);
    defaults
}

/// An admin API request with the admin token and a JSON body, `changes` applied.
fn admin(method: &str, name: &str, changes: &[(&str, &str)], body: &str) -> Vec<u8> {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let headers = vec![
        ("Content-Type", "application/json"),
        ("Authorization", auth.as_str()),
    ];
    request(
        method,
        &format!("/api/v1/connections/{name}"),
        &changed(headers, changes),
        body,
    )
}

fn get(path: &str) -> Vec<u8> {
    request("GET", path, &[], "")
}

/// What the body of a row's answer must be.
enum Want {
    /// A JSON-RPC error response with this code.
    Code(i64),
    /// A JSON-RPC success response.
    Success,
    /// Not JSON-RPC (an admin error, an HTML page, hyper's own refusals): the status
    /// and the row's own checks say it all.
    NotRpc,
}
use Want::{Code, NotRpc, Success};

/// More that a row asserts of its answer.
#[derive(Debug)]
enum Check {
    Has(&'static str),
    Lacks(&'static str),
    /// The header is present, with this value unless it is empty.
    Header(&'static str, &'static str),
    /// The admin API names the offending field.
    Field(&'static str),
    Within(Duration),
    Holds(fn(&Answer) -> bool),
}
use Check::{Field, Has, Header, Holds, Lacks, Within};

impl Check {
    fn verify(&self, a: &Answer) -> Result<(), String> {
        let ok = match self {
            Has(needle) => a.text().contains(needle),
            Lacks(needle) => !a.text().contains(needle),
            Header(name, value) => a
                .header(name)
                .is_some_and(|v| value.is_empty() || v == *value),
            Field(name) => a.json()["field"] == *name,
            Within(limit) => a.elapsed <= *limit,
            Holds(f) => f(a),
        };
        let why = format!(
            "{self:?} fails after {:?}: {:?} {:.300}",
            a.elapsed,
            a.headers,
            a.text()
        );
        ensure(ok, why)
    }
}

/// One request and its exact answer.
struct Row {
    name: &'static str,
    request: Vec<u8>,
    status: u16,
    want: Want,
    checks: Vec<Check>,
}

impl Row {
    fn run(&self, addr: &str) -> Result<(), String> {
        let a = exchange(addr, self.request.clone())?;
        let shown = || format!("{:.300}", a.text());
        if a.status != self.status {
            return Err(format!(
                "status {} (want {}): {}",
                a.status,
                self.status,
                shown()
            ));
        }
        let body = a.json();
        let rpc = body["jsonrpc"] == "2.0";
        match self.want {
            Code(code) if !rpc || body["error"]["code"].as_i64() != Some(code) => {
                return Err(format!("want JSON-RPC error {code}: {}", shown()));
            }
            Success if !rpc || !body["result"].is_object() => {
                return Err(format!("want a JSON-RPC result: {}", shown()));
            }
            _ => {}
        }
        self.checks.iter().try_for_each(|check| check.verify(&a))
    }
}

/// `Ok` when `ok`, else `why`.
fn ensure(ok: bool, why: String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(why) }
}

/// What the rows share: the gateway's address, a live session, a pending OAuth state.
struct Ctx {
    addr: String,
    session: String,
    state: String,
}

impl Ctx {
    fn new(gateway: &Gateway) -> Self {
        let addr = gateway.base.trim_start_matches("http://").to_owned();
        let init = exchange(&addr, mcp("/mcp", None, &[], INIT)).unwrap();
        let session = init.header("mcp-session-id").unwrap().to_owned();
        let start = exchange(&addr, admin("POST", "oa/oauth/start", &[], "")).unwrap();
        let state = start.json()["state"].as_str().unwrap().to_owned();
        Self {
            addr,
            session,
            state,
        }
    }

    /// A POST to `/mcp` in the session.
    fn post(&self, changes: &[(&str, &str)], body: impl AsRef<[u8]>) -> Vec<u8> {
        mcp("/mcp", Some(&self.session), changes, body)
    }
}

fn message(id: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#)
}

fn with_params(method: &str, params: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#)
}

/// The corpus tables: `name => request, status, want, checks…;`, one row a line.
/// rustfmt leaves a brace-delimited macro as written, which keeps each table a table.
macro_rules! rows {
    ($($name:literal => $request:expr, $status:literal, $want:expr $(, $check:expr)*;)*) => {
        vec![$(Row {
            name: $name,
            request: $request,
            status: $status,
            want: $want,
            checks: vec![$($check),*],
        }),*]
    };
}

fn json_rows(c: &Ctx) -> Vec<Row> {
    let (open, close) = ("[".repeat(10_000), "]".repeat(10_000));
    let nested =
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"a":{open}{close}}}}}"#);
    let batch = format!("[{}]", vec![PING; 20_000].join(","));
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"x":"{}"}}}}"#,
        "a".repeat(2 << 20)
    );
    let id_is = |a: &Answer| a.json()["id"] == "a\"b";
    rows! {
        "invalid JSON" => c.post(&[], "{not json"), 400, Code(-32700);
        "truncated JSON" => c.post(&[], &PING[..20]), 400, Code(-32700);
        "10k nested arrays, closed" => c.post(&[], format!("{open}{close}")), 400, Code(-32600);
        "params nested 10k deep" => c.post(&[], nested), 200, Success;
        "a batch" => c.post(&[], format!("[{PING}]")), 400, Code(-32600), Has("batch");
        "a batch of 20k (800 KB)" => c.post(&[], batch), 400, Code(-32600);
        "non-UTF-8 bytes" => c.post(&[], b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\xff\xfe\"}"), 400, Code(-32700);
        "a raw NUL byte" => c.post(&[], PING.replace("ping", "pi\0ng")), 400, Code(-32700);
        "an escaped NUL in method" => c.post(&[], PING.replace("ping", "pi\\u0000ng")), 200, Code(-32601);
        "a UTF-8 BOM" => c.post(&[], format!("\u{feff}{PING}")), 400, Code(-32700);
        "an empty body" => c.post(&[], ""), 400, Code(-32700);
        "{}" => c.post(&[], "{}"), 400, Code(-32600);
        "jsonrpc 1.0" => c.post(&[], PING.replace("2.0", "1.0")), 400, Code(-32600);
        "jsonrpc a number" => c.post(&[], PING.replace("\"2.0\"", "2.0")), 400, Code(-32600);
        "id null" => c.post(&[], message("null")), 400, Code(-32600);
        "id a float" => c.post(&[], message("1.5")), 400, Code(-32600);
        "id an object" => c.post(&[], message("{}")), 400, Code(-32600);
        "id an array" => c.post(&[], message("[1]")), 400, Code(-32600);
        "id a bool" => c.post(&[], message("true")), 400, Code(-32600);
        "id a huge integer, echoed exactly" => c.post(&[], message("123456789012345678901234567890")), 200, Success,
            Has(r#""id":123456789012345678901234567890,"#);
        "id a negative integer" => c.post(&[], message("-7")), 200, Success, Has(r#""id":-7,"#);
        "id a string with escapes" => c.post(&[], message(r#""a\"b""#)), 200, Success, Holds(id_is);
        "method a number" => c.post(&[], PING.replace("\"ping\"", "5")), 400, Code(-32600);
        "tools/call params an array" => c.post(&[], with_params("tools/call", "[1]")), 200, Code(-32602);
        "a duplicate id member" => c.post(&[], PING.replace("\"id\":1", "\"id\":1,\"id\":2")), 400, Code(-32600);
        "a tool name twice in params" => c.post(&[], with_params("tools/call", r#"{"name":"fx__echo","name":"fx__whoami","arguments":{}}"#)),
            200, Code(-32602), Has("more than once");
        "completion ref twice" => c.post(&[], with_params("completion/complete", r#"{"ref":{"type":"ref/prompt","name":"fx__greet"},"ref":{"type":"ref/prompt","name":"fx__other"},"argument":{"name":"a","value":"b"}}"#)),
            200, Code(-32602), Has("more than once");
        "completion ref name twice" => c.post(&[], with_params("completion/complete", r#"{"ref":{"type":"ref/prompt","name":"fx__greet","name":"fx__other"},"argument":{"name":"a","value":"b"}}"#)),
            200, Code(-32602), Has("params.ref has the member");
        "a tool name twice, once as Name" => c.post(&[], with_params("tools/call", r#"{"name":"fx__echo","Name":"fx__whoami","arguments":{}}"#)),
            200, Code(-32602), Has(r#"\"Name\" more than once"#);
        "a tool name twice, once with the long s" => c.post(&[], with_params("tools/call", r#"{"name":"fx__echo","arguments":{},"argument\u017f":{"text":"x"}}"#)),
            200, Code(-32602), Has("more than once");
        "arguments twice in params" => c.post(&[], with_params("tools/call", r#"{"name":"fx__echo","arguments":{"text":"a"},"arguments":{"text":"b"}}"#)),
            200, Code(-32602), Has(r#"\"arguments\" more than once"#);
        "two messages in one body" => c.post(&[], format!("{PING}{PING}")), 400, Code(-32700);
        "2 MiB body over maxRequestBytes" => c.post(&[], big), 413, Code(-32600);
    }
}

fn header_rows(c: &Ctx) -> Vec<Row> {
    let s = c.session.as_str();
    let auth = format!("Bearer {CLIENT_TOKEN}");
    let upper = format!("BEARER {CLIENT_TOKEN}");
    let get_json = [
        ("Authorization", auth.as_str()),
        ("Mcp-Session-Id", s),
        ("Accept", "application/json"),
    ];
    let (long, too_long, sid) = ("a".repeat(100_000), "a".repeat(1 << 20), "A".repeat(8192));
    let many: Vec<String> = (0..200).map(|i| format!("X-H{i}")).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|k| (k.as_str(), "v")).collect();
    let chunked = format!("{:x}\r\n{PING}\r\n0\r\n\r\n", PING.len());
    let json = "application/json";
    // Where a client learns how to sign in (RFC 9728), on every 401.
    let www =
        "Bearer resource_metadata=\"http://127.0.0.1:9/.well-known/oauth-protected-resource/mcp\"";
    rows! {
        "no Content-Type" => c.post(&[("Content-Type", "")], PING), 415, Code(-32600);
        "Content-Type text/plain" => c.post(&[("Content-Type", "text/plain")], PING), 415, Code(-32600);
        "two Content-Type headers" => c.post(&[("Content-Type", json), ("Content-Type", json)], PING), 400, Code(-32600);
        "Accept without event-stream" => c.post(&[("Accept", json)], PING), 406, Code(-32600);
        "GET whose Accept lacks event-stream" => request("GET", "/mcp", &get_json, ""), 406, Code(-32600);
        "unsupported MCP-Protocol-Version" => c.post(&[("MCP-Protocol-Version", "1999-01-01")], PING), 400, Code(-32022),
            Has(r#""supported":["2026-07-28","2025-11-25","2025-06-18","2025-03-26"]"#);
        "2026-07-28 without Mcp-Method" => c.post(&[("MCP-Protocol-Version", "2026-07-28")], MODERN_LIST), 400, Code(-32020),
            Has("Mcp-Method");
        "Mcp-Method that disagrees with the body" => c.post(&[("MCP-Protocol-Version", "2026-07-28"), ("Mcp-Method", "tools/call")], MODERN_LIST),
            400, Code(-32020), Has("does not match");
        "tools/call whose Mcp-Name disagrees" => c.post(&[("MCP-Protocol-Version", "2026-07-28"), ("Mcp-Method", "tools/call"), ("Mcp-Name", "fx__other")], MODERN_CALL),
            400, Code(-32020), Has("Mcp-Name");
        "two Mcp-Name headers" => c.post(&[("MCP-Protocol-Version", "2026-07-28"), ("Mcp-Method", "tools/call"), ("Mcp-Name", "fx__echo"), ("Mcp-Name", "fx__whoami")], MODERN_CALL),
            400, Code(-32600), Has("Mcp-Name");
        "two Mcp-Method headers" => c.post(&[("MCP-Protocol-Version", "2026-07-28"), ("Mcp-Method", "tools/call"), ("Mcp-Method", "tools/list"), ("Mcp-Name", "fx__echo")], MODERN_CALL),
            400, Code(-32600), Has("Mcp-Method");
        "a 2026-07-28 tool name twice" => c.post(&[("MCP-Protocol-Version", "2026-07-28"), ("Mcp-Method", "tools/call"), ("Mcp-Name", "fx__echo")],
            MODERN_CALL.replace(r#""name":"fx__echo""#, r#""name":"fx__echo","name":"fx__whoami""#)), 400, Code(-32602), Has("more than once");
        "a 2026-07-28 clientInfo over 4 KiB" => c.post(&[("MCP-Protocol-Version", "2026-07-28"), ("Mcp-Method", "tools/call"), ("Mcp-Name", "fx__echo")],
            MODERN_CALL.replace(r#""io.modelcontextprotocol/clientCapabilities":{}"#, &format!(r#""io.modelcontextprotocol/clientCapabilities":{{}},"io.modelcontextprotocol/clientInfo":{{"name":"{}","version":"1"}}"#, "n".repeat(5000)))),
            400, Code(-32602), Has("larger than 4096 bytes");
        "2026-07-28 without _meta" => c.post(&[("MCP-Protocol-Version", "2026-07-28"), ("Mcp-Method", "tools/list")], r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#),
            400, Code(-32602), Has("_meta");
        "2026-07-28 body with a 2025 header" => c.post(&[("MCP-Protocol-Version", "2026-07-28"), ("Mcp-Method", "tools/list")], MODERN_LIST.replace("2026-07-28", "2025-11-25")),
            400, Code(-32020);
        "a forged requestState" => c.post(&[("MCP-Protocol-Version", "2026-07-28"), ("Mcp-Method", "tools/call"), ("Mcp-Name", "fx__echo")],
            MODERN_CALL.replace(r#""arguments":{}"#, r#""arguments":{},"requestState":"hawser1:v1:AAAA","inputResponses":{}"#)),
            400, Code(-32602), Has("requestState");
        "two Host headers" => c.post(&[("Host", "127.0.0.1"), ("Host", "evil.example")], PING), 400, Code(-32600),
            Has("Host");
        "a Host not allowed" => c.post(&[("Host", "evil.example")], PING), 403, Code(-32600);
        "Origin http://evil.example" => c.post(&[("Origin", "http://evil.example")], PING), 403, Code(-32600);
        "Origin null" => c.post(&[("Origin", "null")], PING), 403, Code(-32600);
        "Authorization: BEARER" => c.post(&[("Authorization", &upper)], PING), 200, Success;
        "Authorization: Basic" => c.post(&[("Authorization", "Basic Y29ycHVzOnB3")], PING), 401, Code(-32600),
            Header("www-authenticate", www);
        "no Authorization" => c.post(&[("Authorization", "")], PING), 401, Code(-32600), Header("www-authenticate", www);
        "a wrong bearer token" => c.post(&[("Authorization", "Bearer wrong")], PING), 401, Code(-32600);
        "a 100 KB header (within hyper's limit)" => c.post(&[("X-Long", &long)], PING), 200, Success;
        "a 1 MiB header" => c.post(&[("X-Long", &too_long)], PING), 431, NotRpc;
        "200 headers" => c.post(&many, PING), 431, NotRpc;
        "an unknown Mcp-Session-Id" => c.post(&[("Mcp-Session-Id", "nope")], PING), 404, Code(-32600);
        "a garbage Mcp-Session-Id" => c.post(&[("Mcp-Session-Id", "../../etc/passwd%00;'\"")], PING), 404, Code(-32600);
        "an 8 KB Mcp-Session-Id" => c.post(&[("Mcp-Session-Id", &sid)], PING), 404, Code(-32600);
        "a non-ASCII Mcp-Session-Id" => c.post(&[("Mcp-Session-Id", "sé")], PING), 400, Code(-32600);
        "a control byte in Mcp-Session-Id" => c.post(&[("Mcp-Session-Id", "a\u{1}b")], PING), 400, NotRpc;
        "two Mcp-Session-Id headers" => c.post(&[("Mcp-Session-Id", s), ("Mcp-Session-Id", "x")], PING), 400, Code(-32600);
        "no Mcp-Session-Id on a ping" => mcp("/mcp", None, &[], PING), 400, Code(-32600);
        "two different Content-Length" => c.post(&[("Content-Length", "40"), ("Content-Length", "41")], PING), 400, NotRpc;
        "Content-Length and chunked (chunked wins)" =>
            c.post(&[("Content-Length", "5"), ("Transfer-Encoding", "chunked")], chunked), 200, Success;
        "PUT /mcp" => request("PUT", "/mcp", &[], PING), 405, NotRpc, Header("allow", "");
        "a garbage request line" => b"GARBAGE\r\n\r\n".to_vec(), 400, NotRpc;
        // A body that stops short: given up once bodyReadTimeout (2 s) has passed.
        "a body 90 bytes short" => c.post(&[("Content-Length", "100")], "0123456789"), 408, Code(-32600),
            Within(Duration::from_secs(6));
    }
}

fn path_rows(c: &Ctx) -> Vec<Row> {
    let ping = |path| mcp(path, Some(&c.session), &[], PING);
    rows! {
        "/mcp/UPPER" => ping("/mcp/UPPER"), 404, Code(-32600);
        "/mcp/a/b/c (no route)" => ping("/mcp/a/b/c"), 404, NotRpc;
        "/mcp/..%2f" => ping("/mcp/..%2f"), 404, Code(-32600);
        "/mcp/%00" => ping("/mcp/%00"), 404, Code(-32600);
        "/mcp// (no route)" => ping("/mcp//"), 404, NotRpc;
        "an unknown connection" => ping("/mcp/nope"), 404, Code(-32600), Has("nope");
        "/mcp/fx?x=1 initialize" => mcp("/mcp/fx?x=1", None, &[], INIT), 200, Success, Header("mcp-session-id", "");
    }
}

fn initialize_rows(c: &Ctx) -> Vec<Row> {
    let zeros = format!(
        r#"{{"protocolVersion":"2025-11-25","capabilities":{{"x":[{}0]}}}}"#,
        "0,".repeat(5 << 20)
    );
    let deep = format!(
        r#"{{"capabilities":{}{{}}{}}}"#,
        r#"{"a":"#.repeat(20),
        "}".repeat(20)
    );
    let big = format!(r#"{{"capabilities":{{"x":"{}"}}}}"#, "a".repeat(17_000));
    let nul = r#"{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"a\u0000b","version":"1"}}"#;
    let init = |params: &str| mcp("/mcp", None, &[], with_params("initialize", params));
    rows! {
        "capabilities of 10 MB tiny values" => init(&zeros), 413, Code(-32600);
        "capabilities nested 20 deep" => init(&deep), 200, Code(-32602);
        "capabilities an array" => init(r#"{"capabilities":[1]}"#), 200, Code(-32602);
        "capabilities of 17 KB" => init(&big), 200, Code(-32602);
        "clientInfo with a NUL" => init(nul), 200, Success, Header("mcp-session-id", "");
        "params an array" => init("[1]"), 200, Code(-32602);
        "params a string, answered under its id" => init(r#""x""#), 400, Code(-32600), Holds(|a| a.json()["id"] == 1);
        "initialize as a notification" => mcp("/mcp", None, &[], INIT.replace(r#""id":1,"#, "")), 400, Code(-32600);
        "initialize with id null" => mcp("/mcp", None, &[], INIT.replace(r#""id":1"#, r#""id":null"#)), 400, Code(-32600);
        "initialize in a live session" => c.post(&[], INIT), 200, Code(-32600);
    }
}

fn admin_rows() -> Vec<Row> {
    let spec = |rest: &str| format!(r#"{{"url":"http://127.0.0.1:9/mcp"{rest}}}"#);
    let put = |name: &str, rest: &str| admin("PUT", name, &[], &spec(rest));
    rows! {
        "PUT without Content-Type" => admin("PUT", "newc", &[("Content-Type", "")], &spec("")), 415, NotRpc, Has("Content-Type");
        "a policy PUT as text/plain" => request("PUT", "/api/v1/policies/p1", &[("Content-Type", "text/plain"), ("Authorization", &format!("Bearer {ADMIN_TOKEN}"))],
            r#"{"rules":[{"tools":["*"]}]}"#), 415, NotRpc, Has("Content-Type");
        "PUT timeouts.call 99999999999999d" => put("newc", r#","timeouts":{"call":"99999999999999d"}"#), 400, NotRpc,
            Field("timeouts.call");
        "PUT timeouts.call overflowing" => put("newc", r#","timeouts":{"call":"999999999999999999d"}"#), 400, NotRpc,
            Field("timeouts.call");
        "PUT an unknown field" => put("newc", r#","bogus":1"#), 400, NotRpc, Field("bogus"), Has("bogus");
        "PUT invalid JSON" => admin("PUT", "newc", &[], r#"{"url":"#), 400, NotRpc;
        "PUT an empty body" => admin("PUT", "newc", &[], ""), 400, NotRpc;
        "PUT a name with /" => put("a/b", ""), 409, NotRpc;
        "PUT a name with %2F" => put("a%2Fb", ""), 409, NotRpc;
        "PUT an invalid name" => put("UPPER", ""), 400, NotRpc, Field("name");
        "DELETE an unknown connection" => admin("DELETE", "nope", &[], ""), 404, NotRpc;
        "DELETE a file connection" => admin("DELETE", "fx", &[], ""), 409, NotRpc;
        "GET without a token" => admin("GET", "fx", &[("Authorization", "")], ""), 401, NotRpc;
        "GET with a wrong token" => admin("GET", "fx", &[("Authorization", "Bearer wrong")], ""), 401, NotRpc;
    }
}

fn oauth_rows(c: &Ctx) -> Vec<Row> {
    let cb = |query: &str| get(&format!("/oauth/callback{query}"));
    let script = format!(
        "?state={}&error=access_denied&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        c.state
    );
    rows! {
        "callback without state" => cb(""), 400, NotRpc;
        "callback with an unknown state" => cb("?state=nope&code=x"), 400, NotRpc;
        "access_denied with an unknown state" => cb("?state=nope&error=access_denied"), 400, NotRpc;
        "a state of 60 KB" => cb(&format!("?state={}", "s".repeat(60_000))), 400, NotRpc;
        "a state of 100 KB (over hyper's URI limit)" => cb(&format!("?state={}", "s".repeat(100_000))), 414, NotRpc;
        "HTML in error_description is escaped" => cb(&script), 400, NotRpc, Lacks("<script>"), Has("&lt;script&gt;");
        "a state is taken once" => cb(&script), 400, NotRpc, Has("unknown");
    }
}

/// Rows that the corpus found wrong when it was written, each with what JSON-RPC 2.0,
/// MCP 2025-11-25 or HTTP requires.
fn found_defect_rows(c: &Ctx) -> Vec<Row> {
    let short_put = admin("PUT", "slow", &[("Content-Length", "100")], "0123456789");
    let big_put = admin(
        "PUT",
        "big",
        &[],
        &format!(r#"{{"url":"{}"}}"#, "a".repeat(3 << 20)),
    );
    let json_error = |a: &Answer| a.json()["error"].is_string();
    let no_params = r#"{"jsonrpc":"2.0","id":1,"method":"initialize"}"#;
    rows! {
        // JSON-RPC 2.0 §5.1: invalid JSON is -32700 (the batch check answered -32600 first).
        "10k unclosed [ is a parse error" => c.post(&[], "[".repeat(10_000)), 400, Code(-32700);
        // JSON-RPC 2.0 §4.2: params MUST be an array or an object (a string was served).
        "params a string is an invalid request" => c.post(&[], with_params("tools/list", "\"x\"")), 400, Code(-32600), Holds(|a| a.json()["id"] == 1);
        // MCP lifecycle: initialize carries protocolVersion, capabilities and clientInfo.
        "initialize without params is refused" => mcp("/mcp", None, &[], no_params), 200, Code(-32602);
        // RFC 9112 §3.2: a request without Host is a 400, not a 403.
        "no Host header is a 400" => c.post(&[("Host", "")], PING), 400, Code(-32600);
        // RFC 9110 §11.6.1: a 401 MUST carry WWW-Authenticate.
        "admin 401 says how to authenticate" => admin("GET", "fx", &[("Authorization", "")], ""), 401, NotRpc,
            Header("www-authenticate", "");
        // RFC 9110 §15.5.9, as /mcp answers: a body that does not arrive is a 408.
        "admin PUT body 90 bytes short is a 408" => short_put, 408, NotRpc;
        // configuration.md: admin errors are {"error": ...} (this one was text/plain).
        "admin PUT of 3 MiB is a JSON 413" => big_put, 413, NotRpc, Holds(json_error);
    }
}

/// Waits until the server closes `stream` (EOF or reset), for at most `limit`; what it
/// sent meanwhile and how long it took.
fn wait_closed(stream: &mut TcpStream, limit: Duration) -> (bool, Duration, Vec<u8>) {
    let started = Instant::now();
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let (mut data, mut buf) = (Vec::new(), [0u8; 4096]);
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return (true, started.elapsed(), data),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return (true, started.elapsed(), data),
        }
    }
    (false, started.elapsed(), data)
}

/// Headers sent one byte per 500 ms: closed once headerReadTimeout (2 s) has passed,
/// however steadily the bytes come.
fn trickled_headers(c: &Ctx) -> Result<(), String> {
    let mut stream = TcpStream::connect(&c.addr).map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let sender = std::thread::spawn(move || {
        for b in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 0123456789abcdef\r\n\r\n" {
            if stopped.load(Ordering::Relaxed) || writer.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let (closed, elapsed, data) = wait_closed(&mut stream, Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    let _ = sender.join();
    let served = data.starts_with(b"HTTP/1.1 200");
    let why = format!(
        "closed {closed} after {elapsed:?}: {:?}",
        String::from_utf8_lossy(&data)
    );
    ensure(closed && elapsed < Duration::from_secs(6) && !served, why)
}

/// A connection that never sends a byte is closed after headerReadTimeout.
fn silent_connection(c: &Ctx) -> Result<(), String> {
    let mut stream = TcpStream::connect(&c.addr).map_err(|e| e.to_string())?;
    let (closed, elapsed, _) = wait_closed(&mut stream, Duration::from_secs(10));
    let why = format!("closed {closed} after {elapsed:?}");
    ensure(closed && elapsed < Duration::from_secs(6), why)
}

/// maxConnectionsPerClient (20) + 5 connections: the 5 extra are closed at once, the
/// 20 first still serve.
fn connection_cap(c: &Ctx) -> Result<(), String> {
    // Earlier rows' connections are closed; give the server a moment to free them.
    std::thread::sleep(Duration::from_millis(500));
    let mut streams = (0..25)
        .map(|_| TcpStream::connect(&c.addr))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    for (i, extra) in streams[20..].iter_mut().enumerate() {
        let (closed, elapsed, data) = wait_closed(extra, Duration::from_secs(3));
        if !closed || !data.is_empty() || elapsed > Duration::from_secs(2) {
            return Err(format!(
                "extra connection {i}: closed {closed} after {elapsed:?}"
            ));
        }
    }
    for (i, s) in streams[..20].iter_mut().enumerate() {
        let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
        let mut buf = [0u8; 64];
        let n = s
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .and_then(|()| s.read(&mut buf))
            .map_err(|e| format!("connection {i}: {e}"))?;
        if !buf[..n].starts_with(b"HTTP/1.1 200") {
            return Err(format!(
                "connection {i}: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ));
        }
    }
    // The server frees a slot once it sees the close; until then a new connection
    // (the next /healthz) would be one too many.
    drop(streams);
    let freed = Instant::now() + Duration::from_secs(3);
    while exchange(&c.addr, get("/healthz")).map_or(true, |a| a.status != 200) {
        if Instant::now() > freed {
            return Err("slots not freed 3 s after the connections closed".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn bad_input_gets_exact_answers_and_the_gateway_stays_up() {
    let fixture = Fixture::start(&[]);
    let gateway = Gateway::start(&config(&fixture), &[]);
    gateway.wait_ready().await;
    // Everything below is blocking socket I/O against the gateway process; nothing
    // else runs on this test's runtime.
    let c = Ctx::new(&gateway);
    let alive = |after: &str| {
        let ok = exchange(&c.addr, get("/healthz")).is_ok_and(|a| a.status == 200);
        let lines = gateway.child.lines();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        assert!(
            ok,
            "/healthz failed after {after:?}; the gateway's last lines:\n{tail}"
        );
    };
    let rss_before = rss_kib(gateway.child.id());
    let started = Instant::now();

    let mut rows = json_rows(&c);
    rows.extend(header_rows(&c));
    rows.extend(path_rows(&c));
    rows.extend(initialize_rows(&c));
    rows.extend(admin_rows());
    rows.extend(oauth_rows(&c));
    rows.extend(found_defect_rows(&c));
    let mut failures = Vec::new();
    for row in &rows {
        if let Err(e) = row.run(&c.addr) {
            failures.push(format!("{}: {e}", row.name));
        }
        alive(row.name);
    }
    type Probe = fn(&Ctx) -> Result<(), String>;
    let probes: [(&str, Probe); 3] = [
        ("headers trickled one byte per 500 ms", trickled_headers),
        ("a connection that sends nothing", silent_connection),
        ("maxConnectionsPerClient + 5 connections", connection_cap),
    ];
    for (name, probe) in probes {
        if let Err(e) = probe(&c) {
            failures.push(format!("{name}: {e}"));
        }
        alive(name);
    }
    let rss_after = rss_kib(gateway.child.id());

    eprintln!(
        "corpus: {} rows and {} probes in {:?}, {} failed; RSS {rss_before} KiB -> {rss_after} KiB",
        rows.len(),
        probes.len(),
        started.elapsed(),
        failures.len()
    );
    assert!(
        rss_after < rss_before + 50 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB over the corpus"
    );
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
