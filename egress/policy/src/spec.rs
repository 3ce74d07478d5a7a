//! The policy as JSON: the same object the controller API takes and `--policy FILE` holds.
//!
//! `{"mode":"enforce","allow_public":false,"allow_domains":["*.github.com"],"deny_domains":[],
//! "allow_ports":[80,443],"allow_cidrs":[],"max_bytes":null,"max_connections":null,
//! "endpoints":[…]}`. Every field is optional and unknown fields are refused. This is a boundary type; [`crate::Policy`] is the
//! compiled form.
//!
//! `allow_public` and `allow_domains` together say which names and literals pass the domain
//! rules. Absent `allow_public` means `allow_domains` is absent: `{}` allows every public
//! destination, `{"allow_domains":["a.com"]}` is an allow-list, and `{"allow_domains":[]}` allows
//! no name at all (an empty list is a list, not "anything").

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The wire form of a sandbox egress policy.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// `enforce` (default) or `report`.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Whether any name or IP literal whose every address is global passes the domain rules.
    /// Absent means `allow_domains.is_none()`. Written only when set, so a spec without it
    /// round-trips unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_public: Option<bool>,
    /// Exact names and `*.suffix` wildcards. With `allow_public` they only name the matching
    /// rule; without it they are the only names allowed (`[]`: none).
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
    /// Inspected endpoints: TLS termination, L7 rules and credential bindings
    /// ([`crate::endpoint`]). Written only when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<crate::endpoint::EndpointSpec>>,
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

// === impl PolicySpec ===

impl PolicySpec {
    /// `allow_public` as the proxy applies it: the field when present, else
    /// `allow_domains.is_none()`.
    pub fn effective_allow_public(&self) -> bool {
        self.allow_public.unwrap_or(self.allow_domains.is_none())
    }
}

// === impl Mode ===

impl Mode {
    /// `"enforce"` or `"report"`, as in the JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Report => "report",
        }
    }
}
