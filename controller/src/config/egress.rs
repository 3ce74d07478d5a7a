//! The network plane's variables (see [`crate::egress`]), parsed with the rest of the
//! configuration so their mistakes are reported together.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use ipnet::{IpNet, Ipv4Net};

use super::{parse_abs_path, parse_bool, DockerConfig, Reader};

/// Whether the egress plane runs at all (`false` only for tests that do not need it: every
/// sandbox then has no egress whatsoever).
pub const ENV_EGRESS: &str = "AIRLOCK_EGRESS";
/// Default of [`ENV_EGRESS`].
pub const DEFAULT_EGRESS: &str = "true";
/// The proxy image on the node (never pulled).
pub const ENV_EGRESS_IMAGE: &str = "AIRLOCK_EGRESS_IMAGE";
/// Default of [`ENV_EGRESS_IMAGE`].
pub const DEFAULT_EGRESS_IMAGE: &str = "airlock/egress:dev";
/// An image tarball (`docker save`) loaded into the node when the image is missing.
pub const ENV_EGRESS_BUNDLE: &str = "AIRLOCK_EGRESS_BUNDLE";
/// Operator exceptions handed to the proxy as `--allow-cidr` (comma-separated exact CIDRs).
pub const ENV_EGRESS_ALLOW_CIDRS: &str = "AIRLOCK_EGRESS_ALLOW_CIDRS";
/// DNS servers handed to the proxy as `--dns` (comma-separated `IP[:PORT]`; default: the
/// proxy container's own resolver).
pub const ENV_EGRESS_DNS: &str = "AIRLOCK_EGRESS_DNS";
/// The egress bridge's subnet inside the DinD; the proxy takes its `.2`.
pub const ENV_EGRESS_SUBNET: &str = "AIRLOCK_EGRESS_SUBNET";
/// Default of [`ENV_EGRESS_SUBNET`].
pub const DEFAULT_EGRESS_SUBNET: &str = "10.212.0.0/24";
/// The node address the proxy's admin port is published on and the controller dials.
/// Default: the host of `AIRLOCK_DOCKER_HOST` when it is an IP address.
pub const ENV_EGRESS_ADMIN_ADDR: &str = "AIRLOCK_EGRESS_ADMIN_ADDR";

/// A PEM file of extra CAs the proxy trusts for upstream TLS where it terminates (an
/// operator's private API gateway; the tests' fake upstreams), handed to it as
/// `--upstream-ca`. The public roots are always trusted.
pub const ENV_EGRESS_UPSTREAM_CA: &str = "AIRLOCK_EGRESS_UPSTREAM_CA";

/// What the network plane needs from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressConfig {
    /// Whether the plane runs.
    pub enabled: bool,
    /// The proxy image.
    pub image: String,
    /// A tarball to load the image from when the node lacks it.
    pub bundle: Option<PathBuf>,
    /// Operator exceptions (exact CIDRs).
    pub allow_cidrs: Vec<IpNet>,
    /// DNS servers for the proxy; empty means its own resolver.
    pub dns: Vec<SocketAddr>,
    /// The egress bridge's subnet.
    pub subnet: Ipv4Net,
    /// Where the admin port is published and dialled (`None`: unknown, which the plane
    /// refuses when it is on).
    pub admin_ip: Option<IpAddr>,
    /// Extra upstream CAs for inspected endpoints ([`ENV_EGRESS_UPSTREAM_CA`]).
    pub upstream_ca: Option<PathBuf>,
}

// === impl Reader ===

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    /// Parses the egress variables; `docker` is the parsed Docker endpoint, if it parsed.
    pub(super) fn egress(&mut self, docker: Option<&DockerConfig>) -> Option<EgressConfig> {
        let enabled = self.parse_with(ENV_EGRESS, DEFAULT_EGRESS, parse_bool);
        let image = self.parse_with(ENV_EGRESS_IMAGE, DEFAULT_EGRESS_IMAGE, |v| {
            Some(v.to_owned())
                .filter(|v| !v.is_empty() && !v.chars().any(char::is_whitespace))
                .ok_or("an image reference")
        });
        let bundle = self.optional(ENV_EGRESS_BUNDLE, parse_abs_path);
        let upstream_ca = self.optional(ENV_EGRESS_UPSTREAM_CA, parse_abs_path);
        let allow_cidrs = self.optional(ENV_EGRESS_ALLOW_CIDRS, |v| {
            v.split(',')
                .map(|c| c.trim().parse::<IpNet>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_invalid| "comma-separated CIDRs like 10.0.0.5/32")
        });
        let dns = self.optional(ENV_EGRESS_DNS, |v| {
            v.split(',')
                .map(|s| parse_dns(s.trim()))
                .collect::<Option<Vec<_>>>()
                .ok_or("comma-separated IP or IP:PORT addresses")
        });
        let subnet = self.parse_with(ENV_EGRESS_SUBNET, DEFAULT_EGRESS_SUBNET, |v| {
            v.parse::<Ipv4Net>()
                .ok()
                .filter(|n| n.prefix_len() <= 29)
                .map(|n| n.trunc())
                .ok_or("an IPv4 subnet of /29 or larger")
        });
        let admin_ip = self.optional(ENV_EGRESS_ADMIN_ADDR, |v| {
            v.parse::<IpAddr>().map_err(|_invalid| "an IP address")
        });
        let enabled = enabled?;
        let from_docker = docker.and_then(|d| match d {
            DockerConfig::Tls { host, .. } | DockerConfig::InsecureTcp { host, .. } => {
                host.trim_matches(['[', ']']).parse::<IpAddr>().ok()
            }
            DockerConfig::InsecureUnix { .. } => None,
        });
        // Without either, `airlock serve` refuses to start the plane (see `crate::egress`):
        // the controller never resolves a name for the admin API.
        let admin_ip = admin_ip?.or(from_docker);
        Some(EgressConfig {
            enabled,
            image: image?,
            bundle: bundle?,
            allow_cidrs: allow_cidrs?.unwrap_or_default(),
            dns: dns?.unwrap_or_default(),
            subnet: subnet?,
            admin_ip,
            upstream_ca: upstream_ca?,
        })
    }
}

/// `IP` (port 53) or `IP:PORT`.
fn parse_dns(v: &str) -> Option<SocketAddr> {
    v.parse::<SocketAddr>()
        .ok()
        .or_else(|| v.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::Config;

    fn load(vars: &[(&str, &str)]) -> Result<Config, crate::config::ConfigError> {
        let vars: HashMap<&str, &str> = vars.iter().copied().collect();
        Config::from_lookup(|v| vars.get(v).map(|s| (*s).to_owned()))
    }

    #[test]
    fn defaults_take_the_admin_address_from_the_docker_host() {
        let config = load(&[("AIRLOCK_DOCKER_HOST", "tcp://10.231.7.2:2376")]).unwrap();
        let egress = config.egress;
        assert!(egress.enabled);
        assert_eq!(egress.image, DEFAULT_EGRESS_IMAGE);
        assert_eq!(egress.subnet, DEFAULT_EGRESS_SUBNET.parse().unwrap());
        assert_eq!(egress.admin_ip, Some("10.231.7.2".parse().unwrap()));
        assert!(egress.allow_cidrs.is_empty() && egress.dns.is_empty());
        let named = load(&[("AIRLOCK_DOCKER_HOST", "tcp://dind:2376")]).unwrap();
        assert_eq!(named.egress.admin_ip, None, "names are never resolved");
    }

    #[test]
    fn values_and_every_bad_one_reported() {
        let config = load(&[
            (ENV_EGRESS, "false"),
            (ENV_EGRESS_ALLOW_CIDRS, "10.231.7.80/32, 192.0.2.0/24"),
            (ENV_EGRESS_DNS, "10.231.7.53, 10.231.7.54:5353"),
            (ENV_EGRESS_ADMIN_ADDR, "10.0.0.9"),
            (ENV_EGRESS_SUBNET, "10.99.0.0/28"),
        ])
        .unwrap();
        let egress = config.egress;
        assert!(!egress.enabled);
        assert_eq!(egress.allow_cidrs.len(), 2);
        assert_eq!(
            egress.dns,
            vec![
                "10.231.7.53:53".parse().unwrap(),
                "10.231.7.54:5353".parse().unwrap()
            ]
        );
        assert_eq!(egress.admin_ip, Some("10.0.0.9".parse().unwrap()));
        let error = load(&[
            (ENV_EGRESS, "maybe"),
            (ENV_EGRESS_ALLOW_CIDRS, "10.0.0.1"),
            (ENV_EGRESS_DNS, "resolver"),
            (ENV_EGRESS_SUBNET, "10.99.0.0/30"),
            (ENV_EGRESS_ADMIN_ADDR, "dind"),
        ])
        .unwrap_err();
        let vars: Vec<&str> = error.issues.iter().map(|i| i.var).collect();
        assert_eq!(
            vars,
            [
                ENV_EGRESS,
                ENV_EGRESS_ALLOW_CIDRS,
                ENV_EGRESS_DNS,
                ENV_EGRESS_SUBNET,
                ENV_EGRESS_ADMIN_ADDR
            ]
        );
    }
}
