//! The Docker object names a sandbox gets. The store records the network's name and the
//! reconciler and the self-test look objects up by them, so they are written once, here.

use super::SandboxId;

/// The sandbox network's name.
pub fn network_name(id: SandboxId) -> String {
    format!("airlock-sbx-{id}")
}

/// The sandbox container's name.
pub fn container_name(id: SandboxId) -> String {
    format!("airlock-{id}")
}
