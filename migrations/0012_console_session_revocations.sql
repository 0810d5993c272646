-- Console sign-ins revoked before their cookie expires. The session lives in a
-- sealed cookie (no session row), so signing out, or an admin signing someone out
-- everywhere, is recorded here; every replica keeps the live rows in memory and
-- re-reads them when the replica bus says they changed. A row is useless once the
-- sign-ins it revokes have expired (8 hours), and is deleted then.
CREATE TABLE console_session_revocations (
    id bigserial PRIMARY KEY,
    -- One sign-in, by the SHA-256 of its id...
    session_hash bytea,
    -- ...or every sign-in of `subject` made at or before `revoked_at`.
    subject text,
    revoked_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    CHECK ((session_hash IS NULL) <> (subject IS NULL))
);
CREATE INDEX console_session_revocations_expires ON console_session_revocations (expires_at);
