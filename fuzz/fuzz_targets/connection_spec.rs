//! Bytes as an `McpConnectionSpec` in JSON: the admin API's PUT body, and what the
//! operator reads from a resource. Parsed or refused, never a panic; a spec that
//! parses writes back as a value that parses to the same spec; and resolving it (the
//! validation every source goes through) refuses or accepts without a panic.
#![no_main]

use hawser_crds::McpConnectionSpec;
use hawser_gateway::config::{InlineOnly, Policy, Source, resolve};
use libfuzzer_sys::fuzz_target;

/// Known defect (docs/fuzzing.md): a duration of 2^64 ms or more with a millisecond
/// part is written as one `<n>ms` number that `Duration::parse` refuses.
fn beyond_display(spec: &McpConnectionSpec) -> bool {
    [spec.timeouts.connect, spec.timeouts.call]
        .iter()
        .any(|d| d.get().as_millis() > u128::from(u64::MAX))
}

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<McpConnectionSpec>(data) else {
        return;
    };
    let written = match serde_json::to_value(&spec) {
        Ok(v) => v,
        Err(e) => panic!("a parsed spec does not serialize: {e}"),
    };
    match serde_json::from_value::<McpConnectionSpec>(written.clone()) {
        Ok(again) => assert_eq!(again, spec, "written as {written}"),
        Err(_) if beyond_display(&spec) => {}
        Err(e) => panic!("a written spec does not read back ({e}): {written}"),
    }
    let policy = Policy {
        allow_stdio_from_api: true,
    };
    if let Err(e) = resolve("fuzz", spec, Source::Api, policy, &InlineOnly) {
        let _ = e.to_string();
    }
});
