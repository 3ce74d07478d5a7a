//! Invites: an admin's single-use, expiring offer of an account, and its acceptance, which
//! creates the account and signs it in.

use std::time::Duration;

use time::OffsetDateTime;
use tracing::info;

use super::credential::{self, NewToken, TokenKind};
use super::sessions::Session;
use super::{fields, AccountError, Accounts, ADMIN_REQUIRED, SESSION_TTL};
use crate::accounts::user::Role;
use crate::audit::{status, Actor, Command, Entry};
use crate::store::{self, StoreError};

/// The default invite lifetime.
pub const INVITE_TTL: Duration = Duration::from_secs(7 * 86_400);
/// The shortest invite lifetime.
pub const MIN_INVITE_TTL: Duration = Duration::from_secs(60);
/// The longest invite lifetime.
pub const MAX_INVITE_TTL: Duration = Duration::from_secs(30 * 86_400);
/// What an unknown, used or expired invite is told.
const NO_INVITE: &str = "no such invite, or it was used or expired";

/// `POST /v1/users/invites` (admins): an invite for `email`.
#[derive(Clone, Debug)]
pub struct CreateInvite {
    /// The invitee's email (see [`fields::email`]).
    pub email: String,
    /// The role the account will get.
    pub role: Role,
    /// How long the invite lasts, [`MIN_INVITE_TTL`]..=[`MAX_INVITE_TTL`].
    pub ttl: Duration,
}

/// A new invite: its token is shown this once.
#[derive(Clone, Debug)]
pub struct Invitation {
    /// The invite's id (to withdraw it).
    pub id: uuid::Uuid,
    /// The single-use invite token (`ali_…`).
    pub token: String,
    /// The invitee's email.
    pub email: String,
    /// The role the account will get.
    pub role: Role,
    /// When it lapses.
    pub expires_at: OffsetDateTime,
}

/// `POST /v1/auth/accept-invite`: redeems an invite, creating the account.
#[derive(Clone)]
pub struct AcceptInvite {
    /// The invite token.
    pub token: String,
    /// The new account's password.
    pub password: String,
    /// The new account's display name.
    pub display_name: String,
}

// === impl CreateInvite ===

impl CreateInvite {
    /// The lifetime `seconds` asks for (`None`: the default), if it is allowed.
    pub fn ttl(seconds: Option<u64>) -> Result<Duration, AccountError> {
        let Some(seconds) = seconds else {
            return Ok(INVITE_TTL);
        };
        let ttl = Duration::from_secs(seconds);
        if (MIN_INVITE_TTL..=MAX_INVITE_TTL).contains(&ttl) {
            return Ok(ttl);
        }
        Err(AccountError::Invalid {
            field: "expires_in_s",
            reason: "must be 60 to 2592000".to_owned(),
        })
    }
}

impl Command<Accounts> for CreateInvite {
    type Output = Invitation;
    type Error = AccountError;

    async fn execute(self, accounts: &Accounts, actor: &Actor) -> Result<Invitation, AccountError> {
        let (Some(by), true) = (actor.user(), actor.is_admin()) else {
            return Err(AccountError::Forbidden(ADMIN_REQUIRED));
        };
        let email = fields::email(&self.email)?;
        if accounts.store.get_user_by_email(&email).await?.is_some() {
            return Err(AccountError::Exists(email));
        }
        let token = NewToken::generate(TokenKind::Invite);
        let expires_at = accounts.clock.now() + self.ttl;
        let new = store::NewInvite {
            email: email.clone(),
            role: self.role,
            hash: token.hash.clone(),
            created_by: by,
            expires_at,
        };
        let id = accounts.store.create_invite(new).await?;
        info!(user.id = %by, "Invite created");
        let entry = Entry::new("POST /v1/users/invites", status::CREATED)
            .object(&email)
            .detail(format!("role {}, invite {id}", self.role));
        accounts.audit.record(actor, entry).await;
        Ok(Invitation {
            id,
            token: token.text,
            email,
            role: self.role,
            expires_at,
        })
    }
}

// === impl AcceptInvite ===

impl std::fmt::Debug for AcceptInvite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptInvite")
            .field("token", &"***")
            .field("password", &"***")
            .field("display_name", &self.display_name)
            .finish()
    }
}

impl Command<Accounts> for AcceptInvite {
    type Output = Session;
    type Error = AccountError;

    async fn execute(self, accounts: &Accounts, actor: &Actor) -> Result<Session, AccountError> {
        fields::password(&self.password)?;
        let display_name = fields::display_name(&self.display_name)?;
        if TokenKind::of(&self.token) != Some(TokenKind::Invite) {
            return Err(AccountError::NotFound(NO_INVITE));
        }
        // The invite is looked up before the password is hashed: a bogus token costs no argon2.
        let hash = credential::hash_token(&self.token);
        if !accounts.store.invite_is_open(&hash).await? {
            return Err(AccountError::NotFound(NO_INVITE));
        }
        let accept = store::InviteAcceptance {
            hash,
            display_name,
            password_hash: credential::hash_password(self.password).await?,
        };
        let user = match accounts.store.accept_invite(accept).await {
            Ok(user) => user,
            Err(StoreError::NotFound) => return Err(AccountError::NotFound(NO_INVITE)),
            Err(StoreError::Conflict { .. }) => return Err(AccountError::Exists(String::new())),
            Err(error) => return Err(error.into()),
        };
        let session = accounts.open_session(user, SESSION_TTL).await?;
        info!(user.id = %session.user.id, "Invite accepted");
        let entry = Entry::new("auth.accept-invite", status::CREATED)
            .user(Some(session.user.id))
            .object(&session.user.email)
            .detail("accepted");
        accounts.audit.record(actor, entry).await;
        Ok(session)
    }
}
