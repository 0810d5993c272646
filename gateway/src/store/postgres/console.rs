//! `console_session_revocations` rows: console sign-ins ended before their cookie
//! expires.

use sqlx::PgPool;

use crate::clock::Timestamp;
use crate::crypto::IdHash;
use crate::store::{ConsoleRevocation, Error, Result};

pub(super) async fn revoke(pool: &PgPool, revocation: &ConsoleRevocation) -> Result<()> {
    sqlx::query("DELETE FROM console_session_revocations WHERE expires_at < now()")
        .execute(pool)
        .await?;
    let (hash, subject, at, expires_at) = match revocation {
        ConsoleRevocation::Session { id, expires_at } => {
            (Some(id.as_bytes().to_vec()), None, None, *expires_at)
        }
        ConsoleRevocation::Subject {
            subject,
            at,
            expires_at,
        } => (None, Some(subject.as_str()), Some(*at), *expires_at),
    };
    sqlx::query(
        "INSERT INTO console_session_revocations (session_hash, subject, revoked_at, expires_at) \
         VALUES ($1, $2, coalesce(to_timestamp($3::float8 / 1000), now()), to_timestamp($4::float8 / 1000))",
    )
    .bind(hash)
    .bind(subject)
    .bind(at.map(|t| t.millis() as f64))
    .bind(expires_at.millis() as f64)
    .execute(pool)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    session_hash: Option<Vec<u8>>,
    subject: Option<String>,
    revoked_at: i64,
    expires_at: i64,
}

pub(super) async fn revocations(pool: &PgPool) -> Result<Vec<ConsoleRevocation>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, session_hash, subject, \
         (extract(epoch FROM revoked_at) * 1000)::bigint AS revoked_at, \
         (extract(epoch FROM expires_at) * 1000)::bigint AS expires_at \
         FROM console_session_revocations WHERE expires_at > now()",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            let expires_at = Timestamp::from_millis(r.expires_at);
            match (r.session_hash, r.subject) {
                (Some(hash), _) => Ok(ConsoleRevocation::Session {
                    id: IdHash::from_bytes(&hash).ok_or_else(|| {
                        Error::Corrupt(format!("console revocation {}: hash is not 32 bytes", r.id))
                    })?,
                    expires_at,
                }),
                (None, Some(subject)) => Ok(ConsoleRevocation::Subject {
                    subject,
                    at: Timestamp::from_millis(r.revoked_at),
                    expires_at,
                }),
                (None, None) => Err(Error::Corrupt(format!(
                    "console revocation {}: neither a session nor a subject",
                    r.id
                ))),
            }
        })
        .collect()
}
