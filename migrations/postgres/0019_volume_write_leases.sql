-- Files writes into a volume: each one holds a lease while its never-started helper mounts the
-- volume read-write. Keep in step with ../sqlite/0019_volume_write_leases.sql.
--
-- A lease is taken only while no sandbox holds the volume read-write, and a sandbox's
-- read-write mount is refused while a live lease exists (both under the volume row's lock), so
-- a files write and a read-write sandbox never write one volume at once. `expires_at` (unix
-- seconds) bounds a lease whose release was lost; the controller clears its node's leases at
-- start.
CREATE TABLE volume_write_leases (
    id         UUID   NOT NULL PRIMARY KEY,
    volume_id  UUID   NOT NULL REFERENCES volumes (id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL
);

CREATE INDEX volume_write_leases_volume_id ON volume_write_leases (volume_id, expires_at);
