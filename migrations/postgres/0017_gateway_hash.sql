-- The origin-form gateway: each bound sandbox's gateway hash, the lowercase hex SHA-256 of
-- the token in its placeholders (never the token). The proxy admits a gateway request only
-- from the sandbox's address carrying that token. NULL for sandboxes bound before it, whose
-- gateway admits nothing. Keep in step with ../sqlite/0017_gateway_hash.sql.
ALTER TABLE sandbox_inspection ADD COLUMN gateway_hash TEXT;
