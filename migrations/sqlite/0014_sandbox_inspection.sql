-- Credentials at egress: each bound sandbox's inspection CA and what it binds. Keep in step
-- with ../postgres/0014_sandbox_inspection.sql: the same columns and constraint names.

-- `ca_cert_pem` is the sandbox's own CA (public; it is also in the sandbox's trust files);
-- `ca_key_sealed` its PKCS#8 key sealed with the secrets key (associated data: the owner and
-- `inspection-ca:<sandbox id>`; re-sealed by `rotate-key`); `bindings` the create's
-- `credentials` list as JSON (provider and secret names, never a value), from which the
-- endpoints are recomputed on every policy change.
CREATE TABLE sandbox_inspection (
    sandbox_id    BLOB NOT NULL PRIMARY KEY REFERENCES sandboxes (id) ON DELETE CASCADE,
    ca_cert_pem   TEXT NOT NULL,
    ca_key_sealed BLOB NOT NULL,
    bindings      TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
