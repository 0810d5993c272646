-- Per-user upstream tokens: `oauth_tokens` already keys rows by (connection, subject);
-- a flow now says whose token it obtains, and which browser may complete it.
ALTER TABLE oauth_pkce_states ADD COLUMN subject TEXT NOT NULL DEFAULT '';
-- SHA-256 of the cookie the consent link set in the browser that opened it; the
-- callback must come from that browser. NULL for flows an operator started.
ALTER TABLE oauth_pkce_states ADD COLUMN browser_hash BYTEA;

-- The caller's per-user tokens, for "my connections".
CREATE INDEX oauth_tokens_subject ON oauth_tokens (subject) WHERE subject <> '';

-- Consent links already opened: each works once. Swept once expired.
CREATE TABLE oauth_consent_links (
    nonce_hash BYTEA PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX oauth_consent_links_expires ON oauth_consent_links (expires_at);
