//! The image check of a create: with no allow list configured, the image only has to be on
//! the node (never pulled). With one, it must be admitted by the list
//! ([`crate::images::allow`]), be on the node (waiting, up to `AIRLOCK_IMAGE_WAIT`, for a
//! start-up pre-pull still loading it), and carry the pinned image id.
//!
//! The check reads the node's image id for the reference the container is then created
//! from; only the controller can retag images on the node, so the window between the two
//! is not reachable by a tenant.

use std::collections::HashMap;

use super::{SandboxService, ServiceError};
use crate::images::allow::ImageRefusal;
use crate::images::catalog::Settled;

// === impl SandboxService ===

impl SandboxService {
    /// Refuses `image` unless the operator's list and the node allow a sandbox from it.
    pub(super) async fn check_image(&self, image: &str) -> Result<(), ServiceError> {
        let catalog = &self.settings.images;
        let Some(allow) = catalog.allow() else {
            if !self.docker.image_exists(image).await? {
                return Err(ServiceError::ImageNotFound(image.to_owned()));
            }
            return Ok(());
        };
        let recorded = self.recorded_images().await?;
        let admission = match allow.admit(image, |name| recorded.get(name).cloned()) {
            // A tag the pre-pull is still importing will be pinned by that import.
            Err(ImageRefusal::Unpinned { entry, .. }) => {
                self.settled(&entry, image).await?;
                let recorded = self.recorded_images().await?;
                allow.admit(image, |name| recorded.get(name).cloned())?
            }
            admitted => admitted?,
        };
        let mut actual = self.docker.image_id(image).await?;
        if actual.is_none() {
            self.settled(&admission.entry, image).await?;
            actual = self.docker.image_id(image).await?;
        }
        let actual = actual.ok_or_else(|| ServiceError::ImageNotFound(image.to_owned()))?;
        match admission.pinned {
            Some(expected) if expected != actual => Err(ImageRefusal::DigestMismatch {
                image: image.to_owned(),
                expected,
                actual,
            }
            .into()),
            _ => Ok(()),
        }
    }

    /// Waits for the pre-pull of `entry` to end, at most `AIRLOCK_IMAGE_WAIT`.
    async fn settled(&self, entry: &str, image: &str) -> Result<(), ServiceError> {
        let catalog = &self.settings.images;
        match catalog.settled(entry, catalog.config().wait).await {
            Settled::Done => Ok(()),
            Settled::StillLoading { waited } => Err(ServiceError::ImageLoading {
                image: image.to_owned(),
                waited,
            }),
        }
    }

    /// `name:tag` → the image id an import last recorded for it on this node.
    async fn recorded_images(&self) -> Result<HashMap<String, String>, ServiceError> {
        let mut recorded = HashMap::new();
        // Newest first: the first row per reference wins.
        for record in self.store.list_images().await? {
            if record.node == self.settings.node && !record.reference.is_empty() {
                recorded.entry(record.reference).or_insert(record.image_id);
            }
        }
        Ok(recorded)
    }
}
