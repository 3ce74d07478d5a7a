//! Every setting is reachable in the compose stack: each variable the controller's config
//! module declares (`pub const ENV_…: &str = "AIRLOCK_…"`) is listed in `compose/.env.example`
//! and is passed to the controller container, as `docker-compose config` renders the stack;
//! and a value written in the operator's `.env` reaches that container, with the shell winning
//! over the file. Needs `docker-compose` (or `docker compose`), but no daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The variables the controller reads: every `ENV_*` constant under `controller/src/config`.
fn controller_variables() -> BTreeSet<String> {
    let mut vars = BTreeSet::new();
    let dir = root().join("controller/src/config");
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            for line in fs::read_to_string(&path).unwrap().lines() {
                let line = line.trim();
                if let Some(rest) = line.strip_prefix("pub const ENV_") {
                    if let Some((_, value)) = rest.split_once("&str = \"") {
                        vars.insert(value.trim_end_matches("\";").to_owned());
                    }
                }
            }
        }
    }
    assert!(
        vars.len() > 40,
        "the scan found too few variables: {vars:?}"
    );
    vars
}

/// The names `compose/.env.example` lists (commented out at their defaults, or set).
fn example_variables() -> BTreeSet<String> {
    let text = fs::read_to_string(root().join("compose/.env.example")).unwrap();
    text.lines()
        .filter_map(|line| {
            let line = line.trim_start_matches('#').trim_start();
            let (name, _) = line.split_once('=')?;
            (name.starts_with("AIRLOCK_") || name == "RUST_LOG").then(|| name.to_owned())
        })
        .collect()
}

/// Runs `script` in bash after sourcing `scripts/compose-env.sh` with `env`, and a clean
/// environment otherwise (only `PATH`), so nothing of the caller's shell leaks in.
fn with_compose_env(home: &Path, env: &[(&str, &str)], script: &str) -> String {
    let root = root();
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(format!(
            "set -euo pipefail; ROOT={root}; source {root}/scripts/compose-env.sh; \
             compose_detect; {script}",
            root = root.display()
        ))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AIRLOCK_HOME", home);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("bash runs");
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The `airlock` service's environment in `compose config` output (block YAML, as both
/// Compose v1 and v2 print it).
fn controller_environment(config: &str) -> BTreeMap<String, String> {
    let mut lines = config.lines();
    lines
        .by_ref()
        .find(|l| *l == "  airlock:")
        .expect("an airlock service");
    let mut env = BTreeMap::new();
    let mut inside = false;
    for line in lines {
        let indent = line.len() - line.trim_start().len();
        if indent <= 2 && !line.trim().is_empty() {
            break;
        }
        if indent == 4 {
            inside = line.trim() == "environment:";
            continue;
        }
        if inside && indent == 6 {
            let (key, value) = line.trim().split_once(':').expect("KEY: value");
            let value = value.trim().trim_matches(|c| c == '\'' || c == '"');
            env.insert(key.to_owned(), value.to_owned());
        }
    }
    assert!(!env.is_empty(), "no environment found in:\n{config}");
    env
}

#[test]
fn every_controller_variable_is_listed_and_reaches_the_controller() {
    let home = tempfile::tempdir().unwrap();
    let vars = controller_variables();
    let example = example_variables();
    let unlisted: Vec<_> = vars.difference(&example).collect();
    assert!(
        unlisted.is_empty(),
        "compose/.env.example misses {unlisted:?}"
    );

    let config = with_compose_env(home.path(), &[], "compose config");
    let env = controller_environment(&config);
    let unpassed: Vec<_> = vars.iter().filter(|v| !env.contains_key(*v)).collect();
    assert!(
        unpassed.is_empty(),
        "the controller container does not receive {unpassed:?}"
    );

    // What the example lists beyond the controller's own variables is the stack's: each is
    // read by the compose file or by scripts/up.sh.
    let compose = fs::read_to_string(root().join("compose/docker-compose.yml")).unwrap();
    let up = fs::read_to_string(root().join("scripts/up.sh")).unwrap();
    for name in example.difference(&vars) {
        assert!(
            compose.contains(&format!("${{{name}")) || up.contains(name.as_str()),
            "{name} is listed in compose/.env.example but nothing reads it"
        );
    }
    eprintln!(
        "compose settings: {} controller variables, {} listed, {} passed",
        vars.len(),
        example.len(),
        env.len()
    );
}

#[test]
fn a_value_in_the_env_file_reaches_the_controller_and_the_shell_wins() {
    let home = tempfile::tempdir().unwrap();
    fs::write(
        home.path().join(".env"),
        "# AIRLOCK_MAX_CPUS=2   # commented out: the default\n\
         AIRLOCK_QUOTA_MAX_SANDBOXES=7          # a trailing comment\n\
         AIRLOCK_IMAGES=\"airlock/testbox:dev # quoted, so not a comment\"\n\
         export AIRLOCK_MAX_PIDS=512\n\
         AIRLOCK_STOP_GRACE=3s\n",
    )
    .unwrap();
    let config = with_compose_env(
        home.path(),
        &[("AIRLOCK_STOP_GRACE", "20s")],
        "compose config",
    );
    let env = controller_environment(&config);
    assert_eq!(env["AIRLOCK_QUOTA_MAX_SANDBOXES"], "7");
    assert_eq!(
        env["AIRLOCK_IMAGES"],
        "airlock/testbox:dev # quoted, so not a comment"
    );
    assert_eq!(env["AIRLOCK_MAX_PIDS"], "512");
    assert_eq!(
        env["AIRLOCK_MAX_CPUS"], "",
        "a commented line keeps the default"
    );
    assert_eq!(env["AIRLOCK_STOP_GRACE"], "20s", "the shell wins over .env");
}
