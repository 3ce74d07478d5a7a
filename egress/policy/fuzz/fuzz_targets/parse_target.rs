//! Fuzzes every parser entry point: none may panic, and what parses must keep its invariants.
#![no_main]

use airlock_egress_policy::{check_host_header, parse_absolute, parse_connect, parse_host, Host};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(target) = parse_connect(input) {
        assert_ne!(target.port, 0);
        let _ = check_host_header(&target, input);
        let _ = check_host_header(&target, &target.to_string());
    }
    if let Ok(absolute) = parse_absolute(input) {
        assert_ne!(absolute.target.port, 0);
        assert!(absolute.path_and_query.starts_with('/'));
        // Our own rendering of a target must parse back to the same target.
        let again = parse_connect(&absolute.target.to_string());
        assert_eq!(again.as_ref(), Ok(&absolute.target));
    }
    if let Ok(Host::Name(name)) = parse_host(input) {
        let s = name.as_str();
        assert!(!s.is_empty() && s.len() <= 253 && !s.ends_with('.'));
        assert_eq!(parse_host(s), Ok(Host::Name(name.clone())));
    }
});
