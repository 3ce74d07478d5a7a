-- Control-plane hardening. Keep in step with ../postgres/0008_hardening.sql.
--
-- audit.count: how many events one row stands for. 1 for every action; failed or throttled
-- logins and refused bearer tokens are aggregated into one row per (source, account, minute).
ALTER TABLE audit ADD COLUMN count INTEGER NOT NULL DEFAULT 1 CHECK (count >= 1);
