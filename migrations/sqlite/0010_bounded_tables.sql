-- Bounded tables (retention, ledger cap, audit prune). Keep in step with
-- ../postgres/0010_bounded_tables.sql: the same tables, columns and index names.

-- Retention removes ledger rows by age: find them without a full scan.
CREATE INDEX egress_events_by_start ON egress_events (start_ms);

-- Expired sessions are purged by age.
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- The audit prune's grant: `airlock admin audit prune` inserts the one row, deletes the
-- rows older than `before`, removes the row and appends its own audit row, all in one
-- transaction, so no other connection ever sees a grant. The delete trigger lets a row go
-- only while a grant covering it exists; UPDATE stays refused.
CREATE TABLE audit_prune_grants (
    id     INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    before TEXT    NOT NULL
);

DROP TRIGGER audit_no_delete;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
WHEN NOT EXISTS (SELECT 1 FROM audit_prune_grants g WHERE OLD.at < g.before)
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only');
END;
