-- Quotas, secrets and the audit trail (issue 5). Keep in step with
-- ../postgres/0003_quotas_secrets_audit.sql: the same tables, columns and constraint names.

-- Per-user quota overrides; a NULL column means the operator default applies.
CREATE TABLE user_quotas (
    user_id         BLOB    NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    max_sandboxes   INTEGER CHECK (max_sandboxes >= 0),
    max_memory_mb   INTEGER CHECK (max_memory_mb >= 0),
    max_cpus_milli  INTEGER CHECK (max_cpus_milli >= 0),
    max_lifetime_s  INTEGER CHECK (max_lifetime_s >= 0),
    creates_per_min INTEGER CHECK (creates_per_min >= 0),
    updated_at      TEXT    NOT NULL
);

-- One row per sandbox create in the last minute (the create-rate quota); epoch milliseconds
-- so both dialects compare integers. Older rows are pruned by the next create.
CREATE TABLE sandbox_creates (
    id      INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    user_id BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    at_ms   INTEGER NOT NULL
);

CREATE INDEX sandbox_creates_user_id ON sandbox_creates (user_id, at_ms);

-- Per-user secrets, sealed with XChaCha20-Poly1305: a random 24-byte nonce, then the
-- ciphertext and tag. The AEAD's associated data binds the owner and the name.
CREATE TABLE secrets (
    owner_id   BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    sealed     BLOB NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    CONSTRAINT secrets_pkey PRIMARY KEY (owner_id, name)
);

-- The key check value: a fixed text sealed with the secret key, so a wrong or rotated key is
-- found at boot instead of on the first decrypt. At most one row.
CREATE TABLE secret_key_check (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    sealed     BLOB    NOT NULL,
    created_at TEXT    NOT NULL
);

-- The audit trail: append-only (the triggers below refuse UPDATE and DELETE). No foreign
-- keys: a record outlives the user or token it names.
CREATE TABLE audit (
    id            INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    at            TEXT    NOT NULL,
    actor_user_id BLOB,
    actor_token   TEXT,
    action        TEXT    NOT NULL,
    object        TEXT,
    source_ip     TEXT,
    status        INTEGER NOT NULL,
    detail        TEXT
);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only');
END;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only');
END;
