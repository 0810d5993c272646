//! `oauth_tokens` and `oauth_pkce_states`: upstream tokens sealed at rest, the token
//! lock that serializes refreshes across replicas, single-use PKCE states.

use async_trait::async_trait;
use sqlx::{PgPool, Postgres, Transaction};

use crate::clock::Timestamp;
use crate::crypto::{IdHash, Keyring};
use crate::store::{Error, OAuthToken, PkceState, Result, TokenHolder, TokenLock};

/// What a sealed token is bound to: its connection and, for a per-user token, its
/// subject (a row copied to another user does not open).
fn access_context(connection: &str, subject: &str) -> String {
    if subject.is_empty() {
        format!("oauth:{connection}:access")
    } else {
        format!("oauth:{connection}:user:{subject}:access")
    }
}

fn refresh_context(connection: &str, subject: &str) -> String {
    if subject.is_empty() {
        format!("oauth:{connection}:refresh")
    } else {
        format!("oauth:{connection}:user:{subject}:refresh")
    }
}

fn pkce_context(state_hash: &IdHash) -> String {
    format!("pkce:{}", state_hash.to_hex())
}

#[derive(sqlx::FromRow)]
struct Row {
    connection: String,
    subject: String,
    access_token: String,
    refresh_token: Option<String>,
    token_type: String,
    expires_at_ms: Option<i64>,
    issued_at_ms: Option<i64>,
    scope: Option<String>,
    version: i64,
}

/// `SELECT <row columns> FROM oauth_tokens <tail>`, as one literal.
macro_rules! select_token {
    ($tail:literal) => {
        concat!(
            "SELECT connection, subject, access_token, refresh_token, token_type, ",
            "(EXTRACT(EPOCH FROM expires_at) * 1000)::bigint AS expires_at_ms, ",
            "(EXTRACT(EPOCH FROM updated_at) * 1000)::bigint AS issued_at_ms, scope, version FROM oauth_tokens ",
            $tail
        )
    };
}

fn unseal(keyring: &Keyring, row: Row) -> Result<OAuthToken> {
    let access_token = keyring.unseal_string(
        &row.access_token,
        &access_context(&row.connection, &row.subject),
    )?;
    let refresh_token = row
        .refresh_token
        .as_deref()
        .map(|r| keyring.unseal_string(r, &refresh_context(&row.connection, &row.subject)))
        .transpose()?;
    Ok(OAuthToken {
        connection: row.connection,
        subject: row.subject,
        access_token,
        refresh_token,
        token_type: row.token_type,
        expires_at: row.expires_at_ms.map(Timestamp::from_millis),
        issued_at: row.issued_at_ms.map(Timestamp::from_millis),
        scope: row.scope,
        version: row.version,
    })
}

pub(super) async fn get(
    pool: &PgPool,
    keyring: &Keyring,
    connection: &str,
    subject: &str,
) -> Result<Option<OAuthToken>> {
    let row: Option<Row> = sqlx::query_as(select_token!("WHERE connection = $1 AND subject = $2"))
        .bind(connection)
        .bind(subject)
        .fetch_optional(pool)
        .await?;
    row.map(|r| unseal(keyring, r)).transpose()
}

/// The token lock: a transaction holding a transaction-scoped advisory lock on one
/// (connection, subject), with the row read after the lock was granted. Users of one
/// connection refresh side by side; each user's refreshes are serialized.
pub(super) struct PgTokenLock {
    tx: Option<Transaction<'static, Postgres>>,
    keyring: Keyring,
    connection: String,
    subject: String,
    current: Option<OAuthToken>,
}

pub(super) async fn lock(
    pool: &PgPool,
    keyring: &Keyring,
    connection: &str,
    subject: &str,
) -> Result<PgTokenLock> {
    let mut tx = pool.begin().await?;
    // The shared token keeps the key it always had (replicas of the previous release
    // take the same lock during an upgrade).
    let key = if subject.is_empty() {
        format!("hawser-oauth:{connection}")
    } else {
        format!("hawser-oauth:{connection}:user:{subject}")
    };
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(&key)
        .execute(&mut *tx)
        .await?;
    let row: Option<Row> = sqlx::query_as(select_token!(
        "WHERE connection = $1 AND subject = $2 FOR UPDATE"
    ))
    .bind(connection)
    .bind(subject)
    .fetch_optional(&mut *tx)
    .await?;
    let current = row.map(|r| unseal(keyring, r)).transpose()?;
    Ok(PgTokenLock {
        tx: Some(tx),
        keyring: keyring.clone(),
        connection: connection.to_owned(),
        subject: subject.to_owned(),
        current,
    })
}

impl PgTokenLock {
    fn tx(&mut self) -> Result<&mut Transaction<'static, Postgres>> {
        self.tx
            .as_mut()
            .ok_or_else(|| Error::Corrupt("token lock already finished".into()))
    }
}

#[async_trait]
impl TokenLock for PgTokenLock {
    fn current(&self) -> Option<&OAuthToken> {
        self.current.as_ref()
    }

    async fn write(&mut self, token: &OAuthToken) -> Result<i64> {
        let access = self.keyring.seal(
            token.access_token.expose().as_bytes(),
            &access_context(&self.connection, &self.subject),
        );
        let refresh = token.refresh_token.as_ref().map(|r| {
            self.keyring.seal(
                r.expose().as_bytes(),
                &refresh_context(&self.connection, &self.subject),
            )
        });
        let connection = self.connection.clone();
        let subject = self.subject.clone();
        let version: i64 = sqlx::query_scalar(
            "INSERT INTO oauth_tokens (connection, subject, access_token, refresh_token, token_type, expires_at, scope, version, updated_at)
             VALUES ($1, $8, $2, $3, $4, to_timestamp($5), $6, 1, COALESCE(to_timestamp($7), now()))
             ON CONFLICT (connection, subject) DO UPDATE
                SET access_token = EXCLUDED.access_token, refresh_token = EXCLUDED.refresh_token,
                    token_type = EXCLUDED.token_type, expires_at = EXCLUDED.expires_at,
                    scope = EXCLUDED.scope, version = oauth_tokens.version + 1,
                    updated_at = EXCLUDED.updated_at
             RETURNING version",
        )
        .bind(&connection)
        .bind(&access)
        .bind(&refresh)
        .bind(&token.token_type)
        .bind(token.expires_at.map(Timestamp::secs_f64))
        .bind(&token.scope)
        .bind(token.issued_at.map(Timestamp::secs_f64))
        .bind(&subject)
        .fetch_one(&mut **self.tx()?)
        .await?;
        let mut stored = token.clone();
        stored.version = version;
        stored.subject = subject;
        self.current = Some(stored);
        Ok(version)
    }

    async fn delete(&mut self) -> Result<()> {
        let (connection, subject) = (self.connection.clone(), self.subject.clone());
        sqlx::query("DELETE FROM oauth_tokens WHERE connection = $1 AND subject = $2")
            .bind(&connection)
            .bind(&subject)
            .execute(&mut **self.tx()?)
            .await?;
        self.current = None;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<()> {
        if let Some(tx) = self.tx.take() {
            tx.commit().await?;
        }
        Ok(())
    }
}

pub(super) async fn put_pkce(pool: &PgPool, keyring: &Keyring, state: &PkceState) -> Result<()> {
    // Every new flow sweeps the ones that expired unused.
    sqlx::query("DELETE FROM oauth_pkce_states WHERE expires_at < now()")
        .execute(pool)
        .await?;
    let verifier = keyring.seal(
        state.verifier.expose().as_bytes(),
        &pkce_context(&state.state_hash),
    );
    sqlx::query(
        "INSERT INTO oauth_pkce_states (state_hash, connection, verifier, redirect_uri, expires_at, subject, browser_hash)
         VALUES ($1, $2, $3, $4, to_timestamp($5), $6, $7)",
    )
    .bind(&state.state_hash.as_bytes()[..])
    .bind(&state.connection)
    .bind(&verifier)
    .bind(&state.redirect_uri)
    .bind(state.expires_at.secs_f64())
    .bind(&state.subject)
    .bind(state.browser.as_ref().map(|b| b.as_bytes().to_vec()))
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn take_pkce(
    pool: &PgPool,
    keyring: &Keyring,
    state_hash: &IdHash,
) -> Result<Option<PkceState>> {
    type Taken = (String, String, String, i64, String, Option<Vec<u8>>);
    let row: Option<Taken> = sqlx::query_as(
        "DELETE FROM oauth_pkce_states WHERE state_hash = $1
         RETURNING connection, verifier, redirect_uri, (EXTRACT(EPOCH FROM expires_at) * 1000)::bigint,
                   subject, browser_hash",
    )
    .bind(&state_hash.as_bytes()[..])
    .fetch_optional(pool)
    .await?;
    let Some((connection, verifier, redirect_uri, expires_at, subject, browser)) = row else {
        return Ok(None);
    };
    let expires_at = Timestamp::from_millis(expires_at);
    if expires_at < Timestamp::now() {
        return Ok(None);
    }
    Ok(Some(PkceState {
        state_hash: *state_hash,
        connection,
        subject,
        browser: browser.as_deref().and_then(IdHash::from_bytes),
        verifier: keyring.unseal_string(&verifier, &pkce_context(state_hash))?,
        redirect_uri,
        expires_at,
    }))
}

/// Re-seals token and PKCE rows under the current key; returns how many values changed.
pub(super) async fn reseal(pool: &PgPool, keyring: &Keyring) -> Result<usize> {
    let mut count = 0;
    let rows: Vec<(String, String, String, Option<String>)> =
        sqlx::query_as("SELECT connection, subject, access_token, refresh_token FROM oauth_tokens")
            .fetch_all(pool)
            .await?;
    for (connection, subject, access, refresh) in rows {
        let new_access = keyring.reseal(&access, &access_context(&connection, &subject))?;
        let new_refresh = match &refresh {
            Some(r) => keyring.reseal(r, &refresh_context(&connection, &subject))?,
            None => None,
        };
        if new_access.is_none() && new_refresh.is_none() {
            continue;
        }
        let done = sqlx::query(
            "UPDATE oauth_tokens SET access_token = $2, refresh_token = $3
             WHERE connection = $1 AND subject = $6 AND access_token = $4
               AND refresh_token IS NOT DISTINCT FROM $5",
        )
        .bind(&connection)
        .bind(new_access.as_deref().unwrap_or(&access))
        .bind(new_refresh.as_deref().or(refresh.as_deref()))
        .bind(&access)
        .bind(&refresh)
        .bind(&subject)
        .execute(pool)
        .await?;
        count += done.rows_affected() as usize
            * (usize::from(new_access.is_some()) + usize::from(new_refresh.is_some()));
    }
    let states: Vec<(Vec<u8>, String)> =
        sqlx::query_as("SELECT state_hash, verifier FROM oauth_pkce_states")
            .fetch_all(pool)
            .await?;
    for (hash, verifier) in states {
        let Some(hash) = IdHash::from_bytes(&hash) else {
            continue;
        };
        if let Some(fresh) = keyring.reseal(&verifier, &pkce_context(&hash))? {
            let done = sqlx::query("UPDATE oauth_pkce_states SET verifier = $2 WHERE state_hash = $1 AND verifier = $3")
                .bind(&hash.as_bytes()[..])
                .bind(&fresh)
                .bind(&verifier)
                .execute(pool)
                .await?;
            count += done.rows_affected() as usize;
        }
    }
    Ok(count)
}

pub(super) async fn holders(
    pool: &PgPool,
    connection: Option<&str>,
    subject: Option<&str>,
) -> Result<Vec<TokenHolder>> {
    let rows: Vec<(String, String, Option<i64>, i64, bool)> = sqlx::query_as(
        "SELECT connection, subject, (EXTRACT(EPOCH FROM expires_at) * 1000)::bigint,
                (EXTRACT(EPOCH FROM updated_at) * 1000)::bigint, refresh_token IS NOT NULL
         FROM oauth_tokens
         WHERE subject <> '' AND ($1::text IS NULL OR connection = $1)
           AND ($2::text IS NULL OR subject = $2)
         ORDER BY connection, subject",
    )
    .bind(connection)
    .bind(subject)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(connection, subject, expires_at, updated_at, refreshable)| TokenHolder {
                connection,
                subject,
                expires_at,
                updated_at,
                refreshable,
            },
        )
        .collect())
}

pub(super) async fn claim_consent_link(
    pool: &PgPool,
    nonce: &IdHash,
    expires_at: Timestamp,
) -> Result<bool> {
    sqlx::query("DELETE FROM oauth_consent_links WHERE expires_at < now()")
        .execute(pool)
        .await?;
    let done = sqlx::query(
        "INSERT INTO oauth_consent_links (nonce_hash, expires_at) VALUES ($1, to_timestamp($2))
         ON CONFLICT DO NOTHING",
    )
    .bind(&nonce.as_bytes()[..])
    .bind(expires_at.secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
