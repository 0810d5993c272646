//! Building audit events: one begun when a request is routed, finished with how the
//! request ended.

use std::time::Duration;

use bytes::Bytes;

use super::{Record, Redactor};
use crate::clock::Timestamp;
use crate::store::AuditEvent;

/// Parameters larger than this are summarized instead of stored.
const MAX_PARAMS: usize = 64 * 1024;
/// Responses larger than this are not parsed to count content blocks.
const MAX_PARSED_RESPONSE: usize = 1024 * 1024;

/// Who made a request and from where, as the audit log records it.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub request_id: String,
    /// A non-secret handle of the session.
    pub session: Option<String>,
    pub subject: Option<String>,
    pub auth_type: Option<&'static str>,
    pub groups: Vec<String>,
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
    caller: Caller,
    method: &str,
    connection: Option<&str>,
    target: Option<String>,
) -> Box<AuditEvent> {
    // Boxed: the event moves from the request to the spool and the writer's queue,
    // a pointer instead of several hundred bytes each time.
    Box::new(AuditEvent {
        event_id: String::new(),
        ts: Timestamp::now(),
        request_id: caller.request_id,
        session: caller.session,
        replica: replica.to_owned(),
        subject: caller.subject,
        auth_type: caller.auth_type.map(str::to_owned),
        groups: caller.groups,
        remote_addr: caller.remote_addr,
        user_agent: caller.user_agent,
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
        token_subject: None,
    })
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

/// An event as it is stored: parameters redacted (or summarized when large), content
/// blocks counted, a result that says `isError` made a failure.
pub fn prepare(record: Record, redactor: &Redactor) -> Box<AuditEvent> {
    let mut event = record.event;
    if let Some(raw) = record.params {
        let text = raw.get();
        event.params = Some(if text.len() > MAX_PARAMS {
            crate::store::AuditParams::value(
                &serde_json::json!({"truncated": true, "bytes": text.len()}),
            )
        } else if !redactor.may_need(text.as_bytes()) {
            // Nothing to redact: stored as sent, without decoding it here.
            crate::store::AuditParams::parsed(raw)
        } else {
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(mut v) => {
                    redactor.redact(&mut v);
                    crate::store::AuditParams::value(&v)
                }
                Err(_) => {
                    crate::store::AuditParams::value(&serde_json::json!({"unparseable": true}))
                }
            }
        });
    }
    if let Some(response) = record.response
        && response.len() <= MAX_PARSED_RESPONSE
        && let Some((blocks, is_error)) = super::blocks::inspect(&response)
    {
        event.content_blocks = blocks;
        // A tool that reports failure in its result failed, even though the
        // protocol exchange succeeded.
        if is_error && event.success {
            event.success = false;
            event.error_category = Some("upstream".into());
            event.error_message = Some("the tool reported an error (isError)".into());
        }
    }
    event
}
