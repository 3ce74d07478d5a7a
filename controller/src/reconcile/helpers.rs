//! The helper sweep: per-sandbox trust objects and short-lived helper containers a crash
//! left behind on this node, found by their labels (never by name).
//!
//! - A trust volume (`airlock.sandbox.id` on a volume) or trust-volume filler (helper kind
//!   `trust-fill`) is a leftover when its sandbox has no row, or has ended and no container
//!   of it remains (the "no row / ended row" rule of the sandbox containers). One whose
//!   sandbox is live (`creating`, `running`, `stopping`) is never touched.
//! - A sampler, files, volume-owner or folder-stat helper lives for one request; one created
//!   more than [`ReconcileSettings::helper_grace`](super::ReconcileSettings::helper_grace)
//!   ago is a leftover.
//!
//! Docker is listed before the store is read (a row is always written before its objects),
//! so a sandbox being created is never mistaken for a leftover. Fillers go before volumes
//! (a filler holds its volume). A removal Docker refuses is logged and retried by the next
//! pass.

use std::collections::HashMap;

use time::OffsetDateTime;
use tracing::{info, warn};

use super::{ReconcileError, Reconciler};
use crate::docker::spec::helper::HelperKind;
use crate::docker::spec::LABEL_SANDBOX_ID;
use crate::docker::Removal;
use crate::sandbox::SandboxId;
use crate::store::Scope;

/// What one helper sweep removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Helper containers removed.
    pub helpers: usize,
    /// Trust volumes removed.
    pub trust_volumes: usize,
}

// === impl Reconciler ===

impl Reconciler {
    /// Removes leftover helpers and trust volumes; returns how many went.
    pub async fn sweep_helpers(&self) -> Result<SweepReport, ReconcileError> {
        let node = &self.settings.node;
        // Docker first, then the store: see the module docs.
        let helpers = self.docker.node_helpers(node).await?;
        let volumes = self.docker.node_trust_volumes(node).await?;
        let now = OffsetDateTime::now_utc();
        let cutoff = now - self.settings.helper_grace;
        let mut ended: HashMap<SandboxId, bool> = HashMap::new();
        let mut report = SweepReport::default();
        for helper in helpers {
            let leftover = match (helper.kind, helper.sandbox) {
                (Some(HelperKind::TrustFill), Some(id)) => self.gone(id, &mut ended).await?,
                (
                    Some(
                        HelperKind::Sampler
                        | HelperKind::Files
                        | HelperKind::VolumeOwner
                        | HelperKind::FolderStat
                        | HelperKind::DiskProbe
                        | HelperKind::RuntimeFill,
                    ),
                    _,
                ) => helper.created.is_some_and(|at| at < cutoff),
                // An unknown kind or a filler without a sandbox: not ours to judge.
                _ => false,
            };
            if !leftover {
                continue;
            }
            match self
                .docker
                .remove_container(&helper.id, Removal::Force)
                .await
            {
                Ok(()) => {
                    info!(container = %helper.id, kind = ?helper.kind, "Removed a leftover helper");
                    report.helpers += 1;
                }
                Err(error) => warn!(container = %helper.id, %error, "Leftover helper kept"),
            }
        }
        for (name, id) in volumes {
            if !self.gone(id, &mut ended).await? || self.has_containers(id).await? {
                continue;
            }
            match self.docker.remove_volume(&name).await {
                Ok(()) => {
                    info!(volume.name = %name, sandbox.id = %id, "Removed a leftover trust volume");
                    report.trust_volumes += 1;
                }
                Err(error) => warn!(volume.name = %name, %error, "Leftover trust volume kept"),
            }
        }
        Ok(report)
    }

    /// Whether sandbox `id` has no row or an ended one (memoised in `seen` for one sweep).
    async fn gone(
        &self,
        id: SandboxId,
        seen: &mut HashMap<SandboxId, bool>,
    ) -> Result<bool, ReconcileError> {
        if let Some(gone) = seen.get(&id) {
            return Ok(*gone);
        }
        let row = self.store.get_sandbox(Scope::All, id).await?;
        let gone = row.is_none_or(|sandbox| sandbox.state.is_terminal());
        seen.insert(id, gone);
        Ok(gone)
    }

    /// Whether any container of sandbox `id` is left (an ended sandbox's container may still
    /// mount its trust volume until the sandbox is deleted).
    async fn has_containers(&self, id: SandboxId) -> Result<bool, ReconcileError> {
        let value = id.to_string();
        let listed = self
            .docker
            .containers_labelled(LABEL_SANDBOX_ID, &value)
            .await?;
        Ok(!listed.is_empty())
    }
}
