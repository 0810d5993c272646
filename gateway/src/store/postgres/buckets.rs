//! `rate_buckets`: shared token buckets, leased from in one statement.

use sqlx::PgPool;

use crate::store::{Lease, Result};

/// Refills `key` by the time elapsed at `rate` per second up to `burst` (a new bucket
/// starts full), takes up to `want` whole tokens, and says how many and what is left.
/// The row lock of `ON CONFLICT DO UPDATE` makes concurrent leases take turns.
pub(super) async fn lease(
    pool: &PgPool,
    key: &str,
    rate: f64,
    burst: f64,
    want: u32,
) -> Result<Lease> {
    let (taken, left): (i32, f64) = sqlx::query_as(
        "INSERT INTO rate_buckets AS b (key, tokens, last_taken, updated_at)
         VALUES ($1, $2 - LEAST($4, floor($2)), LEAST($4, floor($2))::int, now())
         ON CONFLICT (key) DO UPDATE SET
             last_taken = LEAST($4, floor(LEAST($2, b.tokens
                 + EXTRACT(EPOCH FROM now() - b.updated_at) * $3)))::int,
             tokens = LEAST($2, b.tokens + EXTRACT(EPOCH FROM now() - b.updated_at) * $3)
                 - LEAST($4, floor(LEAST($2, b.tokens
                     + EXTRACT(EPOCH FROM now() - b.updated_at) * $3))),
             updated_at = now()
         RETURNING last_taken, tokens",
    )
    .bind(key)
    .bind(burst)
    .bind(rate)
    .bind(f64::from(want))
    .fetch_one(pool)
    .await?;
    Ok(Lease {
        granted: u32::try_from(taken.max(0)).unwrap_or(0),
        left,
    })
}

/// Deletes buckets unused for `age` (a refilled bucket is full again anyway).
pub(super) async fn sweep(pool: &PgPool, age: std::time::Duration) -> Result<u64> {
    let done = sqlx::query(
        "DELETE FROM rate_buckets WHERE updated_at < now() - make_interval(secs => $1)",
    )
    .bind(age.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Replicas that reported status in the last two minutes.
pub(super) async fn live_replicas(pool: &PgPool) -> Result<usize> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT replica) FROM connection_status WHERE updated_at > now() - interval '2 minutes'",
    )
    .fetch_one(pool)
    .await?;
    Ok(usize::try_from(n).unwrap_or(1).max(1))
}
