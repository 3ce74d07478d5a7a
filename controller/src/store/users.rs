//! User rows.

use super::rows::UserRow;
use super::{now, with_db, NewUser, Store, StoreError, User};
use crate::user::UserId;

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
}
