-- Whose upstream token a call used, on connections with per-user tokens (NULL
-- elsewhere): an audit answer to "which account acted upstream".
ALTER TABLE audit_events ADD COLUMN token_subject TEXT;
