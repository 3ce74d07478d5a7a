-- The audit trail's read order, and per-user secret quota overrides. Keep in step with
-- ../sqlite/0012_audit_order_overrides.sql: the same columns and index names.

-- The audit trail is read in (time, id) order, within time ranges (`GET /v1/audit` with
-- `since`/`until` and its cursor, `airlock admin audit export`).
CREATE INDEX audit_at_id ON audit (at, id);

-- Per-user override of `AIRLOCK_QUOTA_MAX_SECRETS`; NULL: the operator default.
ALTER TABLE user_quotas ADD COLUMN max_secrets BIGINT CHECK (max_secrets >= 0);
