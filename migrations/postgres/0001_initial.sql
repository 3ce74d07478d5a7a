-- Airlock store, Postgres flavour. Keep in step with ../sqlite/0001_initial.sql: the same
-- tables, columns, constraint names and CHECK lists (each list mirrors one as_str/FromStr pair
-- in controller/src).

CREATE TABLE users (
    id           UUID        NOT NULL PRIMARY KEY,
    email        TEXT        NOT NULL CONSTRAINT users_email_key UNIQUE,
    display_name TEXT        NOT NULL,
    role         TEXT        NOT NULL CHECK (role IN ('admin', 'member', 'viewer')),
    disabled     BOOLEAN     NOT NULL DEFAULT FALSE,
    created_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE sandboxes (
    id              UUID        NOT NULL PRIMARY KEY,
    owner_id        UUID        NOT NULL REFERENCES users (id),
    image           TEXT        NOT NULL,
    spec            JSONB       NOT NULL,
    desired_state   TEXT        NOT NULL
        CHECK (desired_state IN ('running', 'stopped', 'deleted')),
    observed_state  TEXT        NOT NULL
        CHECK (observed_state IN ('creating', 'running', 'stopping', 'exited', 'failed', 'lost')),
    end_reason      TEXT
        CHECK (end_reason IN ('exited', 'stopped', 'timeout', 'idle', 'oom', 'killed', 'lost', 'error')),
    exit_code       BIGINT,
    end_message     TEXT,
    generation      BIGINT      NOT NULL DEFAULT 1 CHECK (generation > 0),
    node            TEXT,
    network_name    TEXT,
    subnet          TEXT,
    container_id    TEXT,
    idempotency_key TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    ended_at        TIMESTAMPTZ,
    CONSTRAINT sandboxes_owner_idempotency_key UNIQUE (owner_id, idempotency_key),
    CHECK ((end_reason IS NULL) = (ended_at IS NULL)),
    CHECK ((end_reason = 'exited') = (exit_code IS NOT NULL) OR end_reason IS NULL)
);

CREATE INDEX sandboxes_owner_id_id ON sandboxes (owner_id, id);
CREATE INDEX sandboxes_observed_state ON sandboxes (observed_state);

CREATE TABLE sandbox_events (
    id         BIGINT      NOT NULL GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sandbox_id UUID        NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
    generation BIGINT      NOT NULL,
    event      TEXT        NOT NULL CHECK (event IN ('created', 'started', 'stop_requested', 'ended')),
    from_state TEXT
        CHECK (from_state IN ('creating', 'running', 'stopping', 'exited', 'failed', 'lost')),
    to_state   TEXT        NOT NULL
        CHECK (to_state IN ('creating', 'running', 'stopping', 'exited', 'failed', 'lost')),
    end_reason TEXT
        CHECK (end_reason IN ('exited', 'stopped', 'timeout', 'idle', 'oom', 'killed', 'lost', 'error')),
    exit_code  BIGINT,
    at         TIMESTAMPTZ NOT NULL
);

CREATE INDEX sandbox_events_sandbox_id ON sandbox_events (sandbox_id, id);

CREATE TABLE subnet_allocations (
    subnet       TEXT        NOT NULL PRIMARY KEY,
    sandbox_id   UUID        NOT NULL CONSTRAINT subnet_allocations_sandbox_id_key UNIQUE
        REFERENCES sandboxes (id) ON DELETE CASCADE,
    allocated_at TIMESTAMPTZ NOT NULL
);
