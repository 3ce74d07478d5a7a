//! The controller's layout rules, checked by reading its sources, so a change that breaks one
//! fails here with the file and the line to look at:
//!
//! - the crate root holds only `main`, `lib`, `serve` and `cli`; everything else is a folder;
//! - no source file is over 500 lines, and every module opens with a `//!` doc;
//! - no import points upward (the layer table below, from pure types up to the binary);
//! - bollard appears only under `docker/`, and its calls only in `docker::client` (whose
//!   `bollard()` accessor is private to that module tree);
//! - the HTTP layer never holds the store or the Docker client: no `Store`, no
//!   `DockerClient`, no `.store()` or `.docker()` under `api/`;
//! - comments say why a line is there, never which issue added it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

/// The layers, lowest first. A module may import its own layer and the ones below, never one
/// above; within a layer only the domains (layer 3) import each other. The longest matching
/// prefix decides a module's layer.
const LAYERS: &[(&str, u8)] = &[
    // Pure domain types: no I/O, importable from everywhere.
    ("sandbox", 0),
    ("accounts::user", 0),
    ("accounts::quota", 0),
    ("accounts::credential", 0),
    ("egress::policy", 0),
    ("egress::ceilings", 0),
    ("egress::providers", 0),
    ("secrets::exposure", 0),
    ("images::allow", 0),
    ("metrics", 0),
    ("volume", 0),
    ("folder", 0),
    ("pool", 0),
    // Every `AIRLOCK_*` variable.
    ("config", 1),
    // The only SQL and the only Docker client.
    ("store", 2),
    ("docker", 2),
    // The domain services and their commands.
    ("audit", 3),
    ("accounts", 3),
    ("secrets", 3),
    ("images", 3),
    ("egress", 3),
    ("sandboxes", 3),
    ("volumes", 3),
    ("folders", 3),
    ("pool_config", 3),
    ("files", 3),
    // Wiring, and the loops beside the API.
    ("services", 4),
    ("reconcile", 4),
    // The doors: HTTP and the operator's commands.
    ("api", 5),
    ("ops", 5),
    // The binary.
    ("serve", 6),
    ("cli", 6),
    ("", 6),
];

/// The layers whose folders may import each other (types, and the domains); in every other
/// layer a folder stands alone.
const SHARED_LAYERS: [u8; 2] = [0, 3];

/// One source file.
struct Source {
    /// Path under `src/`, e.g. `accounts/users.rs`.
    path: String,
    /// Module path, e.g. `accounts::users`.
    module: String,
    /// The whole text.
    text: String,
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn sources() -> Vec<Source> {
    let mut files = Vec::new();
    walk(&src(), &mut files);
    files
        .into_iter()
        .map(|file| {
            let path = file
                .strip_prefix(src())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let text = fs::read_to_string(&file).unwrap();
            Source {
                module: module_of(&path),
                path,
                text,
            }
        })
        .collect()
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// `a/b/mod.rs` → `a::b`; `a/b.rs` → `a::b`; `lib.rs`, `main.rs` → the root.
fn module_of(path: &str) -> String {
    let path = path.trim_end_matches(".rs");
    let path = path.strip_suffix("/mod").unwrap_or(path);
    match path {
        "lib" | "main" => String::new(),
        other => other.replace('/', "::"),
    }
}

fn is_test_file(source: &Source) -> bool {
    source.path.ends_with("tests.rs")
}

/// The code before any `#[cfg(test)]` module, without comment lines.
fn code(source: &Source) -> Vec<(usize, &str)> {
    let body = source.text.split("#[cfg(test)]").next().unwrap_or("");
    body.lines()
        .enumerate()
        .map(|(n, line)| (n + 1, line))
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .collect()
}

fn layer(module: &str) -> u8 {
    LAYERS
        .iter()
        .filter(|(prefix, _)| {
            prefix.is_empty() || module == *prefix || module.starts_with(&format!("{prefix}::"))
        })
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, layer)| *layer)
        .unwrap_or(6)
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or("")
}

/// The modules a line names: `crate::a::b` paths, and `super::` paths resolved from `module`.
/// Only lower-case segments are modules; an item (`crate::store::Store`) names its module.
fn imports(module: &str, line: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in line.match_indices("crate::") {
        if line[..at].ends_with('$') {
            continue;
        }
        found.push(module_path(&line[at + "crate::".len()..], Vec::new()));
    }
    for (at, _) in line.match_indices("super::") {
        if line[..at].ends_with("super::") {
            continue;
        }
        let mut base: Vec<String> = module
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let mut rest = &line[at..];
        while let Some(tail) = rest.strip_prefix("super::") {
            base.pop();
            rest = tail;
        }
        found.push(module_path(rest, base));
    }
    found
}

/// The module a path starts with: its leading lower-case segments, up to an item, a glob, a
/// group or a call.
fn module_path(rest: &str, mut base: Vec<String>) -> String {
    for segment in rest.split("::") {
        let ident: String = segment
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let tail = &segment[ident.len()..];
        let lower = ident.starts_with(|c: char| c.is_ascii_lowercase() || c == '_');
        let called = tail.starts_with('(') || tail.starts_with('!');
        if !lower || ident == "self" || called {
            break;
        }
        base.push(ident);
        if !tail.is_empty() {
            break;
        }
    }
    base.join("::")
}

/// The longest prefix of `path` that is a module of the crate (a path may end in a
/// function or a constant).
fn known(path: &str, modules: &[&str]) -> String {
    let segments: Vec<&str> = path.split("::").collect();
    (0..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|candidate| modules.contains(&candidate.as_str()))
        .unwrap_or_default()
}

#[test]
fn the_crate_root_holds_only_the_entry_points() {
    let mut loose: Vec<String> = fs::read_dir(src())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    loose.sort();
    assert_eq!(loose, ["cli.rs", "lib.rs", "main.rs", "serve.rs"]);
}

#[test]
fn files_are_small_and_documented() {
    for source in sources() {
        let lines = source.text.lines().count();
        assert!(lines <= 500, "{}: {lines} lines (split it)", source.path);
        assert!(
            source.text.starts_with("//!"),
            "{}: a module opens with a `//!` doc saying what it is for",
            source.path
        );
    }
}

#[test]
fn no_import_points_upward() {
    let sources = sources();
    let modules: Vec<&str> = sources.iter().map(|s| s.module.as_str()).collect();
    let mut problems = Vec::new();
    for source in sources.iter().filter(|s| !is_test_file(s)) {
        let from = layer(&source.module);
        for (number, line) in code(source) {
            for target in imports(&source.module, line) {
                let target = known(&target, &modules);
                let to = layer(&target);
                let across = to == from
                    && !SHARED_LAYERS.contains(&from)
                    && top(&target) != top(&source.module)
                    && !target.is_empty();
                if to > from || across {
                    problems.push(format!(
                        "{}:{number}: `{}` (layer {from}) imports `{target}` (layer {to})",
                        source.path, source.module
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "upward imports:\n{}",
        problems.join("\n")
    );
}

#[test]
fn bollard_stays_in_docker() {
    for source in sources() {
        for (number, line) in code(&source) {
            if line.contains("bollard::") {
                assert!(
                    source.path.starts_with("docker/"),
                    "{}:{number}: bollard types belong under docker/",
                    source.path
                );
            }
            if line.contains(".bollard()") {
                assert!(
                    source.path.starts_with("docker/client/"),
                    "{}:{number}: bollard calls belong in docker::client",
                    source.path
                );
            }
        }
    }
}

#[test]
fn handlers_never_hold_the_store_or_docker() {
    let banned = [
        ".store()",
        ".docker()",
        "store::Store",
        "&Store",
        ": Store",
        "DockerClient",
    ];
    for source in sources().iter().filter(|s| s.path.starts_with("api/")) {
        for (number, line) in code(source) {
            for word in banned {
                let hit = line.match_indices(word).any(|(at, _)| {
                    let after = line[at + word.len()..].chars().next();
                    word.ends_with(')') || !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                assert!(
                    !hit,
                    "{}:{number}: the HTTP layer runs commands; it never holds `{word}`",
                    source.path
                );
            }
        }
    }
}

#[test]
fn comments_say_why_not_which_issue() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(&manifest.join("src"), &mut files);
    walk(&manifest.join("tests"), &mut files);
    files.push(manifest.join("Cargo.toml"));
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let lower = line.to_ascii_lowercase();
            let names_issue = lower.match_indices("issue ").any(|(at, _)| {
                lower[at + "issue ".len()..]
                    .trim_start_matches('#')
                    .starts_with(|c: char| c.is_ascii_digit())
            });
            assert!(!names_issue, "{}:{}: {line}", file.display(), number + 1);
        }
    }
}

#[test]
fn the_layer_table_reads_paths() {
    assert_eq!(module_of("accounts/mod.rs"), "accounts");
    assert_eq!(module_of("accounts/users.rs"), "accounts::users");
    assert_eq!(module_of("lib.rs"), "");
    assert_eq!(
        imports("accounts::users", "use crate::store::{NewUser, Store};"),
        ["store"]
    );
    assert_eq!(
        imports("accounts::users", "use super::credential::hash;"),
        ["accounts::credential::hash"]
    );
    let modules = ["accounts", "accounts::credential", ""];
    assert_eq!(
        known("accounts::credential::hash", &modules),
        "accounts::credential"
    );
    assert_eq!(
        imports(
            "docker::client::probe",
            "use super::{DockerClient, DockerError};"
        ),
        ["docker::client"]
    );
    assert_eq!(layer("accounts::user"), 0);
    assert_eq!(layer("accounts::users"), 3);
    assert_eq!(layer("store::tokens"), 2);
    assert_eq!(layer(""), 6);
}
