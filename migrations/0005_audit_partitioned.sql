-- audit_events becomes partitioned by day (native range partitioning): retention
-- drops whole partitions instead of deleting rows, and inserts touch one small
-- partition. Each event carries a unique event_id, so an event written again (a
-- replica replaying its spool after a crash) is kept once.
ALTER TABLE audit_events RENAME TO audit_events_unpartitioned;
ALTER INDEX audit_events_ts RENAME TO audit_events_unpartitioned_ts;
ALTER TABLE audit_events_unpartitioned RENAME CONSTRAINT audit_events_pkey TO audit_events_unpartitioned_pkey;

CREATE TABLE audit_events (
    id               BIGINT NOT NULL DEFAULT nextval('audit_events_id_seq'),
    event_id         TEXT NOT NULL,
    ts               TIMESTAMPTZ NOT NULL,
    request_id       TEXT NOT NULL,
    session_id       TEXT,
    replica          TEXT NOT NULL,
    subject          TEXT,
    auth_type        TEXT,
    remote_addr      TEXT,
    user_agent       TEXT,
    method           TEXT NOT NULL,
    connection       TEXT,
    target           TEXT,
    params           JSONB,
    success          BOOLEAN NOT NULL,
    error_category   TEXT,
    error_message    TEXT,
    duration_ms      DOUBLE PRECISION NOT NULL,
    request_bytes    BIGINT,
    response_bytes   BIGINT,
    content_blocks   INTEGER,
    progress_count   INTEGER,
    escaped          BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (id, ts),
    UNIQUE (event_id, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX audit_events_ts ON audit_events (ts);
ALTER SEQUENCE audit_events_id_seq OWNED BY audit_events.id;

-- Rows from before: one partition up to the end of today. Daily partitions from
-- tomorrow on are created ahead of time by the gateway (see store/postgres/audit.rs);
-- the default partition catches a row no partition covers (a clock far off).
DO $$
BEGIN
    EXECUTE format(
        'CREATE TABLE audit_events_before PARTITION OF audit_events FOR VALUES FROM (MINVALUE) TO (%L)',
        date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '1 day');
END $$;
CREATE TABLE audit_events_default PARTITION OF audit_events DEFAULT;

INSERT INTO audit_events (id, event_id, ts, request_id, session_id, replica, subject, auth_type,
        remote_addr, user_agent, method, connection, target, params, success, error_category,
        error_message, duration_ms, request_bytes, response_bytes, content_blocks, progress_count,
        escaped)
    SELECT id, 'before-' || id, ts, request_id, session_id, replica, subject, auth_type,
        remote_addr, user_agent, method, connection, target, params, success, error_category,
        error_message, duration_ms, request_bytes, response_bytes, content_blocks, progress_count,
        escaped
    FROM audit_events_unpartitioned;
DROP TABLE audit_events_unpartitioned;
