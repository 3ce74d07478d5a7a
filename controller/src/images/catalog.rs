//! The allowed images' live status, shared by the start-up pre-pull ([`super::prepull`]),
//! creates (which may wait for an image that is still loading) and `GET /v1/images`.
//!
//! Invariant: a status only moves forward (`pending` → `loading` → `ready`|`missing`|
//! `failed`, or `pending` → `present`), and every change wakes the waiters.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;

use super::allow::{AllowList, AllowedImage};
use crate::config::ImagesConfig;

/// Where an allowed image stands on the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullState {
    /// Not checked yet.
    Pending,
    /// On the node already at start.
    Present,
    /// Being loaded from a bundle or pulled.
    Loading,
    /// Loaded or pulled by the pre-pull.
    Ready,
    /// Nowhere to get it from.
    Missing,
    /// Loading or pulling failed.
    Failed,
}

/// Where the pre-pull got (or is getting) an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullSource {
    /// An archive in the bundle folder.
    Bundle,
    /// The configured registry.
    Registry,
}

/// One allowed image's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageStatus {
    /// The entry as configured (`name:tag`, `name:tag@sha256:…` or an id).
    pub entry: AllowedImage,
    /// The pin in force (the entry's digest or the one an import recorded).
    pub pinned: Option<String>,
    /// Where it stands.
    pub state: PullState,
    /// Where it comes from, once known.
    pub source: Option<PullSource>,
    /// Bytes moved so far.
    pub bytes_done: u64,
    /// Bytes to move, when known.
    pub bytes_total: u64,
    /// Why it is missing or failed, or which archive it came from.
    pub message: Option<String>,
    /// The last change.
    pub updated_at: OffsetDateTime,
}

/// The allowed images and their statuses; cheap to clone.
#[derive(Clone, Debug)]
pub struct ImageCatalog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ImagesConfig,
    statuses: Mutex<Vec<ImageStatus>>,
    changed: watch::Sender<u64>,
}

/// Why a create cannot use an image yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    /// The image's load ended (in any state); look at the node again.
    Done,
    /// Still loading after the wait.
    StillLoading {
        /// How long the create waited.
        waited: Duration,
    },
}

// === impl PullState ===

impl PullState {
    /// The API's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Present => "present",
            Self::Loading => "loading",
            Self::Ready => "ready",
            Self::Missing => "missing",
            Self::Failed => "failed",
        }
    }

    /// Whether the pre-pull may still change it.
    pub fn in_progress(self) -> bool {
        matches!(self, Self::Pending | Self::Loading)
    }
}

// === impl PullSource ===

impl PullSource {
    /// The API's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bundle => "bundle",
            Self::Registry => "registry",
        }
    }
}

// === impl ImageCatalog ===

impl ImageCatalog {
    /// A catalog of `config`'s allowed images, all `pending`.
    pub fn new(config: ImagesConfig) -> Self {
        let now = OffsetDateTime::now_utc();
        let statuses = config
            .allow
            .iter()
            .flat_map(|allow| allow.entries.iter())
            .map(|entry| ImageStatus {
                entry: entry.clone(),
                pinned: entry.digest.clone(),
                state: PullState::Pending,
                source: None,
                bytes_done: 0,
                bytes_total: 0,
                message: None,
                updated_at: now,
            })
            .collect();
        let (changed, _) = watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                config,
                statuses: Mutex::new(statuses),
                changed,
            }),
        }
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &ImagesConfig {
        &self.inner.config
    }

    /// The allow list, if one is configured.
    pub fn allow(&self) -> Option<&AllowList> {
        self.inner.config.allow.as_ref()
    }

    /// A snapshot of every status, in configuration order.
    pub fn statuses(&self) -> Vec<ImageStatus> {
        self.lock().clone()
    }

    /// Changes entry `index` with `change`, stamps it and wakes the waiters.
    pub fn update(&self, index: usize, change: impl FnOnce(&mut ImageStatus)) {
        {
            let mut statuses = self.lock();
            let Some(status) = statuses.get_mut(index) else {
                return;
            };
            change(status);
            status.updated_at = OffsetDateTime::now_utc();
        }
        self.inner.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Waits until the entry written `entry` is no longer in progress, at most `limit`.
    /// An entry the catalog does not hold is settled.
    pub async fn settled(&self, entry: &str, limit: Duration) -> Settled {
        let mut changes = self.inner.changed.subscribe();
        let started = tokio::time::Instant::now();
        let busy = |catalog: &ImageCatalog| {
            catalog
                .lock()
                .iter()
                .any(|s| s.entry.to_string() == entry && s.state.in_progress())
        };
        let wait = async {
            while busy(self) {
                if changes.changed().await.is_err() {
                    break;
                }
            }
        };
        match tokio::time::timeout(limit, wait).await {
            Ok(()) => Settled::Done,
            Err(_elapsed) => Settled::StillLoading {
                waited: started.elapsed(),
            },
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ImageStatus>> {
        // A panic while holding the lock leaves plain data; keep serving it.
        self.inner
            .statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> ImageCatalog {
        let entries = AllowList::parse_entries("a:1, b:2").unwrap();
        ImageCatalog::new(ImagesConfig {
            allow: Some(AllowList {
                entries,
                require_pinned: false,
            }),
            ..ImagesConfig::default()
        })
    }

    #[tokio::test]
    async fn waiters_wake_when_the_load_ends() {
        let catalog = catalog();
        catalog.update(0, |s| s.state = PullState::Loading);
        let waiting = tokio::spawn({
            let catalog = catalog.clone();
            async move { catalog.settled("a:1", Duration::from_secs(30)).await }
        });
        tokio::task::yield_now().await;
        catalog.update(0, |s| s.state = PullState::Ready);
        assert_eq!(waiting.await.unwrap(), Settled::Done);
    }

    // Paused time: the 30 s deadline passes at once, with no real wait.
    #[tokio::test(start_paused = true)]
    async fn waiters_give_up_at_the_deadline() {
        let catalog = catalog();
        catalog.update(1, |s| s.state = PullState::Loading);
        let limit = Duration::from_secs(30);
        let settled = catalog.settled("b:2", limit).await;
        assert!(matches!(settled, Settled::StillLoading { waited } if waited >= limit));
        // Unknown and finished entries never wait.
        assert_eq!(
            catalog.settled("zzz:1", Duration::from_secs(30)).await,
            Settled::Done
        );
    }
}
