//! The environment names the controller sets in every sandbox itself: the proxy settings and
//! the trust variables that point TLS clients at the sandbox's CA (declared once, in
//! `airlock_init::frame`, since init refuses a frame whose workload env names one), plus
//! `DOCKER_HOST` and `HOME`. A tenant may not set any of them (in `env`, a `secret_env` name or
//! an exec's env): the controller refuses them first, naming the field, rather than let the
//! sandbox fail at start.
//!
//! Likewise the directories Airlock owns inside every sandbox ([`AIRLOCK_DIRS`]): no working
//! directory may lie there.

use airlock_init::frame::{RESERVED_NAMES, RESERVED_PREFIXES};
pub use airlock_init::frame::{TRUST_BUNDLE_ENV, TRUST_CA_ENV};

/// What the controller sets besides init's reserved names (the proxy and trust variables):
/// the Docker endpoint and the home. Init takes these from the frame's env like any other.
const CONTROLLER_ENV: [&str; 2] = ["DOCKER_HOST", "HOME"];

/// Whether a tenant may not name `name` in an env (a create's `env`, a `secret_env` name, an
/// exec's env): a variable Airlock sets itself, or one under its `AIRLOCK_` prefix.
pub fn is_reserved_env(name: &str) -> bool {
    RESERVED_NAMES.contains(&name)
        || CONTROLLER_ENV.contains(&name)
        || RESERVED_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix))
}

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

#[cfg(test)]
mod tests {
    use super::super::checks::{check_env, err};
    use super::super::Problem;
    use super::*;

    #[test]
    fn every_variable_airlock_sets_is_reserved() {
        let set = CONTROLLER_ENV
            .iter()
            .chain(&TRUST_BUNDLE_ENV)
            .chain(&TRUST_CA_ENV)
            .chain(&airlock_init::frame::PROXY_ENV);
        for name in set.copied().chain(["AIRLOCK_", "AIRLOCK_X"]) {
            assert!(is_reserved_env(name), "{name}");
        }
        for name in ["", "PATH", "home", "XAIRLOCK_", "Http_Proxy"] {
            assert!(!is_reserved_env(name), "{name}");
        }
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
