//! The `egress-dns` check: which resolvers the proxy uses. The proxy never asks Docker's
//! embedded resolver (127.0.0.11, which knows the node's container names); without
//! `AIRLOCK_EGRESS_DNS` it has only what is left of the node's `/etc/resolv.conf`, which in a
//! DinD is often nothing, and then every name is refused `dns_failed`.

use super::{Check, Verdict};
use crate::config::{Config, ENV_EGRESS_DNS};

/// Warns when `AIRLOCK_EGRESS_DNS` is unset.
pub(super) fn check(config: &Config) -> Check {
    let name = "egress-dns";
    let egress = &config.egress;
    if !egress.enabled {
        return Check::new(name, Verdict::Skip, "the network plane is off", "");
    }
    if egress.dns.is_empty() {
        return Check::new(
            name,
            Verdict::Warn,
            format!(
                "{ENV_EGRESS_DNS} is unset: the proxy resolves only through the node's own \
                 resolver, never Docker's embedded one, and refuses every name when none is left"
            ),
            format!("set {ENV_EGRESS_DNS} to the operator's upstream resolvers (IP[:PORT], comma-separated)"),
        );
    }
    let servers: Vec<String> = egress.dns.iter().map(ToString::to_string).collect();
    Check::pass(
        name,
        format!("the proxy resolves through {}", servers.join(", ")),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Config {
        let vars: HashMap<&str, &str> = vars.iter().copied().collect();
        Config::from_lookup(|v| vars.get(v).map(|s| (*s).to_owned())).unwrap()
    }

    #[test]
    fn warns_without_resolvers() {
        let unset = check(&config(&[]));
        assert_eq!(unset.verdict, Verdict::Warn, "{unset:?}");
        assert!(unset.fix.contains(ENV_EGRESS_DNS));
        let set = check(&config(&[(ENV_EGRESS_DNS, "10.231.7.53")]));
        assert_eq!(set.verdict, Verdict::Pass, "{set:?}");
        assert!(set.detail.contains("10.231.7.53:53"));
        let off = check(&config(&[("AIRLOCK_EGRESS", "false")]));
        assert_eq!(off.verdict, Verdict::Skip);
    }
}
