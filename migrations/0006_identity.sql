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
