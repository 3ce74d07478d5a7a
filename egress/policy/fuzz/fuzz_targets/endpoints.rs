//! Fuzzes the inspected-traffic parsers: the path canonicaliser and the endpoint compiler. None
//! may panic; a canonical path is a fixed point and never climbs or hides a separator; rules
//! compiled from any endpoint list answer any request without panicking.
#![no_main]

use airlock_egress_policy::{canonical_path, EndpointSpec, Endpoints, Policy, PolicySpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(target) = canonical_path(input) {
        let path = &target.path;
        assert!(path.starts_with('/'));
        assert!(!path.contains("//") && !path.contains("/../") && !path.ends_with("/.."));
        assert!(!path.to_ascii_uppercase().contains("%2F"));
        assert_eq!(canonical_path(path).map(|t| t.path).as_ref(), Ok(path));
    }
    if let Ok(specs) = serde_json::from_str::<Vec<EndpointSpec>>(input) {
        let policy = Policy::compile(&PolicySpec::default()).expect("the default policy compiles");
        if let Ok(endpoints) = Endpoints::compile(&specs, &policy, true) {
            for endpoint in endpoints.iter() {
                let _ = endpoint.rules.check("GET", "/a/b/c");
                let _ = endpoints.find(&endpoint.host, endpoint.port);
            }
        }
    }
});
