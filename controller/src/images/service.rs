//! The images service: which image a create may use (`Images::admit`), and what
//! `GET /v1/images` shows (`ListImages`).
//!
//! With no allow list, an image only has to be on the node (never pulled). With one, it must
//! be admitted by the list ([`super::allow`]), be on the node (waiting, up to
//! `AIRLOCK_IMAGE_WAIT`, for a start-up pre-pull still loading it), and carry the pinned
//! image id. The check reads the node's image id for the reference the container is then
//! created from; only the controller can retag images on the node, so the window between the
//! two is not reachable by a tenant.

use std::collections::HashMap;
use std::time::Duration;

use super::allow::ImageRefusal;
use super::catalog::{ImageCatalog, ImageStatus, Settled};
use crate::audit::{Actor, Command};
use crate::config::ImagesConfig;
use crate::docker::{DockerClient, DockerError, ImageRun};
use crate::store::{ImageRecord, Store, StoreError};

/// The images service; cheap to clone.
#[derive(Clone, Debug)]
pub struct Images {
    store: Store,
    docker: DockerClient,
    catalog: ImageCatalog,
    node: String,
}

/// `GET /v1/images`: the allowed images with their pre-pull status, and recorded imports.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListImages;

/// What [`ListImages`] returns.
#[derive(Clone, Debug)]
pub struct ImagesView {
    /// The image configuration (allow list, bundle folder, registry).
    pub config: ImagesConfig,
    /// One row per allowed image, in configuration order.
    pub statuses: Vec<ImageStatus>,
    /// What imports recorded, newest first.
    pub recorded: Vec<ImageRecord>,
}

/// Why an image cannot be used, or the check failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The image is not on the node (images are never pulled on the hot path).
    #[error("image `{0}` is not on the node")]
    NotFound(String),
    /// The operator's image list refuses it.
    #[error(transparent)]
    Refused(#[from] ImageRefusal),
    /// It is allowed but still loading after the wait.
    #[error("image `{image}` is still loading after {waited:?}")]
    Loading {
        /// The image as requested.
        image: String,
        /// How long the create waited.
        waited: Duration,
    },
    /// Docker failed.
    #[error("docker: {0}")]
    Docker(#[from] DockerError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

// === impl Images ===

impl Images {
    /// Images on `node` through `docker`, with the allowed images' `catalog`.
    pub fn new(store: Store, docker: DockerClient, catalog: ImageCatalog, node: &str) -> Self {
        Self {
            store,
            docker,
            catalog,
            node: node.to_owned(),
        }
    }

    /// Runs `command` for `actor`.
    pub async fn run<C: Command<Self>>(
        &self,
        actor: &Actor,
        command: C,
    ) -> Result<C::Output, C::Error> {
        command.execute(self, actor).await
    }

    /// The allowed images and their pre-pull status.
    pub fn catalog(&self) -> &ImageCatalog {
        &self.catalog
    }

    /// Refuses `image` unless the operator's list and the node allow a sandbox from it;
    /// returns what the admitted image says about how it runs (one inspect serves both).
    pub(crate) async fn admit(&self, image: &str) -> Result<ImageRun, ImageError> {
        let not_found = || ImageError::NotFound(image.to_owned());
        let Some(allow) = self.catalog.allow() else {
            return self.docker.image_run(image).await?.ok_or_else(not_found);
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
        let mut run = self.docker.image_run(image).await?;
        if run.is_none() {
            self.settled(&admission.entry, image).await?;
            run = self.docker.image_run(image).await?;
        }
        let run = run.ok_or_else(not_found)?;
        let actual = run.id.clone().ok_or_else(not_found)?;
        match admission.pinned {
            Some(expected) if expected != actual => Err(ImageRefusal::DigestMismatch {
                image: image.to_owned(),
                expected,
                actual,
            }
            .into()),
            _ => Ok(run),
        }
    }

    /// Waits for the pre-pull of `entry` to end, at most `AIRLOCK_IMAGE_WAIT`.
    async fn settled(&self, entry: &str, image: &str) -> Result<(), ImageError> {
        match self
            .catalog
            .settled(entry, self.catalog.config().wait)
            .await
        {
            Settled::Done => Ok(()),
            Settled::StillLoading { waited } => Err(ImageError::Loading {
                image: image.to_owned(),
                waited,
            }),
        }
    }

    /// `name:tag` → the image id an import last recorded for it on this node.
    async fn recorded_images(&self) -> Result<HashMap<String, String>, ImageError> {
        let mut recorded = HashMap::new();
        // Newest first: the first row per reference wins.
        for record in self.store.list_images().await? {
            if record.node == self.node && !record.reference.is_empty() {
                recorded.entry(record.reference).or_insert(record.image_id);
            }
        }
        Ok(recorded)
    }
}

// === impl ListImages ===

impl Command<Images> for ListImages {
    type Output = ImagesView;
    type Error = ImageError;

    async fn execute(self, images: &Images, _actor: &Actor) -> Result<ImagesView, ImageError> {
        Ok(ImagesView {
            config: images.catalog.config().clone(),
            statuses: images.catalog.statuses(),
            recorded: images.store.list_images().await?,
        })
    }
}
