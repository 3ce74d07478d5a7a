-- Host folders: directories under AIRLOCK_FOLDERS_ROOT that an admin registered, who may
-- mount them, and which sandbox mounts which. Keep in step with ../sqlite/0011_folders.sql:
-- the same tables, columns, constraint and index names.
--
-- folders: `path` as the admin wrote it (immutable: no update touches it), `realpath` as it
-- resolved at registration (unique; every mount resolves `path` again and refuses a change).
CREATE TABLE folders (
    id         UUID        NOT NULL PRIMARY KEY,
    name       TEXT        NOT NULL CONSTRAINT folders_name_key UNIQUE,
    path       TEXT        NOT NULL,
    realpath   TEXT        NOT NULL CONSTRAINT folders_realpath_key UNIQUE,
    mode       TEXT        NOT NULL CHECK (mode IN ('ro', 'rw')),
    created_by UUID        REFERENCES users (id) ON DELETE SET NULL,
    created_at TIMESTAMPTZ NOT NULL
);

-- folder_grants: the users who may mount a folder.
CREATE TABLE folder_grants (
    folder_id UUID NOT NULL REFERENCES folders (id) ON DELETE CASCADE,
    user_id   UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT folder_grants_pkey PRIMARY KEY (folder_id, user_id)
);

CREATE INDEX folder_grants_user_id ON folder_grants (user_id);

-- folder_mounts: a sandbox's folder mounts, written with the sandbox row. A mount is live
-- while its sandbox has not ended; a folder with a live mount cannot be deleted.
CREATE TABLE folder_mounts (
    sandbox_id UUID    NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
    folder_id  UUID    NOT NULL REFERENCES folders (id) ON DELETE CASCADE,
    target     TEXT    NOT NULL,
    read_only  BOOLEAN NOT NULL,
    CONSTRAINT folder_mounts_pkey PRIMARY KEY (sandbox_id, folder_id)
);

CREATE INDEX folder_mounts_folder_id ON folder_mounts (folder_id);
