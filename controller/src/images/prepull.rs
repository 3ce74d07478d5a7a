//! The start-up pre-pull: for every allowed image missing on the node, load it from the
//! bundle folder (`AIRLOCK_BUNDLE_DIR`, verified exactly like `airlock images load`), else
//! pull it from `AIRLOCK_REGISTRY` when one is configured. It runs beside the API, which is
//! ready before it finishes; progress and results go to the [`ImageCatalog`].
//!
//! Invariants:
//! - Nothing reaches the node from the bundle folder before [`super::load::verify_async`]
//!   accepted the archive (and a `SHA256SUMS` beside it).
//! - A pinned image is `ready` only when the node's image id equals the pin.

use std::path::Path;

use tracing::{info, warn};

use super::catalog::{ImageCatalog, PullSource, PullState};
use super::load::{self, Node, Transfer};
use super::progress::Progress;
use super::VerifiedArchive;
use crate::docker::DockerClient;
use crate::store::Store;

/// Runs the pre-pull once over every pending entry of `catalog`, on `node`.
pub async fn run(catalog: ImageCatalog, store: Store, node: Node) {
    let statuses = catalog.statuses();
    if statuses.is_empty() {
        return;
    }
    let mut archives: Option<Vec<VerifiedArchive>> = None;
    for (index, status) in statuses.iter().enumerate() {
        let name = status.entry.name.clone();
        let recorded = match &name {
            Some(name) => store
                .recorded_image_id(&node.name, name)
                .await
                .unwrap_or_default(),
            None => None,
        };
        let pinned = status.entry.digest.clone().or(recorded);
        catalog.update(index, |s| s.pinned.clone_from(&pinned));
        let wanted = Wanted {
            name: name.as_deref(),
            pinned: pinned.as_deref(),
        };
        match wanted.on_node(&node.client).await {
            Ok(true) => {
                catalog.update(index, |s| s.state = PullState::Present);
                continue;
            }
            Ok(false) => {}
            Err(message) => {
                fail(&catalog, index, None, message);
                continue;
            }
        }
        let archives = match &archives {
            Some(archives) => archives,
            None => archives.insert(scan(catalog.config().bundle_dir.as_deref()).await),
        };
        if let Some(archive) = archives.iter().find(|a| wanted.in_archive(a)) {
            from_bundle(&catalog, index, archive, &store, &node, &wanted).await;
        } else if let Some(registry) = catalog.config().registry.clone() {
            from_registry(&catalog, index, &registry, &node.client, &wanted).await;
        } else {
            let message = match &catalog.config().bundle_dir {
                Some(dir) => format!(
                    "not on the node, not in any archive in {} and no AIRLOCK_REGISTRY is \
                     configured",
                    dir.display()
                ),
                None => "not on the node; neither AIRLOCK_BUNDLE_DIR nor AIRLOCK_REGISTRY is \
                         configured (load it with `airlock images load`)"
                    .to_owned(),
            };
            catalog.update(index, |s| {
                s.state = PullState::Missing;
                s.message = Some(message);
            });
        }
    }
    info!("Image pre-pull done");
}

/// What an entry asks for.
struct Wanted<'a> {
    name: Option<&'a str>,
    pinned: Option<&'a str>,
}

impl Wanted<'_> {
    /// Whether the node has it (by the pin when there is one).
    async fn on_node(&self, client: &DockerClient) -> Result<bool, String> {
        let reference = self.pinned.or(self.name).unwrap_or_default();
        let id = client
            .image_id(reference)
            .await
            .map_err(|error| format!("cannot inspect the node's images: {error}"))?;
        Ok(match (id, self.pinned) {
            (Some(id), Some(pin)) => id == pin,
            (Some(_), None) => true,
            (None, _) => false,
        })
    }

    /// Whether `archive` holds it: by the pin, or by the tag when there is none.
    fn in_archive(&self, archive: &VerifiedArchive) -> bool {
        archive.images.iter().any(|image| match self.pinned {
            Some(pin) => image.id == pin,
            None => self
                .name
                .is_some_and(|name| image.tags.iter().any(|t| t == name)),
        })
    }

    /// The image id the node now holds under the wanted name (the pin, when there is one).
    async fn landed(&self, client: &DockerClient) -> Result<String, String> {
        let reference = self.name.or(self.pinned).unwrap_or_default();
        let id = client
            .image_id(reference)
            .await
            .map_err(|error| format!("cannot inspect the node's images: {error}"))?;
        match (id, self.pinned) {
            (None, _) => Err(format!("`{reference}` is not on the node after the load")),
            (Some(id), Some(pin)) if id != pin => Err(format!(
                "`{reference}` on the node is {id}, but the allowed digest is {pin}"
            )),
            (Some(id), _) => Ok(id),
        }
    }
}

/// Every archive in `dir` that verifies; a bad one is logged and skipped.
async fn scan(dir: Option<&Path>) -> Vec<VerifiedArchive> {
    let Some(dir) = dir else {
        return Vec::new();
    };
    let paths = match load::collect(dir) {
        Ok(paths) => paths,
        Err(error) => {
            warn!(%error, "Bundle folder unusable");
            return Vec::new();
        }
    };
    let mut verified = Vec::new();
    for path in paths {
        match load::verify_async(path.clone()).await {
            Ok(archive) => verified.push(archive),
            Err(error) => warn!(%error, path = %path.display(), "Bundle archive refused"),
        }
    }
    verified
}

async fn from_bundle(
    catalog: &ImageCatalog,
    index: usize,
    archive: &VerifiedArchive,
    store: &Store,
    node: &Node,
    wanted: &Wanted<'_>,
) {
    let source = Some(PullSource::Bundle);
    catalog.update(index, |s| {
        s.state = PullState::Loading;
        s.source = source;
        s.bytes_total = archive.bytes;
        s.message = Some(archive.path.display().to_string());
    });
    let mut progress = CatalogProgress {
        catalog: catalog.clone(),
        index,
    };
    let loaded = load::load_into_nodes(
        archive,
        std::slice::from_ref(node),
        Some(store),
        &mut progress,
    )
    .await
    .map_err(|error| error.to_string());
    match loaded {
        Ok(_) => match wanted.landed(&node.client).await {
            Ok(id) => {
                info!(archive = %archive.path.display(), "Image loaded from the bundle folder");
                catalog.update(index, |s| {
                    s.state = PullState::Ready;
                    s.pinned = s.pinned.take().or(Some(id));
                });
            }
            Err(message) => fail(catalog, index, source, message),
        },
        Err(message) => fail(catalog, index, source, message),
    }
}

async fn from_registry(
    catalog: &ImageCatalog,
    index: usize,
    registry: &str,
    client: &DockerClient,
    wanted: &Wanted<'_>,
) {
    let source = Some(PullSource::Registry);
    let Some(name) = wanted.name else {
        let message = "an entry that is only an image id cannot be pulled by name".to_owned();
        return fail(catalog, index, source, message);
    };
    catalog.update(index, |s| {
        s.state = PullState::Loading;
        s.source = source;
    });
    let remote = format!("{registry}/{name}");
    let pulled = client
        .pull_and_tag(&remote, name)
        .await
        .map_err(|error| format!("pulling {remote} failed: {error}"));
    match pulled {
        Ok(()) => match wanted.landed(client).await {
            Ok(_id) => catalog.update(index, |s| s.state = PullState::Ready),
            Err(message) => fail(catalog, index, source, message),
        },
        Err(message) => fail(catalog, index, source, message),
    }
}

fn fail(catalog: &ImageCatalog, index: usize, source: Option<PullSource>, message: String) {
    warn!(error = %message, "Image pre-pull failed");
    catalog.update(index, |s| {
        s.state = PullState::Failed;
        s.source = source.or(s.source);
        s.message = Some(message);
    });
}

/// Feeds upload progress into the catalog.
struct CatalogProgress {
    catalog: ImageCatalog,
    index: usize,
}

impl Progress for CatalogProgress {
    fn update(&mut self, transfer: &Transfer) {
        self.catalog.update(self.index, |s| {
            s.bytes_done = transfer.sent;
            s.bytes_total = transfer.total;
        });
    }

    fn finish(&mut self, transfer: &Transfer, _ok: bool) {
        self.update(transfer);
    }
}
