//! The workload's environment: init's own (the image's) ⊕ the frame's `env` ⊕ Airlock's
//! reserved variables from init's own environment ⊕ the frame's `airlock_env` (later wins).
//! Init's own settings are not passed on.

use std::collections::BTreeMap;
use std::ffi::OsString;

use crate::frame::Rules;

pub use crate::settings::{CA_FILE_VAR, IDLE_VAR, WRITABLE_VAR};

/// Init's settings: read by init, never seen by the workload.
const OWN: [&str; 3] = [IDLE_VAR, WRITABLE_VAR, CA_FILE_VAR];

/// Merges the process environment (the image's and Airlock's, from the container config) with
/// the frame's. The frame was validated, so its `env` holds no reserved name and its
/// `airlock_env` only reserved ones; reserved names from the process are applied after `env`
/// all the same, and `airlock_env` last.
pub fn child_env(
    process: impl IntoIterator<Item = (OsString, OsString)>,
    frame: &BTreeMap<String, String>,
    airlock: &BTreeMap<String, String>,
    rules: &Rules,
) -> BTreeMap<OsString, OsString> {
    let process: Vec<(OsString, OsString)> = process
        .into_iter()
        .filter(|(name, _)| !OWN.iter().any(|own| name == own))
        .collect();
    let mut env: BTreeMap<OsString, OsString> = process.iter().cloned().collect();
    for (name, value) in frame {
        env.insert(name.into(), value.into());
    }
    for (name, value) in process {
        if name.to_str().is_some_and(|n| rules.is_reserved(n)) {
            env.insert(name, value);
        }
    }
    for (name, value) in airlock {
        env.insert(name.into(), value.into());
    }
    env
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn os(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn frame_overrides_the_image_and_airlock_wins() {
        let process = os(&[
            ("PATH", "/bin"),
            ("HOME", "/root"),
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("AIRLOCK_SANDBOX", "sbx"),
            (IDLE_VAR, "30"),
            (WRITABLE_VAR, "/tmp"),
            (CA_FILE_VAR, "/x"),
        ]);
        let frame = BTreeMap::from([
            ("HOME".to_owned(), "/home/agent".to_owned()),
            ("HTTPS_PROXY".to_owned(), "http://evil".to_owned()),
            ("NEW".to_owned(), "1".to_owned()),
        ]);
        let airlock = BTreeMap::from([
            ("AIRLOCK_SANDBOX".to_owned(), "sbx_frame".to_owned()),
            ("NO_PROXY".to_owned(), "airlock.internal".to_owned()),
        ]);
        let env = child_env(process, &frame, &airlock, &Rules::airlock(Vec::new()));
        let get = |n: &str| env.get(&OsString::from(n)).and_then(|v| v.to_str());
        assert_eq!(get("PATH"), Some("/bin"));
        assert_eq!(get("HOME"), Some("/home/agent"));
        assert_eq!(get("NEW"), Some("1"));
        assert_eq!(get("HTTPS_PROXY"), Some("http://proxy:3128"));
        assert_eq!(get("AIRLOCK_SANDBOX"), Some("sbx_frame"));
        assert_eq!(get("NO_PROXY"), Some("airlock.internal"));
        for own in OWN {
            assert_eq!(get(own), None, "{own}");
        }
    }
}
