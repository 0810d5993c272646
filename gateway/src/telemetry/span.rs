//! The spans Hawser makes, following OpenTelemetry's conventions for MCP and HTTP:
//! one server span per MCP request (`mcp`), and under it the upstream call (a client
//! span), the policy decision, an upstream token refresh, and the wait for a
//! client's answer to a server→client request.
//!
//! With tracing off (no OTLP endpoint) none of this costs anything: the request gets
//! the logging span it always had, and every child span is [`Span::none`]. With
//! tracing on, attributes are recorded only for sampled requests.

use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::HeaderMap;
use opentelemetry::Value;
use opentelemetry::trace::{SpanContext, Status, TraceContextExt as _};
use serde_json::value::RawValue;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::context::{TraceParent, traceparent_of};

/// The target of every span exported; the OTLP layer sees no other span.
pub const TARGET: &str = "hawser_gateway::trace";

static ON: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported.
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

pub(super) fn turn_on() {
    ON.store(true, Ordering::Relaxed);
}

/// One MCP request's trace: its server span and the context it continues.
#[derive(Debug, Clone)]
pub struct RequestTrace {
    /// The server span (tracing on), else the request's logging span.
    pub span: Span,
    /// The caller's context (`traceparent` header, or `params._meta`), continued
    /// upstream.
    pub parent: Option<TraceParent>,
    /// The server span's own context, once started.
    context: Option<SpanContext>,
}

impl RequestTrace {
    /// The request's span, with the caller's `traceparent` header as its parent.
    pub fn new(headers: &HeaderMap, request_id: &str, endpoint: &dyn std::fmt::Display) -> Self {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let parent = text("traceparent").and_then(|tp| TraceParent::parse(tp, text("tracestate")));
        let span = if on() {
            tracing::info_span!(
                target: TARGET,
                "mcp",
                request_id,
                %endpoint,
                session = tracing::field::Empty,
                otel.kind = "server",
            )
        } else {
            tracing::info_span!("mcp", request_id, %endpoint, session = tracing::field::Empty)
        };
        let trace = Self {
            span,
            parent,
            context: None,
        };
        trace.adopt_parent();
        trace
    }

    fn adopt_parent(&self) {
        if !on() {
            return;
        }
        if let Some(sc) = self.parent.as_ref().and_then(TraceParent::to_span_context) {
            let _ = self
                .span
                .set_parent(opentelemetry::Context::new().with_remote_span_context(sc));
        }
    }

    /// Starts the server span once the body is read: a context in `params._meta`
    /// (SEP-414) wins over the header, as the MCP request's own. The sampler decides
    /// here.
    pub fn begin(&mut self, params: Option<&RawValue>) {
        if let Some(meta) = TraceParent::of_meta(params) {
            self.parent = Some(meta);
            self.adopt_parent();
        }
        if on() {
            let cx = self.span.context();
            let sc = cx.span().span_context().clone();
            self.context = sc.is_valid().then_some(sc);
        }
    }

    /// Whether this request's spans are recorded.
    pub fn sampled(&self) -> bool {
        self.context.as_ref().is_some_and(SpanContext::is_sampled)
    }

    /// Sets an attribute of the server span (sampled requests only).
    pub fn set(&self, key: &'static str, value: impl Into<Value>) {
        if self.sampled() {
            self.span.set_attribute(key, value);
        }
    }

    /// Names the server span and sets the MCP attributes of what the request names:
    /// `{method} {target}` with the tool or prompt as the target.
    pub fn describe(&self, method: &str, params: Option<&RawValue>) {
        if !self.sampled() {
            return;
        }
        self.span
            .set_attribute("mcp.method.name", method.to_owned());
        let member = match method {
            "tools/call" | "prompts/get" => "name",
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => "uri",
            _ => {
                self.rename(method.to_owned());
                return;
            }
        };
        let value = crate::jsonrpc::RawParams::parse(params)
            .ok()
            .and_then(|p| p.0.get_str(member));
        let Some(value) = value else {
            self.rename(method.to_owned());
            return;
        };
        match method {
            "tools/call" => {
                self.span
                    .set_attribute("gen_ai.operation.name", "execute_tool");
                self.span.set_attribute("gen_ai.tool.name", value.clone());
            }
            "prompts/get" => self.span.set_attribute("gen_ai.prompt.name", value.clone()),
            _ => {
                // URIs are high-cardinality: an attribute, never the span name.
                self.span.set_attribute("mcp.resource.uri", value);
                self.rename(method.to_owned());
                return;
            }
        }
        self.rename(format!("{method} {value}"));
    }

    /// Renames the started server span (`otel.name` only names a span not started).
    fn rename(&self, name: String) {
        self.span.context().span().update_name(name);
    }

    /// Records how the request ended: `hawser.outcome`, and for anything but `ok`
    /// `error.type` and an error status.
    pub fn outcome(&self, outcome: &str) {
        if self.sampled() {
            outcome_of(&self.span, outcome);
        }
    }

    /// Records the HTTP status the request was answered with.
    pub fn answered(&self, status: u16) {
        if !self.sampled() {
            return;
        }
        self.span
            .set_attribute("http.response.status_code", i64::from(status));
        if status >= 500 {
            self.span.set_status(Status::error(status.to_string()));
        }
    }

    /// Ends the server span now (it stays open while an answer streams).
    pub fn finish(&self) {
        if self.sampled() {
            self.span.in_scope(|| {});
        }
    }

    /// The `traceparent` for an upstream request, naming `upstream` (its client
    /// span) as the parent, or the server span when that is not recorded. `None`
    /// with tracing off.
    pub fn continued(&self, upstream: &Span) -> Option<String> {
        if !on() {
            return None;
        }
        if !upstream.is_none() {
            let cx = upstream.context();
            let sc = cx.span().span_context().clone();
            if sc.is_valid() {
                return Some(traceparent_of(&sc));
            }
        }
        self.context.as_ref().map(traceparent_of)
    }

    /// The client span of a request to an upstream (`Span::none()` unless sampled).
    pub fn upstream(&self, call: UpstreamCall<'_>) -> Span {
        if !self.sampled() {
            return Span::none();
        }
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
            parent: &self.span,
            "upstream",
            otel.kind = "client",
            otel.name = name,
            hawser.connection = call.connection,
            mcp.method.name = call.method,
            server.address = address,
            server.port = port,
            gen_ai.tool.name = (call.method == "tools/call").then_some(call.target).flatten(),
        )
    }

    /// The span of a policy decision about `name` (`Span::none()` unless sampled).
    pub fn policy(&self, connection: &str, kind: &'static str, name: &str) -> Span {
        if !self.sampled() {
            return Span::none();
        }
        tracing::info_span!(
            target: TARGET,
            parent: &self.span,
            "policy",
            otel.kind = "internal",
            otel.name = "policy decision",
            hawser.connection = connection,
            hawser.policy.kind = kind,
            hawser.policy.item = name,
            hawser.policy.decision = tracing::field::Empty,
            hawser.policy.name = tracing::field::Empty,
        )
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
