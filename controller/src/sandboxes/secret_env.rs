//! A create's `secret_env`: at most as many names as `env` leaves room for (together at most
//! [`MAX_ENV_VARS`], refused before any secret is opened), each `NAME` checked (a variable
//! name, not reserved, not also in `env`) and each named secret of the owner opened into a `NAME=value` entry for the
//! binding frame. The values are never stored with the sandbox, logged, returned or audited.

use std::collections::BTreeMap;

use super::{SandboxError, Sandboxes};
use crate::accounts::user::UserId;
use crate::sandbox::spec::{is_env_name, is_reserved_env, MAX_ENV_VARS};
use crate::sandbox::{FieldError, Problem};

/// Resolved secret env entries (`NAME=value`); `Debug` never shows the values.
#[derive(Default)]
pub(crate) struct SecretEnv(pub(crate) Vec<String>);

// === impl Sandboxes ===

impl Sandboxes {
    /// Checks `secret_env`'s names and opens each named secret of `owner`, as `NAME=value`
    /// container env entries.
    pub(super) async fn resolve_secrets(
        &self,
        owner: UserId,
        env_names: &[String],
        secret_env: &BTreeMap<String, String>,
    ) -> Result<SecretEnv, SandboxError> {
        if secret_env.is_empty() {
            return Ok(SecretEnv::default());
        }
        if env_names.len() + secret_env.len() > MAX_ENV_VARS {
            return Err(SandboxError::Invalid(vec![FieldError {
                field: "secret_env".to_owned(),
                problem: Problem::TooMany { max: MAX_ENV_VARS },
            }]));
        }
        if !self.peers.secrets.enabled() {
            return Err(crate::secrets::SecretError::Unavailable.into());
        }
        let mut errors = Vec::new();
        let mut vars = Vec::with_capacity(secret_env.len());
        for (env, secret) in secret_env {
            let field = format!("secret_env.{env}");
            if let Some(problem) = secret_env_problem(env, env_names) {
                errors.push(FieldError { field, problem });
                continue;
            }
            let opened = match self.peers.secrets.open_for_env(owner, secret).await {
                Err(crate::secrets::SecretError::NotExposable { name }) => {
                    let problem = Problem::NotExposable { secret: name };
                    errors.push(FieldError { field, problem });
                    continue;
                }
                other => other?,
            };
            match opened {
                Some(value) => {
                    let value = String::from_utf8_lossy(&value);
                    vars.push(format!("{env}={value}"));
                }
                None => errors.push(FieldError {
                    field,
                    problem: Problem::Malformed {
                        expected: "the name of one of your secrets",
                    },
                }),
            }
        }
        if !errors.is_empty() {
            return Err(SandboxError::Invalid(errors));
        }
        Ok(SecretEnv(vars))
    }
}

/// Why a `secret_env` name cannot be used, if it cannot.
fn secret_env_problem(env: &str, env_names: &[String]) -> Option<Problem> {
    if !is_env_name(env) {
        Some(Problem::Malformed {
            expected: "a name of letters, digits and `_`, not starting with a digit",
        })
    } else if is_reserved_env(env) {
        Some(Problem::Reserved)
    } else if env_names.iter().any(|name| name == env) {
        Some(Problem::Duplicate)
    } else {
        None
    }
}

// === impl SecretEnv ===

impl std::fmt::Debug for SecretEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretEnv({} entries, values hidden)", self.0.len())
    }
}
