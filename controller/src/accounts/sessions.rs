//! Signing in: `Login` (a password for a session token, throttled per account and source),
//! and turning a bearer token back into the account and role it stands for.
//!
//! A failed login says the same thing, after about the same work (a dummy argon2 verify),
//! whether or not the account exists. A successful login files an `auth.login` row; failed
//! and throttled ones are counted into one `auth.login.failed` row per (source, account,
//! minute) (see [`crate::audit::tally`]). An email over 254 bytes or a password over 1024 is
//! refused before any of that.

use std::time::Duration;

use time::OffsetDateTime;
use tracing::info;

use super::credential::{self, hash_token, NewToken, TokenKind, MAX_PASSWORD_BYTES};
use super::{AccountError, Accounts, SESSION_TTL};
use crate::accounts::user::{Role, Scopes, UserId, MAX_NAME_BYTES};
use crate::audit::{status, Actor, Command, Entry, Noise, Via};
use crate::store::{Bearer, User};

/// `POST /v1/auth/login`: a session for a correct email and password.
#[derive(Clone)]
pub struct Login {
    /// The account's email (trimmed and lower-cased here).
    pub email: String,
    /// The password.
    pub password: String,
}

/// A new login session: its token is shown this once.
#[derive(Clone, Debug)]
pub struct Session {
    /// The bearer token (`als_…`).
    pub token: String,
    /// When it lapses.
    pub expires_at: OffsetDateTime,
    /// Who signed in.
    pub user: User,
}

/// What a valid bearer token stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    /// The account.
    pub user: UserId,
    /// Its role narrowed by the token's scopes (see [`Role::narrowed`]).
    pub role: Role,
    /// The kind of token.
    pub via: Via,
    /// The trail's name for the token: `session:<id>` or `token:<id>`.
    pub credential: String,
    /// An API token's scopes (`None` for a session).
    pub scopes: Option<Scopes>,
}

// === impl Login ===

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("email", &self.email)
            .field("password", &"***")
            .finish()
    }
}

impl Command<Accounts> for Login {
    type Output = Session;
    type Error = AccountError;

    async fn execute(self, accounts: &Accounts, actor: &Actor) -> Result<Session, AccountError> {
        // Bounds first: an oversized field costs no throttle entry, no row and no hash.
        let email = self.email.trim().to_lowercase();
        if email.len() > MAX_NAME_BYTES {
            return Err(AccountError::Invalid {
                field: "email",
                reason: format!("must be at most {MAX_NAME_BYTES} bytes"),
            });
        }
        if self.password.len() > MAX_PASSWORD_BYTES {
            return Err(AccountError::Invalid {
                field: "password",
                reason: format!("must be at most {MAX_PASSWORD_BYTES} bytes"),
            });
        }
        let source = actor.source_ip();
        let row = |status, user| Entry::new("auth.login", status).user(user).object(&email);
        let noise = |status, user| Noise {
            action: "auth.login.failed",
            source,
            account: Some(&email),
            user,
            status,
        };
        if let Err(retry_after_s) = accounts.throttle.attempt(&email, source) {
            accounts.audit.noise(&noise(status::TOO_MANY, None));
            return Err(AccountError::Throttled { retry_after_s });
        }
        let (user, hash) = match accounts.store.user_login(&email).await? {
            Some((user, hash)) => (Some(user), hash),
            None => (None, None),
        };
        let verified = match credential::verify_password(self.password, hash).await {
            Ok(verified) => verified,
            Err(error) => {
                // Not judged (the argon2 gate was full): the attempt does not count.
                accounts.throttle.succeeded(&email, source);
                return Err(error.into());
            }
        };
        let user = match user {
            Some(user) if verified && !user.disabled => user,
            other => {
                // The attempt was counted as a failure when it began.
                info!(client.addr = ?source, "Login failed");
                accounts
                    .audit
                    .noise(&noise(status::UNAUTHORIZED, other.map(|u| u.id)));
                return Err(AccountError::InvalidCredentials);
            }
        };
        accounts.throttle.succeeded(&email, source);
        let session = accounts.open_session(user, SESSION_TTL).await?;
        info!(user.id = %session.user.id, "Login succeeded");
        let entry = row(status::OK, Some(session.user.id)).detail("succeeded");
        accounts.audit.record(actor, entry).await;
        Ok(session)
    }
}

// === impl Accounts ===

impl Accounts {
    /// What `token` stands for, unless it is unknown, expired, revoked, not a bearer kind,
    /// or its account is disabled.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Authenticated>, AccountError> {
        let hash = hash_token(token);
        let now = self.clock.now();
        let (bearer, via) = match TokenKind::of(token) {
            Some(TokenKind::Session) => (self.store.session_bearer(&hash, now).await, Via::Session),
            Some(TokenKind::Api) => (self.store.api_token_bearer(&hash, now).await, Via::ApiToken),
            Some(TokenKind::Invite) | None => return Ok(None),
        };
        let Some(bearer) = bearer?.filter(|bearer| !bearer.user.disabled) else {
            return Ok(None);
        };
        let Bearer {
            user,
            scopes,
            credential,
        } = bearer;
        Ok(Some(Authenticated {
            user: user.id,
            role: user.role.narrowed(scopes),
            via,
            credential,
            scopes: (via == Via::ApiToken).then_some(scopes),
        }))
    }

    /// Stores a new session for `user` lasting `ttl`.
    pub(crate) async fn open_session(
        &self,
        user: User,
        ttl: Duration,
    ) -> Result<Session, AccountError> {
        let token = NewToken::generate(TokenKind::Session);
        let expires_at = self.clock.now() + ttl;
        self.store
            .create_session(user.id, &token.hash, expires_at)
            .await?;
        Ok(Session {
            token: token.text,
            expires_at,
            user,
        })
    }
}
