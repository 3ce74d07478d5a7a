-- Accounts: password hashes, login sessions, API tokens and invites (issue 5). Keep in step
-- with ../postgres/0002_accounts.sql: the same tables, columns and constraint names. Secrets
-- are never stored: passwords as argon2id PHC strings, tokens as hex SHA-256 of 256 random bits.

ALTER TABLE users ADD COLUMN password_hash TEXT;

CREATE TABLE sessions (
    id         BLOB NOT NULL PRIMARY KEY,
    user_id    BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL CONSTRAINT sessions_token_hash_key UNIQUE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT
);

CREATE INDEX sessions_user_id ON sessions (user_id);

CREATE TABLE api_tokens (
    id         BLOB NOT NULL PRIMARY KEY,
    user_id    BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    token_hash TEXT NOT NULL CONSTRAINT api_tokens_token_hash_key UNIQUE,
    scopes     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
);

CREATE INDEX api_tokens_user_id ON api_tokens (user_id, id);

CREATE TABLE invites (
    id         BLOB NOT NULL PRIMARY KEY,
    email      TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'member', 'viewer')),
    token_hash TEXT NOT NULL CONSTRAINT invites_token_hash_key UNIQUE,
    created_by BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
);
