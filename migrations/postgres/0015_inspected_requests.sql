-- Per-request rows inside inspected tunnels. Keep in step with
-- ../sqlite/0015_inspected_requests.sql: the same columns.
--
-- `tunnel`: the proxy's id of an inspected (terminated) tunnel, set on the tunnel's own row
-- and on each request row inside it; with `boot_id` it names one tunnel. `path`: a request's
-- canonical path (no query string, at most 256 bytes). `status`: the status the client got (0
-- when none); set on request rows only, which is how they are told from their tunnel's row (the
-- summary counts bytes of rows without a status only, since the tunnel's row holds the total).
-- `credential`: the name (never the value) of the secret added to the request. `mode`:
-- `terminate` (or, later, `gateway`). All NULL on plain rows and on rows of older proxies.
ALTER TABLE egress_events ADD COLUMN tunnel BIGINT;
ALTER TABLE egress_events ADD COLUMN path TEXT;
ALTER TABLE egress_events ADD COLUMN status BIGINT;
ALTER TABLE egress_events ADD COLUMN credential TEXT;
ALTER TABLE egress_events ADD COLUMN mode TEXT;
