//! The policy as JSON: the same object the controller API takes and `--policy FILE` holds.
//!
//! `{"mode":"enforce","allow_domains":["*.github.com"],"deny_domains":[],"allow_ports":[80,443],
//! "allow_cidrs":[],"max_bytes":null,"max_connections":null}`. Every field is optional and
//! unknown fields are refused. This is a boundary type; [`crate::Policy`] is the compiled form.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The wire form of a sandbox egress policy.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// `enforce` (default) or `report`.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Exact names and `*.suffix` wildcards; absent or empty allows any domain.
    #[serde(default)]
    pub allow_domains: Option<Vec<String>>,
    /// Exact names and `*.suffix` wildcards that are always refused; beats `allow_domains`.
    #[serde(default)]
    pub deny_domains: Option<Vec<String>>,
    /// Destination ports; absent or empty means `[80, 443]`.
    #[serde(default)]
    pub allow_ports: Option<Vec<u16>>,
    /// CIDRs whose private (not loopback, link-local, metadata or unspecified) addresses the
    /// sandbox may reach.
    #[serde(default)]
    pub allow_cidrs: Option<Vec<IpNet>>,
    /// Byte budget for the sandbox, enforced by the proxy.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Concurrent connection budget for the sandbox, enforced by the proxy.
    #[serde(default)]
    pub max_connections: Option<u32>,
}

/// Whether domain and port rules refuse (`enforce`) or only record a would-deny (`report`).
/// Address rules are enforced in both modes.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Domain and port rules deny.
    #[default]
    Enforce,
    /// Domain and port rules only report; address rules still deny.
    Report,
}

impl Mode {
    /// `"enforce"` or `"report"`, as in the JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Report => "report",
        }
    }
}
