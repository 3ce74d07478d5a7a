//! Bearer credentials: named API tokens and login sessions. Only hashes are stored (see
//! [`crate::accounts::credential`]); a lookup returns the token's user, and the caller refuses disabled
//! users, so disabling an account stops its tokens at the next request.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{now, with_db, Scope, Store, StoreError, User};
use crate::accounts::user::{Role, Scopes, UserId};

/// An API token's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TokenId(Uuid);

/// An API token as stored (never its text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiToken {
    /// Its id.
    pub id: TokenId,
    /// Its owner.
    pub user: UserId,
    /// Its name.
    pub name: String,
    /// What it grants (narrowed by the owner's role at use).
    pub scopes: Scopes,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it stops working, if ever.
    pub expires_at: Option<OffsetDateTime>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<OffsetDateTime>,
}

/// An API token to create.
#[derive(Clone, Debug)]
pub struct NewApiToken {
    /// The owner.
    pub user: UserId,
    /// Its name.
    pub name: String,
    /// What it grants.
    pub scopes: Scopes,
    /// Hex SHA-256 of the token text.
    pub hash: String,
    /// When it stops working, if ever.
    pub expires_at: Option<OffsetDateTime>,
}

/// What a valid bearer token stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bearer {
    /// The user (possibly disabled: the caller checks).
    pub user: User,
    /// The token's scopes ([`Scopes::FULL`] for a session).
    pub scopes: Scopes,
    /// Which credential, for the audit trail: `token:<id>` or `session:<id>`.
    pub credential: String,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: Uuid,
    user_id: Uuid,
    name: String,
    scopes: String,
    created_at: OffsetDateTime,
    expires_at: Option<OffsetDateTime>,
    revoked_at: Option<OffsetDateTime>,
}

const TOKEN_COLUMNS: &str = "id, user_id, name, scopes, created_at, expires_at, revoked_at";

// === impl TokenId ===

impl TokenId {
    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl std::fmt::Display for TokenId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for TokenId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(TokenId)
    }
}

// === impl TokenRow ===

impl TokenRow {
    fn into_token(self) -> Result<ApiToken, StoreError> {
        Ok(ApiToken {
            id: TokenId(self.id),
            user: UserId::from_uuid(self.user_id),
            name: self.name,
            scopes: Scopes::from_stored(&self.scopes)
                .map_err(|e| StoreError::corrupt("scopes", e))?,
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
        })
    }
}

/// Whether an optional expiry has passed.
fn expired(expires_at: Option<OffsetDateTime>, at: OffsetDateTime) -> bool {
    expires_at.is_some_and(|expires| expires <= at)
}

// === impl Store ===

impl Store {
    /// Stores a new API token.
    pub async fn create_api_token(&self, new: NewApiToken) -> Result<ApiToken, StoreError> {
        let id = TokenId(Uuid::now_v7());
        let at = now();
        with_db!(self, |pool, _begin| {
            sqlx::query(
                "INSERT INTO api_tokens (id, user_id, name, token_hash, scopes, created_at, \
                 expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(id.0)
            .bind(new.user.as_uuid())
            .bind(&new.name)
            .bind(&new.hash)
            .bind(new.scopes.to_stored())
            .bind(at)
            .bind(new.expires_at)
            .execute(pool)
            .await?;
        });
        Ok(ApiToken {
            id,
            user: new.user,
            name: new.name,
            scopes: new.scopes,
            created_at: at,
            expires_at: new.expires_at,
            revoked_at: None,
        })
    }

    /// The API tokens `scope` may see, oldest first (revoked ones included).
    pub async fn list_api_tokens(&self, scope: Scope) -> Result<Vec<ApiToken>, StoreError> {
        let owner = match scope {
            Scope::Owner(user) => Some(user.as_uuid()),
            Scope::All => None,
        };
        let rows = with_db!(self, |pool, _begin| {
            sqlx::query_as::<_, TokenRow>(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens \
                 WHERE ($1 IS NULL OR user_id = $1) ORDER BY id"
            ))
            .bind(owner)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(TokenRow::into_token).collect()
    }

    /// Revokes the token if `scope` may see it; `NotFound` otherwise. Revoking twice is fine.
    pub async fn revoke_api_token(&self, scope: Scope, id: TokenId) -> Result<(), StoreError> {
        let owner = match scope {
            Scope::Owner(user) => Some(user.as_uuid()),
            Scope::All => None,
        };
        let found = with_db!(self, |pool, _begin| {
            sqlx::query(
                "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) \
                 WHERE id = $2 AND ($3 IS NULL OR user_id = $3)",
            )
            .bind(now())
            .bind(id.0)
            .bind(owner)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if found == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    /// The user and scopes behind an API token's hash, unless it is unknown, revoked or
    /// expired at `at`.
    pub async fn api_token_bearer(
        &self,
        hash: &str,
        at: OffsetDateTime,
    ) -> Result<Option<Bearer>, StoreError> {
        let row = with_db!(self, |pool, _begin| {
            sqlx::query_as::<_, TokenRow>(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1"
            ))
            .bind(hash)
            .fetch_optional(pool)
            .await?
        });
        let Some(token) = row.map(TokenRow::into_token).transpose()? else {
            return Ok(None);
        };
        if token.revoked_at.is_some() || expired(token.expires_at, at) {
            return Ok(None);
        }
        let user = self.get_user(token.user).await?;
        Ok(user.map(|user| Bearer {
            user,
            scopes: token.scopes,
            credential: format!("token:{}", token.id),
        }))
    }

    /// Stores a login session for `user` until `expires_at`.
    pub async fn create_session(
        &self,
        user: UserId,
        hash: &str,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        with_db!(self, |pool, _begin| {
            sqlx::query(
                "INSERT INTO sessions (id, user_id, token_hash, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(Uuid::now_v7())
            .bind(user.as_uuid())
            .bind(hash)
            .bind(now())
            .bind(expires_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The user behind a session token's hash, unless it is unknown, revoked or expired at
    /// `at`.
    pub async fn session_bearer(
        &self,
        hash: &str,
        at: OffsetDateTime,
    ) -> Result<Option<Bearer>, StoreError> {
        let row: Option<(Uuid, Uuid, OffsetDateTime, Option<OffsetDateTime>)> =
            with_db!(self, |pool, _begin| {
                sqlx::query_as(
                    "SELECT id, user_id, expires_at, revoked_at FROM sessions \
                     WHERE token_hash = $1",
                )
                .bind(hash)
                .fetch_optional(pool)
                .await?
            });
        let Some((id, user, expires_at, revoked_at)) = row else {
            return Ok(None);
        };
        if revoked_at.is_some() || expired(Some(expires_at), at) {
            return Ok(None);
        }
        let user = self.get_user(UserId::from_uuid(user)).await?;
        Ok(user.map(|user| Bearer {
            user,
            scopes: Scopes::FULL,
            credential: format!("session:{id}"),
        }))
    }

    /// Revokes the login session `id` (logout); `NotFound` when it is unknown or revoked.
    pub async fn revoke_session(&self, id: Uuid) -> Result<(), StoreError> {
        let done = with_db!(self, |pool, _begin| {
            sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now())
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if done == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Revokes every live session of `user` but `keep` (a password change keeps the session
    /// it was made in; disabling a user keeps none); returns how many.
    pub async fn revoke_sessions_of(
        &self,
        user: UserId,
        keep: Option<Uuid>,
    ) -> Result<u64, StoreError> {
        let done = with_db!(self, |pool, _begin| {
            sqlx::query(
                "UPDATE sessions SET revoked_at = $1 \
                 WHERE user_id = $2 AND revoked_at IS NULL AND ($3 IS NULL OR id <> $3)",
            )
            .bind(now())
            .bind(user.as_uuid())
            .bind(keep)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(done)
    }

    /// Whether an admin can sign in: some enabled admin has a password or an unrevoked API
    /// token. A fresh instance has none until it is bootstrapped (a member created first
    /// does not count: the instance still has nobody to administer it).
    pub async fn has_credentials(&self) -> Result<bool, StoreError> {
        let (count,): (i64,) = with_db!(self, |pool, _begin| {
            sqlx::query_as(
                "SELECT COUNT(*) FROM users u WHERE u.role = $1 AND u.disabled = $2 \
                 AND (u.password_hash IS NOT NULL OR EXISTS (SELECT 1 FROM api_tokens t \
                 WHERE t.user_id = u.id AND t.revoked_at IS NULL))",
            )
            .bind(Role::Admin.as_str())
            .bind(false)
            .fetch_one(pool)
            .await?
        });
        Ok(count > 0)
    }
}
