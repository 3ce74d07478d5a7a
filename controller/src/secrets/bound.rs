//! Secrets that live sandboxes bind as credentials at egress: a new value is pushed to the
//! proxy at once (each bound sandbox's entry under a new generation, which also closes its
//! older tunnels), and a bound secret cannot be deleted while a sandbox binds it.

use tracing::{info, warn};

use super::{SecretError, Secrets};
use crate::accounts::user::UserId;
use crate::egress::EgressPlane;

// === impl Secrets ===

impl Secrets {
    /// The same service, re-pushing the sandboxes of `plane` that bind a changed secret.
    #[must_use]
    pub fn with_egress(mut self, plane: &EgressPlane) -> Self {
        self.egress = Some(plane.downgrade());
        self
    }

    /// After `owner`'s secret `name` got a new value: re-pushes every live sandbox that
    /// binds it. A failure is logged; that sandbox keeps the old value until its next push.
    pub(super) async fn refresh_bound(&self, owner: UserId, name: &str) {
        let Some(plane) = self.egress.as_ref().and_then(|p| p.upgrade()) else {
            return;
        };
        let bound = match plane.bound_to(owner, name).await {
            Ok(bound) => bound,
            Err(error) => {
                warn!(%error, secret.name = name, "Could not find the sandboxes binding a changed secret");
                return;
            }
        };
        for id in bound {
            match plane.refresh(id).await {
                Ok(()) => info!(sandbox.id = %id, secret.name = name, "Bound secret re-pushed"),
                Err(error) => {
                    warn!(%error, sandbox.id = %id, secret.name = name, "Bound secret not re-pushed");
                }
            }
        }
    }

    /// Refuses to delete `owner`'s secret `name` while a live sandbox binds it
    /// ([`SecretError::InUse`]).
    pub(super) async fn refuse_if_bound(
        &self,
        owner: UserId,
        name: &str,
    ) -> Result<(), SecretError> {
        let Some(plane) = self.egress.as_ref().and_then(|p| p.upgrade()) else {
            return Ok(());
        };
        let bound = plane
            .bound_to(owner, name)
            .await
            .map_err(|e| SecretError::Egress(e.to_string()))?;
        match bound.len() {
            0 => Ok(()),
            sandboxes => Err(SecretError::InUse { sandboxes }),
        }
    }
}
