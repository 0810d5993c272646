//! `connections` rows. Secret values are taken out of the spec and sealed together in
//! `credentials`; the stored spec holds a placeholder where each one was.

use hawser_crds::McpConnectionSpec;
use serde_json::Value;
use sqlx::PgPool;

use crate::config::{ConnectionConfig, Source};
use crate::crypto::Keyring;
use crate::store::{Error, PutOutcome, Result, StoredConnection};

/// Stands where a sealed value was taken out of the stored spec.
const PLACEHOLDER: &str = "<sealed>";

/// Associated data binding a connection's sealed credentials to its name.
pub(crate) fn credentials_context(name: &str) -> String {
    format!("connection:{name}:credentials")
}

#[derive(sqlx::FromRow)]
struct Row {
    name: String,
    spec: Value,
    credentials: Option<String>,
    source: String,
    generation: Option<i64>,
    revision: i64,
    updated_at_ms: Option<i64>,
}

/// Splits a spec into (spec with placeholders, sealed credentials).
pub(crate) fn seal_spec(
    keyring: &Keyring,
    name: &str,
    spec: &McpConnectionSpec,
) -> Result<(Value, Option<String>)> {
    let mut json = serde_json::to_value(spec).map_err(|e| Error::Corrupt(e.to_string()))?;
    let mut secrets = serde_json::Map::new();
    for (pointer, value) in spec.secrets() {
        let Some(plain) = value.inline() else {
            return Err(Error::Corrupt(format!(
                "{pointer}: only resolved (inline) secrets can be stored"
            )));
        };
        secrets.insert(pointer.clone(), Value::String(plain.to_owned()));
        if let Some(slot) = json.pointer_mut(&pointer) {
            *slot = Value::String(PLACEHOLDER.to_owned());
        }
    }
    if secrets.is_empty() {
        return Ok((json, None));
    }
    let plain = serde_json::to_vec(&secrets).map_err(|e| Error::Corrupt(e.to_string()))?;
    Ok((json, Some(keyring.seal(&plain, &credentials_context(name)))))
}

/// Puts the unsealed secrets back into a stored spec.
pub(crate) fn unseal_spec(
    keyring: &Keyring,
    name: &str,
    mut json: Value,
    credentials: Option<&str>,
) -> Result<McpConnectionSpec, String> {
    if let Some(sealed) = credentials {
        let plain = keyring
            .unseal(sealed, &credentials_context(name))
            .map_err(|e| format!("cannot unseal credentials: {e}"))?;
        let secrets: serde_json::Map<String, Value> = serde_json::from_slice(&plain)
            .map_err(|_| "sealed credentials are not a JSON object".to_owned())?;
        for (pointer, value) in secrets {
            match json.pointer_mut(&pointer) {
                Some(slot) => *slot = value,
                None => {
                    return Err(format!(
                        "sealed credential {pointer} has no place in the spec"
                    ));
                }
            }
        }
    }
    serde_json::from_value(json).map_err(|e| format!("stored spec is invalid: {e}"))
}

fn to_stored(keyring: &Keyring, row: Row) -> Result<StoredConnection> {
    let source = Source::parse(&row.source).ok_or_else(|| {
        Error::Corrupt(format!(
            "connection {}: unknown source {:?}",
            row.name, row.source
        ))
    })?;
    let spec = unseal_spec(keyring, &row.name, row.spec, row.credentials.as_deref());
    Ok(StoredConnection {
        name: row.name,
        source,
        revision: row.revision,
        generation: row.generation,
        updated_at: row.updated_at_ms.map(crate::clock::Timestamp::from_millis),
        spec,
    })
}

/// `SELECT <row columns> FROM connections <tail>`, as one literal.
macro_rules! select {
    ($tail:literal) => {
        concat!(
            "SELECT name, spec, credentials, source, generation, revision, ",
            "(EXTRACT(EPOCH FROM updated_at) * 1000)::bigint AS updated_at_ms FROM connections ",
            $tail
        )
    };
}

pub(super) async fn list(pool: &PgPool, keyring: &Keyring) -> Result<Vec<StoredConnection>> {
    let rows: Vec<Row> = sqlx::query_as(select!("ORDER BY name"))
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(|r| to_stored(keyring, r)).collect()
}

pub(super) async fn get(
    pool: &PgPool,
    keyring: &Keyring,
    name: &str,
) -> Result<Option<StoredConnection>> {
    let row: Option<Row> = sqlx::query_as(select!("WHERE name = $1"))
        .bind(name)
        .fetch_optional(pool)
        .await?;
    row.map(|r| to_stored(keyring, r)).transpose()
}

pub(super) async fn put(
    pool: &PgPool,
    keyring: &Keyring,
    conn: &ConnectionConfig,
    generation: Option<i64>,
) -> Result<PutOutcome> {
    let mut tx = pool.begin().await?;
    // Serialize writers of this name so "unchanged?" and the write see the same row.
    let current: Option<Row> = sqlx::query_as(select!("WHERE name = $1 FOR UPDATE"))
        .bind(&conn.name)
        .fetch_optional(&mut *tx)
        .await?;
    if let Some(row) = &current {
        let same_spec = unseal_spec(
            keyring,
            &row.name,
            row.spec.clone(),
            row.credentials.as_deref(),
        )
        .is_ok_and(|spec| spec == conn.spec);
        if same_spec && row.source == conn.source.as_str() && row.generation == generation {
            tx.commit().await?;
            return Ok(PutOutcome::Unchanged {
                revision: row.revision,
            });
        }
    }
    let (spec, credentials) = seal_spec(keyring, &conn.name, &conn.spec)?;
    let revision: i64 = sqlx::query_scalar(
        "INSERT INTO connections (name, spec, credentials, source, generation)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name) DO UPDATE
            SET spec = EXCLUDED.spec, credentials = EXCLUDED.credentials,
                source = EXCLUDED.source, generation = EXCLUDED.generation
         RETURNING revision",
    )
    .bind(&conn.name)
    .bind(&spec)
    .bind(&credentials)
    .bind(conn.source.as_str())
    .bind(generation)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(if current.is_some() {
        PutOutcome::Updated { revision }
    } else {
        PutOutcome::Created { revision }
    })
}

pub(super) async fn delete(pool: &PgPool, name: &str) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query("DELETE FROM connections WHERE name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    // A connection's tokens and pending flows go with it.
    sqlx::query("DELETE FROM oauth_tokens WHERE connection = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM oauth_pkce_states WHERE connection = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn prune(pool: &PgPool, source: Source, keep: &[String]) -> Result<Vec<String>> {
    let mut tx = pool.begin().await?;
    let removed: Vec<String> = sqlx::query_scalar(
        "DELETE FROM connections WHERE source = $1 AND NOT (name = ANY($2)) RETURNING name",
    )
    .bind(source.as_str())
    .bind(keep)
    .fetch_all(&mut *tx)
    .await?;
    // Their tokens and pending flows go with them, as on delete.
    sqlx::query("DELETE FROM oauth_tokens WHERE connection = ANY($1)")
        .bind(&removed)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM oauth_pkce_states WHERE connection = ANY($1)")
        .bind(&removed)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(removed)
}

/// Re-seals every connection's credentials under the keyring's current key; returns
/// how many rows were rewritten.
pub(crate) async fn reseal(pool: &PgPool, keyring: &Keyring) -> Result<usize> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, credentials FROM connections WHERE credentials IS NOT NULL")
            .fetch_all(pool)
            .await?;
    let mut count = 0;
    for (name, sealed) in rows {
        if let Some(fresh) = keyring.reseal(&sealed, &credentials_context(&name))? {
            // Only rewrite if nobody changed the row meanwhile.
            let done = sqlx::query(
                "UPDATE connections SET credentials = $1 WHERE name = $2 AND credentials = $3",
            )
            .bind(&fresh)
            .bind(&name)
            .bind(&sealed)
            .execute(pool)
            .await?;
            count += done.rows_affected() as usize;
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_removes_every_secret_from_the_stored_spec() {
        let keyring = Keyring::parse(&Keyring::generate_entry()).unwrap();
        let spec: McpConnectionSpec = serde_json::from_value(serde_json::json!({
            "url": "http://x",
            "auth": {"type": "header", "headers": {"X-Api-Key": "k-123", "X-Other": "o-456"}}
        }))
        .unwrap();
        let (json, sealed) = seal_spec(&keyring, "svc", &spec).unwrap();
        let text = json.to_string();
        assert!(!text.contains("k-123") && !text.contains("o-456"), "{text}");
        let sealed = sealed.unwrap();
        assert!(!sealed.contains("k-123"));
        assert_eq!(
            unseal_spec(&keyring, "svc", json.clone(), Some(&sealed)).unwrap(),
            spec
        );
        // Bound to the name: another row's credentials do not unseal here.
        assert!(unseal_spec(&keyring, "other", json, Some(&sealed)).is_err());
    }
}
