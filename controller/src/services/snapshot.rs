//! A value computed at most once per [`SNAPSHOT_MAX_AGE`], however many callers ask: what
//! `/readyz` and `/metrics` serve, so that a client polling them in a loop (or a thousand
//! clients at once) costs at most one round of store, Docker and proxy calls per interval.
//!
//! A refresh runs while the slot is locked, so callers arriving during it wait for that one
//! refresh and share its result instead of starting their own (single flight).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// The oldest a served snapshot may be.
pub const SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(2);

/// The newest value and when it was computed; cheap to clone (clones share the slot).
#[derive(Debug)]
pub struct Snapshot<T> {
    slot: Arc<Mutex<Option<(Instant, T)>>>,
}

impl<T> Clone for Snapshot<T> {
    fn clone(&self) -> Self {
        Self {
            slot: Arc::clone(&self.slot),
        }
    }
}

impl<T> Default for Snapshot<T> {
    fn default() -> Self {
        Self {
            slot: Arc::new(Mutex::new(None)),
        }
    }
}

// === impl Snapshot ===

impl<T: Clone> Snapshot<T> {
    /// The value, from `refresh` when the stored one is missing or older than
    /// [`SNAPSHOT_MAX_AGE`].
    pub async fn get<F, Fut>(&self, refresh: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let mut slot = self.slot.lock().await;
        if let Some((at, value)) = slot.as_ref() {
            if at.elapsed() < SNAPSHOT_MAX_AGE {
                return value.clone();
            }
        }
        let value = refresh().await;
        *slot = Some((Instant::now(), value.clone()));
        value
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_refresh_per_interval() {
        let snapshot = Snapshot::default();
        let refreshes = Arc::new(AtomicUsize::new(0));
        let ask = || {
            let snapshot = snapshot.clone();
            let refreshes = Arc::clone(&refreshes);
            tokio::spawn(async move {
                snapshot
                    .get(|| async {
                        // A slow dependency: every caller arrives while this runs.
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        refreshes.fetch_add(1, Ordering::SeqCst) + 1
                    })
                    .await
            })
        };
        let callers: Vec<_> = (0..1000).map(|_| ask()).collect();
        for caller in callers {
            assert_eq!(caller.await.unwrap(), 1);
        }
        assert_eq!(refreshes.load(Ordering::SeqCst), 1);

        tokio::time::advance(Duration::from_millis(1000)).await;
        assert_eq!(
            ask().await.unwrap(),
            1,
            "still fresh 1 s after it was taken"
        );
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert_eq!(ask().await.unwrap(), 2, "refreshed once older than 2 s");
        assert_eq!(refreshes.load(Ordering::SeqCst), 2);
    }
}
