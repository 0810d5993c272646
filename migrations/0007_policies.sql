-- Access policies (the McpPolicy schema). `connections` holds the connections the
-- policy targets, resolved by whoever wrote the row (the operator resolves label
-- selectors), so replicas need no cluster access. Every change is announced to all
-- replicas on the bus channel; they re-read every policy.
CREATE TABLE policies (
    name        TEXT PRIMARY KEY,
    spec        JSONB NOT NULL,
    source      TEXT NOT NULL CHECK (source IN ('crd', 'api', 'file')),
    connections TEXT[] NOT NULL DEFAULT '{}',
    generation  BIGINT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE FUNCTION policies_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('hawser_bus', '{"op":"policies_changed"}');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER policies_notify
    AFTER INSERT OR UPDATE OR DELETE ON policies
    FOR EACH STATEMENT EXECUTE FUNCTION policies_notify();
