-- The isolation self-test (controller/src/selftest.rs): the latest probe run per sandbox.
-- Keep in step with ../sqlite/0005_selftest.sql. `status` mirrors SelftestStatus::as_str;
-- `report` is the probe's JSON report as it printed it.

CREATE TABLE sandbox_selftests (
    sandbox_id UUID        NOT NULL PRIMARY KEY REFERENCES sandboxes (id) ON DELETE CASCADE,
    generation BIGINT      NOT NULL,
    status     TEXT        NOT NULL CHECK (status IN ('passed', 'failed', 'error')),
    report     TEXT,
    message    TEXT,
    ran_at     TIMESTAMPTZ NOT NULL
);
