//! Replica-to-replica messages over NOTIFY: `hawser_bus` reaches every replica,
//! `hawser_r_<token>` one replica. Payloads too large for NOTIFY travel through the
//! `bus_messages` table.

use sqlx::PgPool;

use crate::store::{BusMessage, Error, Result};

/// Channel every replica listens on.
pub const BROADCAST: &str = "hawser_bus";
/// NOTIFY payloads must stay under 8000 bytes; leave room for the envelope.
const MAX_INLINE: usize = 7000;

/// The channel of the replica with process token `token`.
pub fn replica_channel(token: &str) -> String {
    // Tokens are hex, but never let one break out of the identifier.
    let clean: String = token
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    format!("hawser_r_{clean}")
}

pub(super) async fn publish(pool: &PgPool, to: Option<&str>, message: &BusMessage) -> Result<()> {
    let channel = to
        .map(replica_channel)
        .unwrap_or_else(|| BROADCAST.to_owned());
    let mut payload = serde_json::to_string(message).map_err(|e| Error::Corrupt(e.to_string()))?;
    if payload.len() > MAX_INLINE {
        let id: i64 =
            sqlx::query_scalar("INSERT INTO bus_messages (payload) VALUES ($1) RETURNING id")
                .bind(&payload)
                .fetch_one(pool)
                .await?;
        payload = serde_json::json!({ "ref": id }).to_string();
    }
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(&channel)
        .bind(&payload)
        .execute(pool)
        .await?;
    Ok(())
}

/// Decodes a bus notification, fetching a stored payload when it refers to one.
pub(super) async fn receive(pool: &PgPool, payload: &str) -> Option<BusMessage> {
    #[derive(serde::Deserialize)]
    struct Ref {
        r#ref: i64,
    }
    if let Ok(r) = serde_json::from_str::<Ref>(payload) {
        let stored: Option<String> =
            sqlx::query_scalar("DELETE FROM bus_messages WHERE id = $1 RETURNING payload")
                .bind(r.r#ref)
                .fetch_optional(pool)
                .await
                .ok()
                .flatten();
        return stored.and_then(|p| serde_json::from_str(&p).ok());
    }
    match serde_json::from_str(payload) {
        Ok(m) => Some(m),
        Err(error) => {
            tracing::warn!(%error, "ignoring malformed bus message");
            None
        }
    }
}

/// Deletes stored payloads nobody took within an hour.
pub(super) async fn sweep(pool: &PgPool) -> Result<u64> {
    let done = sqlx::query("DELETE FROM bus_messages WHERE created_at < now() - interval '1 hour'")
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}
