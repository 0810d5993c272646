-- Replica-to-replica messages too large for a NOTIFY payload (8000 bytes): the
-- sender stores the message here and notifies its id; the receiver takes it with
-- DELETE ... RETURNING. Rows nobody took (the addressee died) are swept.
CREATE TABLE bus_messages (
    id         BIGSERIAL PRIMARY KEY,
    payload    TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX bus_messages_created ON bus_messages (created_at);
