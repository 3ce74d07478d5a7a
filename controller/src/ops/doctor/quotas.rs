//! The `quota-defaults` check: the default quotas bound every user unless the operator wrote
//! `unlimited`, which is fine for one person and a risk once several users share the node.

use super::{Check, Verdict};
use crate::config::Config;
use crate::store::Store;

/// Warns when a default quota is `unlimited` and more than one enabled user exists.
pub(super) async fn check(config: &Config, store: &Store) -> Check {
    let name = "quota-defaults";
    let unlimited = config.quota.unlimited_limits();
    if unlimited.is_empty() {
        return Check::pass(name, "every default quota is bounded");
    }
    let users = match store.list_users().await {
        Ok(users) => users.iter().filter(|u| !u.disabled).count(),
        Err(error) => {
            let fix = "check the store";
            return Check::new(name, Verdict::Skip, error.to_string(), fix);
        }
    };
    let detail = format!(
        "unlimited by default: {}; {users} enabled users",
        unlimited.join(", ")
    );
    if users <= 1 {
        return Check::pass(name, detail);
    }
    let fix = "set the AIRLOCK_QUOTA_* defaults (docs/operator.md) or per-user quotas \
               (PUT /v1/users/{id}/quota), so one user cannot take the whole node";
    Check::new(name, Verdict::Warn, detail, fix)
}
