//! `api_keys` rows: hashes of the API keys clients present.

use sqlx::PgPool;

use crate::crypto::IdHash;
use crate::store::{ApiKeyRecord, Error, Result, SigningKeyRecord};

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    prefix: String,
    hash: Vec<u8>,
    subject: String,
    groups: Vec<String>,
    description: Option<String>,
    created_at: i64,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
}

pub(super) async fn create(pool: &PgPool, key: &ApiKeyRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_keys (id, prefix, hash, subject, groups, description, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7), to_timestamp($8))",
    )
    .bind(&key.id)
    .bind(&key.prefix)
    .bind(key.hash.as_bytes().as_slice())
    .bind(&key.subject)
    .bind(&key.groups)
    .bind(&key.description)
    .bind(key.created_at as f64)
    .bind(key.expires_at.map(|t| t as f64))
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn list(pool: &PgPool) -> Result<Vec<ApiKeyRecord>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, prefix, hash, subject, groups, description, \
         extract(epoch FROM created_at)::bigint AS created_at, \
         extract(epoch FROM expires_at)::bigint AS expires_at, \
         extract(epoch FROM last_used_at)::bigint AS last_used_at, \
         extract(epoch FROM revoked_at)::bigint AS revoked_at \
         FROM api_keys ORDER BY created_at DESC, id",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(ApiKeyRecord {
                hash: IdHash::from_bytes(&r.hash).ok_or_else(|| {
                    Error::Corrupt(format!("api key {}: hash is not 32 bytes", r.id))
                })?,
                id: r.id,
                prefix: r.prefix,
                subject: r.subject,
                groups: r.groups,
                description: r.description,
                created_at: r.created_at,
                expires_at: r.expires_at,
                last_used_at: r.last_used_at,
                revoked_at: r.revoked_at,
            })
        })
        .collect()
}

pub(super) async fn revoke(pool: &PgPool, id: &str) -> Result<bool> {
    let done =
        sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .execute(pool)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// One statement for the whole batch; a later time never goes back.
pub(super) async fn touch(pool: &PgPool, used: &[(String, i64)]) -> Result<()> {
    if used.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = used.iter().map(|(id, _)| id.as_str()).collect();
    let at: Vec<f64> = used.iter().map(|(_, t)| *t as f64).collect();
    sqlx::query(
        "UPDATE api_keys k SET last_used_at = GREATEST(k.last_used_at, to_timestamp(u.at)) \
         FROM unnest($1::text[], $2::float8[]) AS u(id, at) WHERE k.id = u.id",
    )
    .bind(ids)
    .bind(at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Sealing context of a signing key: a sealed key cannot be moved to another kid.
fn signing_context(kid: &str) -> String {
    format!("signing_keys:{kid}")
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    kid: String,
    sealed_key: String,
    created_at: i64,
    retired_at: Option<i64>,
}

pub(super) async fn signing_keys(
    pool: &PgPool,
    keyring: &crate::crypto::Keyring,
) -> Result<Vec<SigningKeyRecord>> {
    let rows: Vec<KeyRow> = sqlx::query_as(
        "SELECT kid, sealed_key, extract(epoch FROM created_at)::bigint AS created_at, \
         extract(epoch FROM retired_at)::bigint AS retired_at FROM signing_keys \
         WHERE retired_at IS NULL OR retired_at > now() - interval '1 day' \
         ORDER BY created_at DESC, kid",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(SigningKeyRecord {
                pkcs8: keyring.unseal(&r.sealed_key, &signing_context(&r.kid))?,
                kid: r.kid,
                created_at: r.created_at,
                retired_at: r.retired_at,
            })
        })
        .collect()
}

pub(super) async fn rotate_signing_key(
    pool: &PgPool,
    keyring: &crate::crypto::Keyring,
    key: &SigningKeyRecord,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE signing_keys SET retired_at = now() WHERE retired_at IS NULL")
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM signing_keys WHERE retired_at < now() - interval '1 day'")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO signing_keys (kid, sealed_key, created_at) VALUES ($1, $2, to_timestamp($3))",
    )
    .bind(&key.kid)
    .bind(keyring.seal(&key.pkcs8, &signing_context(&key.kid)))
    .bind(key.created_at as f64)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Re-seals signing keys sealed with an older key; how many were rewritten.
pub(super) async fn reseal(pool: &PgPool, keyring: &crate::crypto::Keyring) -> Result<usize> {
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT kid, sealed_key FROM signing_keys")
        .fetch_all(pool)
        .await?;
    let mut count = 0;
    for (kid, sealed) in rows {
        if let Some(fresh) = keyring.reseal(&sealed, &signing_context(&kid))? {
            let done = sqlx::query(
                "UPDATE signing_keys SET sealed_key = $2 WHERE kid = $1 AND sealed_key = $3",
            )
            .bind(&kid)
            .bind(&fresh)
            .bind(&sealed)
            .execute(pool)
            .await?;
            count += done.rows_affected() as usize;
        }
    }
    Ok(count)
}
