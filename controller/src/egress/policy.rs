//! The egress policy a sandbox runs under: the egress crate's own [`PolicySpec`], validated by
//! compiling it exactly as the proxy will ([`Policy::compile`]), so the controller never
//! accepts a policy the proxy would refuse. Stored as its canonical JSON with its SHA-256.

use airlock_egress_policy::{Policy, PolicySpec};

use super::hex_sha256;

/// A validated policy, its canonical JSON and that JSON's hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressPolicy {
    spec: PolicySpec,
    json: String,
    hash: String,
}

// === impl EgressPolicy ===

impl EgressPolicy {
    /// Validates a policy object as the API received it; the error names the problem.
    pub fn parse(value: serde_json::Value) -> Result<Self, String> {
        let spec: PolicySpec = serde_json::from_value(value).map_err(|e| e.to_string())?;
        Policy::compile(&spec).map_err(|e| e.to_string())?;
        Ok(Self::from_spec(spec))
    }

    /// The default policy (every public destination on ports 80 and 443).
    pub fn default_policy() -> Self {
        Self::from_spec(PolicySpec::default())
    }

    fn from_spec(spec: PolicySpec) -> Self {
        // Serialising a plain struct of options and vectors cannot fail.
        let json = serde_json::to_string(&spec).unwrap_or_else(|_| "{}".to_owned());
        let hash = hex_sha256(&json);
        Self { spec, json, hash }
    }

    /// The policy.
    pub fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    /// Its canonical JSON.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// SHA-256 (hex) of [`EgressPolicy::json`].
    pub fn hash(&self) -> &str {
        &self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_with_the_proxy_compiler() {
        let ok = EgressPolicy::parse(serde_json::json!({"allow_domains": ["*.github.com"]}));
        assert!(ok.is_ok());
        let unknown = EgressPolicy::parse(serde_json::json!({"allow_domain": []}));
        assert!(unknown.unwrap_err().contains("allow_domain"));
        let broad = EgressPolicy::parse(serde_json::json!({"allow_domains": ["*.com"]}));
        assert!(
            broad.is_err(),
            "wildcards broader than a registrable domain are refused"
        );
        let a = EgressPolicy::parse(serde_json::json!({"mode": "report"})).unwrap();
        let b = EgressPolicy::parse(serde_json::json!({"mode": "report"})).unwrap();
        assert_eq!(a.hash(), b.hash());
        assert_ne!(a.hash(), EgressPolicy::default_policy().hash());
    }
}
