//! The environment names Airlock sets in every sandbox itself (the proxy and trust
//! variables, and its `AIRLOCK_` prefix): a frame's workload env may name none of them. The
//! one declaration; the controller checks a tenant's env against the same lists.

/// The proxy variables Airlock sets in every sandbox.
pub const PROXY_ENV: [&str; 9] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NODE_USE_ENV_PROXY",
];
/// The trust variables that name the sandbox's CA bundle (the image's system store plus the
/// CA): curl, git, OpenSSL and Python `requests` read one file.
pub const TRUST_BUNDLE_ENV: [&str; 4] = [
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
];
/// The trust variables that name the CA alone: Node and Deno add it to their own store.
pub const TRUST_CA_ENV: [&str; 2] = ["NODE_EXTRA_CA_CERTS", "DENO_CERT"];

/// Environment names Airlock sets itself (the proxy and trust variables): a frame cannot
/// override them. The one declaration the controller checks a tenant's env against too.
pub const RESERVED_NAMES: [&str; 15] = {
    let mut out = [""; 15];
    let mut at = 0;
    let parts: [&[&str]; 3] = [&PROXY_ENV, &TRUST_BUNDLE_ENV, &TRUST_CA_ENV];
    let mut part = 0;
    while part < parts.len() {
        let mut i = 0;
        while i < parts[part].len() {
            out[at] = parts[part][i];
            at += 1;
            i += 1;
        }
        part += 1;
    }
    assert!(
        at == out.len(),
        "RESERVED_NAMES' length must be the sum of its parts"
    );
    out
};
/// Every name starting with one of these is Airlock's too.
pub const RESERVED_PREFIXES: &[&str] = &["AIRLOCK_"];
