//! User commands: creating one offline (`airlock admin create-user`) or at boot, listing
//! them, the caller's own account, and an admin's changes to another's role or status.

use tracing::info;

use super::{credential, fields, AccountError, Accounts, ADMIN_REQUIRED};
use crate::accounts::user::{Role, UserId};
use crate::audit::{status, Actor, Command, Entry};
use crate::config::BootstrapAdmin;
use crate::store::{NewUser, StoreError, User, UserUpdate};

/// `airlock admin create-user`, and the boot-time admins: a user, with a password when one is
/// given.
#[derive(Clone)]
pub struct CreateUser {
    /// The email (checked and lower-cased here).
    pub email: String,
    /// The display name (the email when empty).
    pub display_name: String,
    /// The role.
    pub role: Role,
    /// The password, if the user should be able to log in.
    pub password: Option<String>,
}

/// Creates the configured admin (`AIRLOCK_BOOTSTRAP_ADMIN_*`) unless an account with that
/// email exists; then nothing changes, except that a passwordless account gets the password.
#[derive(Clone, Debug)]
pub struct EnsureBootstrapAdmin {
    /// The configured email and password.
    pub admin: BootstrapAdmin,
}

/// `GET /v1/users` (admins): every account.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListUsers;

/// `GET /v1/me`: the caller's own account.
#[derive(Clone, Copy, Debug, Default)]
pub struct GetMe;

/// `PATCH /v1/users/{id}` (admins): a user's new role or disabled flag.
#[derive(Clone, Copy, Debug)]
pub struct UpdateUser {
    /// The user.
    pub id: UserId,
    /// The new role, if it changes.
    pub role: Option<Role>,
    /// Disable (or enable) the account.
    pub disabled: Option<bool>,
}

// === impl CreateUser ===

impl std::fmt::Debug for CreateUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateUser")
            .field("email", &self.email)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Command<Accounts> for CreateUser {
    type Output = User;
    type Error = AccountError;

    async fn execute(self, accounts: &Accounts, actor: &Actor) -> Result<User, AccountError> {
        let email = fields::email(&self.email)?;
        let phc = match &self.password {
            Some(password) => {
                fields::password(password)?;
                Some(credential::hash_password(password.clone()).await?)
            }
            None => None,
        };
        let display_name = match self.display_name.trim() {
            "" => email.clone(),
            name => name.to_owned(),
        };
        let new = NewUser {
            email: email.clone(),
            display_name,
            role: self.role,
        };
        let user = match accounts.store.create_user(new).await {
            Ok(user) => user,
            Err(StoreError::Conflict { .. }) => return Err(AccountError::Exists(email)),
            Err(error) => return Err(error.into()),
        };
        if let Some(phc) = phc {
            accounts.store.set_password_hash(user.id, &phc).await?;
        }
        let entry = Entry::new("admin.create-user", status::CREATED).object(&user.email);
        accounts.audit.record(actor, entry).await;
        Ok(user)
    }
}

// === impl EnsureBootstrapAdmin ===

impl Command<Accounts> for EnsureBootstrapAdmin {
    type Output = User;
    type Error = AccountError;

    async fn execute(self, accounts: &Accounts, actor: &Actor) -> Result<User, AccountError> {
        let store = &accounts.store;
        let password = self.admin.password.expose().to_owned();
        if let Some((user, hash)) = store.user_login(&self.admin.email).await? {
            // Never silently kept as it is, never silently promoted.
            if user.role != Role::Admin {
                return Err(AccountError::BootstrapNotAdmin {
                    email: user.email,
                    role: user.role,
                });
            }
            if hash.is_none() {
                let phc = credential::hash_password(password).await?;
                store.set_password_hash(user.id, &phc).await?;
            }
            return Ok(user);
        }
        let create = CreateUser {
            email: self.admin.email.clone(),
            display_name: "Administrator".to_owned(),
            role: Role::Admin,
            password: Some(password),
        };
        match create.execute(accounts, actor).await {
            Ok(user) => {
                info!(user.id = %user.id, "Bootstrap admin created");
                Ok(user)
            }
            // Another process created it between the read and the insert.
            Err(AccountError::Exists(email)) => store
                .get_user_by_email(&email)
                .await?
                .ok_or(AccountError::NoSuchUser(email)),
            Err(error) => Err(error),
        }
    }
}

// === impl ListUsers ===

impl Command<Accounts> for ListUsers {
    type Output = Vec<User>;
    type Error = AccountError;

    async fn execute(self, accounts: &Accounts, actor: &Actor) -> Result<Vec<User>, AccountError> {
        if !actor.is_admin() {
            return Err(AccountError::Forbidden(ADMIN_REQUIRED));
        }
        Ok(accounts.store.list_users().await?)
    }
}

// === impl GetMe ===

impl Command<Accounts> for GetMe {
    type Output = User;
    type Error = AccountError;

    async fn execute(self, accounts: &Accounts, actor: &Actor) -> Result<User, AccountError> {
        let Some(id) = actor.user() else {
            return Err(AccountError::Gone);
        };
        accounts.store.get_user(id).await?.ok_or(AccountError::Gone)
    }
}

// === impl UpdateUser ===

impl Command<Accounts> for UpdateUser {
    type Output = User;
    type Error = AccountError;

    async fn execute(self, accounts: &Accounts, actor: &Actor) -> Result<User, AccountError> {
        if !actor.is_admin() {
            return Err(AccountError::Forbidden(ADMIN_REQUIRED));
        }
        let demotes = self.disabled == Some(true) || self.role.is_some();
        if actor.user() == Some(self.id) && demotes {
            return Err(AccountError::SelfChange);
        }
        let Some(before) = accounts.store.get_user(self.id).await? else {
            return Err(AccountError::NotFound("no such user"));
        };
        let update = UserUpdate {
            role: self.role,
            disabled: self.disabled,
        };
        let user = match accounts.store.update_user(self.id, update).await {
            Ok(user) => user,
            Err(StoreError::NotFound) => return Err(AccountError::NotFound("no such user")),
            Err(error) => return Err(error.into()),
        };
        info!(user.id = %self.id, "User updated");
        if self.disabled == Some(true) {
            // A disabled user's sessions end for good: enabling the user again revives none.
            accounts.store.revoke_sessions_of(self.id, None).await?;
        }
        if self.disabled == Some(true) || self.role.is_some() {
            // Live streams re-check their credential (and its role) now.
            accounts.credentials_changed();
        }
        let entry = Entry::new("PATCH /v1/users/{id}", status::OK)
            .object(self.id)
            .detail(user_changes(&before, &user));
        accounts.audit.record(actor, entry).await;
        Ok(user)
    }
}

/// The PATCH's row detail: `role a → b`, `disabled a → b` for what changed, `unchanged`
/// otherwise.
fn user_changes(before: &User, after: &User) -> String {
    let mut changes = Vec::new();
    if before.role != after.role {
        changes.push(format!("role {} → {}", before.role, after.role));
    }
    if before.disabled != after.disabled {
        changes.push(format!("disabled {} → {}", before.disabled, after.disabled));
    }
    if changes.is_empty() {
        "unchanged".to_owned()
    } else {
        changes.join(", ")
    }
}
