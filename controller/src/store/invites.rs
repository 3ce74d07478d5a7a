//! Invites: an admin's single-use, expiring offer of an account. Accepting one marks it used
//! and creates the user in one transaction, so a token cannot be redeemed twice.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{now, with_db, Store, StoreError, User};
use crate::accounts::user::{Role, UserId};

/// An invite to create.
#[derive(Clone, Debug)]
pub struct NewInvite {
    /// The invitee's email; it becomes the account's.
    pub email: String,
    /// The role the account gets.
    pub role: Role,
    /// Hex SHA-256 of the invite token.
    pub hash: String,
    /// The admin who invited.
    pub created_by: UserId,
    /// When the invite lapses.
    pub expires_at: OffsetDateTime,
}

/// Accepting an invite.
#[derive(Clone, Debug)]
pub struct InviteAcceptance {
    /// Hex SHA-256 of the presented invite token.
    pub hash: String,
    /// The display name the invitee chose.
    pub display_name: String,
    /// The argon2id PHC string of their password.
    pub password_hash: String,
}

// === impl Store ===

impl Store {
    /// Stores an invite; returns its id.
    pub async fn create_invite(&self, new: NewInvite) -> Result<Uuid, StoreError> {
        let id = Uuid::now_v7();
        with_db!(self, |pool, _begin| {
            sqlx::query(
                "INSERT INTO invites (id, email, role, token_hash, created_by, created_at, \
                 expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(id)
            .bind(&new.email)
            .bind(new.role.as_str())
            .bind(&new.hash)
            .bind(new.created_by.as_uuid())
            .bind(now())
            .bind(new.expires_at)
            .execute(pool)
            .await?;
        });
        Ok(id)
    }

    /// Redeems an invite: `NotFound` when the token is unknown, used or expired; `Conflict`
    /// when the email already has an account (the invite stays unused then).
    pub async fn accept_invite(&self, accept: InviteAcceptance) -> Result<User, StoreError> {
        let at = now();
        let user_id = UserId::new();
        with_db!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let invite: Option<(Uuid, String, String, OffsetDateTime)> = sqlx::query_as(
                "SELECT id, email, role, expires_at FROM invites \
                 WHERE token_hash = $1 AND used_at IS NULL",
            )
            .bind(&accept.hash)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((invite_id, email, role, expires_at)) = invite else {
                return Err(StoreError::NotFound);
            };
            if expires_at <= at {
                return Err(StoreError::NotFound);
            }
            let claimed =
                sqlx::query("UPDATE invites SET used_at = $1 WHERE id = $2 AND used_at IS NULL")
                    .bind(at)
                    .bind(invite_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            if claimed != 1 {
                return Err(StoreError::NotFound);
            }
            sqlx::query(
                "INSERT INTO users (id, email, display_name, role, disabled, created_at, \
                 password_hash) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(user_id.as_uuid())
            .bind(&email)
            .bind(&accept.display_name)
            .bind(&role)
            .bind(false)
            .bind(at)
            .bind(&accept.password_hash)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        self.get_user(user_id).await?.ok_or(StoreError::NotFound)
    }

    /// Whether an unused, unexpired invite has this token hash (a cheap look before the
    /// password is hashed; [`Store::accept_invite`] checks again in its transaction).
    pub async fn invite_is_open(&self, hash: &str) -> Result<bool, StoreError> {
        let at = now();
        let found: Option<(OffsetDateTime,)> = with_db!(self, |pool, _begin| {
            sqlx::query_as(
                "SELECT expires_at FROM invites WHERE token_hash = $1 AND used_at IS NULL",
            )
            .bind(hash)
            .fetch_optional(pool)
            .await?
        });
        Ok(found.is_some_and(|(expires_at,)| expires_at > at))
    }

    /// Withdraws an unused invite; `NotFound` when it is unknown or was used.
    pub async fn delete_invite(&self, id: Uuid) -> Result<String, StoreError> {
        let email: Option<(String,)> = with_db!(self, |pool, _begin| {
            sqlx::query_as("DELETE FROM invites WHERE id = $1 AND used_at IS NULL RETURNING email")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        email.map(|(email,)| email).ok_or(StoreError::NotFound)
    }
}
