-- Token buckets of McpPolicy rate limits, shared by every replica. A replica leases
-- a few tokens at a time with one statement (refill by elapsed time, take what is
-- there up to what it asked), then spends them without asking again.
CREATE TABLE rate_buckets (
    key        TEXT PRIMARY KEY,
    tokens     DOUBLE PRECISION NOT NULL,
    last_taken INTEGER NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX rate_buckets_updated ON rate_buckets (updated_at);
