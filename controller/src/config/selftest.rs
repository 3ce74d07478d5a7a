//! The isolation self-test's variables (see [`crate::sandboxes::selftest`]), parsed with the rest of the
//! configuration so their mistakes are reported together.

use std::net::{IpAddr, SocketAddr};

use super::Reader;

/// The probe image; it must be on the node (it is never pulled).
pub const ENV_PROBE_IMAGE: &str = "AIRLOCK_PROBE_IMAGE";
/// Default of [`ENV_PROBE_IMAGE`].
pub const DEFAULT_PROBE_IMAGE: &str = "airlock/probe:dev";
/// A test upstream `IP:PORT`: reached directly it must fail, through the proxy it must
/// succeed. Unset: neither check runs.
pub const ENV_SELFTEST_UPSTREAM: &str = "AIRLOCK_SELFTEST_UPSTREAM";
/// The controller's API address as the node sees it (`IP:PORT`); a sandbox must not reach
/// it. Unset: the listen address, unless that is unspecified or loopback.
pub const ENV_SELFTEST_CONTROLLER: &str = "AIRLOCK_SELFTEST_CONTROLLER";
/// Extra addresses of the DinD (comma-separated IPs) besides the one in
/// `AIRLOCK_DOCKER_HOST` and Docker's default bridge.
pub const ENV_SELFTEST_NODE_ADDRS: &str = "AIRLOCK_SELFTEST_NODE_ADDRS";
/// The egress proxy's admin port, which no sandbox may reach.
pub const ENV_SELFTEST_ADMIN_PORT: &str = "AIRLOCK_SELFTEST_ADMIN_PORT";
/// Default of [`ENV_SELFTEST_ADMIN_PORT`].
pub const DEFAULT_SELFTEST_ADMIN_PORT: &str = "3129";

/// What the self-test needs from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelftestConfig {
    /// The probe image.
    pub probe_image: String,
    /// The test upstream, if any.
    pub upstream: Option<SocketAddr>,
    /// The controller's address as the node sees it, if known.
    pub controller: Option<SocketAddr>,
    /// Extra node addresses.
    pub node_addrs: Vec<IpAddr>,
    /// The proxy's admin port.
    pub admin_port: u16,
}

// === impl Reader ===

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    /// Parses the self-test variables; `listen` is the API's listen address.
    pub(super) fn selftest(&mut self, listen: Option<SocketAddr>) -> Option<SelftestConfig> {
        let probe_image = self.parse_with(ENV_PROBE_IMAGE, DEFAULT_PROBE_IMAGE, |v| {
            Some(v.to_owned())
                .filter(|v| !v.is_empty() && !v.chars().any(char::is_whitespace))
                .ok_or("an image reference")
        });
        let upstream = self.optional(ENV_SELFTEST_UPSTREAM, parse_socket_addr);
        let controller = self.optional(ENV_SELFTEST_CONTROLLER, parse_socket_addr);
        let node_addrs = self.optional(ENV_SELFTEST_NODE_ADDRS, |v| {
            v.split(',')
                .map(|ip| ip.trim().parse::<IpAddr>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_invalid| "comma-separated IP addresses")
        });
        let admin_port =
            self.parse_with(ENV_SELFTEST_ADMIN_PORT, DEFAULT_SELFTEST_ADMIN_PORT, |v| {
                v.parse::<u16>().ok().filter(|p| *p > 0).ok_or("a TCP port")
            });
        let listen = listen.filter(|l| !l.ip().is_unspecified() && !l.ip().is_loopback());
        Some(SelftestConfig {
            probe_image: probe_image?,
            upstream: upstream?,
            controller: controller?.or(listen),
            node_addrs: node_addrs?.unwrap_or_default(),
            admin_port: admin_port?,
        })
    }
}

fn parse_socket_addr(v: &str) -> Result<SocketAddr, &'static str> {
    v.parse().map_err(|_invalid| "an IP:PORT address")
}
