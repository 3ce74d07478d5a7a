//! The check of an effective policy against the ceiling that applies: entries that can never
//! take effect first (a 400 naming every such field), then the first value beyond the ceiling
//! (a 403 naming the field and the value).

use airlock_egress_policy::Mode;
use ipnet::IpNet;
use serde_json::{json, Value};

use super::AppliedCeiling;
use crate::egress::policy::EgressPolicy;
use airlock_egress_policy::{net_is_global, net_never_admissible};

/// Why a policy was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyRefusal {
    /// `(field, reason)` for every `allow_cidrs` entry that can never take effect: address
    /// space no policy admits (loopback, link-local, metadata, unspecified, ...) or lying
    /// wholly inside the deployment's own infrastructure.
    NeverEffective(Vec<(String, String)>),
    /// A value beyond the ceiling.
    Exceeds(CeilingExceeded),
}

/// The first value of a policy beyond its ceiling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CeilingExceeded {
    /// The field, e.g. `policy.allow_cidrs[0]`.
    pub field: String,
    /// The value as it is in the effective policy.
    pub value: Value,
    /// The ceiling's label.
    pub ceiling: String,
    /// What the ceiling allows instead.
    pub reason: String,
}

/// Checks `policy` against `applied`; `infra` is the deployment's own address space.
pub fn check(
    applied: &AppliedCeiling,
    policy: &EgressPolicy,
    infra: &[IpNet],
) -> Result<(), PolicyRefusal> {
    let cidrs = policy.spec().allow_cidrs.as_deref().unwrap_or_default();
    let never: Vec<(String, String)> = cidrs
        .iter()
        .enumerate()
        .filter_map(|(i, net)| never_effective(net, infra).map(|why| (cidr_field(i), why)))
        .collect();
    if !never.is_empty() {
        return Err(PolicyRefusal::NeverEffective(never));
    }
    match exceeded(applied, policy) {
        Some(exceeded) => Err(PolicyRefusal::Exceeds(exceeded)),
        None => Ok(()),
    }
}

fn never_effective(net: &IpNet, infra: &[IpNet]) -> Option<String> {
    if let Some(class) = net_never_admissible(net) {
        return Some(format!(
            "{net} is {class} address space, which no policy can admit"
        ));
    }
    infra.iter().any(|own| own.contains(net)).then(|| {
        format!(
            "{net} lies inside Airlock's own infrastructure (sandbox pools, node and proxy \
             networks), which the proxy refuses whatever the policy says"
        )
    })
}

fn exceeded(applied: &AppliedCeiling, policy: &EgressPolicy) -> Option<CeilingExceeded> {
    let ceiling = &applied.ceiling;
    let refuse = |field: String, value: Value, reason: &str| CeilingExceeded {
        field,
        value,
        ceiling: applied.label.clone(),
        reason: reason.to_owned(),
    };
    let spec = policy.spec();
    let cidrs = spec.allow_cidrs.as_deref().unwrap_or_default().iter();
    for (i, net) in cidrs.enumerate() {
        if !net_is_global(net) && !ceiling.allow_cidrs.iter().any(|own| own.contains(net)) {
            let reason = "a non-global CIDR must lie inside one of the ceiling's allow_cidrs";
            return Some(refuse(cidr_field(i), json!(net.to_string()), reason));
        }
    }
    let ports = spec.allow_ports.as_deref().unwrap_or_default().iter();
    for (i, port) in ports.enumerate() {
        if !ceiling.admits_port(*port) {
            let field = format!("policy.allow_ports[{i}]");
            return Some(refuse(
                field,
                json!(port),
                "the ceiling does not admit this port",
            ));
        }
    }
    if spec.mode == Some(Mode::Report) && !ceiling.report_mode {
        let reason = "report mode is beyond the ceiling";
        return Some(refuse("policy.mode".to_owned(), json!("report"), reason));
    }
    if policy.allow_public() && !ceiling.allow_public {
        let reason = "every public destination is beyond the ceiling: list names in allow_domains";
        return Some(refuse(
            "policy.allow_public".to_owned(),
            json!(true),
            reason,
        ));
    }
    None
}

fn cidr_field(index: usize) -> String {
    format!("policy.allow_cidrs[{index}]")
}

// === impl PolicyRefusal ===

impl PolicyRefusal {
    /// One line naming the field(s).
    pub fn describe(&self) -> String {
        match self {
            Self::NeverEffective(fields) => fields
                .iter()
                .map(|(field, why)| format!("{field}: {why}"))
                .collect::<Vec<_>>()
                .join("; "),
            Self::Exceeds(e) => e.to_string(),
        }
    }
}

// === impl CeilingExceeded ===

impl std::fmt::Display for CeilingExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = match &self.value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        write!(
            f,
            "{} = {value} exceeds the ceiling {}: {}",
            self.field, self.ceiling, self.reason
        )
    }
}
