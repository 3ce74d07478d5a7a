//! API tokens: named bearer tokens whose text is shown once (the store keeps its SHA-256).
//! Scopes never go beyond what the owner's role allows, as the request acts with it (so a
//! narrowed token cannot mint a broader one). Only a login session or an admin's token with
//! `tokens:write` mints tokens through the API, so revoking a leaked token ends the leak, and
//! only a session or a token with `tokens:write` revokes them; the offline CLI mints them for
//! any account by email.

use std::time::Duration;

use time::OffsetDateTime;
use tracing::info;

use super::credential::{NewToken, TokenKind};
use super::{fields, AccountError, Accounts};
use crate::accounts::user::{Role, Scopes, TokenScope, UserId};
use crate::audit::{status, Actor, Command, Entry, Via};
use crate::store::{self, ApiToken, StoreError, TokenId};

/// The longest token lifetime: one year.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(366 * 86_400);
/// Why an API token is refused a new token.
pub const SESSION_REQUIRED: &str =
    "API tokens cannot create API tokens: log in (POST /v1/auth/login) and use the session token";
/// Why an API token without `tokens:write` may not mint or revoke tokens.
pub const TOKENS_WRITE_REQUIRED: &str =
    "this API token lacks the `tokens:write` scope; use a login session or a token with it";

/// `POST /v1/tokens` and `airlock admin create-token`: a new API token.
#[derive(Clone, Debug)]
pub struct CreateToken {
    /// Whose token it is.
    pub owner: TokenOwner,
    /// A name to recognise it by (see [`fields::token_name`]).
    pub name: String,
    /// What it grants; at least one scope.
    pub scopes: Scopes,
    /// Its lifetime, up to [`MAX_TOKEN_TTL`]; `None`: it never expires.
    pub expires_in: Option<Duration>,
}

/// Whose token [`CreateToken`] makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenOwner {
    /// The acting account, within the role it acts with.
    Actor,
    /// The account with this email, within its role (the offline CLI, first boot).
    Email(String),
}

/// A new token: its text is shown this once.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    /// The bearer token (`alt_…`).
    pub text: String,
    /// Its record.
    pub token: ApiToken,
}

/// `GET /v1/tokens`: the caller's tokens (everyone's for an admin).
#[derive(Clone, Copy, Debug, Default)]
pub struct ListTokens;

/// `DELETE /v1/tokens/{id}`: revokes a token the caller may see (again is fine).
#[derive(Clone, Copy, Debug)]
pub struct RevokeToken {
    /// The token.
    pub id: TokenId,
}

// === impl CreateToken ===

impl CreateToken {
    /// Refuses API tokens that are not admins: tokens come from a login session.
    pub fn require_session(actor: &Actor) -> Result<(), AccountError> {
        match (actor.via(), actor.role()) {
            (Via::ApiToken, Role::Member | Role::Viewer) => {
                Err(AccountError::Forbidden(SESSION_REQUIRED))
            }
            (Via::ApiToken, Role::Admin) if !actor.has_scope(TokenScope::TokensWrite) => {
                Err(AccountError::Forbidden(TOKENS_WRITE_REQUIRED))
            }
            _ => Ok(()),
        }
    }

    /// The owner's id and the role that bounds the token's scopes.
    async fn owner(
        &self,
        accounts: &Accounts,
        actor: &Actor,
    ) -> Result<(UserId, Role), AccountError> {
        match &self.owner {
            TokenOwner::Actor => actor
                .user()
                .map(|user| (user, actor.role()))
                .ok_or(AccountError::Gone),
            TokenOwner::Email(email) => {
                let email = email.trim().to_lowercase();
                let user = accounts.store.get_user_by_email(&email).await?;
                let user = user.ok_or(AccountError::NoSuchUser(email))?;
                Ok((user.id, user.role))
            }
        }
    }

    /// Refuses no scope, and scopes beyond what `role` allows.
    fn check_scopes(&self, role: Role) -> Result<(), AccountError> {
        if self.scopes.is_empty() {
            return Err(AccountError::Invalid {
                field: "scopes",
                reason: "must name at least one scope".to_owned(),
            });
        }
        if !self.scopes.is_subset(Scopes::allowed_for(role)) {
            let scopes = self.scopes;
            return Err(AccountError::ScopesBeyondRole { role, scopes });
        }
        Ok(())
    }

    /// When the token lapses, if it does: at most [`MAX_TOKEN_TTL`] from now.
    fn expires_at(&self, accounts: &Accounts) -> Result<Option<OffsetDateTime>, AccountError> {
        match self.expires_in {
            None => Ok(None),
            Some(ttl) if ttl >= Duration::from_secs(1) && ttl <= MAX_TOKEN_TTL => {
                Ok(Some(accounts.clock.now() + ttl))
            }
            Some(_) => Err(AccountError::Invalid {
                field: "expires_in_s",
                reason: "must be 1 to 31622400".to_owned(),
            }),
        }
    }

    /// The row this token's creation files: a token for a named account names the account
    /// and the token's name; the caller's own names the new token.
    fn entry(&self, token: &ApiToken) -> Entry {
        match &self.owner {
            TokenOwner::Actor => Entry::new("POST /v1/tokens", status::CREATED).object(token.id),
            TokenOwner::Email(email) => Entry::new("admin.create-token", status::CREATED)
                .object(email)
                .detail(&token.name),
        }
    }
}

impl Command<Accounts> for CreateToken {
    type Output = IssuedToken;
    type Error = AccountError;

    async fn execute(
        self,
        accounts: &Accounts,
        actor: &Actor,
    ) -> Result<IssuedToken, AccountError> {
        Self::require_session(actor)?;
        let name = fields::token_name(&self.name)?;
        let (user, role) = self.owner(accounts, actor).await?;
        self.check_scopes(role)?;
        let expires_at = self.expires_at(accounts)?;
        let text = NewToken::generate(TokenKind::Api);
        let new = store::NewApiToken {
            user,
            name,
            scopes: self.scopes,
            hash: text.hash.clone(),
            expires_at,
        };
        let token = accounts.store.create_api_token(new).await?;
        info!(user.id = %user, token.id = %token.id, "API token created");
        accounts.audit.record(actor, self.entry(&token)).await;
        Ok(IssuedToken {
            text: text.text,
            token,
        })
    }
}

// === impl ListTokens ===

impl Command<Accounts> for ListTokens {
    type Output = Vec<ApiToken>;
    type Error = AccountError;

    async fn execute(
        self,
        accounts: &Accounts,
        actor: &Actor,
    ) -> Result<Vec<ApiToken>, AccountError> {
        Ok(accounts.store.list_api_tokens(actor.scope()).await?)
    }
}

// === impl RevokeToken ===

impl Command<Accounts> for RevokeToken {
    type Output = ();
    type Error = AccountError;

    async fn execute(self, accounts: &Accounts, actor: &Actor) -> Result<(), AccountError> {
        if !actor.has_scope(TokenScope::TokensWrite) {
            return Err(AccountError::Forbidden(TOKENS_WRITE_REQUIRED));
        }
        match accounts
            .store
            .revoke_api_token(actor.scope(), self.id)
            .await
        {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Err(AccountError::NotFound("no such token")),
            Err(error) => return Err(error.into()),
        }
        if let Some(user) = actor.user() {
            info!(user.id = %user, token.id = %self.id, "API token revoked");
        }
        accounts.credentials_changed();
        let entry = Entry::new("DELETE /v1/tokens/{id}", status::NO_CONTENT).object(self.id);
        accounts.audit.record(actor, entry).await;
        Ok(())
    }
}
