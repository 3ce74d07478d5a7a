//! Who issues a command: the account, the role it acts with, how it got in, and the names the
//! audit trail gives all of that.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use uuid::Uuid;

use crate::accounts::user::{Role, Scopes, TokenScope, UserId};
use crate::store::Scope;

/// Who acts. The API builds one per request from the bearer; the CLI and the controller's own
/// boot-time steps have their own.
#[derive(Clone, Debug)]
pub struct Actor {
    user: Option<UserId>,
    role: Role,
    via: Via,
    credential: Option<String>,
    source_ip: Option<IpAddr>,
    /// An API token's scopes (`None`: a session, the admin token, the CLI: every scope).
    scopes: Option<Scopes>,
    receipt: Receipt,
}

/// How an actor got in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// The configured `AIRLOCK_ADMIN_TOKEN`.
    AdminToken,
    /// A login session.
    Session,
    /// A named API token.
    ApiToken,
    /// No credential yet: a login or an invite acceptance.
    Anonymous,
    /// The offline `airlock admin` commands: the operator, with every right.
    Cli,
    /// The controller's own start-up steps (the configured and the first-boot admin). They
    /// apply the operator's configuration and file no audit rows.
    Boot,
}

/// Set once a command filed its audit row for a request, so the API's refusal recorder knows
/// the request needs none from it. Cheap to clone; clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct Receipt(Arc<AtomicBool>);

// === impl Actor ===

impl Actor {
    /// `user` acting with `role`, signed in `via` (no credential name, address or receipt).
    pub fn new(user: UserId, role: Role, via: Via) -> Self {
        Self {
            user: Some(user),
            role,
            via,
            credential: None,
            source_ip: None,
            scopes: None,
            receipt: Receipt::default(),
        }
    }

    /// Somebody without a credential, from `source_ip`.
    pub fn anonymous(source_ip: Option<IpAddr>) -> Self {
        Self {
            user: None,
            role: Role::Viewer,
            via: Via::Anonymous,
            credential: None,
            source_ip,
            scopes: None,
            receipt: Receipt::default(),
        }
    }

    /// The operator at the offline CLI (the trail names its credential `cli`).
    pub fn cli() -> Self {
        Self {
            user: None,
            role: Role::Admin,
            via: Via::Cli,
            credential: Some("cli".to_owned()),
            source_ip: None,
            scopes: None,
            receipt: Receipt::default(),
        }
    }

    /// The controller's own start-up steps.
    pub fn boot() -> Self {
        Self {
            user: None,
            role: Role::Admin,
            via: Via::Boot,
            credential: None,
            source_ip: None,
            scopes: None,
            receipt: Receipt::default(),
        }
    }

    /// The same actor, with the trail's name for its credential (`token:<id>`,
    /// `session:<id>`, `admin-token`) and the client's address.
    pub fn with_credential(mut self, credential: String, source_ip: Option<IpAddr>) -> Self {
        self.credential = Some(credential);
        self.source_ip = source_ip;
        self
    }

    /// The same actor limited to an API token's `scopes`.
    pub fn with_scopes(mut self, scopes: Scopes) -> Self {
        self.scopes = Some(scopes);
        self
    }

    /// Whether the credential carries `scope` (sessions, the admin token and the CLI carry
    /// every scope).
    pub fn has_scope(&self, scope: TokenScope) -> bool {
        self.scopes.is_none_or(|scopes| scopes.contains(scope))
    }

    /// The same actor, reporting filed rows to `receipt`.
    pub fn with_receipt(mut self, receipt: Receipt) -> Self {
        self.receipt = receipt;
        self
    }

    /// The acting account; `None` for anonymous, CLI and boot actors.
    pub fn user(&self) -> Option<UserId> {
        self.user
    }

    /// The role it acts with (an account's role narrowed by its token's scopes).
    pub fn role(&self) -> Role {
        self.role
    }

    /// How it got in.
    pub fn via(&self) -> Via {
        self.via
    }

    /// Whether it acts as an admin.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// What it may see: everything for an admin (and the operator), its own objects
    /// otherwise, and nothing without an account.
    pub fn scope(&self) -> Scope {
        match (self.user, self.role) {
            (_, Role::Admin) => Scope::All,
            (Some(user), Role::Member | Role::Viewer) => Scope::Owner(user),
            // No account owns the nil id, so an anonymous reader sees nothing.
            (None, Role::Member | Role::Viewer) => Scope::Owner(UserId::from_uuid(Uuid::nil())),
        }
    }

    pub(crate) fn credential(&self) -> Option<&str> {
        self.credential.as_deref()
    }

    pub(crate) fn source_ip(&self) -> Option<IpAddr> {
        self.source_ip
    }

    pub(crate) fn receipt(&self) -> &Receipt {
        &self.receipt
    }
}

// === impl Receipt ===

impl Receipt {
    /// Notes that a row was filed.
    pub(crate) fn file(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether a row was filed.
    pub fn filed(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_follow_the_role_and_the_door() {
        let user = UserId::new();
        assert_eq!(
            Actor::new(user, Role::Member, Via::Session).scope(),
            Scope::Owner(user)
        );
        assert_eq!(
            Actor::new(user, Role::Viewer, Via::ApiToken).scope(),
            Scope::Owner(user)
        );
        assert_eq!(
            Actor::new(user, Role::Admin, Via::AdminToken).scope(),
            Scope::All
        );
        assert_eq!(Actor::cli().scope(), Scope::All);
        assert!(!Actor::anonymous(None).is_admin());
        assert_ne!(Actor::anonymous(None).scope(), Scope::All);
    }

    #[test]
    fn clones_share_the_receipt() {
        let actor = Actor::cli();
        let clone = actor.clone();
        assert!(!actor.receipt().filed());
        clone.receipt().file();
        assert!(actor.receipt().filed());
    }
}
