//! The deployment's own addresses: the controller's push (`PUT /v1/infrastructure`,
//! [`PutInfrastructure`]) and what the proxy enforces ([`InfrastructureReport`], the answer to
//! both `GET` and `PUT`).

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// `PUT /v1/infrastructure`: replaces the pushed list.
///
/// The CIDRs travel as text because the proxy parses each one itself: a bare address means its
/// host route, and a bad entry is refused naming its index (`400 bad_cidr`), not as bad JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutInfrastructure {
    /// CIDRs (or bare addresses) the proxy refuses before every other rule.
    pub cidrs: Vec<String>,
}

/// What the proxy enforces and where each part came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfrastructureReport {
    /// The union the proxy enforces.
    #[serde(default)]
    pub effective: Vec<IpNet>,
    /// What the controller pushed.
    #[serde(default)]
    pub pushed: Vec<IpNet>,
    /// `--deny-cidr` / `AIRLOCK_EGRESS_DENY_CIDRS`.
    #[serde(default)]
    pub configured: Vec<IpNet>,
    /// Derived from the proxy's own interfaces.
    #[serde(default)]
    pub derived: Vec<IpNet>,
}

// === impl PutInfrastructure ===

impl PutInfrastructure {
    /// The push of `cidrs`, each written as `addr/prefix`.
    pub fn new(cidrs: &[IpNet]) -> Self {
        Self {
            cidrs: cidrs.iter().map(ToString::to_string).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_push_round_trips_through_its_pinned_json() {
        let nets: Vec<IpNet> = vec![
            "10.213.0.0/16".parse().unwrap(),
            "fd00::1/128".parse().unwrap(),
        ];
        let push = PutInfrastructure::new(&nets);
        let json = r#"{"cidrs":["10.213.0.0/16","fd00::1/128"]}"#;
        assert_eq!(serde_json::to_string(&push).unwrap(), json);
        assert_eq!(
            serde_json::from_str::<PutInfrastructure>(json).unwrap(),
            push
        );
        let bare: PutInfrastructure = serde_json::from_str(r#"{"cidrs":["10.212.0.2"]}"#).unwrap();
        assert_eq!(bare.cidrs, ["10.212.0.2"]);
        assert!(serde_json::from_str::<PutInfrastructure>(r#"{"cidrs":[],"x":1}"#).is_err());
    }

    #[test]
    fn the_report_round_trips_through_its_pinned_json() {
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        let report = InfrastructureReport {
            effective: vec![net("10.212.0.2/32"), net("10.213.0.0/16")],
            pushed: vec![net("10.213.0.0/16")],
            configured: vec![],
            derived: vec![net("10.212.0.2/32")],
        };
        let json = r#"{"effective":["10.212.0.2/32","10.213.0.0/16"],"pushed":["10.213.0.0/16"],"configured":[],"derived":["10.212.0.2/32"]}"#;
        assert_eq!(serde_json::to_string(&report).unwrap(), json);
        assert_eq!(
            serde_json::from_str::<InfrastructureReport>(json).unwrap(),
            report
        );
        assert_eq!(
            serde_json::from_str::<InfrastructureReport>("{}").unwrap(),
            InfrastructureReport::default()
        );
    }
}
