//! The egress policy a sandbox runs under.
//!
//! - [`TenantPolicy`]: a policy object as a tenant (or a ceiling's `default_policy`) wrote it,
//!   validated by compiling it exactly as the proxy will ([`Policy::compile`]), so the
//!   controller never accepts a policy the proxy would refuse. Absent fields stay absent.
//! - [`EgressPolicy`]: the *effective* policy, the tenant's fields over the applicable default
//!   policy, complete: `mode`, `allow_ports`, `allow_cidrs` and `allow_public` are explicit,
//!   so the proxy never has to guess and the stored JSON reads the same before and after a
//!   default changes. Stored as its canonical JSON with its SHA-256.
//!
//! `allow_public` and `allow_domains` default together: a tenant who names `allow_domains`
//! but not `allow_public` wrote an allow-list (as the proxy reads such a policy), so the
//! default's `allow_public` does not widen it to every public destination.

use airlock_egress_policy::{
    EndpointError, EndpointSpec, Endpoints, Mode, Policy, PolicySpec, TlsMode, DEFAULT_PORTS,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A validated policy object as written; absent fields are absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantPolicy {
    spec: PolicySpec,
}

/// A validated, complete effective policy, its canonical JSON and that JSON's hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressPolicy {
    spec: PolicySpec,
    json: String,
    hash: String,
}

// === impl TenantPolicy ===

impl TenantPolicy {
    /// Validates a policy object; the error names the problem.
    pub fn parse(value: Value) -> Result<Self, String> {
        if !value.is_object() {
            return Err("expected a policy object".to_owned());
        }
        let spec: PolicySpec = serde_json::from_value(value).map_err(|e| e.to_string())?;
        if spec.endpoints.is_some() {
            // The controller binds endpoints itself from the owner's secrets; a tenant-written
            // list is refused until that binding exists, so no policy promises inspection that
            // the proxy would not do.
            return Err(
                "endpoints: inspected endpoints are not yet accepted through the controller"
                    .to_owned(),
            );
        }
        Policy::compile(&spec).map_err(|e| e.to_string())?;
        Ok(Self { spec })
    }

    /// Whether `allow_public` is given.
    pub fn allow_public(&self) -> Option<bool> {
        self.spec.allow_public
    }

    /// The policy object, with only the fields given.
    pub fn to_value(&self) -> Value {
        let mut value = serde_json::to_value(&self.spec).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.retain(|_, v| !v.is_null());
        }
        value
    }
}

// === impl EgressPolicy ===

impl EgressPolicy {
    /// The tenant's policy over `default`, completed (see the module doc).
    pub fn effective(tenant: &TenantPolicy, default: &TenantPolicy) -> Self {
        let (t, d) = (&tenant.spec, &default.spec);
        let mut spec = merged_spec(t, d);
        let allow_public = t
            .allow_public
            .or_else(|| t.allow_domains.is_some().then_some(false))
            .or(d.allow_public)
            .unwrap_or(spec.allow_domains.is_none());
        spec.allow_public = Some(allow_public);
        Self::from_spec(spec)
    }

    /// The same policy with the endpoints the controller bound from the owner's credentials
    /// (replacing any earlier ones), checked as the proxy will check them with a CA: every
    /// host admitted by the domain rules, every credential on an exact `terminate` host.
    pub fn with_endpoints(&self, endpoints: Vec<EndpointSpec>) -> Result<Self, EndpointError> {
        let mut spec = self.spec.clone();
        if !endpoints.is_empty() {
            // An effective policy always compiles (it was checked when it was made).
            if let Ok(policy) = Policy::compile(&spec) {
                Endpoints::compile(&endpoints, &policy, true)?;
            }
        }
        spec.endpoints = (!endpoints.is_empty()).then_some(endpoints);
        Ok(Self::from_spec(spec))
    }

    /// The hosts of the policy's `terminate` endpoints (what the sandbox's CA may sign for).
    pub fn terminated_hosts(&self) -> Vec<String> {
        let endpoints = self.spec.endpoints.iter().flatten();
        let mut hosts: Vec<String> = endpoints
            .filter(|e| e.tls == TlsMode::Terminate)
            .map(|e| e.host.to_ascii_lowercase())
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// The policy a sandbox gets when nothing else applies: the built-in public default.
    pub fn default_policy() -> Self {
        Self::effective(&TenantPolicy::default(), &TenantPolicy::default())
    }

    fn from_spec(spec: PolicySpec) -> Self {
        // Serialising a plain struct of options and vectors cannot fail.
        let json = serde_json::to_string(&spec).unwrap_or_else(|_| "{}".to_owned());
        let hash = hex_sha256(&json);
        Self { spec, json, hash }
    }

    /// The policy (`allow_public` always set).
    pub(crate) fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    /// Whether every public destination is admitted (not only `allow_domains`).
    pub fn allow_public(&self) -> bool {
        self.spec.allow_public.unwrap_or(false)
    }

    /// Its canonical JSON.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// SHA-256 (hex) of [`EgressPolicy::json`].
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Whether a stored policy JSON is in report mode (unreadable JSON is not).
    pub fn stored_is_report(json: &str) -> bool {
        serde_json::from_str::<PolicySpec>(json).is_ok_and(|p| p.mode == Some(Mode::Report))
    }
}

/// `t`'s fields over `d`'s, with `mode`, `allow_ports` and `allow_cidrs` explicit. Entries
/// keep the order they were written in (CIDRs only truncated to their network), so a refusal's
/// index names the entry as the tenant wrote it.
fn merged_spec(t: &PolicySpec, d: &PolicySpec) -> PolicySpec {
    fn or<T: Clone>(t: &Option<T>, d: &Option<T>) -> Option<T> {
        t.clone().or_else(|| d.clone())
    }
    let ports = or(&t.allow_ports, &d.allow_ports)
        .filter(|ports| !ports.is_empty())
        .unwrap_or_else(|| DEFAULT_PORTS.to_vec());
    let cidrs = or(&t.allow_cidrs, &d.allow_cidrs)
        .unwrap_or_default()
        .into_iter()
        .map(|net| net.trunc())
        .collect();
    PolicySpec {
        mode: Some(or(&t.mode, &d.mode).unwrap_or(Mode::Enforce)),
        allow_public: None,
        allow_domains: or(&t.allow_domains, &d.allow_domains),
        deny_domains: or(&t.deny_domains, &d.deny_domains),
        allow_ports: Some(ports),
        allow_cidrs: Some(cidrs),
        max_bytes: or(&t.max_bytes, &d.max_bytes),
        max_connections: or(&t.max_connections, &d.max_connections),
        endpoints: None,
    }
}

/// The stored policy JSON rewritten so that it keeps its meaning under the `allow_public`
/// rules, with its new hash; `None` when it already says `allow_public` (or is not a JSON
/// object, which is left for a human). Before `allow_public` existed, an absent, `null` or
/// empty `allow_domains` admitted every public destination, any other list only itself; a
/// missing policy (`NULL`) was the default, which admitted every public destination.
pub fn upgrade_stored(stored: Option<&str>) -> Option<(String, String)> {
    let mut value = match stored {
        None => Value::Object(serde_json::Map::new()),
        Some(text) => serde_json::from_str(text).ok()?,
    };
    let object = value.as_object_mut()?;
    if object.contains_key("allow_public") {
        return None;
    }
    let public = match object.get("allow_domains") {
        None | Some(Value::Null) => true,
        Some(Value::Array(names)) => names.is_empty(),
        Some(_) => false,
    };
    if public {
        object.remove("allow_domains");
    }
    object.insert("allow_public".to_owned(), public.into());
    let json = match serde_json::from_value::<PolicySpec>(value.clone()) {
        Ok(spec) => serde_json::to_string(&spec).unwrap_or_else(|_| value.to_string()),
        Err(_unreadable) => value.to_string(),
    };
    let hash = hex_sha256(&json);
    Some((json, hash))
}

/// Lowercase hex SHA-256: the proxy's `credential_hash` of a token, and the policy hash.
pub fn hex_sha256(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tenant(value: Value) -> TenantPolicy {
        TenantPolicy::parse(value).unwrap()
    }

    fn effective(t: Value, d: Value) -> Value {
        let policy = EgressPolicy::effective(&tenant(t), &tenant(d));
        serde_json::from_str(policy.json()).unwrap()
    }

    #[test]
    fn validates_with_the_proxy_compiler() {
        assert!(TenantPolicy::parse(json!({"allow_domains": ["*.github.com"]})).is_ok());
        let unknown = TenantPolicy::parse(json!({"allow_domain": []}));
        assert!(unknown.unwrap_err().contains("allow_domain"));
        let broad = TenantPolicy::parse(json!({"allow_domains": ["*.com"]}));
        assert!(
            broad.is_err(),
            "wildcards broader than a registrable domain"
        );
        assert!(TenantPolicy::parse(json!([])).is_err());
        let a = EgressPolicy::effective(&tenant(json!({"mode": "report"})), &tenant(json!({})));
        let b = EgressPolicy::effective(&tenant(json!({"mode": "report"})), &tenant(json!({})));
        assert_eq!(a.hash(), b.hash());
        assert_ne!(a.hash(), EgressPolicy::default_policy().hash());
    }

    #[test]
    fn absent_fields_come_from_the_default_and_allow_public_is_explicit() {
        let deny = json!({"allow_public": false, "allow_domains": []});
        // (tenant, default, allow_public, allow_domains)
        let table = [
            (json!({}), json!({}), true, Value::Null),
            (json!({}), deny.clone(), false, json!([])),
            (json!({"allow_domains": []}), json!({}), false, json!([])),
            (
                json!({"allow_domains": ["a.com"]}),
                json!({"allow_public": true}),
                false,
                json!(["a.com"]),
            ),
            (json!({"allow_public": true}), deny.clone(), true, json!([])),
            (
                json!({"allow_ports": [8080]}),
                deny.clone(),
                false,
                json!([]),
            ),
            (
                json!({"allow_public": true, "allow_domains": ["a.com"]}),
                json!({}),
                true,
                json!(["a.com"]),
            ),
        ];
        for (t, d, public, domains) in table {
            let e = effective(t.clone(), d.clone());
            assert_eq!(e["allow_public"], public, "{t} over {d}: {e}");
            assert_eq!(e["allow_domains"], domains, "{t} over {d}: {e}");
        }
        let e = effective(
            json!({"allow_cidrs": ["10.1.2.3/16"]}),
            json!({"mode": "report"}),
        );
        assert_eq!(e["allow_cidrs"], json!(["10.1.0.0/16"]));
        assert_eq!(e["mode"], "report");
        assert_eq!(e["allow_ports"], json!([80, 443]));
    }

    #[test]
    fn stored_policies_keep_their_meaning() {
        let table = [
            (None, Some(json!({"allow_public": true}))),
            (
                Some(r#"{"allow_domains":null}"#),
                Some(json!({"allow_public": true})),
            ),
            (
                Some(r#"{"allow_domains":[]}"#),
                Some(json!({"allow_public": true})),
            ),
            (
                Some(r#"{"allow_domains":["a.com"],"mode":"report"}"#),
                Some(json!({"allow_public": false, "allow_domains": ["a.com"], "mode": "report"})),
            ),
            (Some(r#"{"allow_public":false,"allow_domains":[]}"#), None),
            (Some("[]"), None),
        ];
        for (stored, want) in table {
            let got = upgrade_stored(stored).map(|(json, hash)| {
                assert_eq!(hash, hex_sha256(&json));
                let value: Value = serde_json::from_str(&json).unwrap();
                tenant(value).to_value()
            });
            assert_eq!(got, want, "{stored:?}");
        }
        let (once, _) = upgrade_stored(Some(r#"{"allow_domains":[]}"#)).unwrap();
        assert_eq!(upgrade_stored(Some(&once)), None, "idempotent");
    }
}
