-- The hourly create quota. Keep in step with ../postgres/0016_creates_per_hour.sql: the same
-- columns.

-- Per-user override of `AIRLOCK_QUOTA_CREATES_PER_HOUR`; NULL: the operator default. The
-- creates it counts are the `sandbox_creates` rows, now kept for an hour (not a minute).
ALTER TABLE user_quotas ADD COLUMN creates_per_hour INTEGER CHECK (creates_per_hour >= 0);
