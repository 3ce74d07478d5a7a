//! How many uploads are staged at once. A staged upload holds up to [`super::MAX_UPLOAD_BYTES`]
//! of the controller's disk (the disk the store lives on), so the node stages at most
//! [`MAX_STAGED_PER_NODE`] uploads at a time and one user at most [`MAX_STAGED_PER_USER`]: about
//! 4 GiB in all, and one tenant cannot take every slot. Past either limit an upload is refused at
//! once (`429 too_many_uploads`), never queued with its body held open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::accounts::user::UserId;

/// Uploads staged at once on this node.
pub const MAX_STAGED_PER_NODE: usize = 4;
/// Uploads one user stages at once.
pub const MAX_STAGED_PER_USER: usize = 2;

/// Which limit an upload met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotLimit {
    /// The caller's own uploads.
    User,
    /// Every user's uploads on this node.
    Node,
}

/// The uploads being staged now; cheap to clone.
#[derive(Clone, Debug, Default)]
pub(super) struct UploadSlots(Arc<Mutex<Held>>);

#[derive(Debug, Default)]
struct Held {
    total: usize,
    /// By user; the CLI and the admin token (no user) count as one.
    per_user: HashMap<Option<UserId>, usize>,
}

/// One staged upload's place; given back when dropped.
#[derive(Debug)]
pub(super) struct Slot {
    slots: UploadSlots,
    user: Option<UserId>,
}

impl UploadSlots {
    /// A place for one more upload of `user`, or the limit it met.
    pub(super) fn take(&self, user: Option<UserId>) -> Result<Slot, SlotLimit> {
        let mut held = self.lock();
        let mine = held.per_user.get(&user).copied().unwrap_or(0);
        if mine >= MAX_STAGED_PER_USER {
            return Err(SlotLimit::User);
        }
        if held.total >= MAX_STAGED_PER_NODE {
            return Err(SlotLimit::Node);
        }
        held.total += 1;
        held.per_user.insert(user, mine + 1);
        Ok(Slot {
            slots: self.clone(),
            user,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.lock();
        held.total = held.total.saturating_sub(1);
        if let Some(mine) = held.per_user.get_mut(&self.user) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                held.per_user.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_and_the_node_have_their_limits_and_slots_come_back() {
        let slots = UploadSlots::default();
        let (a, b, c) = (
            Some(UserId::new()),
            Some(UserId::new()),
            Some(UserId::new()),
        );
        let a1 = slots.take(a).unwrap();
        let _a2 = slots.take(a).unwrap();
        assert_eq!(slots.take(a).unwrap_err(), SlotLimit::User);
        let _b1 = slots.take(b).unwrap();
        let _b2 = slots.take(b).unwrap();
        assert_eq!(slots.take(c).unwrap_err(), SlotLimit::Node);
        drop(a1);
        let _c1 = slots.take(c).unwrap();
        assert_eq!(slots.take(a).unwrap_err(), SlotLimit::Node);
        assert_eq!(slots.lock().total, MAX_STAGED_PER_NODE);
    }
}
