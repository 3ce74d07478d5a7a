-- The audit trail is read in (time, id) order, within time ranges (`GET /v1/audit` with
-- `since`/`until` and its cursor, `airlock admin audit export`). Keep in step with
-- ../postgres/0012_audit_order.sql.
CREATE INDEX audit_at_id ON audit (at, id);
