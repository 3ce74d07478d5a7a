//! A create's disk limit: `limits.disk_mb` (which a writable root needs) is only accepted on
//! a node whose storage driver enforces it. The node is probed once (a never-started
//! container asking for a size, [`crate::docker::DiskLimit`]); on a node that cannot, the
//! create is refused `disk_limit_unsupported` naming the field, before anything is reserved,
//! instead of failing at the container create.

use super::{SandboxError, Sandboxes};
use crate::docker::DiskLimit;
use crate::sandbox::SandboxSpec;

// === impl Sandboxes ===

impl Sandboxes {
    /// Refuses `spec` when it asks for a disk limit that this node cannot enforce. The probe
    /// uses the spec's own image, which admission has just found on the node.
    pub(super) async fn check_disk_limit(&self, spec: &SandboxSpec) -> Result<(), SandboxError> {
        if spec.limits().disk_mb.is_none() {
            return Ok(());
        }
        match self
            .docker
            .disk_limit(spec.image().as_str(), &self.settings.node)
            .await?
        {
            DiskLimit::Enforced => Ok(()),
            DiskLimit::Unsupported(reason) => Err(SandboxError::DiskLimitUnsupported { reason }),
        }
    }
}
