//! User domain types: the id, the role, and the scopes an API token grants. Every stored
//! object has an owner (DESIGN.md invariant 8), so users exist in the store from the first
//! slice on.
//!
//! What a request may do is the user's role narrowed by the token's scopes
//! ([`Role::narrowed`]): the API only ever sees that *effective* role.

use crate::sandbox::{string_enum, uuid_id, ParseEnumError};

uuid_id! {
    /// A user's id.
    pub struct UserId;
}

string_enum! {
    /// What a user may do.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Role as "role" {
        /// Sees and acts on everything; every action is audited.
        Admin = "admin",
        /// Acts on their own objects.
        Member = "member",
        /// Reads their own objects.
        Viewer = "viewer",
    }
}

string_enum! {
    /// One right an API token grants.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum TokenScope as "scope" {
        /// `sandboxes:read`: list, get, wait, logs.
        SandboxesRead = "sandboxes:read",
        /// `sandboxes:write`: create, stop, delete, exec (and read).
        SandboxesWrite = "sandboxes:write",
        /// `admin`: everything the user's role allows, admin routes included.
        Admin = "admin",
        /// `tokens:write`: revoke the owner's API tokens, and (admins only) mint new ones.
        /// Login sessions always carry it; `admin` does not imply it.
        TokensWrite = "tokens:write",
    }
}

/// A set of [`TokenScope`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Scopes(u8);

/// Longest accepted email or display name, in bytes.
pub const MAX_NAME_BYTES: usize = 254;

/// The canonical (trimmed, lower-case) form of an email address, if `text` is one: at most
/// [`MAX_NAME_BYTES`], a non-empty local part and domain around an `@`, and no whitespace or
/// control characters.
pub fn canonical_email(text: &str) -> Option<String> {
    let email = text.trim();
    let ok = email.len() <= MAX_NAME_BYTES
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then(|| email.to_lowercase())
}

// === impl Role ===

impl Role {
    /// The role a request acts with: the user's role narrowed by the token's scopes. `admin`
    /// needs the `admin` scope, writing needs `sandboxes:write` (or `admin`); anything else
    /// reads only.
    pub fn narrowed(self, scopes: Scopes) -> Role {
        let write =
            scopes.contains(TokenScope::SandboxesWrite) || scopes.contains(TokenScope::Admin);
        match self {
            Role::Admin if scopes.contains(TokenScope::Admin) => Role::Admin,
            Role::Admin | Role::Member if write => Role::Member,
            _ => Role::Viewer,
        }
    }
}

// === impl TokenScope ===

impl TokenScope {
    fn bit(self) -> u8 {
        match self {
            Self::SandboxesRead => 1,
            Self::SandboxesWrite => 2,
            Self::Admin => 4,
            Self::TokensWrite => 8,
        }
    }
}

// === impl Scopes ===

impl Scopes {
    /// Every scope: what a login session or the configured admin token carries.
    pub const FULL: Scopes = Scopes(15);

    /// Whether `scope` is in the set.
    pub fn contains(self, scope: TokenScope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes in a fixed order.
    pub fn iter(self) -> impl Iterator<Item = TokenScope> {
        TokenScope::ALL
            .into_iter()
            .filter(move |s| self.contains(*s))
    }

    /// Space-separated names, as stored.
    pub fn to_stored(self) -> String {
        self.iter()
            .map(TokenScope::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Parses the stored (space-separated) form.
    pub fn from_stored(text: &str) -> Result<Self, ParseEnumError> {
        text.split_whitespace()
            .map(str::parse::<TokenScope>)
            .collect::<Result<Scopes, _>>()
    }

    /// The most a user with `role` may put on a token.
    pub fn allowed_for(role: Role) -> Scopes {
        match role {
            Role::Admin => Self::FULL,
            Role::Member => [
                TokenScope::SandboxesRead,
                TokenScope::SandboxesWrite,
                TokenScope::TokensWrite,
            ]
            .into_iter()
            .collect(),
            Role::Viewer => [TokenScope::SandboxesRead, TokenScope::TokensWrite]
                .into_iter()
                .collect(),
        }
    }

    /// Whether every scope in `self` is also in `other`.
    pub fn is_subset(self, other: Scopes) -> bool {
        self.0 & !other.0 == 0
    }
}

impl FromIterator<TokenScope> for Scopes {
    fn from_iter<I: IntoIterator<Item = TokenScope>>(iter: I) -> Self {
        Scopes(iter.into_iter().fold(0, |bits, scope| bits | scope.bit()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn scopes_round_trip_and_narrow() {
        let read: Scopes = [TokenScope::SandboxesRead].into_iter().collect();
        let write: Scopes = [TokenScope::SandboxesWrite].into_iter().collect();
        let admin: Scopes = [TokenScope::Admin].into_iter().collect();
        assert_eq!(
            Scopes::from_stored(&Scopes::FULL.to_stored()),
            Ok(Scopes::FULL)
        );
        assert_eq!(
            Scopes::FULL.to_stored(),
            "sandboxes:read sandboxes:write admin tokens:write"
        );
        assert!(Scopes::from_stored("sandboxes:read root").is_err());
        let table = [
            (Role::Admin, Scopes::FULL, Role::Admin),
            (Role::Admin, admin, Role::Admin),
            (Role::Admin, write, Role::Member),
            (Role::Admin, read, Role::Viewer),
            (Role::Member, Scopes::FULL, Role::Member),
            (Role::Member, read, Role::Viewer),
            (Role::Viewer, Scopes::FULL, Role::Viewer),
        ];
        for (role, scopes, want) in table {
            assert_eq!(role.narrowed(scopes), want, "{role} {scopes:?}");
        }
        assert!(read.is_subset(Scopes::allowed_for(Role::Viewer)));
        assert!(!write.is_subset(Scopes::allowed_for(Role::Viewer)));
        assert!(!admin.is_subset(Scopes::allowed_for(Role::Member)));
    }
}
