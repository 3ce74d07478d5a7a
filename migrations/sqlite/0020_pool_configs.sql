-- A node's warm pools as one stored document (controller/src/pool/doc.rs), per node. Keep in
-- step with ../postgres/0020_pool_configs.sql.
--
-- `document` is the canonical JSON array of pools. `source` says who wrote it last (`env`:
-- imported from AIRLOCK_POOLS at start; `api`: PUT /v1/pools or `airlock pools set`);
-- `env_sha256` is the hash of the last imported AIRLOCK_POOLS document, kept across API writes
-- so a restart with an unchanged variable keeps the admin's edit. No row: the node has no pools.
CREATE TABLE pool_configs (
    node       TEXT NOT NULL PRIMARY KEY,
    document   TEXT NOT NULL,
    source     TEXT NOT NULL CHECK (source IN ('env', 'api')),
    env_sha256 TEXT,
    updated_by BLOB,
    updated_at TEXT NOT NULL
);
