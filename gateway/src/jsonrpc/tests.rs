//! Tests of `jsonrpc`.

use super::*;

#[test]
fn parses_kinds_and_keeps_parts_raw() {
    let m = Message::parse(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","arguments":{"a":[1, 2]}}}"#).unwrap();
    assert_eq!(m.kind(), Kind::Request);
    assert_eq!(m.method(), "tools/call");
    assert_eq!(
        m.params.unwrap().get(),
        r#"{"name":"x","arguments":{"a":[1, 2]}}"#
    );
    let n = Message::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
    assert_eq!(n.kind(), Kind::Notification);
    let r = Message::parse(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
    assert_eq!(r.kind(), Kind::Response);
}

#[test]
fn rejects_what_is_not_json_rpc() {
    for bad in [
        &b"[]"[..],
        b"{}",
        br#"{"jsonrpc":"1.0","method":"x"}"#,
        b"not json",
        br#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#,
        br#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
    ] {
        assert!(
            Message::parse(bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let e = Message::parse(b"[{}]").unwrap_err();
    assert!(e.message.contains("batches"), "{e}");
    assert_eq!(e.code(), code::INVALID_REQUEST);
    assert_eq!(
        Message::parse(b"{\"jsonrpc\"").unwrap_err().code(),
        code::PARSE_ERROR
    );
    // A request with a null id is invalid, not a notification.
    let e = Message::parse(br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#).unwrap_err();
    assert_eq!(e.code(), code::INVALID_REQUEST);
    // A response to an unreadable request may carry a null id.
    let r = Message::parse(br#"{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"x"}}"#);
    assert!(r.is_ok_and(|m| m.kind() == Kind::Response));
}

#[test]
fn rewriting_the_id_keeps_the_result_bytes() {
    let big = format!(
        r#"{{"content":[{{"type":"text","text":"{}"}}]}}"#,
        "x".repeat(1000)
    );
    let input = format!(r#"{{"jsonrpc":"2.0","id":"up-1","result":{big}}}"#);
    let m = Message::parse(input.as_bytes()).unwrap();
    let out = m.with_id("42");
    let back = Message::parse(&out).unwrap();
    assert_eq!(back.id.unwrap().get(), "42");
    assert_eq!(back.result.unwrap().get(), big);
}

#[test]
fn raw_params_change_one_member_and_keep_the_rest() {
    let raw = RawValue::from_string(
        r#"{"name":"gh__search","arguments":{"q":"a\"b"},"_meta":{"progressToken":1}}"#.into(),
    )
    .unwrap();
    let mut p = RawParams::parse(Some(&raw)).unwrap();
    assert_eq!(p.0.get_str("name").as_deref(), Some("gh__search"));
    p.0.set("name", raw_string("search"));
    assert_eq!(
        p.to_json(),
        r#"{"name":"search","arguments":{"q":"a\"b"},"_meta":{"progressToken":1}}"#
    );
}

#[test]
fn depth_counts_nesting_outside_strings() {
    assert_eq!(depth("1"), 0);
    assert_eq!(depth(r#"{"a":[1,{"b":{}}]}"#), 4);
    assert_eq!(depth(r#"{"a":"[[[[{{{\"]]"}"#), 1);
    assert_eq!(depth(r#"[[],[[]]]"#), 3);
}

#[test]
fn errors_are_well_formed() {
    let e = error(
        Some("3"),
        code::METHOD_NOT_FOUND,
        "no \"such\" method",
        None,
    );
    let m = Message::parse(&e).unwrap();
    assert_eq!(m.kind(), Kind::Response);
    assert_eq!(
        error_summary(m.error.unwrap()),
        (code::METHOD_NOT_FOUND, "no \"such\" method".into())
    );
    let e = error(None, code::PARSE_ERROR, "bad", None);
    assert!(std::str::from_utf8(&e).unwrap().contains(r#""id":null"#));
}

/// `bytes` as a 2026-07-28 client receives them from a legacy upstream.
fn mark_complete(bytes: Bytes) -> Bytes {
    let completed = Message::parse(&bytes).ok().and_then(|m| m.completed(None));
    completed.unwrap_or(bytes)
}

#[test]
fn completed_splices_result_type_into_results_only() {
    let marked = mark_complete(Bytes::from_static(
        br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"x"}]}}"#,
    ));
    let v: serde_json::Value = serde_json::from_slice(&marked).unwrap();
    assert_eq!(v["result"]["resultType"], "complete");
    assert_eq!(v["result"]["content"][0]["text"], "x");
    assert_eq!(v["id"], 7);
    let empty = mark_complete(Bytes::from_static(
        br#"{"jsonrpc":"2.0","id":1,"result":{ }}"#,
    ));
    let v: serde_json::Value = serde_json::from_slice(&empty).unwrap();
    assert_eq!(v["result"], serde_json::json!({"resultType": "complete"}));
    let other_id = Message::parse(br#"{"jsonrpc":"2.0","id":"up-3","result":{"a":"\u00e9"}}"#)
        .unwrap()
        .completed(Some("42"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&other_id).unwrap();
    assert_eq!(v["id"], 42);
    assert_eq!(
        v["result"],
        serde_json::json!({"resultType": "complete", "a": "é"})
    );
    for unchanged in [
        &br#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required"}}"#[..],
        br#"{"jsonrpc":"2.0","id":1,"result":{"result\u0054ype":"task"}}"#,
        br#"{"jsonrpc":"2.0","id":1,"result":[1]}"#,
        br#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"no"}}"#,
        br#"{"jsonrpc":"2.0","method":"notifications/progress"}"#,
        br#"not json"#,
    ] {
        assert_eq!(mark_complete(Bytes::copy_from_slice(unchanged)), unchanged);
    }
}

#[test]
fn params_view_reads_members_in_place_and_rewrites_one() {
    let raw = RawValue::from_string(
        r#"{"name":"fx__echo","arguments":{"text":"a \"b\""},"n\u0061me2":1,"_meta":{"k":[1]}}"#
            .to_owned(),
    )
    .unwrap();
    let view = ParamsView::parse(Some(&raw)).unwrap();
    assert_eq!(view.get_str("name").as_deref(), Some("fx__echo"));
    assert_eq!(
        view.get("arguments").map(RawValue::get),
        Some(r#"{"text":"a \"b\""}"#)
    );
    // An escaped key is decoded (and owned), the others are borrowed.
    assert!(view.get("name2").is_some());
    let renamed = view.with("name", &raw_string("echo"));
    let back: serde_json::Value = serde_json::from_str(renamed.get()).unwrap();
    assert_eq!(
        back,
        serde_json::json!({"name": "echo", "arguments": {"text": "a \"b\""}, "name2": 1, "_meta": {"k": [1]}})
    );
    // Member order is kept; a missing member is appended.
    assert!(renamed.get().starts_with(r#"{"name":"echo","arguments""#));
    let added = view.with("cursor", &raw_string("c"));
    assert!(added.get().ends_with(r#""cursor":"c"}"#));
    let kept = view.only(|k| k != "_meta");
    assert!(!kept.get().contains("_meta"));
    assert_eq!(ParamsView::parse(None).unwrap().0.len(), 0);
    for bad in ["[1]", "\"x\"", "null"] {
        let raw = RawValue::from_string(bad.to_owned()).unwrap();
        assert!(ParamsView::parse(Some(&raw)).is_err(), "{bad}");
    }
}

#[test]
fn names_differing_only_in_case_are_one_member() {
    assert!(same_name("name", "Name"));
    assert!(same_name("arguments", "ARGUMENTS"));
    assert!(same_name("arguments", "argument\u{17f}"), "the long s");
    assert!(same_name("task", "tas\u{212a}"), "the Kelvin sign");
    assert!(!same_name("name", "names"));
    assert!(!same_name("uri", "url"));
    let raw = RawValue::from_string(r#"{"name":"a","arguments":{},"NAME":"b"}"#.into()).unwrap();
    let view = ParamsView::parse(Some(&raw)).unwrap();
    assert_eq!(view.repeated(), Some("NAME"));
}
