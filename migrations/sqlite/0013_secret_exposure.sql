-- How a secret may reach a sandbox. Keep in step with ../postgres/0013_secret_exposure.sql:
-- the same column and constraint names.
--
-- `env`: it may be put into a container's environment (`secret_env` at create), as every
-- secret stored before this column was, so they keep working. `egress_only`: only the egress
-- proxy adds it to requests to a bound endpoint; it never enters a sandbox. The controller
-- always writes the value; the default exists for the rows already here.
ALTER TABLE secrets ADD COLUMN expose TEXT NOT NULL DEFAULT 'env'
    CONSTRAINT secrets_expose CHECK (expose IN ('env', 'egress_only'));
