//! Accounts: users, invites, login sessions, API tokens and per-user quotas, as commands the
//! API and the offline CLI both run (`accounts.run(&actor, command)`).
//!
//! - [`users`]: `CreateUser` (CLI), `EnsureBootstrapAdmin` (boot), `ListUsers`, `GetMe`,
//!   `UpdateUser`.
//! - [`invites`]: `CreateInvite`, `AcceptInvite`.
//! - [`sessions`]: `Login`, and authenticating a bearer token.
//! - [`signout`]: `Logout`, `ChangePassword` (ends every other session), `RevokeInvite`.
//! - [`tokens`]: `CreateToken`, `ListTokens`, `RevokeToken`.
//! - [`quotas`]: `GetQuota`, `PutQuota`.
//!
//! The typed fields people enter are checked once, in [`fields`]; the pure types live in
//! [`user`], [`credential`] and [`quota`]. Every command that changes something files its
//! audit row itself.

pub mod clock;
pub mod credential;
pub mod fields;
pub mod invites;
pub mod quota;
pub mod quotas;
pub mod sessions;
pub mod signout;
mod throttle;
pub mod tokens;
pub mod user;
pub mod users;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use clock::Clock;
pub use invites::{AcceptInvite, CreateInvite, Invitation};
pub use quotas::{GetQuota, PutQuota, QuotaView};
pub use sessions::{Authenticated, Login, Session};
pub use signout::{ChangePassword, Logout, RevokeInvite};
pub use tokens::{CreateToken, IssuedToken, ListTokens, RevokeToken, TokenOwner};
pub use users::{CreateUser, EnsureBootstrapAdmin, GetMe, ListUsers, UpdateUser};

use self::credential::CredentialError;
use self::quota::{Quota, Resources};
use self::throttle::LoginThrottle;
use self::user::{Role, Scopes, UserId};
use crate::audit::{Actor, AuditLog, Command};
use crate::store::{NewUser, Store, StoreError};

/// The email of the bootstrap admin user that the admin token acts as.
pub const ADMIN_EMAIL: &str = "admin@airlock.local";
/// Why a non-admin is refused an admin-only command.
pub const ADMIN_REQUIRED: &str = "this needs the admin role and a token with the `admin` scope";
/// How long a login session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// The accounts service; cheap to clone.
#[derive(Clone, Debug)]
pub struct Accounts {
    store: Store,
    audit: AuditLog,
    throttle: Arc<LoginThrottle>,
    clock: Clock,
    quota: Quota,
    /// The secret and volume limits' defaults, for quota views.
    resources: Resources,
    /// Bumped whenever a credential may have stopped working (a token revoked, a session
    /// ended, a user disabled), so live streams re-check theirs at once.
    revocations: Arc<watch::Sender<u64>>,
}

/// Why an account command failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// A field is unacceptable.
    #[error("{field} {reason}")]
    Invalid {
        /// The field, as the API names it.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The actor may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// No such object, or the actor may not see it.
    #[error("{0}")]
    NotFound(&'static str),
    /// An account with this email exists already.
    #[error("a user with email {0} already exists")]
    Exists(String),
    /// No account has this email.
    #[error("no user with email {0}")]
    NoSuchUser(String),
    /// Admins cannot disable or demote themselves.
    #[error("admins cannot disable or demote themselves")]
    SelfChange,
    /// A token's scopes go beyond what its owner's role allows.
    #[error("a {role} cannot hold the scopes {}", .scopes.to_stored())]
    ScopesBeyondRole {
        /// The role that limits them.
        role: Role,
        /// The scopes asked for.
        scopes: Scopes,
    },
    /// Too many failed logins; retry after this many seconds.
    #[error("too many failed logins; retry in {retry_after_s}s")]
    Throttled {
        /// Seconds until the next attempt is accepted.
        retry_after_s: u64,
    },
    /// A wrong email or password (the same answer either way).
    #[error("wrong email or password")]
    InvalidCredentials,
    /// `AIRLOCK_BOOTSTRAP_ADMIN_EMAIL` names an existing account that is not an admin.
    #[error(
        "AIRLOCK_BOOTSTRAP_ADMIN_EMAIL names {email}, an existing {role} account; it is never \
         promoted silently: set another email, promote the account first (PATCH \
         /v1/users/{{id}} with {{\"role\":\"admin\"}}), or unset the bootstrap variables"
    )]
    BootstrapNotAdmin {
        /// The email.
        email: String,
        /// Its role.
        role: Role,
    },
    /// The account behind a valid credential is gone.
    #[error("the account no longer exists")]
    Gone,
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Password hashing failed.
    #[error(transparent)]
    Credential(#[from] CredentialError),
}

// === impl Accounts ===

impl Accounts {
    /// Accounts in `store`, filing rows to `audit`, with `quota` as the per-user defaults.
    pub fn new(store: Store, audit: AuditLog, quota: Quota) -> Self {
        Self {
            store,
            audit,
            throttle: Arc::default(),
            clock: Clock::system(),
            quota,
            resources: Resources::UNLIMITED,
            revocations: Arc::new(watch::Sender::new(0)),
        }
    }

    /// The same service, reporting `resources` as the secret and volume defaults.
    pub fn with_resources(mut self, resources: Resources) -> Self {
        self.resources = resources;
        self
    }

    /// The same service reading expiries from `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Runs `command` for `actor`.
    pub async fn run<C: Command<Self>>(
        &self,
        actor: &Actor,
        command: C,
    ) -> Result<C::Output, C::Error> {
        command.execute(self, actor).await
    }

    /// A receiver that changes whenever a credential may have stopped working.
    pub fn revocations(&self) -> watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// Tells live streams to re-check their credentials.
    pub(crate) fn credentials_changed(&self) {
        self.revocations.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Whether some admin can sign in (see [`Store::has_credentials`]).
    pub async fn bootstrapped(&self) -> Result<bool, AccountError> {
        Ok(self.store.has_credentials().await?)
    }

    /// The bootstrap admin's id (the user `AIRLOCK_ADMIN_TOKEN` acts as), creating the user
    /// on first start.
    pub async fn bootstrap_admin(&self) -> Result<UserId, StoreError> {
        bootstrap_admin(&self.store).await
    }
}

/// The bootstrap admin's id, creating the user on first start.
pub async fn bootstrap_admin(store: &Store) -> Result<UserId, StoreError> {
    if let Some(user) = store.get_user_by_email(ADMIN_EMAIL).await? {
        return Ok(user.id);
    }
    let new = NewUser {
        email: ADMIN_EMAIL.to_owned(),
        display_name: "Bootstrap admin".to_owned(),
        role: Role::Admin,
    };
    match store.create_user(new).await {
        Ok(user) => Ok(user.id),
        // Another process created it between the read and the insert.
        Err(StoreError::Conflict { .. }) => store
            .get_user_by_email(ADMIN_EMAIL)
            .await?
            .map(|user| user.id)
            .ok_or(StoreError::NotFound),
        Err(error) => Err(error),
    }
}
