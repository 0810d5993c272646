//! Reading `audit_events` back for the web console: a page of events (keyset on
//! `id`, newest first, only the filters given in the statement, so each can use its
//! index), one event, and per-bucket traffic figures in one aggregate statement.

use sqlx::{PgPool, Postgres, QueryBuilder, Row as _};

use crate::clock::Timestamp;
use crate::store::{
    AuditEvent, AuditParams, AuditQuery, AuditRow, MAX_PAGE, Result, TrafficBucket,
};

const COLUMNS: &str = "id, event_id, (EXTRACT(EPOCH FROM ts) * 1000)::bigint AS ts_ms, request_id,
    session_id, replica, subject, auth_type, remote_addr, user_agent, method, connection, target,
    params::text AS params, success, error_category, error_message, duration_ms, request_bytes,
    response_bytes, content_blocks, progress_count, groups::text AS groups, token_subject";

/// The methods counted as calls in traffic figures.
const CALLS: &str = "('tools/call', 'prompts/get', 'resources/read')";

pub(super) async fn page(pool: &PgPool, q: &AuditQuery) -> Result<Vec<AuditRow>> {
    let mut sql: QueryBuilder<Postgres> =
        QueryBuilder::new(format!("SELECT {COLUMNS} FROM audit_events WHERE true"));
    if let Some(s) = &q.subject {
        sql.push(" AND subject = ").push_bind(s.as_str());
    }
    if let Some(c) = &q.connection {
        sql.push(" AND connection = ").push_bind(c.as_str());
    }
    if let Some(t) = &q.target {
        sql.push(" AND target = ").push_bind(t.as_str());
    }
    if let Some(ok) = q.success {
        sql.push(" AND success = ").push_bind(ok);
    }
    if let Some(since) = q.since {
        sql.push(" AND ts >= to_timestamp(")
            .push_bind(since.secs_f64())
            .push(")");
    }
    if let Some(until) = q.until {
        sql.push(" AND ts < to_timestamp(")
            .push_bind(until.secs_f64())
            .push(")");
    }
    if let Some(before) = q.before_id {
        sql.push(" AND id < ").push_bind(before);
    }
    if let Some(after) = q.after_id {
        sql.push(" AND id > ").push_bind(after);
    }
    sql.push(" ORDER BY id DESC LIMIT ")
        .push_bind(i64::from(q.limit.clamp(1, MAX_PAGE)));
    let rows = sql.build().fetch_all(pool).await?;
    rows.iter().map(decode).collect()
}

pub(super) async fn one(pool: &PgPool, id: i64) -> Result<Option<AuditRow>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM audit_events WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(decode).transpose()
}

pub(super) async fn traffic(
    pool: &PgPool,
    since: Timestamp,
    bucket: std::time::Duration,
    connection: Option<&str>,
) -> Result<Vec<TrafficBucket>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT (EXTRACT(EPOCH FROM date_bin(make_interval(secs => $2), ts, to_timestamp(0))) * 1000)::bigint,
                count(*), count(*) FILTER (WHERE NOT success),
                percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms),
                percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms)
         FROM audit_events
         WHERE ts >= to_timestamp($1) AND method IN {CALLS}
           AND ($3::text IS NULL OR connection = $3)
         GROUP BY 1 ORDER BY 1"
    )))
    .bind(since.secs_f64())
    .bind(bucket.as_secs_f64())
    .bind(connection)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(TrafficBucket {
                start: Timestamp::from_millis(r.try_get(0)?),
                calls: r.try_get(1)?,
                errors: r.try_get(2)?,
                p50_ms: r.try_get(3)?,
                p99_ms: r.try_get(4)?,
            })
        })
        .collect()
}

fn decode(r: &sqlx::postgres::PgRow) -> Result<AuditRow> {
    let params: Option<String> = r.try_get("params")?;
    let groups: Option<String> = r.try_get("groups")?;
    Ok(AuditRow {
        id: r.try_get("id")?,
        event: AuditEvent {
            event_id: r.try_get("event_id")?,
            ts: Timestamp::from_millis(r.try_get("ts_ms")?),
            request_id: r.try_get("request_id")?,
            session: r.try_get("session_id")?,
            replica: r.try_get("replica")?,
            subject: r.try_get("subject")?,
            auth_type: r.try_get("auth_type")?,
            groups: groups
                .and_then(|g| serde_json::from_str(&g).ok())
                .unwrap_or_default(),
            remote_addr: r.try_get("remote_addr")?,
            user_agent: r.try_get("user_agent")?,
            method: r.try_get("method")?,
            connection: r.try_get("connection")?,
            target: r.try_get("target")?,
            params: params.map(AuditParams::raw),
            success: r.try_get("success")?,
            error_category: r.try_get("error_category")?,
            error_message: r.try_get("error_message")?,
            duration_ms: r.try_get("duration_ms")?,
            request_bytes: r.try_get("request_bytes")?,
            response_bytes: r.try_get("response_bytes")?,
            content_blocks: r.try_get("content_blocks")?,
            progress_count: r.try_get("progress_count")?,
            token_subject: r.try_get("token_subject")?,
        },
    })
}
