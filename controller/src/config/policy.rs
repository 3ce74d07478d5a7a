//! The egress-policy authority's variables (see [`crate::egress::ceilings`]): the operator's
//! ceilings file, the built-in default policy, and extra infrastructure CIDRs. A ceilings
//! file that cannot be read or accepted is a configuration error naming the document field.

use std::path::PathBuf;

use ipnet::IpNet;
use sha2::{Digest, Sha256};

use super::{parse_abs_path, Reader};
use crate::egress::ceilings::{Ceilings, DefaultPolicy};

/// A JSON ceilings document (per role, per user); imported into the store at start when its
/// content changed since the last import. Unset: the stored document, else the defaults.
pub const ENV_POLICY_FILE: &str = "AIRLOCK_POLICY_FILE";
/// The built-in default policy: `public` (every public destination on 80/443) or `deny`
/// (nothing until an allow-list is set).
pub const ENV_DEFAULT_POLICY: &str = "AIRLOCK_DEFAULT_POLICY";
/// Default of [`ENV_DEFAULT_POLICY`].
pub const DEFAULT_DEFAULT_POLICY: &str = "public";
/// More of the deployment's own address space (comma-separated CIDRs: a multi-host node
/// network, a database host) that no sandbox may reach through the proxy.
pub const ENV_INFRA_CIDRS: &str = "AIRLOCK_INFRA_CIDRS";

/// What the policy authority needs from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyConfig {
    /// The built-in default policy.
    pub default: DefaultPolicy,
    /// The operator's ceilings file, read and validated.
    pub file: Option<PolicyFile>,
    /// Extra infrastructure CIDRs.
    pub infra_cidrs: Vec<IpNet>,
}

/// A ceilings file as read at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyFile {
    /// Where it is.
    pub path: PathBuf,
    /// SHA-256 (hex) of its bytes.
    pub sha256: String,
    /// The validated document.
    pub ceilings: Ceilings,
}

// === impl Reader ===

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    /// Parses the policy variables.
    pub(super) fn policy(&mut self) -> Option<PolicyConfig> {
        let default = self.parse_with(ENV_DEFAULT_POLICY, DEFAULT_DEFAULT_POLICY, |v| {
            match v.to_ascii_lowercase().as_str() {
                "public" => Ok(DefaultPolicy::Public),
                "deny" => Ok(DefaultPolicy::Deny),
                _ => Err("public or deny"),
            }
        });
        let infra_cidrs = self.optional(ENV_INFRA_CIDRS, |v| {
            v.split(',')
                .map(|c| c.trim().parse::<IpNet>().map(|n| n.trunc()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_invalid| "comma-separated CIDRs like 10.0.5.0/24")
        });
        let file = self.policy_file(default.unwrap_or_default());
        Some(PolicyConfig {
            default: default?,
            file: file?,
            infra_cidrs: infra_cidrs?.unwrap_or_default(),
        })
    }

    fn policy_file(&mut self, default: DefaultPolicy) -> Option<Option<PolicyFile>> {
        let Some(value) = self.raw(ENV_POLICY_FILE) else {
            return Some(None);
        };
        let read = parse_abs_path(value.trim())
            .map_err(str::to_owned)
            .and_then(|path| match std::fs::read(&path) {
                Ok(bytes) => Ok((path, bytes)),
                Err(error) => Err(format!("a readable file ({error})")),
            });
        let (path, bytes) = match read {
            Ok(read) => read,
            Err(expected) => {
                self.issue(ENV_POLICY_FILE, &value, false, expected);
                return None;
            }
        };
        let text = String::from_utf8_lossy(&bytes);
        match Ceilings::parse(&text, default) {
            Ok(ceilings) => Some(Some(PolicyFile {
                path,
                sha256: hex::encode(Sha256::digest(&bytes)),
                ceilings,
            })),
            Err(error) => {
                let expected = format!(
                    "a valid ceilings document; {}: {}",
                    error.field, error.reason
                );
                self.issue(ENV_POLICY_FILE, &value, false, expected);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::accounts::user::Role;
    use crate::config::Config;

    fn load(vars: &[(&str, &str)]) -> Result<Config, crate::config::ConfigError> {
        let vars: HashMap<&str, &str> = vars.iter().copied().collect();
        Config::from_lookup(|v| vars.get(v).map(|s| (*s).to_owned()))
    }

    #[test]
    fn defaults_and_values() {
        let policy = load(&[]).unwrap().policy;
        assert_eq!(policy.default, DefaultPolicy::Public);
        assert!(policy.file.is_none() && policy.infra_cidrs.is_empty());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ceilings.json");
        std::fs::write(&path, r#"{"roles": {"member": {"ports": ["1-65535"]}}}"#).unwrap();
        let config = load(&[
            (ENV_DEFAULT_POLICY, "deny"),
            (ENV_POLICY_FILE, path.to_str().unwrap()),
            (ENV_INFRA_CIDRS, "10.9.0.5/16, 192.0.2.7/32"),
        ])
        .unwrap();
        let policy = config.policy;
        assert_eq!(policy.default, DefaultPolicy::Deny);
        assert_eq!(policy.infra_cidrs.len(), 2);
        assert_eq!(policy.infra_cidrs[0].to_string(), "10.9.0.0/16");
        let file = policy.file.unwrap();
        assert_eq!(file.sha256.len(), 64);
        let member = file.ceilings.for_role(Role::Member).ceiling;
        assert_eq!(member.default_policy.allow_public(), Some(false));
    }

    #[test]
    fn every_bad_value_is_reported_and_a_bad_file_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ceilings.json");
        std::fs::write(&path, r#"{"roles": {"member": {"ports": ["x"]}}}"#).unwrap();
        let error = load(&[
            (ENV_DEFAULT_POLICY, "closed"),
            (ENV_INFRA_CIDRS, "10.0.0.1"),
            (ENV_POLICY_FILE, path.to_str().unwrap()),
        ])
        .unwrap_err();
        let vars: Vec<&str> = error.issues.iter().map(|i| i.var).collect();
        assert_eq!(vars, [ENV_DEFAULT_POLICY, ENV_INFRA_CIDRS, ENV_POLICY_FILE]);
        assert!(
            error.issues[2].expected.contains("roles.member.ports[0]"),
            "{error}"
        );
        let missing = dir.path().join("missing.json");
        let error = load(&[(ENV_POLICY_FILE, missing.to_str().unwrap())]).unwrap_err();
        assert!(
            error.issues[0].expected.starts_with("a readable file"),
            "{error}"
        );
        let error = load(&[(ENV_POLICY_FILE, "relative.json")]).unwrap_err();
        assert_eq!(error.issues[0].expected, "an absolute path");
    }
}
