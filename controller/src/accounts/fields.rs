//! The account fields people type, each checked in one place for the API and the CLI:
//! emails (the rule itself is [`canonical_email`], which the configuration uses too), display
//! names, token names, roles and passwords.

use super::credential::password_problem;
use super::user::{canonical_email, Role, MAX_NAME_BYTES};
use super::AccountError;

/// Longest API token name, in bytes.
pub const MAX_TOKEN_NAME_BYTES: usize = 100;

/// [`canonical_email`], or a field error on `email`.
pub fn email(text: &str) -> Result<String, AccountError> {
    canonical_email(text).ok_or_else(|| invalid("email", "must be an email address"))
}

/// A display name: trimmed, 1 to [`MAX_NAME_BYTES`] bytes.
pub fn display_name(text: &str) -> Result<String, AccountError> {
    let name = text.trim();
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(invalid("display_name", "must be 1 to 254 bytes"));
    }
    Ok(name.to_owned())
}

/// An API token's name: trimmed, 1 to [`MAX_TOKEN_NAME_BYTES`] bytes.
pub fn token_name(text: &str) -> Result<String, AccountError> {
    let name = text.trim();
    if name.is_empty() || name.len() > MAX_TOKEN_NAME_BYTES {
        return Err(invalid("name", "must be 1 to 100 bytes"));
    }
    Ok(name.to_owned())
}

/// A role named in `field`, if one is given.
pub fn role(field: &'static str, text: Option<&str>) -> Result<Option<Role>, AccountError> {
    text.map(|role| {
        role.parse::<Role>()
            .map_err(|_unknown| invalid(field, "must be admin, member or viewer"))
    })
    .transpose()
}

/// Refuses a password that is too short or too long.
pub fn password(text: &str) -> Result<(), AccountError> {
    match password_problem(text) {
        Some(problem) => Err(AccountError::Invalid {
            field: "password",
            reason: problem,
        }),
        None => Ok(()),
    }
}

fn invalid(field: &'static str, reason: &str) -> AccountError {
    AccountError::Invalid {
        field,
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_email_rule() {
        assert_eq!(
            canonical_email(" Root@Example.org ").as_deref(),
            Some("root@example.org")
        );
        for bad in [
            "",
            "root",
            "@example.org",
            "root@",
            "ro ot@x",
            "root@x\u{7}",
        ] {
            assert_eq!(canonical_email(bad), None, "{bad:?}");
        }
        let long = format!("{}@x.org", "a".repeat(MAX_NAME_BYTES));
        assert_eq!(canonical_email(&long), None);
        assert!(matches!(
            email("nope"),
            Err(AccountError::Invalid { field: "email", .. })
        ));
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(display_name("  Ada ").unwrap(), "Ada");
        assert!(display_name("   ").is_err());
        assert_eq!(token_name(" ci ").unwrap(), "ci");
        assert!(token_name(&"x".repeat(101)).is_err());
        assert_eq!(role("role", Some("viewer")).unwrap(), Some(Role::Viewer));
        assert_eq!(role("role", None).unwrap(), None);
        assert!(role("role", Some("root")).is_err());
        assert!(password("short").is_err());
        assert!(password("long enough password").is_ok());
    }
}
