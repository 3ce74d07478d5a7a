//! One destroy of a member at a time in this process. The tend reconcile and a failed claim
//! may both destroy a member; without this, a reconcile destroy still removing the member's
//! objects could remove those of the cold container the failed claim went on to make under
//! the same sandbox id. Holding the member's lock for a whole destroy makes the second
//! destroyer wait, then find the member's row gone and leave the sandbox's objects alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OwnedMutexGuard;

use crate::pool::MemberId;

/// Per-member async locks; an entry lives only while someone holds or waits for it.
#[derive(Debug, Default)]
pub(super) struct MemberLocks {
    held: Arc<Mutex<HashMap<MemberId, Arc<tokio::sync::Mutex<()>>>>>,
}

/// A held member lock, released (and its entry dropped when no one waits) on drop.
#[derive(Debug)]
pub(super) struct MemberGuard {
    id: MemberId,
    held: Arc<Mutex<HashMap<MemberId, Arc<tokio::sync::Mutex<()>>>>>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl MemberLocks {
    /// Waits for member `id`'s lock.
    pub(super) async fn lock(&self, id: MemberId) -> MemberGuard {
        let lock = {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(held.entry(id).or_default())
        };
        MemberGuard {
            id,
            held: Arc::clone(&self.held),
            guard: Some(lock.lock_owned().await),
        }
    }

    #[cfg(test)]
    fn entries(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for MemberGuard {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        drop(self.guard.take());
        // Only the map's own reference left: no one holds or waits for it.
        if held
            .get(&self.id)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            held.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_second_destroyer_waits_for_the_first_and_the_entry_goes() {
        let locks = Arc::new(MemberLocks::default());
        let id = MemberId::new();
        let first = locks.lock(id).await;
        let waiter = {
            let locks = Arc::clone(&locks);
            tokio::spawn(async move { drop(locks.lock(id).await) })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "the second lock waits for the first");
        // Another member is not held up.
        drop(locks.lock(MemberId::new()).await);
        drop(first);
        waiter.await.unwrap();
        assert_eq!(locks.entries(), 0);
    }
}
