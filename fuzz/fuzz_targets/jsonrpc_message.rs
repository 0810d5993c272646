//! Bytes from a client or an upstream as one JSON-RPC envelope (`jsonrpc::Message`):
//! parsed or refused, never a panic. An accepted message is re-written with the
//! gateway's id, as every forwarded request and restored response is, and must read
//! back with the same method and the same params, result and error bytes.
#![no_main]

use hawser_gateway::jsonrpc::{Message, RawParams, depth};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = depth(text);
    }
    let Ok(message) = Message::parse(data) else {
        return;
    };
    let _ = message.kind();
    if let Ok(params) = RawParams::parse(message.params) {
        let _ = params.0.get_str("name");
        let _ = params.to_raw();
    }
    let out = message.with_id("\"h0-1\"");
    let back = match Message::parse(&out) {
        Ok(back) => back,
        Err(e) => panic!("rewritten message does not parse ({e}): {out:?}"),
    };
    assert_eq!(back.id.map(RawValue::get), Some("\"h0-1\""));
    assert_eq!(back.method, message.method);
    assert_eq!(
        back.params.map(RawValue::get),
        message.params.map(RawValue::get)
    );
    assert_eq!(
        back.result.map(RawValue::get),
        message.result.map(RawValue::get)
    );
    assert_eq!(
        back.error.map(RawValue::get),
        message.error.map(RawValue::get)
    );
});
