//! `connection_status` rows: each replica's view of each connection.

use sqlx::PgPool;

use crate::clock::Timestamp;
use crate::store::{AuthState, ConnectionState, ConnectionStatus, Error, Result};

#[derive(sqlx::FromRow)]
struct Row {
    connection: String,
    replica: String,
    state: String,
    tools: i32,
    last_error: Option<String>,
    problems: serde_json::Value,
    auth_state: Option<String>,
    revision: i64,
    updated_at_ms: i64,
}

pub(super) async fn write(pool: &PgPool, s: &ConnectionStatus) -> Result<()> {
    sqlx::query(
        "INSERT INTO connection_status (connection, replica, state, tools, last_error, problems, auth_state, revision, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
         ON CONFLICT (connection, replica) DO UPDATE
            SET state = EXCLUDED.state, tools = EXCLUDED.tools, last_error = EXCLUDED.last_error,
                problems = EXCLUDED.problems, auth_state = EXCLUDED.auth_state,
                revision = EXCLUDED.revision, updated_at = now()",
    )
    .bind(&s.connection)
    .bind(&s.replica)
    .bind(s.state.as_str())
    .bind(s.tools)
    .bind(&s.last_error)
    .bind(serde_json::to_value(&s.problems).map_err(|e| Error::Corrupt(e.to_string()))?)
    .bind(s.auth_state.map(AuthState::as_str))
    .bind(s.revision)
    .execute(pool)
    .await?;
    Ok(())
}

/// The rows of `connection`, or of every connection (ordered by connection).
pub(super) async fn read(pool: &PgPool, connection: Option<&str>) -> Result<Vec<ConnectionStatus>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT connection, replica, state, tools, last_error, problems, auth_state, revision,
                (EXTRACT(EPOCH FROM updated_at) * 1000)::bigint AS updated_at_ms
         FROM connection_status WHERE ($1::text IS NULL OR connection = $1)
         ORDER BY connection, replica",
    )
    .bind(connection)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(ConnectionStatus {
                state: ConnectionState::parse(&r.state).ok_or_else(|| {
                    Error::Corrupt(format!("unknown connection state {:?}", r.state))
                })?,
                // A newer release's kinds this one does not know are left out.
                problems: serde_json::from_value::<Vec<serde_json::Value>>(r.problems)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|p| serde_json::from_value(p).ok())
                    .collect(),
                auth_state: r.auth_state.as_deref().and_then(AuthState::parse),
                connection: r.connection,
                replica: r.replica,
                tools: r.tools,
                last_error: r.last_error,
                revision: r.revision,
                updated_at: Timestamp::from_millis(r.updated_at_ms),
            })
        })
        .collect()
}

pub(super) async fn clear_replica(pool: &PgPool, replica: &str) -> Result<()> {
    sqlx::query("DELETE FROM connection_status WHERE replica = $1")
        .bind(replica)
        .execute(pool)
        .await?;
    Ok(())
}
