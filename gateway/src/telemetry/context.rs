//! W3C Trace Context: the `traceparent` (and `tracestate`) a request carries, in its
//! headers or, as SEP-414 puts it for MCP, in `params._meta`; and the one Hawser
//! sends upstream.

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use serde_json::value::RawValue;

/// Longest `tracestate` passed on (W3C: 32 members of at most 256 characters is
/// allowed, but vendors keep it short; a longer one is dropped, not cut).
const MAX_TRACESTATE: usize = 512;

/// A caller's trace context, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// 32 lower-case hex digits, not all zero.
    pub trace_id: String,
    /// 16 lower-case hex digits, not all zero: the caller's span.
    pub parent_id: String,
    /// The trace flags byte (bit 0: sampled).
    pub flags: u8,
    /// `tracestate`, passed on as it came.
    pub state: Option<String>,
}

fn hex(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl TraceParent {
    /// A valid version-00 `traceparent` (with its `tracestate`, when sane).
    pub fn parse(value: &str, state: Option<&str>) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (Some(version), Some(trace), Some(parent), Some(flags), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let valid = version == "00"
            && hex(trace, 32)
            && hex(parent, 16)
            && hex(flags, 2)
            && trace.bytes().any(|b| b != b'0')
            && parent.bytes().any(|b| b != b'0');
        if !valid {
            return None;
        }
        let state = state
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= MAX_TRACESTATE)
            .filter(|s| s.bytes().all(|b| (0x20..=0x7e).contains(&b)))
            .map(str::to_owned);
        Some(Self {
            trace_id: trace.to_ascii_lowercase(),
            parent_id: parent.to_ascii_lowercase(),
            flags: u8::from_str_radix(flags, 16).ok()?,
            state,
        })
    }

    /// The context in a request's `params._meta` (`traceparent`, `tracestate`), if
    /// any. Only looked for when the text mentions it: most requests carry none.
    pub fn of_meta(params: Option<&RawValue>) -> Option<Self> {
        let params = params?;
        find_bytes!(params.get().as_bytes(), b"traceparent")?;
        #[derive(serde::Deserialize)]
        struct Params<'a> {
            #[serde(rename = "_meta", borrow)]
            meta: Option<&'a RawValue>,
        }
        #[derive(serde::Deserialize)]
        struct Meta {
            traceparent: Option<String>,
            tracestate: Option<String>,
        }
        let params: Params<'_> = serde_json::from_str(params.get()).ok()?;
        let meta: Meta = serde_json::from_str(params.meta?.get()).ok()?;
        Self::parse(meta.traceparent.as_deref()?, meta.tracestate.as_deref())
    }

    /// Whether the caller recorded its side of the trace.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The caller's span as OpenTelemetry's remote parent.
    pub fn to_span_context(&self) -> Option<SpanContext> {
        let trace_id = TraceId::from_hex(&self.trace_id).ok()?;
        let span_id = SpanId::from_hex(&self.parent_id).ok()?;
        let state = self
            .state
            .as_deref()
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default();
        Some(SpanContext::new(
            trace_id,
            span_id,
            TraceFlags::new(self.flags),
            true,
            state,
        ))
    }
}

/// The `traceparent` naming `span` of `trace` as the parent.
pub fn traceparent(trace_id: &str, span_id: &str, flags: u8) -> String {
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    out.push_str(trace_id);
    out.push('-');
    out.push_str(span_id);
    out.push('-');
    out.push(char::from(HEX[usize::from(flags >> 4)]));
    out.push(char::from(HEX[usize::from(flags & 0xf)]));
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The `traceparent` of an OpenTelemetry span.
pub fn traceparent_of(span: &SpanContext) -> String {
    traceparent(
        &span.trace_id().to_string(),
        &span.span_id().to_string(),
        span.trace_flags().to_u8(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn valid_contexts_parse_and_invalid_ones_do_not() {
        let t = TraceParent::parse(TP, Some("vendor=value")).unwrap();
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_id, "00f067aa0ba902b7");
        assert!(t.sampled());
        assert_eq!(t.state.as_deref(), Some("vendor=value"));
        for bad in [
            "garbage",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        ] {
            assert_eq!(TraceParent::parse(bad, None), None, "{bad}");
        }
        let unsampled = TraceParent::parse(&TP.replace("-01", "-00"), Some("a=\u{1}")).unwrap();
        assert!(!unsampled.sampled());
        assert_eq!(
            unsampled.state, None,
            "a tracestate with control characters is dropped"
        );
    }

    #[test]
    fn the_meta_field_carries_a_context_as_sep_414_says() {
        let params = RawValue::from_string(format!(
            r#"{{"name":"echo","arguments":{{"traceparent":"not this one"}},"_meta":{{"traceparent":"{TP}","tracestate":"k=v"}}}}"#
        ))
        .unwrap();
        let t = TraceParent::of_meta(Some(&params)).unwrap();
        assert_eq!(t.parent_id, "00f067aa0ba902b7");
        assert_eq!(t.state.as_deref(), Some("k=v"));
        let none = RawValue::from_string(r#"{"arguments":{"traceparent":"x"}}"#.into()).unwrap();
        assert_eq!(TraceParent::of_meta(Some(&none)), None);
        assert_eq!(TraceParent::of_meta(None), None);
    }

    #[test]
    fn a_span_context_round_trips_through_its_traceparent() {
        let t = TraceParent::parse(TP, None).unwrap();
        let sc = t.to_span_context().unwrap();
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(traceparent_of(&sc), TP);
    }
}
