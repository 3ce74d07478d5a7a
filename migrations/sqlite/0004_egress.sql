-- The network plane (controller/src/egress): each sandbox's proxy entry and the egress ledger.
-- Keep in step with ../postgres/0004_egress.sql.
--
-- sandbox_egress: what the controller pushes to the proxy for a sandbox (re-pushed after a
-- proxy restart). `policy` is the PolicySpec JSON (NULL: the default policy), `policy_hash`
-- its SHA-256, `generation` the proxy-side generation (bumped by every policy update),
-- `credential_hash` the SHA-256 of the sandbox's proxy token (the token itself is never
-- stored), `source_addr` the sandbox's address on its network.
CREATE TABLE sandbox_egress (
    sandbox_id      BLOB    NOT NULL PRIMARY KEY REFERENCES sandboxes (id) ON DELETE CASCADE,
    policy          TEXT,
    policy_hash     TEXT    NOT NULL,
    generation      INTEGER NOT NULL,
    credential_hash TEXT    NOT NULL,
    source_addr     TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
);

-- One row per proxied request or tunnel, idempotent by (boot_id, seq): the proxy process and
-- its spool sequence number. `sandbox_id` is the id as the proxy saw it (no foreign key: an
-- event may arrive after its sandbox was deleted).
CREATE TABLE egress_events (
    boot_id     TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    sandbox_id  TEXT    NOT NULL,
    generation  INTEGER NOT NULL,
    method      TEXT    NOT NULL,
    host        TEXT    NOT NULL,
    port        INTEGER NOT NULL,
    addr        TEXT,
    decision    TEXT    NOT NULL CHECK (decision IN ('allow', 'deny', 'would_deny')),
    reason      TEXT    NOT NULL,
    rule        TEXT,
    bytes_up    INTEGER NOT NULL,
    bytes_down  INTEGER NOT NULL,
    start_ms    INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (boot_id, seq)
);
CREATE INDEX egress_events_by_sandbox ON egress_events (sandbox_id, start_ms, boot_id, seq);

-- The ledger puller's cursor per node: the proxy boot id and the last stored seq.
CREATE TABLE egress_cursors (
    node    TEXT    NOT NULL PRIMARY KEY,
    boot_id TEXT    NOT NULL,
    seq     INTEGER NOT NULL
);
