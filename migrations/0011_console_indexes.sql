-- The web console lists audit events newest first (keyset on id), narrowed by
-- subject or connection; these indexes keep a filtered page from scanning every
-- partition. The traffic figures read the last hour through audit_events_ts.
CREATE INDEX audit_events_subject_id ON audit_events (subject, id);
CREATE INDEX audit_events_connection_id ON audit_events (connection, id);
