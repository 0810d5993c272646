-- API keys clients present instead of an OIDC token. Only the SHA-256 of a key is
-- kept; `prefix` (the key's first characters) lets people recognise one in a list.
-- A revoked key keeps its row (who had it, when it stopped working).
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    prefix       TEXT NOT NULL,
    hash         BYTEA NOT NULL UNIQUE,
    subject      TEXT NOT NULL,
    groups       TEXT[] NOT NULL DEFAULT '{}',
    description  TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);

-- Hawser's own signing keys (ES256), for the assertions it sends upstreams about
-- the caller (identity mode `jwt`). The private key is sealed with the keyring.
-- A retired key is no longer used to sign but stays published for a day, so that
-- assertions signed just before a rotation still verify.
CREATE TABLE signing_keys (
    kid        TEXT PRIMARY KEY,
    sealed_key TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    retired_at TIMESTAMPTZ
);

-- The caller's groups on every audit event (a JSON array; NULL when none).
ALTER TABLE audit_events ADD COLUMN groups JSONB;
