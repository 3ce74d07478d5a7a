//! User rows: accounts, their password hashes (argon2id PHC strings, never returned with the
//! [`User`]), and admin changes to role and disabled flag.

use super::rows::UserRow;
use super::{now, with_db, NewUser, Store, StoreError, User};
use crate::accounts::user::{Role, UserId};

/// An admin's change to a user; `None` leaves the field as it is.
#[derive(Clone, Copy, Debug, Default)]
pub struct UserUpdate {
    /// The new role.
    pub role: Option<Role>,
    /// Whether the user is disabled.
    pub disabled: Option<bool>,
}

// === impl Store ===

impl Store {
    /// Creates a user; a taken email is [`StoreError::Conflict`].
    pub async fn create_user(&self, new: NewUser) -> Result<User, StoreError> {
        let id = UserId::new();
        let at = now();
        with_db!(self, |pool, _begin| {
            sqlx::query(
                "INSERT INTO users (id, email, display_name, role, disabled, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id.as_uuid())
            .bind(&new.email)
            .bind(&new.display_name)
            .bind(new.role.as_str())
            .bind(false)
            .bind(at)
            .execute(pool)
            .await?;
        });
        Ok(User {
            id,
            email: new.email,
            display_name: new.display_name,
            role: new.role,
            disabled: false,
            created_at: at,
        })
    }

    /// The user, if it exists.
    pub async fn get_user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let row = with_db!(self, |pool, _begin| {
            sqlx::query_as::<_, UserRow>(
                "SELECT id, email, display_name, role, disabled, created_at FROM users \
                 WHERE id = $1",
            )
            .bind(id.as_uuid())
            .fetch_optional(pool)
            .await?
        });
        row.map(UserRow::into_user).transpose()
    }

    /// The user with this email, if it exists.
    pub async fn get_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let row = with_db!(self, |pool, _begin| {
            sqlx::query_as::<_, UserRow>(
                "SELECT id, email, display_name, role, disabled, created_at FROM users \
                 WHERE email = $1",
            )
            .bind(email)
            .fetch_optional(pool)
            .await?
        });
        row.map(UserRow::into_user).transpose()
    }

    /// Every user, oldest first.
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let rows = with_db!(self, |pool, _begin| {
            sqlx::query_as::<_, UserRow>(
                "SELECT id, email, display_name, role, disabled, created_at FROM users \
                 ORDER BY created_at, id",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(UserRow::into_user).collect()
    }

    /// Sets (or replaces) the user's password hash.
    pub async fn set_password_hash(&self, id: UserId, phc: &str) -> Result<(), StoreError> {
        let changed = with_db!(self, |pool, _begin| {
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                .bind(phc)
                .bind(id.as_uuid())
                .execute(pool)
                .await?
                .rows_affected()
        });
        if changed == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    /// The user with this email and their password hash (`None` when no password is set).
    pub async fn user_login(
        &self,
        email: &str,
    ) -> Result<Option<(User, Option<String>)>, StoreError> {
        let hash: Option<(Option<String>,)> = with_db!(self, |pool, _begin| {
            sqlx::query_as("SELECT password_hash FROM users WHERE email = $1")
                .bind(email)
                .fetch_optional(pool)
                .await?
        });
        let Some((hash,)) = hash else {
            return Ok(None);
        };
        Ok(self
            .get_user_by_email(email)
            .await?
            .map(|user| (user, hash)))
    }

    /// Applies `update`; `NotFound` if there is no such user.
    pub async fn update_user(&self, id: UserId, update: UserUpdate) -> Result<User, StoreError> {
        let changed = with_db!(self, |pool, _begin| {
            sqlx::query(
                "UPDATE users SET role = COALESCE($1, role), disabled = COALESCE($2, disabled) \
                 WHERE id = $3",
            )
            .bind(update.role.map(Role::as_str))
            .bind(update.disabled)
            .bind(id.as_uuid())
            .execute(pool)
            .await?
            .rows_affected()
        });
        if changed != 1 {
            return Err(StoreError::NotFound);
        }
        self.get_user(id).await?.ok_or(StoreError::NotFound)
    }
}
