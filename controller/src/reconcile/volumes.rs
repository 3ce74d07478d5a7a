//! The volume sweep: a managed Docker volume (`airlock.volume.id` on this node) whose row is
//! gone is removed. Rows are written before their Docker volume and removed before it, so a
//! volume without a row is always a leftover (a delete whose Docker removal failed, e.g.
//! while an ended sandbox's container still referenced it). A removal Docker refuses (still
//! in use) is retried by the next pass.

use tracing::{info, warn};

use super::{ReconcileError, Reconciler};
use crate::store::Scope;

// === impl Reconciler ===

impl Reconciler {
    /// Removes leftover managed volumes; returns how many went.
    pub async fn sweep_volumes(&self) -> Result<usize, ReconcileError> {
        let listed = self.docker.node_volumes(&self.settings.node).await?;
        let mut removed = 0;
        for volume in listed {
            let known = match volume.id {
                Some(id) => self.store.get_volume(Scope::All, id).await?.is_some(),
                None => false,
            };
            if known {
                continue;
            }
            match self.docker.remove_volume(&volume.name).await {
                Ok(()) => {
                    info!(volume.name = %volume.name, "Removed a leftover volume");
                    removed += 1;
                }
                Err(error) => warn!(volume.name = %volume.name, %error, "Leftover volume kept"),
            }
        }
        Ok(removed)
    }
}
