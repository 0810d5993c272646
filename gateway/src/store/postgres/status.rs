//! `connection_status` rows: each replica's view of each connection.

use sqlx::PgPool;

use crate::store::{ConnectionStatus, Result};

#[derive(sqlx::FromRow)]
struct Row {
    connection: String,
    replica: String,
    state: String,
    tools: i32,
    last_error: Option<String>,
    auth_state: Option<String>,
    revision: i64,
    updated_at: f64,
}

pub(super) async fn write(pool: &PgPool, s: &ConnectionStatus) -> Result<()> {
    sqlx::query(
        "INSERT INTO connection_status (connection, replica, state, tools, last_error, auth_state, revision, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, now())
         ON CONFLICT (connection, replica) DO UPDATE
            SET state = EXCLUDED.state, tools = EXCLUDED.tools, last_error = EXCLUDED.last_error,
                auth_state = EXCLUDED.auth_state, revision = EXCLUDED.revision, updated_at = now()",
    )
    .bind(&s.connection)
    .bind(&s.replica)
    .bind(&s.state)
    .bind(s.tools)
    .bind(&s.last_error)
    .bind(&s.auth_state)
    .bind(s.revision)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn read(pool: &PgPool, connection: &str) -> Result<Vec<ConnectionStatus>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT connection, replica, state, tools, last_error, auth_state, revision,
                EXTRACT(EPOCH FROM updated_at)::float8 AS updated_at
         FROM connection_status WHERE connection = $1 ORDER BY replica",
    )
    .bind(connection)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ConnectionStatus {
            connection: r.connection,
            replica: r.replica,
            state: r.state,
            tools: r.tools,
            last_error: r.last_error,
            auth_state: r.auth_state,
            revision: r.revision,
            updated_at: std::time::UNIX_EPOCH
                + std::time::Duration::from_secs_f64(r.updated_at.max(0.0)),
        })
        .collect())
}

pub(super) async fn clear_replica(pool: &PgPool, replica: &str) -> Result<()> {
    sqlx::query("DELETE FROM connection_status WHERE replica = $1")
        .bind(replica)
        .execute(pool)
        .await?;
    Ok(())
}
