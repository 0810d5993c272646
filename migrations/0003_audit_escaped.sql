-- Text Postgres cannot store (NUL in text, \u0000 or a lone surrogate in jsonb) is
-- written as its escape in plain characters; `escaped` marks the rows where that
-- happened, so a reader knows `\u0000` there stands for a NUL the client sent.
ALTER TABLE audit_events ADD COLUMN escaped BOOLEAN NOT NULL DEFAULT false;

-- Audit events that could not be written even so. Each is kept here as the JSON text
-- of the event (always storable) with the database's error, instead of blocking the
-- events queued behind it.
CREATE TABLE audit_dead_letters (
    id          BIGSERIAL PRIMARY KEY,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    replica     TEXT NOT NULL,
    error       TEXT NOT NULL,
    event       TEXT NOT NULL
);
CREATE INDEX audit_dead_letters_received ON audit_dead_letters (received_at);
