//! Warm pool members at the proxy: a member's network joined and its address registered as
//! unbound (every request refused `sandbox_not_claimed`) until a claim binds it
//! ([`EgressPlane::bind`] with the member), and forgotten when the member is destroyed.

use std::net::IpAddr;

use airlock_wire::PutMember;

use super::{EgressError, EgressPlane};
use crate::docker::spec::egress::EGRESS_CONTAINER;
use crate::pool::{member_network_name, MemberId};
use crate::sandbox::subnet::SandboxSubnet;

// === impl EgressPlane ===

impl EgressPlane {
    /// Registers a warm pool member: joins the proxy to the member's network at the `.2` of
    /// its /29 and registers its address as unbound (every request refused
    /// `sandbox_not_claimed` until [`EgressPlane::bind`] claims it).
    pub async fn attach_member(
        &self,
        member: MemberId,
        subnet: SandboxSubnet,
    ) -> Result<(), EgressError> {
        self.inner
            .docker
            .connect_network(
                &member_network_name(member),
                EGRESS_CONTAINER,
                subnet.proxy(),
            )
            .await?;
        let body = PutMember {
            source_addrs: vec![IpAddr::V4(subnet.sandbox())],
            generation: 1,
        };
        self.inner
            .admin
            .put_member(&member.to_string(), &body)
            .await
            .map(drop)
    }

    /// Forgets an unbound member at the proxy (idempotent).
    pub async fn forget_member(&self, member: MemberId) -> Result<(), EgressError> {
        self.inner.admin.delete_member(&member.to_string()).await
    }
}
