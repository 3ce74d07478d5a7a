//! Image rows: what `airlock images load` imported into which node, from which archive.

use time::OffsetDateTime;

use super::{now, with_db, Store, StoreError};

/// One imported image on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRecord {
    /// The node's name.
    pub node: String,
    /// A tag (`name:tag`), or empty for an untagged image.
    pub reference: String,
    /// `sha256:…`, the config digest.
    pub image_id: String,
    /// Where it came from (the archive's path).
    pub source: String,
    /// sha256 of the verified archive, hex.
    pub archive_sha256: String,
    /// Bytes of its layers as stored in the archive.
    pub size_bytes: i64,
    /// When it was (last) loaded.
    pub loaded_at: OffsetDateTime,
}

type ImageTuple = (String, String, String, String, String, i64, OffsetDateTime);

// === impl Store ===

impl Store {
    /// Records (or refreshes) an imported image; the time is set here.
    pub async fn record_image(&self, record: &ImageRecord) -> Result<(), StoreError> {
        let at = now();
        with_db!(self, |pool, _begin| {
            sqlx::query(
                "INSERT INTO images (node, reference, image_id, source, archive_sha256, \
                 size_bytes, loaded_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (node, reference, image_id) DO UPDATE SET \
                 source = excluded.source, archive_sha256 = excluded.archive_sha256, \
                 size_bytes = excluded.size_bytes, loaded_at = excluded.loaded_at",
            )
            .bind(&record.node)
            .bind(&record.reference)
            .bind(&record.image_id)
            .bind(&record.source)
            .bind(&record.archive_sha256)
            .bind(record.size_bytes)
            .bind(at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The image id last recorded for `reference` on `node`: the digest an import pins a
    /// tag to.
    pub async fn recorded_image_id(
        &self,
        node: &str,
        reference: &str,
    ) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = with_db!(self, |pool, _begin| {
            sqlx::query_as(
                "SELECT image_id FROM images WHERE node = $1 AND reference = $2 \
                 ORDER BY loaded_at DESC LIMIT 1",
            )
            .bind(node)
            .bind(reference)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(id,)| id))
    }

    /// Every recorded image, newest first.
    pub async fn list_images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let rows: Vec<ImageTuple> = with_db!(self, |pool, _begin| {
            sqlx::query_as(
                "SELECT node, reference, image_id, source, archive_sha256, size_bytes, loaded_at \
                 FROM images ORDER BY loaded_at DESC, reference",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(node, reference, image_id, source, archive_sha256, size_bytes, loaded_at)| {
                    ImageRecord {
                        node,
                        reference,
                        image_id,
                        source,
                        archive_sha256,
                        size_bytes,
                        loaded_at,
                    }
                },
            )
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_upsert_and_list() {
        let store = Store::sqlite_in_memory().await.unwrap();
        let mut record = ImageRecord {
            node: "local".to_owned(),
            reference: "airlock/testbox:dev".to_owned(),
            image_id: format!("sha256:{}", "a".repeat(64)),
            source: "/tmp/x.tar".to_owned(),
            archive_sha256: "b".repeat(64),
            size_bytes: 42,
            loaded_at: now(),
        };
        store.record_image(&record).await.unwrap();
        record.source = "/tmp/y.tar".to_owned();
        store.record_image(&record).await.unwrap();
        let listed = store.list_images().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].source, "/tmp/y.tar");
        assert_eq!(listed[0].size_bytes, 42);
        let pinned = store
            .recorded_image_id("local", "airlock/testbox:dev")
            .await
            .unwrap();
        assert_eq!(pinned, Some(record.image_id.clone()));
        let other = store.recorded_image_id("other", "airlock/testbox:dev");
        assert_eq!(other.await.unwrap(), None);
    }
}
