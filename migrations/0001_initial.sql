-- Hawser's shared state. Table names are part of the product's interface.

-- Upstream connections. Secret values never sit in `spec`: they are sealed together
-- in `credentials` (enc:v1:<kid>:<base64>, bound to the connection's name).
CREATE SEQUENCE connection_revision;

CREATE TABLE connections (
    name        TEXT PRIMARY KEY,
    spec        JSONB NOT NULL,
    credentials TEXT,
    source      TEXT NOT NULL CHECK (source IN ('crd', 'api', 'file')),
    -- For source 'crd': the resource's metadata.generation, so status can report it.
    generation  BIGINT,
    -- Every write takes the next value of connection_revision (trigger below), so a
    -- replica that missed notifications finds what changed by comparing revisions.
    revision    BIGINT NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE FUNCTION connections_bump_revision() RETURNS trigger AS $$
BEGIN
    NEW.revision := nextval('connection_revision');
    NEW.updated_at := now();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER connections_revision
    BEFORE INSERT OR UPDATE ON connections
    FOR EACH ROW EXECUTE FUNCTION connections_bump_revision();

-- Every change is announced on channel hawser_connections; the payload is a small
-- JSON object, replicas read the row itself. pg_notify is transactional: listeners
-- hear about a change only once it is committed.
CREATE FUNCTION connections_notify() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('hawser_connections',
            json_build_object('op', 'delete', 'name', OLD.name, 'revision', nextval('connection_revision'))::text);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('hawser_connections',
        json_build_object('op', 'upsert', 'name', NEW.name, 'revision', NEW.revision)::text);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER connections_notify
    AFTER INSERT OR UPDATE OR DELETE ON connections
    FOR EACH ROW EXECUTE FUNCTION connections_notify();

-- Each replica's view of each connection.
CREATE TABLE connection_status (
    connection  TEXT NOT NULL,
    replica     TEXT NOT NULL,
    state       TEXT NOT NULL,
    tools       INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    auth_state  TEXT,
    revision    BIGINT NOT NULL DEFAULT 0,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (connection, replica)
);

-- Client sessions, valid on every replica. The id itself is not stored: `id_hash` is
-- its SHA-256, so a read of this table does not yield usable session ids. Ending a
-- session deletes its row and announces it on channel hawser_sessions.
CREATE TABLE sessions (
    id_hash             BYTEA PRIMARY KEY,
    subject             TEXT NOT NULL,
    -- '' for the aggregated endpoint, else the connection of /mcp/{connection}.
    endpoint            TEXT NOT NULL,
    protocol_version    TEXT NOT NULL,
    client_info         JSONB,
    client_capabilities JSONB,
    -- connection name -> {"id": upstream Mcp-Session-Id, "protocolVersion": ...}
    upstreams           JSONB NOT NULL DEFAULT '{}',
    log_level           TEXT,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX sessions_last_seen ON sessions (last_seen_at);

-- Upstream OAuth tokens, sealed. `subject` is '' for the connection's shared token.
CREATE TABLE oauth_tokens (
    connection    TEXT NOT NULL,
    subject       TEXT NOT NULL DEFAULT '',
    access_token  TEXT NOT NULL,
    refresh_token TEXT,
    token_type    TEXT NOT NULL DEFAULT 'Bearer',
    expires_at    TIMESTAMPTZ,
    scope         TEXT,
    -- Bumped on every write: lets a replica tell whether the row changed under it.
    version       BIGINT NOT NULL DEFAULT 1,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (connection, subject)
);

-- PKCE state of authorization_code flows in progress. Single use: taken with
-- DELETE ... RETURNING; expired rows are swept.
CREATE TABLE oauth_pkce_states (
    state_hash    BYTEA PRIMARY KEY,
    connection    TEXT NOT NULL,
    verifier      TEXT NOT NULL,
    redirect_uri  TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX oauth_pkce_states_expires ON oauth_pkce_states (expires_at);

-- One row per audited request.
CREATE TABLE audit_events (
    id               BIGSERIAL PRIMARY KEY,
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
    progress_count   INTEGER
);
CREATE INDEX audit_events_ts ON audit_events (ts);
