-- The audit log of security events (#26, audit.rs): append-only, written in the transaction of
-- the change each records; pruned by age. Read by app and `seq` (pages), by user, by time.
CREATE TABLE audit_events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at BIGINT NOT NULL,
    app_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    user_id TEXT,
    session_id TEXT,
    ip TEXT,
    user_agent TEXT,
    actor TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX audit_events_app ON audit_events(app_id, seq);
CREATE INDEX audit_events_user ON audit_events(app_id, user_id, seq);
-- No index on `at`: events are written in time order, so the oldest are the first by `seq`
-- (the pruning reads from there), and each index is one more write in every login.
