//! `audit_events`: batched writes (one binary `COPY` per batch; an `INSERT` of
//! unnested arrays when the batch holds an event already stored), the
//! dead-letter table for events that cannot be written, and the daily partitions:
//! created ahead of time, dropped whole once older than the retention.

use std::borrow::Cow;

use sqlx::PgPool;

use super::storable;
use crate::clock::civil_from_days;
use crate::store::{AuditEvent, Result};

/// One event's columns, made storable (see [`storable`]); borrowed from the event
/// unless something had to be escaped.
struct Row<'a> {
    strings: [Option<Cow<'a, str>>; 13],
    params: Option<Cow<'a, str>>,
    groups: Option<String>,
    escaped: bool,
}

impl<'a> Row<'a> {
    fn new(e: &'a AuditEvent) -> Self {
        let mut escaped = false;
        let mut t = |s: Option<&'a str>| storable::opt_text(s, &mut escaped);
        let strings = [
            t(Some(&e.event_id)),
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
            t(e.token_subject.as_deref()),
        ];
        let params = e.params.as_ref().map(|p| {
            let (stored, changed) = storable::json(p.to_json());
            escaped |= changed;
            stored
        });
        let groups = (!e.groups.is_empty()).then(|| {
            let json = serde_json::to_string(&e.groups).unwrap_or_default();
            let (stored, changed) = storable::json(&json);
            escaped |= changed;
            stored.into_owned()
        });
        Self {
            strings,
            params,
            groups,
            escaped,
        }
    }
}

/// Writes `events` in one `COPY`; returns how many had to be escaped. A batch holding
/// an event already stored (written again after its answer was lost, or replayed from
/// the spool after a crash) is refused by `COPY` as a whole, and written instead by
/// the `INSERT` that keeps one of each.
pub(super) async fn write(pool: &PgPool, events: &[&AuditEvent]) -> Result<usize> {
    if events.is_empty() {
        return Ok(0);
    }
    let rows: Vec<Row> = events.iter().map(|e| Row::new(e)).collect();
    match copy(pool, events, &rows).await {
        Ok(()) => {}
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
            insert(pool, events, &rows).await?;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(rows.iter().filter(|r| r.escaped).count())
}

/// The columns `COPY` fills, in the order [`encode`] writes them.
const COPY: &str = "COPY audit_events (event_id, ts, request_id, session_id, replica, subject,
    auth_type, remote_addr, user_agent, method, connection, target, params, success,
    error_category, error_message, duration_ms, request_bytes, response_bytes,
    content_blocks, progress_count, escaped, groups, token_subject)
    FROM STDIN (FORMAT binary)";

/// Columns per row of [`COPY`].
const COPY_COLUMNS: i16 = 24;

async fn copy(pool: &PgPool, events: &[&AuditEvent], rows: &[Row<'_>]) -> sqlx::Result<()> {
    use sqlx::postgres::PgPoolCopyExt;
    let data = encode(events, rows)?;
    let mut copy = pool.copy_in_raw(COPY).await?;
    // Dropped on an error, the copy is abandoned (`CopyFail`), not half written.
    copy.send(data).await?;
    copy.finish().await?;
    Ok(())
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The rows in PostgreSQL's binary `COPY` format: a header, then per row the number
/// of fields and each field as its length (-1 for NULL) and its bytes in the type's
/// binary form, then -1.
fn encode(events: &[&AuditEvent], rows: &[Row<'_>]) -> sqlx::Result<Vec<u8>> {
    struct Out(Vec<u8>);
    impl Out {
        fn bytes(&mut self, value: Option<&[u8]>) -> sqlx::Result<()> {
            match value {
                None => self.0.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(b) => {
                    let len = i32::try_from(b.len())
                        .map_err(|_| sqlx::Error::Encode("audit value too long".into()))?;
                    self.0.extend_from_slice(&len.to_be_bytes());
                    self.0.extend_from_slice(b);
                }
            }
            Ok(())
        }
        fn text(&mut self, value: Option<&str>) -> sqlx::Result<()> {
            self.bytes(value.map(str::as_bytes))
        }
        /// `jsonb`: a version byte (1), then the JSON text.
        fn jsonb(&mut self, value: Option<&str>) -> sqlx::Result<()> {
            let Some(json) = value else {
                return self.bytes(None);
            };
            let len = i32::try_from(json.len() + 1)
                .map_err(|_| sqlx::Error::Encode("audit value too long".into()))?;
            self.0.extend_from_slice(&len.to_be_bytes());
            self.0.push(1);
            self.0.extend_from_slice(json.as_bytes());
            Ok(())
        }
        fn fixed<const N: usize>(&mut self, value: Option<[u8; N]>) -> sqlx::Result<()> {
            self.bytes(value.as_ref().map(|b| &b[..]))
        }
    }
    let mut out = Out(Vec::with_capacity(32 + rows.len() * 512));
    out.0.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.0.extend_from_slice(&0i32.to_be_bytes()); // flags
    out.0.extend_from_slice(&0i32.to_be_bytes()); // header extension length
    for (e, r) in events.iter().zip(rows) {
        let s = |i: usize| r.strings[i].as_deref();
        out.0.extend_from_slice(&COPY_COLUMNS.to_be_bytes());
        out.text(s(0))?;
        let micros =
            e.ts.millis()
                .saturating_mul(1000)
                .saturating_sub(PG_EPOCH_MICROS);
        out.fixed(Some(micros.to_be_bytes()))?;
        // request_id … target, in the order of `Row::strings`.
        for i in 1..=10 {
            out.text(s(i))?;
        }
        out.jsonb(r.params.as_deref())?;
        out.fixed(Some([u8::from(e.success)]))?;
        out.text(e.error_category.as_deref())?;
        out.text(s(11))?;
        out.fixed(Some(e.duration_ms.to_be_bytes()))?;
        out.fixed(e.request_bytes.map(i64::to_be_bytes))?;
        out.fixed(e.response_bytes.map(i64::to_be_bytes))?;
        out.fixed(e.content_blocks.map(i32::to_be_bytes))?;
        out.fixed(e.progress_count.map(i32::to_be_bytes))?;
        out.fixed(Some([u8::from(r.escaped)]))?;
        out.jsonb(r.groups.as_deref())?;
        out.text(s(12))?;
    }
    out.0.extend_from_slice(&(-1i16).to_be_bytes());
    Ok(out.0)
}

/// Writes `events` with one `INSERT` that keeps an event already stored (the same
/// `event_id` and `ts`) once.
async fn insert(pool: &PgPool, events: &[&AuditEvent], rows: &[Row<'_>]) -> Result<()> {
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
        "INSERT INTO audit_events (event_id, ts, request_id, session_id, replica, subject, auth_type,
             remote_addr, user_agent, method, connection, target, params, success, error_category,
             error_message, duration_ms, request_bytes, response_bytes, content_blocks, progress_count,
             escaped, groups, token_subject)
         SELECT event_id, to_timestamp(ts / 1000.0), request_id, session_id, replica, subject, auth_type,
             remote_addr, user_agent, method, connection, target, params::jsonb, success, error_category,
             error_message, duration_ms, request_bytes, response_bytes, content_blocks, progress_count,
             escaped, groups::jsonb, token_subject
         FROM UNNEST($22::text[], $1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
             $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bool[],
             $14::text[], $15::text[], $16::float8[], $17::bigint[], $18::bigint[], $19::int[], $20::int[],
             $21::bool[], $23::text[], $24::text[])
           AS t(event_id, ts, request_id, session_id, replica, subject, auth_type, remote_addr, user_agent,
                method, connection, target, params, success, error_category, error_message, duration_ms,
                request_bytes, response_bytes, content_blocks, progress_count, escaped, groups,
                token_subject)
         ON CONFLICT (event_id, ts) DO NOTHING",
    )
    .bind(column!(|e| e.ts.millis()))
    .bind(text(1))
    .bind(text(2))
    .bind(text(3))
    .bind(text(4))
    .bind(text(5))
    .bind(text(6))
    .bind(text(7))
    .bind(text(8))
    .bind(text(9))
    .bind(text(10))
    .bind(rows.iter().map(|r| r.params.as_deref()).collect::<Vec<_>>())
    .bind(column!(|e| e.success))
    .bind(column!(|e| e.error_category.as_deref()))
    .bind(text(11))
    .bind(column!(|e| e.duration_ms))
    .bind(column!(|e| e.request_bytes))
    .bind(column!(|e| e.response_bytes))
    .bind(column!(|e| e.content_blocks))
    .bind(column!(|e| e.progress_count))
    .bind(rows.iter().map(|r| r.escaped).collect::<Vec<_>>())
    .bind(text(0))
    .bind(rows.iter().map(|r| r.groups.as_deref()).collect::<Vec<_>>())
    .bind(text(12))
    .execute(pool)
    .await?;
    Ok(())
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

/// Days of partitions kept ready ahead of today.
const DAYS_AHEAD: i64 = 3;

/// Partition upkeep and retention, once an hour on every replica (an advisory lock
/// lets one do it at a time): the partitions for today and the next days exist;
/// daily partitions wholly older than `age` are dropped; rows older than `age` in the
/// partitions that are not daily (rows from before partitioning, the default) are
/// deleted in slices. Returns about how many rows went.
pub(super) async fn sweep(pool: &PgPool, age: std::time::Duration) -> Result<u64> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('hawser-audit-partitions', 0))")
        .execute(&mut *tx)
        .await?;
    let today: i64 = sqlx::query_scalar(
        "SELECT (EXTRACT(EPOCH FROM date_trunc('day', now() AT TIME ZONE 'UTC')) / 86400)::bigint",
    )
    .fetch_one(&mut *tx)
    .await?;
    for day in today..=today + DAYS_AHEAD {
        ensure_partition(&mut tx, day).await?;
    }
    // Daily partitions whose last day ended before the cutoff.
    let cutoff_day = today - i64::try_from(age.as_secs() / 86_400).unwrap_or(i64::MAX) - 1;
    let daily: Vec<(String, f32)> = sqlx::query_as(
        "SELECT c.relname::text, c.reltuples FROM pg_inherits i
           JOIN pg_class c ON c.oid = i.inhrelid
           JOIN pg_class p ON p.oid = i.inhparent
         WHERE p.relname = 'audit_events' AND c.relname ~ '^audit_events_p[0-9]{8}$'",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut removed = 0u64;
    for (name, tuples) in daily {
        let Some(day) = day_of(&name) else { continue };
        if day <= cutoff_day {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {name}")))
                .execute(&mut *tx)
                .await?;
            removed += tuples.max(0.0) as u64;
            tracing::info!(partition = %name, "audit retention: partition dropped");
        }
    }
    tx.commit().await?;
    for table in ["audit_events_before", "audit_events_default"] {
        loop {
            let done = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE ctid IN (
                     SELECT ctid FROM {table} WHERE ts < now() - make_interval(secs => $1) LIMIT 10000)"
            )))
            .bind(age.as_secs_f64())
            .execute(pool)
            .await?;
            removed += done.rows_affected();
            if done.rows_affected() < 10_000 {
                break;
            }
        }
    }
    sqlx::query(
        "DELETE FROM audit_dead_letters WHERE received_at < now() - make_interval(secs => $1)",
    )
    .bind(age.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(removed)
}

/// The day (days since the Unix epoch) of a daily partition's name.
fn day_of(name: &str) -> Option<i64> {
    let digits = name.strip_prefix("audit_events_p")?;
    let (y, m, d) = (
        digits.get(0..4)?.parse::<i64>().ok()?,
        digits.get(4..6)?.parse::<i64>().ok()?,
        digits.get(6..8)?.parse::<i64>().ok()?,
    );
    Some(days_from_civil(y, m, d))
}

/// Days since 1970-01-01 of a date (proleptic Gregorian; Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Creates the partition of `day` unless it exists (or `audit_events_before` covers
/// it). Rows the default partition holds for that day move into it.
async fn ensure_partition(tx: &mut sqlx::PgConnection, day: i64) -> Result<()> {
    let name = format!("audit_events_p{}", civil_from_days(day));
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(&name)
        .fetch_one(&mut *tx)
        .await?;
    if exists {
        return Ok(());
    }
    let (from, to) = (day * 86_400, (day + 1) * 86_400);
    // Already covered by the partition of the rows from before partitioning?
    let before_upper: Option<f64> = sqlx::query_scalar(
        r#"SELECT EXTRACT(EPOCH FROM (regexp_match(pg_get_expr(c.relpartbound, c.oid), $$TO \('([^']+)'\)$$))[1]::timestamptz)::float8
           FROM pg_class c WHERE c.relname = 'audit_events_before'"#,
    )
    .fetch_optional(&mut *tx)
    .await?
    .flatten();
    if before_upper.is_some_and(|upper| (from as f64) < upper) {
        return Ok(());
    }
    let bounds = format!("FROM (to_timestamp({from})) TO (to_timestamp({to}))");
    let stray: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM audit_events_default WHERE ts >= to_timestamp($1) AND ts < to_timestamp($2))",
    )
    .bind(from as f64)
    .bind(to as f64)
    .fetch_one(&mut *tx)
    .await?;
    if !stray {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE {name} PARTITION OF audit_events FOR VALUES {bounds}"
        )))
        .execute(&mut *tx)
        .await?;
    } else {
        // The default partition holds rows of that day (a clock that ran ahead):
        // move them into the new partition, then attach it.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE {name} (LIKE audit_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )))
        .execute(&mut *tx)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH moved AS (DELETE FROM audit_events_default
                 WHERE ts >= to_timestamp($1) AND ts < to_timestamp($2) RETURNING *)
             INSERT INTO {name} SELECT * FROM moved"
        )))
        .bind(from as f64)
        .bind(to as f64)
        .execute(&mut *tx)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE audit_events ATTACH PARTITION {name} FOR VALUES {bounds}"
        )))
        .execute(&mut *tx)
        .await?;
    }
    tracing::info!(partition = %name, "audit partition created");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_and_days_agree() {
        for day in [0, 1, 59, 365, 10_957, 20_423, 20_788] {
            let name = format!("audit_events_p{}", civil_from_days(day));
            assert_eq!(day_of(&name), Some(day), "{name}");
        }
        assert_eq!(civil_from_days(0), "19700101");
        assert_eq!(civil_from_days(20_423), "20251201");
        assert_eq!(day_of("audit_events_default"), None);
    }
}
