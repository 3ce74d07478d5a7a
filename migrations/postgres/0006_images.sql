-- Images imported by `airlock images load` (or the start-up pre-load), per node. Keep in step
-- with ../sqlite/0006_images.sql. `reference` is a tag, or the empty string for an untagged
-- image; `archive_sha256` is the hash of the verified archive the image came from.

CREATE TABLE images (
    node           TEXT        NOT NULL,
    reference      TEXT        NOT NULL,
    image_id       TEXT        NOT NULL,
    source         TEXT        NOT NULL,
    archive_sha256 TEXT        NOT NULL,
    size_bytes     BIGINT      NOT NULL CHECK (size_bytes >= 0),
    loaded_at      TIMESTAMPTZ NOT NULL,
    CONSTRAINT images_pkey PRIMARY KEY (node, reference, image_id)
);
