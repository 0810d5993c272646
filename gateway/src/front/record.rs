//! What the front records about a request: a metric for every request, and an audit
//! event for calls (`tools/call`, `resources/read`, `prompts/get`) and refusals.

use std::sync::Arc;
use std::time::Instant;

use serde_json::value::RawValue;

use super::error::Error;
use super::request::RequestInfo;
use super::session::ClientSession;
use super::state::Front;
use crate::audit::{self, Auditor, Caller, Outcome, Record};
use crate::metrics::Metrics;
use crate::store::AuditEvent;
use crate::telemetry::span::{self, RequestTrace};

/// Methods that produce an audit event.
fn audited(method: &str) -> bool {
    matches!(method, "tools/call" | "resources/read" | "prompts/get")
}

/// The audit log's view of who sent `info` in `session`.
fn caller(info: &RequestInfo, session: Option<&ClientSession>) -> Caller {
    Caller {
        request_id: info.request_id.clone(),
        session: session.map(|s| s.handle.clone()),
        subject: session.map(|s| s.subject.clone()),
        auth_type: info.auth_type,
        groups: info
            .caller
            .as_ref()
            .map(|c| c.groups.clone())
            .unwrap_or_default(),
        remote_addr: info.remote_addr.clone(),
        user_agent: info.user_agent.clone(),
    }
}

/// Records a request the gateway answered itself: a metric under connection `""`.
pub fn answered(front: &Front, info: &RequestInfo, method: &str, outcome: &str) {
    info.trace.outcome(outcome);
    front.metrics.request(
        method,
        "",
        outcome,
        info.started.elapsed().as_secs_f64(),
        info.trace.exemplar(),
    );
}

/// Records a request the gateway refused: the metric, and for calls and
/// authentication failures an audit event naming why.
pub fn refused(
    front: &Front,
    info: &RequestInfo,
    session: Option<&ClientSession>,
    method: &str,
    target: Option<String>,
    error: &Error,
) {
    let category = error.metric_label();
    answered(front, info, method, category);
    let worth_a_row = audited(method) || matches!(error, Error::Unauthenticated(_));
    if !front.auditor.enabled() || !worth_a_row {
        return;
    }
    let mut event =
        audit::event::begin(&front.replica, caller(info, session), method, None, target);
    let message = match error {
        Error::Unauthenticated(_) => "missing or invalid credentials".to_owned(),
        // The audit row says which rule decided; the client is told the policy only.
        Error::Denied {
            policy,
            rule: Some(rule),
        } => format!("denied by policy {policy} (rule {rule})"),
        Error::Denied { policy, rule: None } => {
            format!("denied by policy {policy} (no rule allows it)")
        }
        other => other.to_string(),
    };
    audit::event::refuse(&mut event, category, &message, info.started.elapsed());
    front.auditor.record(Record {
        event,
        params: None,
        response: None,
    });
}

/// One forwarded request's record, finished with its [`Outcome`] when the relay ends.
pub struct CallRecord {
    metrics: Arc<Metrics>,
    method: String,
    connection: String,
    started: Instant,
    request_bytes: usize,
    audit: Option<Audited>,
    traffic: Option<Arc<audit::traffic::RecentTraffic>>,
    /// The request's trace and the upstream call's span, when sampled.
    trace: Option<Box<(RequestTrace, tracing::Span)>>,
}

/// What an audited request's record keeps for its event.
struct Audited {
    auditor: Arc<Auditor>,
    event: Box<AuditEvent>,
    params: Option<Box<RawValue>>,
}

impl CallRecord {
    pub fn start(
        front: &Front,
        info: &RequestInfo,
        session: &ClientSession,
        connection: &str,
        method: &str,
        target: Option<String>,
        params: Option<&RawValue>,
    ) -> Self {
        let audit = (front.auditor.enabled() && audited(method)).then(|| {
            let event = audit::event::begin(
                &front.replica,
                caller(info, Some(session)),
                method,
                Some(connection),
                target,
            );
            Audited {
                auditor: front.auditor.clone(),
                event,
                params: params.map(ToOwned::to_owned),
            }
        });
        Self {
            metrics: front.metrics.clone(),
            method: method.to_owned(),
            connection: connection.to_owned(),
            started: info.started,
            request_bytes: info.request_bytes,
            audit,
            traffic: front.traffic.clone().filter(|_| audited(method)),
            trace: info
                .trace
                .sampled()
                .then(|| Box::new((info.trace.clone(), tracing::Span::none()))),
        }
    }

    /// Notes the upstream call's span, ended with the call.
    pub fn traced(&mut self, upstream: &tracing::Span) {
        if let Some(trace) = &mut self.trace {
            trace.0.set("hawser.connection", self.connection.clone());
            trace.1 = upstream.clone();
        }
    }

    /// Notes whose upstream token the call uses (connections with per-user tokens).
    pub fn token_of(&mut self, subject: &str) {
        if let Some(Audited { event, .. }) = &mut self.audit {
            event.token_subject = Some(subject.to_owned());
        }
    }

    pub fn finish(self, outcome: Outcome) {
        let elapsed = self.started.elapsed();
        let label = outcome.error.as_ref().map_or("ok", |(c, _)| *c);
        let exemplar = self.trace.as_ref().and_then(|trace| {
            span::end(&trace.1, label);
            trace.0.outcome(label);
            trace.0.exemplar()
        });
        self.metrics.request(
            &self.method,
            &self.connection,
            label,
            elapsed.as_secs_f64(),
            exemplar,
        );
        if let Some(traffic) = &self.traffic {
            // As in the audit log, a tool result saying isError is a failure (found
            // without parsing the result).
            let tool_error = outcome
                .response
                .as_deref()
                .is_some_and(|r| find_bytes!(r, br#""isError":true"#).is_some());
            traffic.record(
                &self.connection,
                elapsed,
                outcome.error.is_none() && !tool_error,
            );
        }
        if let Some(Audited {
            auditor,
            mut event,
            params,
        }) = self.audit
        {
            audit::event::finish(&mut event, &outcome, elapsed, self.request_bytes);
            auditor.record(Record {
                event,
                params,
                response: outcome.response,
            });
        }
    }
}
