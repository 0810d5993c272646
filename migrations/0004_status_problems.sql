-- Problems a replica found with a connection's names that do not stop it from
-- serving (collisions on the aggregated endpoint, names too long), as typed JSON:
-- [{"kind": "name_collision", "message": "..."}]. The operator reads the kinds
-- instead of the messages.
ALTER TABLE connection_status ADD COLUMN problems JSONB NOT NULL DEFAULT '[]';
