//! Property tests of everything that parses outside input: JSON-RPC envelopes from
//! clients and upstreams, `Authorization` headers, sealed values read back from the
//! store, config files, connection specs and durations. Each must turn any input into
//! a value or an error, never a panic (a panic on a request is a dropped connection;
//! on a config or spec, a crashed replica), and what is written must read back as it
//! was. A few hundred cases each; inputs that once broke a property are pinned in
//! tests of their own.

use std::collections::BTreeMap;

use hawser_crds::{Duration, McpConnectionSpec};
use hawser_gateway::config::{Flags, Settings};
use hawser_gateway::crypto::{IdHash, Keyring};
use hawser_gateway::headers::bearer;
use hawser_gateway::jsonrpc::{Kind, Message, depth};
use hawser_gateway::store::postgres::storable;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::Value;

/// Enough cases to find edge cases, few enough for the normal test run; no
/// regression files written next to the sources.
fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Any JSON value, strings drawn from all of Unicode (NUL included).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            // Keys without a backslash: escaping a NUL cannot make two keys collide.
            btree_map("[a-z\0é]{0,4}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// How deeply arrays and objects nest (a scalar is 0).
fn nesting(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(nesting).max().unwrap_or(0),
        Value::Object(members) => 1 + members.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

/// Every string of a value, keys included.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
        Value::Object(members) => members.iter().for_each(|(k, v)| {
            out.push(k.clone());
            strings(v, out);
        }),
        _ => {}
    }
}

/// `v` with every NUL written as the six characters `\u0000`, in keys and values.
fn nul_escaped(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace('\0', "\\u0000")),
        Value::Array(items) => Value::Array(items.iter().map(nul_escaped).collect()),
        Value::Object(members) => Value::Object(
            members
                .iter()
                .map(|(k, v)| (k.replace('\0', "\\u0000"), nul_escaped(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Text that is nearly JSON-RPC: the tokens of an envelope in any order, so the
/// parser is driven past its first byte into every branch.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just("{"),
        Just("}"),
        Just("["),
        Just("]"),
        Just(":"),
        Just(","),
        Just(" "),
        Just("\"jsonrpc\""),
        Just("\"2.0\""),
        Just("\"id\""),
        Just("\"method\""),
        Just("\"params\""),
        Just("\"result\""),
        Just("\"error\""),
        Just("null"),
        Just("-0"),
        Just("1.5e3"),
        Just("123456789012345678901234567890"),
        Just("\"\\u0000\""),
        Just("\"\\ud800\""),
        Just("\u{feff}"),
        Just("\0"),
    ];
    vec(token, 0..40).prop_map(|t| t.concat().into_bytes())
}

fn id_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        "[1-9][0-9]{0,40}",
        any::<String>().prop_map(|s| Value::String(s).to_string()),
    ]
}

/// A value as compact or pretty JSON text: the envelope keeps whichever it was sent.
fn json_text() -> impl Strategy<Value = String> {
    pretty_or_compact(json_value().prop_filter("null params are absent params", |v| !v.is_null()))
}

/// Params: an object or an array, as JSON-RPC 2.0 §4.2 requires.
fn params_text() -> impl Strategy<Value = String> {
    pretty_or_compact(
        json_value().prop_filter("params are an object or an array", |v| {
            v.is_object() || v.is_array()
        }),
    )
}

fn pretty_or_compact(values: impl Strategy<Value = Value>) -> impl Strategy<Value = String> {
    (values, any::<bool>()).prop_map(|(v, pretty)| match pretty {
        true => serde_json::to_string_pretty(&v).unwrap(),
        false => v.to_string(),
    })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn a_message_parses_or_is_refused_whatever_the_bytes(
        bytes in prop_oneof![vec(any::<u8>(), 0..256), jsonish()]
    ) {
        if let Ok(m) = Message::parse(&bytes) {
            // Whatever was accepted can be written again and read back.
            let again = m.with_id("\"gw-1\"");
            prop_assert!(Message::parse(&again).is_ok(), "{}", String::from_utf8_lossy(&again));
        }
    }

    #[test]
    fn a_request_keeps_its_id_method_and_params_bytes(
        id in id_text(),
        method in any::<String>(),
        params in proptest::option::of(params_text()),
        order in Just(vec![0usize, 1, 2, 3]).prop_shuffle(),
    ) {
        let method_json = Value::String(method.clone()).to_string();
        let members = [
            Some(r#""jsonrpc":"2.0""#.to_owned()),
            Some(format!(r#""id":{id}"#)),
            Some(format!(r#""method":{method_json}"#)),
            params.as_ref().map(|p| format!(r#""params":{p}"#)),
        ];
        let members: Vec<String> = order.iter().filter_map(|&i| members[i].clone()).collect();
        let input = format!("{{{}}}", members.join(","));
        let m = Message::parse(input.as_bytes()).unwrap();
        prop_assert_eq!(m.kind(), Kind::Request);
        prop_assert_eq!(m.id.unwrap().get(), id.as_str());
        prop_assert_eq!(m.method(), method.as_str());
        prop_assert_eq!(m.params.map(|p| p.get()), params.as_deref());
        // The gateway's id goes upstream; nothing else may change.
        let out = m.with_id("\"h1-7\"");
        let back = Message::parse(&out).unwrap();
        prop_assert_eq!(back.id.unwrap().get(), "\"h1-7\"");
        prop_assert_eq!(back.method(), method.as_str());
        prop_assert_eq!(back.params.map(|p| p.get()), params.as_deref());
    }

    #[test]
    fn scalar_params_are_an_invalid_request(
        params in json_value().prop_filter("a scalar", |v| !v.is_object() && !v.is_array() && !v.is_null()),
    ) {
        let input = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{params}}}"#);
        let e = Message::parse(input.as_bytes()).unwrap_err();
        prop_assert_eq!(e.code(), -32600);
    }

    #[test]
    fn a_response_keeps_its_result_bytes(id in id_text(), result in json_text()) {
        let input = format!(r#"{{"id":{id},"result":{result},"jsonrpc":"2.0"}}"#);
        let m = Message::parse(input.as_bytes()).unwrap();
        prop_assert_eq!(m.kind(), Kind::Response);
        let back = m.with_id(&id);
        let back = Message::parse(&back).unwrap();
        prop_assert_eq!(back.result.unwrap().get(), result.as_str());
        prop_assert_eq!(back.id.unwrap().get(), id.as_str());
    }

    #[test]
    fn depth_is_the_nesting_of_the_value(v in json_value(), pretty in any::<bool>()) {
        let text = match pretty {
            true => serde_json::to_string_pretty(&v).unwrap(),
            false => v.to_string(),
        };
        prop_assert_eq!(depth(&text), nesting(&v));
    }

    #[test]
    fn depth_takes_any_text(text in any::<String>()) {
        prop_assert!(depth(&text) <= text.len());
    }

    #[test]
    fn storable_json_is_json_without_nul_and_changes_nothing_else(v in json_value()) {
        let text = v.to_string();
        let (out, escaped) = storable::json(&text);
        let back: Value = serde_json::from_str(&out).unwrap();
        let mut found = Vec::new();
        strings(&back, &mut found);
        prop_assert!(found.iter().all(|s| !s.contains('\0')), "{}", out);
        let mut before = Vec::new();
        strings(&v, &mut before);
        let had_nul = before.iter().any(|s| s.contains('\0'));
        prop_assert_eq!(escaped, had_nul);
        if had_nul {
            // Compared with the text read back, not `v`: floats need not round-trip.
            let read: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(back, nul_escaped(&read));
        } else {
            prop_assert_eq!(&*out, text.as_str());
        }
    }

    /// Lone surrogates cannot be in a Rust string, so this text is made of escapes.
    #[test]
    fn storable_json_neutralizes_lone_surrogates(
        pieces in vec(prop_oneof![
            Just("a"), Just("é"), Just("\\u0041"), Just("\\u0000"), Just("\\ud800"),
            Just("\\uDFFF"), Just("\\ud83d\\ude00"), Just("\\\\"), Just("\\\\u0000"),
            Just("\\\""), Just("\\n"),
        ], 0..12)
    ) {
        let text = format!(r#"{{"k{0}":["{0}"]}}"#, pieces.concat());
        let (out, escaped) = storable::json(&text);
        let back: Value = serde_json::from_str(&out)
            .map_err(|e| TestCaseError::fail(format!("{e}: {out}")))?;
        let mut found = Vec::new();
        strings(&back, &mut found);
        prop_assert!(found.iter().all(|s| !s.contains('\0')), "{}", out);
        // serde_json refuses lone surrogates: what it refuses or reads as NUL is what
        // had to change.
        let must_change = serde_json::from_str::<Value>(&text).map_or(true, |v| {
            let mut s = Vec::new();
            strings(&v, &mut s);
            s.iter().any(|s| s.contains('\0'))
        });
        prop_assert_eq!(escaped, must_change, "{} -> {}", text, out);
        if !must_change {
            prop_assert_eq!(&*out, text.as_str());
        }
    }

    #[test]
    fn bearer_takes_any_header_value(value in vec(any::<u8>(), 0..64)) {
        let mut h = http::HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_bytes(&value) {
            h.insert(http::header::AUTHORIZATION, v);
        }
        if let Some(token) = bearer(&h) {
            prop_assert!(!token.is_empty() && token.trim() == token);
            let text = std::str::from_utf8(&value).unwrap();
            let scheme = text.trim_start().split(' ').next().unwrap();
            prop_assert!(scheme.eq_ignore_ascii_case("bearer"), "{:?}", text);
        }
    }

    #[test]
    fn bearer_reads_the_token_in_any_scheme_case(
        scheme in "[bB][eE][aA][rR][eE][rR]",
        spaces in "[ ]{1,3}",
        token in "[!-~]{1,40}",
        padding in "[ ]{0,2}",
    ) {
        let mut h = http::HeaderMap::new();
        let value = format!("{padding}{scheme}{spaces}{token}{padding}");
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        prop_assert_eq!(bearer(&h), Some(token.as_str()));
    }
}

proptest! {
    // AES-GCM is quick, but each case makes a keyring.
    #![proptest_config(config(256))]

    #[test]
    fn sealed_values_unseal_only_in_their_context(
        plain in vec(any::<u8>(), 0..256),
        context in ".{0,40}",
        other in ".{0,40}",
    ) {
        let keys = Keyring::parse(&Keyring::generate_entry()).unwrap();
        let sealed = keys.seal(&plain, &context);
        prop_assert_eq!(keys.unseal(&sealed, &context).unwrap(), plain);
        if other != context {
            prop_assert!(keys.unseal(&sealed, &other).is_err());
        }
    }

    #[test]
    fn unsealing_any_text_fails_cleanly(
        text in prop_oneof![".{0,80}", "enc:v1:(k1|zz|):[A-Za-z0-9+/=]{0,64}"]
    ) {
        let keys = Keyring::parse("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        prop_assert!(keys.unseal(&text, "ctx").is_err());
        let _ = keys.unseal_string(&text, "ctx");
        let _ = keys.needs_reseal(&text);
        let _ = Keyring::parse(&text);
    }

    #[test]
    fn an_id_hash_reads_back_from_its_hex(secret in any::<String>(), hex in ".{0,70}") {
        let h = IdHash::of(&secret);
        prop_assert_eq!(h.to_hex().len(), 64);
        prop_assert_eq!(IdHash::from_hex(&h.to_hex()), Some(h));
        prop_assert_eq!(IdHash::from_hex(&h.to_hex().to_uppercase()), Some(h));
        let _ = IdHash::from_hex(&hex);
    }

    #[test]
    fn only_hex_digits_read_as_an_id_hash(hex in "[0-9a-fA-F]{64}") {
        prop_assert_eq!(IdHash::from_hex(&hex).unwrap().to_hex(), hex.to_lowercase());
    }
}

/// Fragments of config files, valid and not: keys at several depths, flow and block
/// collections, anchors, tags, odd scalars.
fn yamlish() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just("listen: 127.0.0.1:8080"),
        Just("listen: [::1]:0"),
        Just("adminToken: {env: ADMIN}"),
        Just("publicUrl: 'http://x/'"),
        Just("security: {allowedHosts: ['*'], allowedOrigins: [null]}"),
        Just("http:"),
        Just("  maxRequestBytes: 99999999999999999999999"),
        Just("  headerReadTimeout: 1s"),
        Just("  bodyReadTimeout: 0s"),
        Just("clientAuth: {type: bearer, tokens: [{subject: a, sha256: zz}]}"),
        Just("audit: {retention: 30d, bufferSize: -1, redactKeys: []}"),
        Just("sessions: {idleTimeout: 99999999999999999999d}"),
        Just("connections:"),
        Just("  - name: a"),
        Just("    url: http://127.0.0.1:1/mcp"),
        Just("    transport: stdio"),
        Just("    command: /bin/true"),
        Just("    auth: {type: oauth2, grant: client_credentials, clientId: ''}"),
        Just("    auth: {type: header, headers: {Host: x}}"),
        Just("    timeouts: {call: 99999999999999d}"),
        Just("    tools: {include: ['[', '{a,'], exclude: ~}"),
        Just("x: &a [*a]"),
        Just("y: *nothing"),
        Just("!!binary aGk="),
        Just("? [complex, key]"),
        Just("- - -"),
        Just("--- !tag"),
        Just("..."),
        Just("%YAML 1.2"),
        Just("key: |"),
        Just("key: >-"),
        Just("\t"),
        Just("{"),
        Just("]"),
        Just("'"),
        Just("\""),
        Just("~"),
        Just(".inf"),
        Just("0x1F"),
        Just("1e400"),
        Just("\u{feff}"),
        Just("\0"),
    ];
    vec((fragment, "[ ]{0,4}"), 0..16).prop_map(|lines| {
        lines
            .into_iter()
            .map(|(f, indent)| format!("{indent}{f}"))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

proptest! {
    // Each case writes the file and resolves every section.
    #![proptest_config(config(256))]

    /// Through `Settings::load`, the gateway's own path from a file to settings.
    #[test]
    fn any_config_file_loads_or_is_refused(text in prop_oneof![yamlish(), ".{0,200}"]) {
        let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        std::fs::write(file.path(), &text).unwrap();
        let flags = Flags { config: Some(file.path().to_owned()), ..Flags::default() };
        let env = BTreeMap::from([("ADMIN".to_owned(), "an-admin-token-long-enough".to_owned())]);
        if let Err(e) = Settings::load(&flags, &env) {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}

/// A duration as written: 1 to 3 `<digits><unit>` parts, the numbers of any size.
fn duration_text() -> impl Strategy<Value = String> {
    let unit = prop_oneof![Just("ms"), Just("s"), Just("m"), Just("h"), Just("d")];
    let number = prop_oneof![0u64..100_000, any::<u64>()];
    vec((number, unit), 1..4).prop_map(|parts| {
        parts
            .into_iter()
            .map(|(n, u)| format!("{n}{u}"))
            .collect::<String>()
    })
}

/// A duration whose every part fits in a u64 of milliseconds: what the gateway's own
/// settings can be (the longest, `timeouts.call`, is bounded at a day).
fn sane_duration_text() -> impl Strategy<Value = String> {
    let unit = prop_oneof![Just("ms"), Just("s"), Just("m"), Just("h"), Just("d")];
    vec((0u64..1_000_000_000, unit), 1..4).prop_map(|parts| {
        parts
            .into_iter()
            .map(|(n, u)| format!("{n}{u}"))
            .collect::<String>()
    })
}

/// A spec-shaped JSON object: the schema's members, each sometimes absent, sometimes
/// of the wrong shape.
fn spec_json() -> impl Strategy<Value = Value> {
    use serde_json::json;
    let text = prop_oneof![Just("http://127.0.0.1:1/mcp".to_owned()), ".{0,12}"];
    let secret = prop_oneof![
        ".{0,8}".prop_map(Value::from),
        "[A-Z_]{1,8}".prop_map(|v| json!({"env": v})),
        ("[a-z]{1,5}", "[a-z]{1,5}")
            .prop_map(|(n, k)| json!({"secretKeyRef": {"name": n, "key": k}})),
        Just(json!({"env": "A", "x": 1})),
    ];
    let auth = prop_oneof![
        Just(json!({"type": "none"})),
        secret
            .clone()
            .prop_map(|t| json!({"type": "bearer", "token": t})),
        btree_map("[A-Za-z-]{1,8}", secret.clone(), 0..3)
            .prop_map(|h| json!({"type": "header", "headers": h})),
        (secret, vec("[a-z.]{1,6}", 0..3), any::<bool>()).prop_map(|(s, scopes, post)| {
            json!({"type": "oauth2", "grant": "client_credentials", "clientId": "c",
                   "clientSecret": s, "scopes": scopes,
                   "endpointAuth": if post { "post" } else { "basic" },
                   "tokenUrl": "https://a/t"})
        }),
        Just(json!({"type": "bearer"})),
        Just(json!({"type": "magic"})),
    ];
    let transport = prop_oneof![
        Just("streamableHttp"),
        Just("sse"),
        Just("stdio"),
        Just("grpc")
    ];
    let globs = vec(".{0,6}", 0..3);
    (
        (
            proptest::option::of(text.clone()),
            proptest::option::of(text.clone()),
            proptest::option::of(transport),
            proptest::option::of(text),
        ),
        (
            proptest::option::of(vec(".{0,6}", 0..3)),
            proptest::option::of(btree_map("[A-Z]{1,4}", ".{0,6}", 0..3)),
            proptest::option::of(auth),
            proptest::option::of("[a-z0-9-]{0,10}"),
        ),
        (
            proptest::option::of((globs.clone(), globs)),
            proptest::option::of((sane_duration_text(), sane_duration_text())),
            proptest::option::of(Just(json!({"bogus": true}))),
        ),
    )
        .prop_map(
            |(
                (name, url, transport, command),
                (args, env, auth, prefix),
                (tools, timeouts, junk),
            )| {
                let mut spec = serde_json::Map::new();
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        spec.insert(k.to_owned(), v);
                    }
                };
                put("name", name.map(Value::from));
                put("url", url.map(Value::from));
                put("transport", transport.map(Value::from));
                put("command", command.map(Value::from));
                put("args", args.map(|a| json!(a)));
                put("env", env.map(|e| json!(e)));
                put("auth", auth);
                put("toolPrefix", prefix.map(Value::from));
                put(
                    "tools",
                    tools.map(|(i, e)| json!({"include": i, "exclude": e})),
                );
                put(
                    "timeouts",
                    timeouts.map(|(c, t)| json!({"connect": c, "call": t})),
                );
                put("junk", junk);
                Value::Object(spec)
            },
        )
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn any_bytes_are_a_spec_or_an_error(bytes in prop_oneof![vec(any::<u8>(), 0..128), jsonish()]) {
        let _ = serde_json::from_slice::<McpConnectionSpec>(&bytes);
    }

    #[test]
    fn a_spec_that_reads_writes_back_the_same(v in spec_json()) {
        if let Ok(spec) = serde_json::from_value::<McpConnectionSpec>(v) {
            let written = serde_json::to_value(&spec).unwrap();
            let again: McpConnectionSpec = serde_json::from_value(written.clone())
                .map_err(|e| TestCaseError::fail(format!("{e}: {written}")))?;
            prop_assert_eq!(&again, &spec);
            prop_assert_eq!(serde_json::to_value(&again).unwrap(), written);
        }
    }

    #[test]
    fn any_text_is_a_duration_or_an_error(text in prop_oneof![".{0,24}", duration_text()]) {
        if let Ok(d) = Duration::parse(&text) {
            prop_assert!(!d.get().is_zero());
        }
    }

    #[test]
    fn a_duration_reads_back_from_its_display(text in sane_duration_text()) {
        if let Ok(d) = Duration::parse(&text) {
            prop_assert_eq!(Duration::parse(&d.to_string()), Ok(d), "{} shown as {}", text, d);
        }
    }

    #[test]
    fn durations_made_from_numbers_read_back(n in 0..=36_500 * 86_400u64, millis in any::<bool>()) {
        let d = if millis { Duration::from_millis(n * 1000 + n % 1000) } else { Duration::from_secs(n) };
        if !d.get().is_zero() {
            prop_assert_eq!(Duration::parse(&d.to_string()), Ok(d));
        }
    }
}

/// `Duration`'s `Display` wrote a duration of 2^64 ms or more with a millisecond part
/// as one `<n>ms` number, which `parse` refused: the spec did not read back what it
/// wrote. Durations are now at most 36500d, and the longest reads back.
#[test]
fn a_huge_duration_is_refused_and_the_longest_reads_back_from_its_display() {
    let e = Duration::parse("18446744073709551615s1ms")
        .unwrap_err()
        .to_string();
    assert!(e.contains("at most 36500d"), "{e}");
    let longest = Duration::parse("36500d").unwrap();
    assert_eq!(
        Duration::parse(&longest.to_string()),
        Ok(longest),
        "shown as {longest}"
    );
    let longest_ms = Duration::parse("36499d86399s999ms").unwrap();
    assert_eq!(
        Duration::parse(&longest_ms.to_string()),
        Ok(longest_ms),
        "shown as {longest_ms}"
    );
    assert!(Duration::parse("36500d1ms").is_err());
}

/// `u8::from_str_radix` takes a leading `+`, so `from_hex` read 64 characters that
/// are not hex digits as a hash (`+0` pairs), and `to_hex` did not give them back.
#[test]
fn a_signed_hex_string_is_not_an_id_hash() {
    let signed = "+0".repeat(32);
    assert_eq!(IdHash::from_hex(&signed), None, "{signed:?} read as a hash");
}

/// `http.headerReadTimeout` had no upper bound: `200000000000000d` loaded, and then
/// every connection's task panicked in hyper's timer ("overflow when adding duration
/// to instant"), so the gateway listened but answered nothing, `/healthz` included.
#[test]
fn a_header_read_timeout_past_the_clock_is_refused() {
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(file.path(), "http: {headerReadTimeout: 200000000000000d}\n").unwrap();
    let flags = Flags {
        config: Some(file.path().to_owned()),
        ..Flags::default()
    };
    let loaded = Settings::load(&flags, &BTreeMap::<String, String>::new());
    assert!(loaded.is_err(), "accepted: {:?}", loaded.map(|s| s.http));
    std::fs::write(file.path(), "http: {headerReadTimeout: 11m}\n").unwrap();
    let e = Settings::load(&flags, &BTreeMap::<String, String>::new()).unwrap_err();
    assert!(
        e.to_string().contains("http.headerReadTimeout") && e.to_string().contains("at most 10m"),
        "{e}"
    );
}

/// Object keys as clients write them: pieces of the default sensitive keys in any
/// case, joined by `-` or `_`, mixed with other text, non-ASCII letters among them
/// (the Kelvin sign lowercases to an ASCII `k`).
fn audited_key() -> impl Strategy<Value = String> {
    let fixed = proptest::sample::select(vec![
        "pass",
        "word",
        "api",
        "key",
        "\u{212a}ey",
        "Token",
        "SECRET",
        "cook",
        "ie",
        "-",
        "_",
        "é",
    ])
    .prop_map(str::to_owned);
    let piece = prop_oneof![12 => fixed, 1 => "[a-zA-Z]{1,4}", 1 => ".{0,3}"];
    vec(piece, 1..5).prop_map(|p| p.concat())
}

fn audited_params() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![Just(Value::Null), ".{0,8}".prop_map(Value::from)];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..3).prop_map(Value::Array),
            btree_map(audited_key(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(config(1024))]

    /// The audit log skips decoding parameters the prefilter clears; a key it cleared
    /// that redaction would have hidden would put a secret in an audit row.
    #[test]
    fn the_redaction_prefilter_never_clears_a_sensitive_key(params in audited_params()) {
        let keys: Vec<String> = hawser_gateway::config::DEFAULT_REDACTED_KEYS
            .iter()
            .map(|k| (*k).to_owned())
            .collect();
        let redactor = hawser_gateway::audit::Redactor::new(&keys);
        let text = params.to_string();
        let mut redacted = params.clone();
        redactor.redact(&mut redacted);
        if redacted != params {
            prop_assert!(redactor.may_need(text.as_bytes()), "cleared: {text}");
        }
    }
}

/// Any audit event: texts from all of Unicode (quotes, backslashes, control
/// characters), members present or not, any duration (non-finite ones too).
fn audit_event() -> impl Strategy<Value = hawser_gateway::store::AuditEvent> {
    // `(?s)`: `.` takes line breaks too.
    let text = || "(?s).{0,12}";
    let some = || proptest::option::of("(?s).{0,12}");
    let texts = (
        (text(), text(), some(), text(), some(), some()),
        (
            vec("(?s).{0,6}", 0..3),
            some(),
            some(),
            text(),
            some(),
            some(),
        ),
        (some(), some(), some()),
    );
    let numbers = (
        any::<i64>(),
        any::<bool>(),
        // `any::<f64>()` draws no NaN or infinity; serde writes those as `null`.
        proptest::num::f64::ANY,
        proptest::option::of(any::<i64>()),
        proptest::option::of(any::<i64>()),
        proptest::option::of(any::<i32>()),
        proptest::option::of(any::<i32>()),
    );
    (texts, numbers, proptest::option::of(json_value())).prop_map(
        |(
            ((event_id, request_id, session, replica, subject, auth_type), rest, last),
            (
                ts,
                success,
                duration_ms,
                request_bytes,
                response_bytes,
                content_blocks,
                progress_count,
            ),
            params,
        )| {
            let (groups, remote_addr, user_agent, method, connection, target) = rest;
            let (error_category, error_message, token_subject) = last;
            hawser_gateway::store::AuditEvent {
                event_id,
                ts: hawser_gateway::clock::Timestamp::from_millis(ts),
                request_id,
                session,
                replica,
                subject,
                auth_type,
                groups,
                remote_addr,
                user_agent,
                method,
                connection,
                target,
                params: params.map(|p| hawser_gateway::store::AuditParams::value(&p)),
                success,
                error_category,
                error_message,
                duration_ms,
                request_bytes,
                response_bytes,
                content_blocks,
                progress_count,
                token_subject,
            }
        },
    )
}

proptest! {
    #![proptest_config(config(512))]

    /// A spool line is read back with serde: the spool's own writer must produce
    /// exactly the text serde would.
    #[test]
    fn the_spool_writes_an_event_as_serde_would(event in audit_event()) {
        let mut ours = Vec::new();
        hawser_gateway::audit::spool::write_event(&mut ours, &event);
        let serde = serde_json::to_vec(&event).unwrap();
        prop_assert_eq!(ours, serde);
    }
}
