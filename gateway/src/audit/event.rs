//! Building audit events: one begun when a request is routed, finished with how the
//! request ended.

use std::time::Duration;

use bytes::Bytes;

use crate::clock::Timestamp;
use crate::store::AuditEvent;

/// Who made a request and from where, as the audit log records it.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub request_id: String,
    /// A non-secret handle of the session.
    pub session: Option<String>,
    pub subject: Option<String>,
    pub auth_type: Option<&'static str>,
    pub remote_addr: Option<String>,
    pub user_agent: Option<String>,
}

/// How a forwarded request ended.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Error category (`upstream`, `timeout`, `cancelled`, …) and message, when it failed.
    pub error: Option<(&'static str, String)>,
    pub response_bytes: usize,
    /// Progress notifications relayed.
    pub progress: u32,
    /// The response (shared bytes, not a copy), for counting content blocks later.
    pub response: Option<Bytes>,
}

/// Longest error message kept in an audit row.
const MAX_MESSAGE_CHARS: usize = 1000;

/// An event for a request that is starting (not yet finished).
pub fn begin(
    replica: &str,
    caller: &Caller,
    method: &str,
    connection: Option<&str>,
    target: Option<String>,
) -> AuditEvent {
    AuditEvent {
        ts: Timestamp::now(),
        request_id: caller.request_id.clone(),
        session: caller.session.clone(),
        replica: replica.to_owned(),
        subject: caller.subject.clone(),
        auth_type: caller.auth_type.map(str::to_owned),
        remote_addr: caller.remote_addr.clone(),
        user_agent: caller.user_agent.clone(),
        method: method.to_owned(),
        connection: connection.map(str::to_owned),
        target,
        params: None,
        success: false,
        error_category: None,
        error_message: None,
        duration_ms: 0.0,
        request_bytes: None,
        response_bytes: None,
        content_blocks: None,
        progress_count: None,
    }
}

/// Records how a forwarded request ended.
pub fn finish(event: &mut AuditEvent, outcome: &Outcome, elapsed: Duration, request_bytes: usize) {
    event.success = outcome.error.is_none();
    if let Some((category, message)) = &outcome.error {
        event.error_category = Some((*category).to_owned());
        event.error_message = Some(message.chars().take(MAX_MESSAGE_CHARS).collect());
    }
    event.duration_ms = elapsed.as_secs_f64() * 1000.0;
    event.request_bytes = Some(i64::try_from(request_bytes).unwrap_or(i64::MAX));
    event.response_bytes = Some(i64::try_from(outcome.response_bytes).unwrap_or(i64::MAX));
    event.progress_count = Some(i32::try_from(outcome.progress).unwrap_or(i32::MAX));
}

/// Records why the gateway refused a request.
pub fn refuse(event: &mut AuditEvent, category: &str, message: &str, elapsed: Duration) {
    event.error_category = Some(category.to_owned());
    event.error_message = Some(message.chars().take(MAX_MESSAGE_CHARS).collect());
    event.duration_ms = elapsed.as_secs_f64() * 1000.0;
}
