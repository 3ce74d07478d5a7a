//! Per-user quotas: the operator's defaults (`AIRLOCK_QUOTA_*`) with a user's overrides, and
//! what the user uses now. Admins read and replace anyone's overrides; a user reads their own.

use super::quota::{Quota, QuotaOverride, Resources, Usage};
use super::{AccountError, Accounts, ADMIN_REQUIRED};
use crate::accounts::user::UserId;
use crate::audit::{status, Actor, Command, Entry};
use crate::store::StoreError;

/// `GET /v1/users/{id}/quota`: an admin, or the user themself.
#[derive(Clone, Copy, Debug)]
pub struct GetQuota {
    /// The user.
    pub user: UserId,
}

/// `PUT /v1/users/{id}/quota` (admins): replaces the user's overrides.
#[derive(Clone, Copy, Debug)]
pub struct PutQuota {
    /// The user.
    pub user: UserId,
    /// The new overrides (`None` fields fall back to the defaults).
    pub overrides: QuotaOverride,
}

/// A user's quota as it applies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuotaView {
    /// The user.
    pub user: UserId,
    /// The defaults with the overrides.
    pub effective: Quota,
    /// The secret and volume limits: the defaults with the overrides.
    pub resources: Resources,
    /// The user's overrides.
    pub overrides: QuotaOverride,
    /// What the user uses now.
    pub usage: Usage,
}

// === impl GetQuota ===

impl Command<Accounts> for GetQuota {
    type Output = QuotaView;
    type Error = AccountError;

    async fn execute(self, accounts: &Accounts, actor: &Actor) -> Result<QuotaView, AccountError> {
        if !actor.is_admin() && actor.user() != Some(self.user) {
            return Err(AccountError::NotFound("no such user"));
        }
        accounts.quota_view(self.user).await
    }
}

// === impl PutQuota ===

impl Command<Accounts> for PutQuota {
    type Output = QuotaView;
    type Error = AccountError;

    async fn execute(self, accounts: &Accounts, actor: &Actor) -> Result<QuotaView, AccountError> {
        if !actor.is_admin() {
            return Err(AccountError::Forbidden(ADMIN_REQUIRED));
        }
        let before = match accounts.store.get_user(self.user).await? {
            Some(_) => accounts.store.quota_override(self.user).await?,
            None => return Err(AccountError::NotFound("no such user")),
        };
        let set = accounts
            .store
            .set_quota_override(self.user, &self.overrides)
            .await;
        match set {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Err(AccountError::NotFound("no such user")),
            Err(error) => return Err(error.into()),
        }
        let entry = Entry::new("PUT /v1/users/{id}/quota", status::OK)
            .object(self.user)
            .detail(self.overrides.changes_from(&before));
        accounts.audit.record(actor, entry).await;
        accounts.quota_view(self.user).await
    }
}

// === impl Accounts ===

impl Accounts {
    async fn quota_view(&self, user: UserId) -> Result<QuotaView, AccountError> {
        if self.store.get_user(user).await?.is_none() {
            return Err(AccountError::NotFound("no such user"));
        }
        let overrides = self.store.quota_override(user).await?;
        let usage = self.store.quota_usage(user).await?;
        Ok(QuotaView {
            user,
            effective: self.quota.with(&overrides),
            resources: self.resources.with(&overrides),
            overrides,
            usage,
        })
    }
}
