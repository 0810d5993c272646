-- The resources a legacy client subscribed to at 2026-07-28-only upstreams (bridged
-- subscriptions), kept with its session so that a replica started later, or one that
-- had dropped the session from its cache, knows them when the client's GET stream
-- opens there. A JSON array of {"connection": ..., "uri": ...}; ending the session
-- deletes them with it.
ALTER TABLE sessions ADD COLUMN resource_subscriptions JSONB NOT NULL DEFAULT '[]';
