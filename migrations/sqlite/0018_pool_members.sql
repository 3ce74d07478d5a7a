-- Warm pools: one row per pool member (a started container blocked in airlock-init), and a
-- member's /29 held in subnet_allocations until a claim passes it to the sandbox. Keep in step
-- with ../postgres/0018_pool_members.sql (the state list mirrors MemberState's spellings).

CREATE TABLE pool_members (
    id           BLOB    NOT NULL PRIMARY KEY,
    pool_key     TEXT    NOT NULL,
    image_digest TEXT    NOT NULL,
    run_as       TEXT    NOT NULL,
    tty          BOOLEAN NOT NULL,
    rootfs       TEXT    NOT NULL CHECK (rootfs IN ('ro', 'rw')),
    node         TEXT    NOT NULL,
    runtime_sha  TEXT    NOT NULL,
    network_name TEXT    NOT NULL,
    state        TEXT    NOT NULL
        CHECK (state IN ('warming', 'ready', 'claiming', 'claimed', 'destroying')),
    container_id TEXT,
    sandbox_id   BLOB    CONSTRAINT pool_members_sandbox_id_key UNIQUE
        REFERENCES sandboxes (id) ON DELETE CASCADE,
    created_at   TEXT    NOT NULL,
    ready_at     TEXT,
    claiming_at  TEXT,
    claimed_at   TEXT,
    CHECK (state NOT IN ('warming', 'ready') OR sandbox_id IS NULL),
    CHECK (state NOT IN ('claiming', 'claimed') OR sandbox_id IS NOT NULL),
    CHECK (state <> 'ready' OR (container_id IS NOT NULL AND ready_at IS NOT NULL))
);

-- A claim's pick: the pool's ready members, oldest first.
CREATE INDEX pool_members_pick ON pool_members (pool_key, state, ready_at);
-- The reconciler's sweep of claims that never finished.
CREATE INDEX pool_members_claiming ON pool_members (state, claiming_at);
CREATE INDEX pool_members_node ON pool_members (node, id);

-- A /29 is held by exactly one sandbox or one member. SQLite cannot relax NOT NULL in place,
-- so the table is rebuilt (nothing references it).
CREATE TABLE subnet_allocations_0018 (
    subnet       TEXT NOT NULL PRIMARY KEY,
    sandbox_id   BLOB CONSTRAINT subnet_allocations_sandbox_id_key UNIQUE
        REFERENCES sandboxes (id) ON DELETE CASCADE,
    allocated_at TEXT NOT NULL,
    member_id    BLOB CONSTRAINT subnet_allocations_member_id_key UNIQUE
        REFERENCES pool_members (id) ON DELETE CASCADE,
    CONSTRAINT subnet_allocations_one_holder CHECK ((sandbox_id IS NULL) <> (member_id IS NULL))
);
INSERT INTO subnet_allocations_0018 (subnet, sandbox_id, allocated_at)
    SELECT subnet, sandbox_id, allocated_at FROM subnet_allocations;
DROP TABLE subnet_allocations;
ALTER TABLE subnet_allocations_0018 RENAME TO subnet_allocations;
