//! The boot-time admin's variables (`AIRLOCK_BOOTSTRAP_ADMIN_*`): both or neither, a real
//! email (the accounts' own rule) and a password the accounts would accept.

use super::reader::Reader;
use super::Secret;
use crate::accounts::credential::password_problem;
use crate::accounts::user::canonical_email;

/// Email of the admin created at boot (with [`ENV_BOOTSTRAP_ADMIN_PASSWORD`]; both or neither).
pub const ENV_BOOTSTRAP_ADMIN_EMAIL: &str = "AIRLOCK_BOOTSTRAP_ADMIN_EMAIL";
/// Password of the admin created at boot (at least 12 characters). Secret.
pub const ENV_BOOTSTRAP_ADMIN_PASSWORD: &str = "AIRLOCK_BOOTSTRAP_ADMIN_PASSWORD";

/// How long the first-boot admin's API token (in `initial-admin.json`) lasts.
pub const ENV_INITIAL_TOKEN_TTL: &str = "AIRLOCK_INITIAL_TOKEN_TTL";
/// Default of [`ENV_INITIAL_TOKEN_TTL`].
pub const DEFAULT_INITIAL_TOKEN_TTL: &str = "7d";

/// The first admin account, created at boot if no account has that email.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapAdmin {
    /// The email (lower-cased).
    pub email: String,
    /// The password.
    pub password: Secret,
}

// === impl Reader ===

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    /// The first-boot token's lifetime: 1 minute to 366 days.
    pub(super) fn initial_token_ttl(&mut self) -> Option<std::time::Duration> {
        self.parse_with(ENV_INITIAL_TOKEN_TTL, DEFAULT_INITIAL_TOKEN_TTL, |v| {
            super::parse_duration(v)
                .ok()
                .filter(|d| (60..=366 * 86_400).contains(&d.as_secs()))
                .ok_or("a duration from 1m to 366d, like 7d or 12h")
        })
    }

    /// Both bootstrap variables or neither; a lone one is an issue on the missing one.
    pub(super) fn bootstrap_admin(&mut self) -> Option<Option<BootstrapAdmin>> {
        let email = self.raw(ENV_BOOTSTRAP_ADMIN_EMAIL);
        let password = self.raw(ENV_BOOTSTRAP_ADMIN_PASSWORD);
        match (email, password) {
            (None, None) => Some(None),
            (Some(_), None) => {
                let expected = format!("set together with {ENV_BOOTSTRAP_ADMIN_EMAIL}");
                self.issue(ENV_BOOTSTRAP_ADMIN_PASSWORD, "", true, expected);
                None
            }
            (None, Some(_)) => {
                let expected = format!("set together with {ENV_BOOTSTRAP_ADMIN_PASSWORD}");
                self.issue(ENV_BOOTSTRAP_ADMIN_EMAIL, "", false, expected);
                None
            }
            (Some(email), Some(password)) => {
                let canonical = canonical_email(&email);
                let email = canonical
                    .clone()
                    .unwrap_or_else(|| email.trim().to_lowercase());
                let email_ok = canonical.is_some();
                if !email_ok {
                    self.issue(ENV_BOOTSTRAP_ADMIN_EMAIL, &email, false, "an email address");
                }
                let problem = password_problem(&password);
                if let Some(problem) = &problem {
                    self.issue(
                        ENV_BOOTSTRAP_ADMIN_PASSWORD,
                        &password,
                        true,
                        problem.clone(),
                    );
                }
                let admin = BootstrapAdmin {
                    email,
                    password: Secret::new(password),
                };
                (email_ok && problem.is_none()).then_some(Some(admin))
            }
        }
    }
}
