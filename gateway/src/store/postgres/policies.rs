//! `policies` rows: the McpPolicy schema, with the connections each one targets.
//! The table's trigger announces every change on the bus.

use sqlx::PgPool;

use crate::config::Source;
use crate::store::{Error, Result, StoredPolicy};

#[derive(sqlx::FromRow)]
struct Row {
    name: String,
    spec: serde_json::Value,
    source: String,
    connections: Vec<String>,
    generation: Option<i64>,
}

pub(super) async fn list(pool: &PgPool) -> Result<Vec<StoredPolicy>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT name, spec, source, connections, generation FROM policies ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(StoredPolicy {
                source: Source::parse(&r.source).ok_or_else(|| {
                    Error::Corrupt(format!("policy {}: source {:?}", r.name, r.source))
                })?,
                spec: serde_json::from_value(r.spec).map_err(|e| e.to_string()),
                name: r.name,
                connections: r.connections,
                generation: r.generation,
            })
        })
        .collect()
}

pub(super) async fn put(
    pool: &PgPool,
    name: &str,
    spec: &hawser_crds::McpPolicySpec,
    source: Source,
    connections: &[String],
    generation: Option<i64>,
) -> Result<bool> {
    let spec = serde_json::to_value(spec).map_err(|e| Error::Corrupt(e.to_string()))?;
    let created: bool = sqlx::query_scalar(
        "INSERT INTO policies (name, spec, source, connections, generation) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name) DO UPDATE SET spec = $2, source = $3, connections = $4, generation = $5,
             updated_at = now()
         RETURNING (xmax = 0)",
    )
    .bind(name)
    .bind(spec)
    .bind(source.as_str())
    .bind(connections)
    .bind(generation)
    .fetch_one(pool)
    .await?;
    Ok(!created)
}

pub(super) async fn delete(pool: &PgPool, name: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM policies WHERE name = $1")
        .bind(name)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn prune(pool: &PgPool, source: Source, keep: &[String]) -> Result<Vec<String>> {
    let gone: Vec<String> = sqlx::query_scalar(
        "DELETE FROM policies WHERE source = $1 AND NOT (name = ANY($2)) RETURNING name",
    )
    .bind(source.as_str())
    .bind(keep)
    .fetch_all(pool)
    .await?;
    Ok(gone)
}
