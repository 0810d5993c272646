//! The spans Hawser makes, following OpenTelemetry's conventions for MCP and HTTP:
//! one server span per MCP request, and under it the upstream call (a client span),
//! the policy decision, an upstream token refresh, and the wait for a client's answer
//! to a server→client request.
//!
//! With tracing off (no OTLP endpoint) none of this costs anything: the request keeps
//! the logging span it always had, and every child span is [`Span::none`]. With
//! tracing on, the server span is made with the OpenTelemetry API once the request's
//! parent is known (it may be in the body), so an unsampled request costs a sampling
//! decision and no more; child spans and attributes exist for sampled requests only.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime};

use axum::http::HeaderMap;
use opentelemetry::trace::{SpanContext, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::trace::SdkTracer;
use serde_json::value::RawValue;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::context::{TraceParent, traceparent_of};

/// The target of every span exported through `tracing`; the OTLP layer sees no other
/// span.
pub const TARGET: &str = "hawser_gateway::trace";

static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Whether spans are exported.
pub fn on() -> bool {
    TRACER.get().is_some()
}

pub(super) fn turn_on(tracer: SdkTracer) {
    let _ = TRACER.set(tracer);
}

/// One MCP request's trace: the context it continues and, with tracing on, its
/// server span.
#[derive(Debug, Clone)]
pub struct RequestTrace {
    /// The request's logging span (request id, endpoint, session).
    pub span: Span,
    /// The caller's context (`traceparent` header, or `params._meta`), continued
    /// upstream.
    pub parent: Option<TraceParent>,
    /// The server span, in a context (cloning shares it): it ends when the last
    /// clone is dropped, which is when the request's answer is complete.
    server: Option<Context>,
    started: Instant,
}

impl RequestTrace {
    /// The request's logging span, and the caller's `traceparent` header.
    pub fn new(headers: &HeaderMap, request_id: &str, endpoint: &dyn std::fmt::Display) -> Self {
        use crate::headers::{TRACEPARENT, TRACESTATE};
        let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let parent = text(TRACEPARENT).and_then(|tp| TraceParent::parse(tp, text(TRACESTATE)));
        Self {
            span: tracing::info_span!(
                "mcp",
                request_id,
                %endpoint,
                session = tracing::field::Empty
            ),
            parent,
            server: None,
            started: Instant::now(),
        }
    }

    /// Starts the server span (tracing on) once the body is read, with the time the
    /// request arrived: a context in `params._meta` (SEP-414) wins over the header, as
    /// the MCP request's own. The sampler decides here.
    pub fn begin(&mut self, params: Option<&RawValue>) {
        if let Some(meta) = TraceParent::of_meta(params) {
            self.parent = Some(meta);
        }
        let Some(tracer) = TRACER.get() else {
            return;
        };
        if self.server.is_some() {
            return;
        }
        let parent = self
            .parent
            .as_ref()
            .and_then(TraceParent::to_span_context)
            .map_or_else(Context::new, |sc| {
                Context::new().with_remote_span_context(sc)
            });
        let start = SystemTime::now()
            .checked_sub(self.started.elapsed())
            .unwrap_or_else(SystemTime::now);
        let builder = tracer
            .span_builder("mcp")
            .with_kind(SpanKind::Server)
            .with_start_time(start);
        let span = tracer.build_with_context(builder, &parent);
        self.server = Some(Context::new().with_span(span));
    }

    /// The server span's context, once started.
    fn context(&self) -> Option<SpanContext> {
        self.server
            .as_ref()
            .map(|cx| cx.span().span_context().clone())
    }

    /// Whether this request's spans are recorded.
    pub fn sampled(&self) -> bool {
        self.server
            .as_ref()
            .is_some_and(|cx| cx.span().span_context().is_sampled())
    }

    /// The server span's ids, for the request-duration exemplar (sampled requests
    /// only).
    pub fn exemplar(&self) -> Option<crate::metrics::TraceLabels> {
        let cx = self.server.as_ref()?;
        let span = cx.span();
        let sc = span.span_context();
        sc.is_sampled().then(|| crate::metrics::TraceLabels {
            trace_id: sc.trace_id().to_string(),
            span_id: sc.span_id().to_string(),
        })
    }

    /// The server span, when it records.
    fn recording(&self) -> Option<opentelemetry::trace::SpanRef<'_>> {
        self.server
            .as_ref()
            .map(|cx| cx.span())
            .filter(|s| s.is_recording())
    }

    /// Sets an attribute of the server span (sampled requests only).
    pub fn set(&self, key: &'static str, value: impl Into<Value>) {
        if let Some(span) = self.recording() {
            span.set_attribute(KeyValue::new(key, value));
        }
    }

    /// Names the server span (sampled requests only).
    pub fn rename(&self, name: String) {
        if let Some(span) = self.recording() {
            span.update_name(name);
        }
    }

    /// Names the server span `{method} {target}` (the tool or prompt) and sets the
    /// MCP attributes of what the request names.
    pub fn describe(&self, method: &str, params: Option<&RawValue>) {
        let Some(span) = self.recording() else {
            return;
        };
        span.set_attribute(KeyValue::new("mcp.method.name", method.to_owned()));
        let member = match method {
            "tools/call" | "prompts/get" => "name",
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => "uri",
            _ => {
                span.update_name(method.to_owned());
                return;
            }
        };
        let value = crate::jsonrpc::RawParams::parse(params)
            .ok()
            .and_then(|p| p.0.get_str(member));
        let Some(value) = value else {
            span.update_name(method.to_owned());
            return;
        };
        match method {
            "tools/call" => {
                span.set_attribute(KeyValue::new("gen_ai.operation.name", "execute_tool"));
                span.set_attribute(KeyValue::new("gen_ai.tool.name", value.clone()));
            }
            "prompts/get" => {
                span.set_attribute(KeyValue::new("gen_ai.prompt.name", value.clone()));
            }
            _ => {
                // URIs are high-cardinality: an attribute, never the span name.
                span.set_attribute(KeyValue::new("mcp.resource.uri", value));
                span.update_name(method.to_owned());
                return;
            }
        }
        span.update_name(format!("{method} {value}"));
    }

    /// Records how the request ended: `hawser.outcome`, and for anything but `ok`
    /// `error.type` and an error status.
    pub fn outcome(&self, outcome: &str) {
        if let Some(span) = self.recording() {
            span.set_attribute(KeyValue::new("hawser.outcome", outcome.to_owned()));
            if outcome != "ok" {
                span.set_attribute(KeyValue::new("error.type", outcome.to_owned()));
                span.set_status(Status::error(outcome.to_owned()));
            }
        }
    }

    /// Records the HTTP status the request was answered with (starting the server
    /// span if the request was refused before its body was read).
    pub fn answered(&mut self, status: u16) {
        self.begin(None);
        let Some(span) = self.recording() else {
            return;
        };
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if status >= 500 {
            span.set_status(Status::error(status.to_string()));
        }
    }

    /// The `traceparent` for an upstream request, naming `upstream` (its client
    /// span) as the parent, or the server span when that is not recorded. `None`
    /// with tracing off.
    pub fn continued(&self, upstream: &Span) -> Option<String> {
        let own = self.context()?;
        if !upstream.is_none() {
            let cx = upstream.context();
            let sc = cx.span().span_context().clone();
            if sc.is_valid() {
                return Some(traceparent_of(&sc));
            }
        }
        own.is_valid().then(|| traceparent_of(&own))
    }

    /// A child span under the server span (`Span::none()` unless sampled).
    fn child(&self, span: impl FnOnce() -> Span) -> Span {
        match &self.server {
            Some(cx) if cx.span().span_context().is_sampled() => {
                let child = span();
                let _ = child.set_parent(cx.clone());
                child
            }
            _ => Span::none(),
        }
    }

    /// The client span of a request to an upstream (`Span::none()` unless sampled).
    pub fn upstream(&self, call: UpstreamCall<'_>) -> Span {
        self.child(|| {
            let name = match call.target {
                Some(t) if call.method == "tools/call" || call.method == "prompts/get" => {
                    format!("{} {t}", call.method)
                }
                _ => call.method.to_owned(),
            };
            let (address, port) = match call.server.and_then(|s| s.rsplit_once(':')) {
                Some((host, port)) => (Some(host), port.parse::<u16>().ok()),
                None => (call.server, None),
            };
            tracing::info_span!(
                target: TARGET,
                parent: None,
                "upstream",
                otel.kind = "client",
                otel.name = name,
                hawser.connection = call.connection,
                mcp.method.name = call.method,
                server.address = address,
                server.port = port,
                gen_ai.tool.name = (call.method == "tools/call").then_some(call.target).flatten(),
            )
        })
    }

    /// The span of a policy decision about `name` (`Span::none()` unless sampled).
    pub fn policy(&self, connection: &str, kind: &'static str, name: &str) -> Span {
        self.child(|| {
            tracing::info_span!(
                target: TARGET,
                parent: None,
                "policy",
                otel.kind = "internal",
                otel.name = "policy decision",
                hawser.connection = connection,
                hawser.policy.kind = kind,
                hawser.policy.item = name,
                hawser.policy.decision = tracing::field::Empty,
                hawser.policy.name = tracing::field::Empty,
            )
        })
    }
}

/// What an upstream client span describes.
pub struct UpstreamCall<'a> {
    pub connection: &'a str,
    /// `host[:port]` of an HTTP upstream.
    pub server: Option<&'a str>,
    pub method: &'a str,
    /// The tool, prompt or resource as the upstream names it.
    pub target: Option<&'a str>,
}

fn outcome_of(span: &Span, outcome: &str) {
    span.set_attribute("hawser.outcome", outcome.to_owned());
    if outcome != "ok" {
        span.set_attribute("error.type", outcome.to_owned());
        span.set_status(Status::error(outcome.to_owned()));
    }
}

/// Records the outcome of a child span and ends it now.
pub fn end(span: &Span, outcome: &str) {
    if span.is_none() {
        return;
    }
    outcome_of(span, outcome);
    span.in_scope(|| {});
}

/// The span of an upstream OAuth token refresh (under whatever is current: a call,
/// or the connection's own discovery). Never carries a token.
pub fn token_refresh(connection: &str, per_user: bool) -> Span {
    if !on() {
        return Span::none();
    }
    tracing::info_span!(
        target: TARGET,
        "oauth token refresh",
        otel.kind = "internal",
        hawser.connection = connection,
        hawser.oauth.per_user = per_user,
    )
}

/// The span of the wait for a client's answer to the server→client request
/// `method`, under `parent` (the upstream call that asked).
pub fn client_answer(parent: &Span, method: &str) -> Span {
    if parent.is_none() {
        return Span::none();
    }
    tracing::info_span!(
        target: TARGET,
        parent: parent,
        "client answer",
        otel.kind = "internal",
        otel.name = format!("wait {method}"),
        mcp.method.name = method,
    )
}
