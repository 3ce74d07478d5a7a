-- Quotas, secrets and the audit trail (issue 5). Keep in step with
-- ../sqlite/0003_quotas_secrets_audit.sql: the same tables, columns and constraint names.

-- Per-user quota overrides; a NULL column means the operator default applies.
CREATE TABLE user_quotas (
    user_id         UUID   NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    max_sandboxes   BIGINT CHECK (max_sandboxes >= 0),
    max_memory_mb   BIGINT CHECK (max_memory_mb >= 0),
    max_cpus_milli  BIGINT CHECK (max_cpus_milli >= 0),
    max_lifetime_s  BIGINT CHECK (max_lifetime_s >= 0),
    creates_per_min BIGINT CHECK (creates_per_min >= 0),
    updated_at      TIMESTAMPTZ NOT NULL
);

-- One row per sandbox create in the last minute (the create-rate quota); epoch milliseconds
-- so both dialects compare integers. Older rows are pruned by the next create.
CREATE TABLE sandbox_creates (
    id      BIGINT NOT NULL PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
    user_id UUID   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    at_ms   BIGINT NOT NULL
);

CREATE INDEX sandbox_creates_user_id ON sandbox_creates (user_id, at_ms);

-- Per-user secrets, sealed with XChaCha20-Poly1305: a random 24-byte nonce, then the
-- ciphertext and tag. The AEAD's associated data binds the owner and the name.
CREATE TABLE secrets (
    owner_id   UUID        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT        NOT NULL,
    sealed     BYTEA       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT secrets_pkey PRIMARY KEY (owner_id, name)
);

-- The key check value: a fixed text sealed with the secret key, so a wrong or rotated key is
-- found at boot instead of on the first decrypt. At most one row.
CREATE TABLE secret_key_check (
    id         INTEGER     NOT NULL PRIMARY KEY CHECK (id = 1),
    sealed     BYTEA       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

-- The audit trail: append-only (the triggers below refuse UPDATE and DELETE). No foreign
-- keys: a record outlives the user or token it names.
CREATE TABLE audit (
    id            BIGINT      NOT NULL PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
    at            TIMESTAMPTZ NOT NULL,
    actor_user_id UUID,
    actor_token   TEXT,
    action        TEXT        NOT NULL,
    object        TEXT,
    source_ip     TEXT,
    status        INTEGER     NOT NULL,
    detail        TEXT
);

CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit is append-only';
END;
$$;

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();

-- TRUNCATE skips row triggers; refuse it too.
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
