-- Volumes (workspaces) and which sandbox mounts which. Keep in step with
-- ../postgres/0009_volumes.sql: the same tables, columns, constraint and index names.
--
-- volumes: one row per volume; the Docker volume is `docker_name` (`airlock-vol-<id>`), never
-- reused. `size_mb` is the quota; `quota_mode` says how it is enforced on the node (`hard`:
-- the filesystem's project quota; `soft`: sampled usage, `used_bytes` at `sampled_at`).
CREATE TABLE volumes (
    id          BLOB    NOT NULL PRIMARY KEY,
    owner_id    BLOB    NOT NULL REFERENCES users (id),
    name        TEXT    NOT NULL,
    docker_name TEXT    NOT NULL CONSTRAINT volumes_docker_name_key UNIQUE,
    node        TEXT    NOT NULL,
    size_mb     INTEGER NOT NULL CHECK (size_mb > 0),
    labels      TEXT    NOT NULL,
    quota_mode  TEXT    NOT NULL CHECK (quota_mode IN ('soft', 'hard')),
    used_bytes  INTEGER CHECK (used_bytes >= 0),
    sampled_at  TEXT,
    created_at  TEXT    NOT NULL,
    CONSTRAINT volumes_owner_name_key UNIQUE (owner_id, name)
);

CREATE INDEX volumes_owner_id ON volumes (owner_id, id);

-- volume_mounts: a sandbox's mounts, held until the sandbox ends (`released_at`). At most one
-- held read-write mount per volume: the unique partial index is the lock.
CREATE TABLE volume_mounts (
    sandbox_id  BLOB    NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
    volume_id   BLOB    NOT NULL REFERENCES volumes (id) ON DELETE CASCADE,
    target      TEXT    NOT NULL,
    read_only   BOOLEAN NOT NULL,
    released_at TEXT,
    CONSTRAINT volume_mounts_pkey PRIMARY KEY (sandbox_id, volume_id)
);

CREATE UNIQUE INDEX volume_mounts_one_writer ON volume_mounts (volume_id)
    WHERE read_only = FALSE AND released_at IS NULL;
CREATE INDEX volume_mounts_volume_id ON volume_mounts (volume_id, released_at);

-- Per-user volume quota overrides; NULL: the operator default.
ALTER TABLE user_quotas ADD COLUMN max_volumes INTEGER CHECK (max_volumes >= 0);
ALTER TABLE user_quotas ADD COLUMN max_volume_bytes INTEGER CHECK (max_volume_bytes >= 0);
