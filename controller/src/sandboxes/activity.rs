//! The last exec activity per sandbox, in memory, for the idle timeout (see
//! [`crate::sandbox::timeouts`] for how it is used and why it is not persisted).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use time::OffsetDateTime;

use crate::sandbox::SandboxId;

/// The last activity seen per sandbox; cheap to clone, shared by exec and the reconciler.
#[derive(Clone, Debug)]
pub struct Activity {
    seen: Arc<Mutex<HashMap<SandboxId, OffsetDateTime>>>,
    floor: OffsetDateTime,
}

// === impl Activity ===

impl Default for Activity {
    fn default() -> Self {
        Self::new(OffsetDateTime::now_utc())
    }
}

impl Activity {
    /// A tracker whose idle clocks start no earlier than `floor` (the process start).
    pub fn new(floor: OffsetDateTime) -> Self {
        Self {
            seen: Arc::default(),
            floor,
        }
    }

    /// No sandbox counts as idle since before this time.
    pub fn floor(&self) -> OffsetDateTime {
        self.floor
    }

    /// Records activity of `id` at `at`; an older time than the one known is ignored.
    pub fn touch(&self, id: SandboxId, at: OffsetDateTime) {
        let mut seen = self.lock();
        let entry = seen.entry(id).or_insert(at);
        *entry = (*entry).max(at);
    }

    /// The last activity recorded for `id`.
    pub fn get(&self, id: SandboxId) -> Option<OffsetDateTime> {
        self.lock().get(&id).copied()
    }

    /// Forgets every sandbox not in `live`.
    pub fn retain(&self, live: &HashSet<SandboxId>) {
        self.lock().retain(|id, _| live.contains(id));
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SandboxId, OffsetDateTime>> {
        // The map holds plain timestamps: a panic elsewhere cannot leave it inconsistent.
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(s)
    }

    #[test]
    fn activity_keeps_the_latest_touch_and_forgets_dead_sandboxes() {
        let activity = Activity::new(at(0));
        let (a, b) = (SandboxId::new(), SandboxId::new());
        activity.touch(a, at(5));
        activity.touch(a, at(3));
        activity.touch(b, at(7));
        assert_eq!(activity.get(a), Some(at(5)));
        activity.retain(&HashSet::from([b]));
        assert_eq!(activity.get(a), None);
        assert_eq!(activity.get(b), Some(at(7)));
        assert_eq!(activity.floor(), at(0));
    }
}
