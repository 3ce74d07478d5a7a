//! Ending access: `Logout` (the caller's own login session), `ChangePassword` (which ends
//! every other session of the account), and `RevokeInvite` (an admin withdraws an unused
//! invite). Each files its row and tells live streams to re-check their credentials, so a
//! followed log or an interactive exec on an ended credential stops within a second.

use uuid::Uuid;

use super::credential;
use super::{fields, AccountError, Accounts, ADMIN_REQUIRED};
use crate::audit::{status, Actor, Command, Entry, Via};
use crate::store::StoreError;

/// Why only a login session may log out or change the password.
const SESSION_ONLY: &str =
    "only a login session can do this; revoke API tokens with DELETE /v1/tokens/{id}";

/// `POST /v1/auth/logout`: ends the caller's login session.
#[derive(Clone, Copy, Debug, Default)]
pub struct Logout;

/// `POST /v1/me/password`: a new password, given the current one; every other session of
/// the account ends.
#[derive(Clone)]
pub struct ChangePassword {
    /// The current password.
    pub current: String,
    /// The new password (see [`fields::password`]).
    pub new: String,
}

/// `DELETE /v1/users/invites/{id}` (admins): withdraws an unused invite.
#[derive(Clone, Copy, Debug)]
pub struct RevokeInvite {
    /// The invite.
    pub id: Uuid,
}

/// The session id of a session actor.
fn session_id(actor: &Actor) -> Result<Uuid, AccountError> {
    let id = (actor.via() == Via::Session)
        .then(|| actor.credential()?.strip_prefix("session:")?.parse().ok())
        .flatten();
    id.ok_or(AccountError::Forbidden(SESSION_ONLY))
}

// === impl Logout ===

impl Command<Accounts> for Logout {
    type Output = ();
    type Error = AccountError;

    async fn execute(self, accounts: &Accounts, actor: &Actor) -> Result<(), AccountError> {
        let id = session_id(actor)?;
        match accounts.store.revoke_session(id).await {
            Ok(()) | Err(StoreError::NotFound) => {}
            Err(error) => return Err(error.into()),
        }
        accounts.credentials_changed();
        let entry = Entry::new("POST /v1/auth/logout", status::NO_CONTENT).object(id);
        accounts.audit.record(actor, entry).await;
        Ok(())
    }
}

// === impl ChangePassword ===

impl std::fmt::Debug for ChangePassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChangePassword { .. }")
    }
}

impl Command<Accounts> for ChangePassword {
    type Output = u64;
    type Error = AccountError;

    async fn execute(self, accounts: &Accounts, actor: &Actor) -> Result<u64, AccountError> {
        let keep = session_id(actor)?;
        let user = actor.user().ok_or(AccountError::Gone)?;
        fields::password(&self.new)?;
        let account = accounts
            .store
            .get_user(user)
            .await?
            .ok_or(AccountError::Gone)?;
        let (_, stored) = accounts
            .store
            .user_login(&account.email)
            .await?
            .ok_or(AccountError::Gone)?;
        if !credential::verify_password(self.current, stored).await? {
            return Err(AccountError::Invalid {
                field: "current_password",
                reason: "is not the account's password".to_owned(),
            });
        }
        let phc = credential::hash_password(self.new).await?;
        accounts.store.set_password_hash(user, &phc).await?;
        let ended = accounts.store.revoke_sessions_of(user, Some(keep)).await?;
        accounts.credentials_changed();
        let entry = Entry::new("POST /v1/me/password", status::NO_CONTENT)
            .object(user)
            .detail(format!("{ended} other session(s) ended"));
        accounts.audit.record(actor, entry).await;
        Ok(ended)
    }
}

// === impl RevokeInvite ===

impl Command<Accounts> for RevokeInvite {
    type Output = ();
    type Error = AccountError;

    async fn execute(self, accounts: &Accounts, actor: &Actor) -> Result<(), AccountError> {
        if !actor.is_admin() {
            return Err(AccountError::Forbidden(ADMIN_REQUIRED));
        }
        let email = match accounts.store.delete_invite(self.id).await {
            Ok(email) => email,
            Err(StoreError::NotFound) => {
                return Err(AccountError::NotFound("no such invite, or it was used"))
            }
            Err(error) => return Err(error.into()),
        };
        let entry = Entry::new("DELETE /v1/users/invites/{id}", status::NO_CONTENT)
            .object(self.id)
            .detail(email);
        accounts.audit.record(actor, entry).await;
        Ok(())
    }
}
