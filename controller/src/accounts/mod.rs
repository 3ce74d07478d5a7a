//! Account operations shared by `airlock serve` (the boot-time admin from
//! `AIRLOCK_BOOTSTRAP_ADMIN_*`) and the offline `airlock admin` subcommands. They work on the
//! store directly, so an operator can create the first admin or a token with no server
//! running.

pub mod credential;
pub mod quota;
pub mod user;

use std::time::Duration;

use tracing::info;

use crate::accounts::credential::{CredentialError, NewToken, TokenKind};
use crate::accounts::user::{Role, Scopes, UserId};
use crate::config::BootstrapAdmin;
use crate::store::{NewApiToken, NewUser, Store, StoreError, User};

/// The email of the bootstrap admin user that the admin token acts as.
pub const ADMIN_EMAIL: &str = "admin@airlock.local";

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Password hashing failed.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// The input is unacceptable.
    #[error("{0}")]
    Invalid(String),
    /// No account has this email.
    #[error("no user with email {0}")]
    NoSuchUser(String),
    /// An account with this email exists already.
    #[error("a user with email {0} already exists")]
    Exists(String),
}

/// A user to create offline.
#[derive(Clone)]
pub struct CreateUser {
    /// The email (lower-cased here).
    pub email: String,
    /// The display name (the email when empty).
    pub display_name: String,
    /// The role.
    pub role: Role,
    /// The password, if the user should be able to log in.
    pub password: Option<String>,
}

impl std::fmt::Debug for CreateUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateUser")
            .field("email", &self.email)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Creates the configured admin unless an account with that email exists (then nothing
/// changes, so restarts are idempotent; a passwordless account gets the password). Returns
/// the account.
pub async fn ensure_bootstrap_admin(
    store: &Store,
    admin: &BootstrapAdmin,
) -> Result<User, AccountsError> {
    if let Some((user, hash)) = store.user_login(&admin.email).await? {
        if hash.is_none() {
            let phc = credential::hash_password(admin.password.expose().to_owned()).await?;
            store.set_password_hash(user.id, &phc).await?;
        }
        return Ok(user);
    }
    let create = CreateUser {
        email: admin.email.clone(),
        display_name: "Administrator".to_owned(),
        role: Role::Admin,
        password: Some(admin.password.expose().to_owned()),
    };
    match create_user(store, create).await {
        Ok(user) => {
            info!(user.id = %user.id, "Bootstrap admin created");
            Ok(user)
        }
        // Another process created it between the read and the insert.
        Err(AccountsError::Exists(email)) => store
            .get_user_by_email(&email)
            .await?
            .ok_or(AccountsError::NoSuchUser(email)),
        Err(error) => Err(error),
    }
}

/// Creates a user, with a password when one is given.
pub async fn create_user(store: &Store, create: CreateUser) -> Result<User, AccountsError> {
    let email = create.email.trim().to_lowercase();
    if !email
        .split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
    {
        return Err(AccountsError::Invalid(format!(
            "`{email}` is not an email address"
        )));
    }
    let phc = match &create.password {
        Some(password) => {
            if let Some(problem) = credential::password_problem(password) {
                return Err(AccountsError::Invalid(format!("password {problem}")));
            }
            Some(credential::hash_password(password.clone()).await?)
        }
        None => None,
    };
    let display_name = match create.display_name.trim() {
        "" => email.clone(),
        name => name.to_owned(),
    };
    let new = NewUser {
        email: email.clone(),
        display_name,
        role: create.role,
    };
    let user = match store.create_user(new).await {
        Ok(user) => user,
        Err(StoreError::Conflict { .. }) => return Err(AccountsError::Exists(email)),
        Err(error) => return Err(error.into()),
    };
    if let Some(phc) = phc {
        store.set_password_hash(user.id, &phc).await?;
    }
    Ok(user)
}

/// Creates an API token for the user with `email`; returns the token text (shown once).
pub async fn create_token(
    store: &Store,
    email: &str,
    name: &str,
    scopes: Scopes,
    expires_in: Option<Duration>,
) -> Result<String, AccountsError> {
    let email = email.trim().to_lowercase();
    let user = store
        .get_user_by_email(&email)
        .await?
        .ok_or_else(|| AccountsError::NoSuchUser(email.clone()))?;
    if scopes.is_empty() {
        return Err(AccountsError::Invalid(
            "give at least one --scope".to_owned(),
        ));
    }
    if !scopes.is_subset(Scopes::allowed_for(user.role)) {
        return Err(AccountsError::Invalid(format!(
            "a {} cannot hold the scopes {}",
            user.role,
            scopes.to_stored()
        )));
    }
    let token = NewToken::generate(TokenKind::Api);
    let new = NewApiToken {
        user: user.id,
        name: name.to_owned(),
        scopes,
        hash: token.hash.clone(),
        expires_at: expires_in.map(|ttl| crate::store::now() + ttl),
    };
    store.create_api_token(new).await?;
    Ok(token.text)
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
