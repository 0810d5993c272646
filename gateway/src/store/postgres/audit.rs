//! `audit_events`: batched inserts (one statement per batch, arrays unnested), the
//! dead-letter table for events that cannot be written, and the retention sweep.

use sqlx::PgPool;

use super::storable;
use crate::store::{AuditEvent, Result};

/// One event's columns, made storable (see [`storable`]).
struct Row {
    strings: [Option<String>; 11],
    params: Option<String>,
    escaped: bool,
}

impl Row {
    fn new(e: &AuditEvent) -> Self {
        let mut escaped = false;
        let mut t = |s: Option<&str>| storable::opt_text(s, &mut escaped);
        let strings = [
            t(Some(&e.request_id)),
            t(e.session.as_deref()),
            t(Some(&e.replica)),
            t(e.subject.as_deref()),
            t(e.auth_type.as_deref()),
            t(e.remote_addr.as_deref()),
            t(e.user_agent.as_deref()),
            t(Some(&e.method)),
            t(e.connection.as_deref()),
            t(e.target.as_deref()),
            t(e.error_message.as_deref()),
        ];
        let params = e.params.as_ref().map(|p| {
            let json = p.to_json();
            let (stored, changed) = storable::json(&json);
            escaped |= changed;
            stored.into_owned()
        });
        Self {
            strings,
            params,
            escaped,
        }
    }
}

/// Writes `events` in one statement; returns how many had to be escaped.
pub(super) async fn write(pool: &PgPool, events: &[AuditEvent]) -> Result<usize> {
    if events.is_empty() {
        return Ok(0);
    }
    let rows: Vec<Row> = events.iter().map(Row::new).collect();
    macro_rules! column {
        ($f:expr) => {
            events.iter().map($f).collect::<Vec<_>>()
        };
    }
    let text = |i: usize| {
        rows.iter()
            .map(|r| r.strings[i].clone())
            .collect::<Vec<_>>()
    };
    sqlx::query(
        "INSERT INTO audit_events (ts, request_id, session_id, replica, subject, auth_type, remote_addr,
             user_agent, method, connection, target, params, success, error_category, error_message,
             duration_ms, request_bytes, response_bytes, content_blocks, progress_count, escaped)
         SELECT to_timestamp(ts / 1000.0), request_id, session_id, replica, subject, auth_type, remote_addr,
             user_agent, method, connection, target, params::jsonb, success, error_category, error_message,
             duration_ms, request_bytes, response_bytes, content_blocks, progress_count, escaped
         FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
             $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bool[], $14::text[], $15::text[],
             $16::float8[], $17::bigint[], $18::bigint[], $19::int[], $20::int[], $21::bool[])
           AS t(ts, request_id, session_id, replica, subject, auth_type, remote_addr, user_agent, method,
                connection, target, params, success, error_category, error_message, duration_ms,
                request_bytes, response_bytes, content_blocks, progress_count, escaped)",
    )
    .bind(column!(|e| e.ts.millis()))
    .bind(text(0))
    .bind(text(1))
    .bind(text(2))
    .bind(text(3))
    .bind(text(4))
    .bind(text(5))
    .bind(text(6))
    .bind(text(7))
    .bind(text(8))
    .bind(text(9))
    .bind(rows.iter().map(|r| r.params.clone()).collect::<Vec<_>>())
    .bind(column!(|e| e.success))
    .bind(column!(|e| e.error_category.clone()))
    .bind(text(10))
    .bind(column!(|e| e.duration_ms))
    .bind(column!(|e| e.request_bytes))
    .bind(column!(|e| e.response_bytes))
    .bind(column!(|e| e.content_blocks))
    .bind(column!(|e| e.progress_count))
    .bind(rows.iter().map(|r| r.escaped).collect::<Vec<_>>())
    .execute(pool)
    .await?;
    Ok(rows.iter().filter(|r| r.escaped).count())
}

/// Keeps an event that could not be written, as JSON text (which is always storable).
pub(super) async fn dead_letter(pool: &PgPool, event: &AuditEvent, error: &str) -> Result<()> {
    let json = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned());
    let (error, _) = storable::text(error);
    let (replica, _) = storable::text(&event.replica);
    sqlx::query("INSERT INTO audit_dead_letters (replica, error, event) VALUES ($1, $2, $3)")
        .bind(replica.as_ref())
        .bind(error.as_ref())
        .bind(json)
        .execute(pool)
        .await?;
    Ok(())
}

/// Deletes old events in slices, so a large backlog does not hold one long lock.
pub(super) async fn sweep(pool: &PgPool, age: std::time::Duration) -> Result<u64> {
    let mut total = 0;
    loop {
        let done = sqlx::query(
            "DELETE FROM audit_events WHERE id IN (
                 SELECT id FROM audit_events WHERE ts < now() - make_interval(secs => $1) LIMIT 10000)",
        )
        .bind(age.as_secs_f64())
        .execute(pool)
        .await?;
        total += done.rows_affected();
        if done.rows_affected() < 10_000 {
            break;
        }
    }
    sqlx::query(
        "DELETE FROM audit_dead_letters WHERE received_at < now() - make_interval(secs => $1)",
    )
    .bind(age.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(total)
}
