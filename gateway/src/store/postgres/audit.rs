//! `audit_events`: batched inserts (one statement per batch, arrays unnested) and the
//! age-based retention sweep.

use sqlx::PgPool;

use crate::store::{AuditEvent, Result};

pub(super) async fn write(pool: &PgPool, events: &[AuditEvent]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    macro_rules! column {
        ($f:expr) => {
            events.iter().map($f).collect::<Vec<_>>()
        };
    }
    sqlx::query(
        "INSERT INTO audit_events (ts, request_id, session_id, replica, subject, auth_type, remote_addr,
             user_agent, method, connection, target, params, success, error_category, error_message,
             duration_ms, request_bytes, response_bytes, content_blocks, progress_count)
         SELECT to_timestamp(ts / 1000.0), request_id, session_id, replica, subject, auth_type, remote_addr,
             user_agent, method, connection, target, params::jsonb, success, error_category, error_message,
             duration_ms, request_bytes, response_bytes, content_blocks, progress_count
         FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
             $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bool[], $14::text[], $15::text[],
             $16::float8[], $17::bigint[], $18::bigint[], $19::int[], $20::int[])
           AS t(ts, request_id, session_id, replica, subject, auth_type, remote_addr, user_agent, method,
                connection, target, params, success, error_category, error_message, duration_ms,
                request_bytes, response_bytes, content_blocks, progress_count)",
    )
    .bind(column!(|e| e.ts_ms))
    .bind(column!(|e| e.request_id.clone()))
    .bind(column!(|e| e.session.clone()))
    .bind(column!(|e| e.replica.clone()))
    .bind(column!(|e| e.subject.clone()))
    .bind(column!(|e| e.auth_type.clone()))
    .bind(column!(|e| e.remote_addr.clone()))
    .bind(column!(|e| e.user_agent.clone()))
    .bind(column!(|e| e.method.clone()))
    .bind(column!(|e| e.connection.clone()))
    .bind(column!(|e| e.target.clone()))
    .bind(column!(|e| e.params.as_ref().map(crate::store::AuditParams::to_json)))
    .bind(column!(|e| e.success))
    .bind(column!(|e| e.error_category.clone()))
    .bind(column!(|e| e.error_message.clone()))
    .bind(column!(|e| e.duration_ms))
    .bind(column!(|e| e.request_bytes))
    .bind(column!(|e| e.response_bytes))
    .bind(column!(|e| e.content_blocks))
    .bind(column!(|e| e.progress_count))
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
            return Ok(total);
        }
    }
}
