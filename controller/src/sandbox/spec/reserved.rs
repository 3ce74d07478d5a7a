//! The environment names the controller sets in every sandbox itself, declared once: the
//! proxy settings, `DOCKER_HOST`, `HOME` and the trust variables that point TLS clients at the
//! sandbox's CA. A tenant may not set any of them (in `env`, a `secret_env` name or an exec's
//! env): init refuses a frame whose workload env names one of its reserved names, so the
//! controller refuses them first, naming the field, rather than let the sandbox fail at start.
//!
//! Likewise the directories Airlock owns inside every sandbox ([`AIRLOCK_DIRS`]): no working
//! directory may lie there.

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

/// The controller's own variables other than the trust ones (the proxy settings, the Docker
/// endpoint, the home).
const CONTROLLER_ENV: [&str; 11] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "NODE_USE_ENV_PROXY",
    "DOCKER_HOST",
    "HOME",
];

/// Every environment variable the controller sets itself; a tenant's env may name none.
pub const RESERVED_ENV: [&str; 17] = concat([&CONTROLLER_ENV, &TRUST_BUNDLE_ENV, &TRUST_CA_ENV]);

/// Directories Airlock owns inside every sandbox: the read-only runtime volume (init itself)
/// and the run file's directory, which init makes root-owned before the workload runs. A
/// working directory at or under one cannot work, so it is refused (`workdir`: reserved).
pub const AIRLOCK_DIRS: [&str; 2] = ["/.airlock", "/tmp/.airlock"];

/// Whether `dir` is at or under one of [`AIRLOCK_DIRS`].
pub(super) fn is_airlock_dir(dir: &super::ContainerPath) -> bool {
    AIRLOCK_DIRS
        .iter()
        .any(|owned| super::ContainerPath::parse(owned).is_ok_and(|owned| dir.is_within(&owned)))
}

/// Environment variable prefix reserved for values the controller injects later.
pub const RESERVED_ENV_PREFIX: &str = "AIRLOCK_";

/// `parts` joined, in order; a length that does not add up fails the build.
const fn concat<const N: usize>(parts: [&[&'static str]; 3]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut at = 0;
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
        at == N,
        "RESERVED_ENV's length must be the sum of its parts"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::super::checks::{check_env, err};
    use super::super::Problem;
    use super::*;

    #[test]
    fn every_trust_and_controller_variable_is_reserved_once() {
        for name in CONTROLLER_ENV
            .iter()
            .chain(&TRUST_BUNDLE_ENV)
            .chain(&TRUST_CA_ENV)
        {
            assert_eq!(
                RESERVED_ENV.iter().filter(|n| *n == name).count(),
                1,
                "{name}"
            );
        }
        assert!(!RESERVED_ENV.contains(&""));
    }

    #[test]
    fn a_create_naming_a_trust_variable_is_refused_on_the_field() {
        for name in TRUST_BUNDLE_ENV.iter().chain(&TRUST_CA_ENV) {
            let mut errors = Vec::new();
            check_env(vec![((*name).to_owned(), "x".to_owned())], &mut errors);
            assert_eq!(errors, [err("env[0].name", Problem::Reserved)], "{name}");
        }
    }

    #[test]
    fn no_workdir_lies_in_airlock_s_own_directories() {
        let path = |p: &str| super::super::ContainerPath::parse(p).unwrap();
        let run_dir = airlock_init::runfile::RUN_FILE.rsplit_once('/').unwrap().0;
        let runtime = crate::docker::spec::runtime::RUNTIME_MOUNT;
        for owned in [run_dir, runtime, "/tmp/.airlock/sub", "/.airlock/x"] {
            assert!(is_airlock_dir(&path(owned)), "{owned}");
        }
        for free in [
            "/tmp",
            "/tmp/.airlocks",
            "/airlock",
            "/",
            "/home/agent/.airlock",
        ] {
            assert!(!is_airlock_dir(&path(free)), "{free}");
        }
    }
}
