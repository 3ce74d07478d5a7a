//! The policy authority's view of credential bindings: `ListProviders` (`GET /v1/providers`),
//! the catalogue of [`super::providers`] that a create's `credentials` may name. Any signed-in
//! user may read it; it holds no secret and no per-user state.

use super::authority::{PolicyAuthority, PolicyError};
use super::providers::{self, Provider};
use crate::audit::{Actor, Command};

/// `GET /v1/providers`: every provider a create may bind.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListProviders;

impl Command<PolicyAuthority> for ListProviders {
    type Output = &'static [Provider];
    type Error = PolicyError;

    async fn execute(
        self,
        _authority: &PolicyAuthority,
        _actor: &Actor,
    ) -> Result<&'static [Provider], PolicyError> {
        Ok(providers::catalogue())
    }
}
