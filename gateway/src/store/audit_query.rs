//! What the web console reads back from the audit log: one page of events (keyset
//! pagination on `id`, newest first), one event, and per-minute traffic figures.
//! Embedded mode keeps no audit table: its store answers with nothing.

use crate::clock::Timestamp;

use super::AuditEvent;

/// Which events to list. Every field narrows the list; `None` does not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    pub subject: Option<String>,
    pub connection: Option<String>,
    /// The tool, prompt or resource as the upstream names it.
    pub target: Option<String>,
    /// Only successes (`true`) or only failures (`false`).
    pub success: Option<bool>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Events with an id below this one (the next page).
    pub before_id: Option<i64>,
    /// Events with an id above this one (the live tail: what is new since).
    pub after_id: Option<i64>,
    /// At most this many (capped at [`MAX_PAGE`]).
    pub limit: u32,
}

/// Largest page of events read at once.
pub const MAX_PAGE: u32 = 200;

/// One stored event and its row id (the pagination key).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub id: i64,
    pub event: AuditEvent,
}

/// Traffic in one time bucket, for calls (`tools/call`, `prompts/get`,
/// `resources/read`) of every connection or of one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrafficBucket {
    /// Start of the bucket.
    pub start: Timestamp,
    pub calls: i64,
    pub errors: i64,
    /// Latency percentiles in milliseconds (`None` when the bucket has no call).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}
