-- Operator ceilings (controller/src/egress/ceilings.rs) and which ceiling each ledger event
-- was decided under. Keep in step with ../sqlite/0007_ceilings.sql.
--
-- policy_ceilings: one row (id 1) holding the ceilings document as JSON. `source` says who
-- wrote it last (`file`: imported from AIRLOCK_POLICY_FILE at start; `api`: PUT
-- /v1/policy/ceilings); `file_sha256` is the hash of the last imported file, kept across API
-- writes so a restart with an unchanged file keeps the admin's edit. No row: the built-in
-- defaults apply.
CREATE TABLE policy_ceilings (
    id          BIGINT  NOT NULL PRIMARY KEY CHECK (id = 1),
    document    TEXT    NOT NULL,
    source      TEXT    NOT NULL CHECK (source IN ('file', 'api')),
    file_sha256 TEXT,
    updated_by  UUID,
    updated_at  TIMESTAMPTZ NOT NULL
);

-- The ceiling label (`role:<role>@<hash8>` or `user:<id>@<hash8>`) pushed with the entry, so a
-- re-push after a proxy restart carries it again.
ALTER TABLE sandbox_egress ADD COLUMN ceiling TEXT;

-- The proxy stamps every event with its entry's ceiling label; `count` is 1 except for a
-- summary row standing for several refusals the proxy could not spool one by one.
ALTER TABLE egress_events ADD COLUMN ceiling TEXT;
ALTER TABLE egress_events ADD COLUMN count BIGINT NOT NULL DEFAULT 1 CHECK (count >= 1);
