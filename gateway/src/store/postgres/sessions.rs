//! `sessions` rows: client sessions shared by every replica.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::PgPool;

use super::{SESSIONS_CHANNEL, storable};
use crate::crypto::IdHash;
use crate::endpoint::Endpoint;
use crate::store::{Error, ResourceSubscription, Result, SessionRecord, UpstreamSession};

#[derive(sqlx::FromRow)]
struct Row {
    id_hash: Vec<u8>,
    subject: String,
    endpoint: String,
    protocol_version: String,
    client_info: Option<String>,
    client_capabilities: Option<String>,
    upstreams: serde_json::Value,
    log_level: Option<String>,
    resource_subscriptions: serde_json::Value,
}

/// `SELECT <row columns> FROM sessions <tail>`, as one literal.
macro_rules! select {
    ($tail:literal) => {
        concat!(
            "SELECT id_hash, subject, endpoint, protocol_version, client_info::text AS client_info, ",
            "client_capabilities::text AS client_capabilities, upstreams, log_level, ",
            "resource_subscriptions FROM sessions ",
            $tail
        )
    };
}

fn to_record(row: Row) -> Result<SessionRecord> {
    let id_hash = IdHash::from_bytes(&row.id_hash)
        .ok_or_else(|| Error::Corrupt("session id hash is not 32 bytes".into()))?;
    let upstreams: BTreeMap<String, UpstreamSession> = serde_json::from_value(row.upstreams)
        .map_err(|e| Error::Corrupt(format!("session upstreams: {e}")))?;
    let resource_subscriptions = serde_json::from_value(row.resource_subscriptions)
        .map_err(|e| Error::Corrupt(format!("session resource subscriptions: {e}")))?;
    Ok(SessionRecord {
        id_hash,
        subject: row.subject,
        endpoint: Endpoint::from_stored(&row.endpoint),
        protocol_version: row.protocol_version,
        client_info: row.client_info.and_then(raw),
        client_capabilities: row.client_capabilities.and_then(raw),
        upstreams,
        log_level: row.log_level,
        resource_subscriptions,
    })
}

/// A client-sent JSON value as text `jsonb` accepts (see [`storable::json`]).
fn storable_json(value: &Option<Box<serde_json::value::RawValue>>) -> Option<String> {
    value
        .as_ref()
        .map(|v| storable::json(v.get()).0.into_owned())
}

/// A `jsonb` column read back as text.
fn raw(text: String) -> Option<Box<serde_json::value::RawValue>> {
    serde_json::value::RawValue::from_string(text).ok()
}

pub(super) async fn create(pool: &PgPool, s: &SessionRecord) -> Result<()> {
    let upstreams =
        serde_json::to_value(&s.upstreams).map_err(|e| Error::Corrupt(e.to_string()))?;
    sqlx::query(
        "INSERT INTO sessions (id_hash, subject, endpoint, protocol_version, client_info, client_capabilities, upstreams, log_level)
         VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8)",
    )
    .bind(&s.id_hash.as_bytes()[..])
    .bind(storable::text(&s.subject).0.as_ref())
    .bind(s.endpoint.as_stored())
    .bind(storable::text(&s.protocol_version).0.as_ref())
    .bind(storable_json(&s.client_info))
    .bind(storable_json(&s.client_capabilities))
    .bind(upstreams)
    .bind(&s.log_level)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn get(pool: &PgPool, id_hash: &IdHash) -> Result<Option<SessionRecord>> {
    let row: Option<Row> = sqlx::query_as(select!("WHERE id_hash = $1"))
        .bind(&id_hash.as_bytes()[..])
        .fetch_optional(pool)
        .await?;
    row.map(to_record).transpose()
}

/// Ends a session; what it held (its upstream sessions, which this replica may not
/// know of) comes back.
pub(super) async fn end(pool: &PgPool, id_hash: &IdHash) -> Result<Option<SessionRecord>> {
    let mut tx = pool.begin().await?;
    let row: Option<Row> = sqlx::query_as(
        "DELETE FROM sessions WHERE id_hash = $1
         RETURNING id_hash, subject, endpoint, protocol_version, client_info::text AS client_info,
                   client_capabilities::text AS client_capabilities, upstreams, log_level,
                   resource_subscriptions",
    )
    .bind(&id_hash.as_bytes()[..])
    .fetch_optional(&mut *tx)
    .await?;
    let ended = row.map(to_record).transpose()?;
    if ended.is_some() {
        notify_ended(&mut tx, id_hash).await?;
    }
    tx.commit().await?;
    Ok(ended)
}

async fn notify_ended(tx: &mut sqlx::PgConnection, id_hash: &IdHash) -> Result<()> {
    let payload = serde_json::json!({"op": "end", "id": id_hash.to_hex()}).to_string();
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(SESSIONS_CHANNEL)
        .bind(payload)
        .execute(tx)
        .await?;
    Ok(())
}

pub(super) async fn set_upstream(
    pool: &PgPool,
    id_hash: &IdHash,
    connection: &str,
    upstream: &UpstreamSession,
) -> Result<UpstreamSession> {
    let value = serde_json::to_value(upstream).map_err(|e| Error::Corrupt(e.to_string()))?;
    // Record ours unless another replica recorded one for this revision (or newer)
    // first; either way answer with what is recorded now.
    let recorded: Option<serde_json::Value> = sqlx::query_scalar(
        "WITH updated AS (
             UPDATE sessions SET upstreams = jsonb_set(upstreams, ARRAY[$2], $3)
             WHERE id_hash = $1
               AND (NOT upstreams ? $2 OR COALESCE((upstreams -> $2 ->> 'revision')::bigint, 0) < $4)
             RETURNING upstreams -> $2 AS u)
         SELECT u FROM updated
         UNION ALL
         SELECT upstreams -> $2 FROM sessions WHERE id_hash = $1 AND NOT EXISTS (SELECT 1 FROM updated)",
    )
    .bind(&id_hash.as_bytes()[..])
    .bind(connection)
    .bind(&value)
    .bind(upstream.revision)
    .fetch_optional(pool)
    .await?
    .flatten();
    match recorded {
        Some(v) => {
            serde_json::from_value(v).map_err(|e| Error::Corrupt(format!("session upstream: {e}")))
        }
        // The session ended meanwhile: nothing recorded; the caller's request fails on its own.
        None => Ok(upstream.clone()),
    }
}

pub(super) async fn clear_upstream(
    pool: &PgPool,
    id_hash: &IdHash,
    connection: &str,
    stale_id: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE sessions SET upstreams = upstreams - $2
         WHERE id_hash = $1 AND (upstreams -> $2 ->> 'id') IS NOT DISTINCT FROM $3",
    )
    .bind(&id_hash.as_bytes()[..])
    .bind(connection)
    .bind(stale_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// See [`crate::store::Store::set_resource_subscription`]. One statement per change,
/// so two replicas changing one session's subscriptions at once both count.
pub(super) async fn set_resource_subscription(
    pool: &PgPool,
    id_hash: &IdHash,
    subscription: &ResourceSubscription,
    subscribed: bool,
    max: usize,
) -> Result<bool> {
    // Objects, compared whole: `@>` on two-element arrays would ignore their order.
    let one = serde_json::to_value([subscription]).map_err(|e| Error::Corrupt(e.to_string()))?;
    if !subscribed {
        sqlx::query(
            "UPDATE sessions SET resource_subscriptions = COALESCE(
                 (SELECT jsonb_agg(s) FROM jsonb_array_elements(resource_subscriptions) s
                  WHERE s <> $2 -> 0), '[]')
             WHERE id_hash = $1 AND resource_subscriptions @> $2",
        )
        .bind(&id_hash.as_bytes()[..])
        .bind(&one)
        .execute(pool)
        .await?;
        return Ok(true);
    }
    let max = i32::try_from(max).unwrap_or(i32::MAX);
    let held = sqlx::query(
        "UPDATE sessions SET resource_subscriptions = CASE
             WHEN resource_subscriptions @> $2 THEN resource_subscriptions
             ELSE resource_subscriptions || $2 END
         WHERE id_hash = $1
           AND (resource_subscriptions @> $2 OR jsonb_array_length(resource_subscriptions) < $3)",
    )
    .bind(&id_hash.as_bytes()[..])
    .bind(&one)
    .bind(max)
    .execute(pool)
    .await?;
    if held.rows_affected() > 0 {
        return Ok(true);
    }
    // Full, or the session is gone.
    let live: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sessions WHERE id_hash = $1)")
            .bind(&id_hash.as_bytes()[..])
            .fetch_one(pool)
            .await?;
    Ok(!live)
}

pub(super) async fn set_log_level(pool: &PgPool, id_hash: &IdHash, level: &str) -> Result<()> {
    sqlx::query("UPDATE sessions SET log_level = $2 WHERE id_hash = $1")
        .bind(&id_hash.as_bytes()[..])
        .bind(level)
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn touch(pool: &PgPool, id_hashes: &[IdHash]) -> Result<()> {
    if id_hashes.is_empty() {
        return Ok(());
    }
    let ids: Vec<Vec<u8>> = id_hashes.iter().map(|h| h.as_bytes().to_vec()).collect();
    sqlx::query("UPDATE sessions SET last_seen_at = now() WHERE id_hash = ANY($1)")
        .bind(ids)
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn sweep(pool: &PgPool, idle: Duration) -> Result<Vec<SessionRecord>> {
    let mut tx = pool.begin().await?;
    let rows: Vec<Row> = sqlx::query_as(
        "DELETE FROM sessions WHERE last_seen_at < now() - make_interval(secs => $1)
         RETURNING id_hash, subject, endpoint, protocol_version, client_info::text AS client_info,
                   client_capabilities::text AS client_capabilities, upstreams, log_level,
                   resource_subscriptions",
    )
    .bind(idle.as_secs_f64())
    .fetch_all(&mut *tx)
    .await?;
    let records: Vec<SessionRecord> = rows.into_iter().map(to_record).collect::<Result<_>>()?;
    for r in &records {
        notify_ended(&mut tx, &r.id_hash).await?;
    }
    tx.commit().await?;
    Ok(records)
}
