//! The folder path rules on real directories: symlinks out and in, `..`, sibling prefixes,
//! files, overlaps, duplicates and a folder swapped after registration.

use std::os::unix::fs::symlink;

use super::*;

struct Tree {
    _dir: tempfile::TempDir,
    /// `<tmp>/data` (the root), realpath.
    root: PathBuf,
    /// `<tmp>`, realpath.
    base: PathBuf,
}

/// `<tmp>/data/{a,b/c,file}`, `<tmp>/data2/x`, `<tmp>/outside`.
fn tree() -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(dir.path()).unwrap();
    let root = base.join("data");
    for d in ["data/a", "data/b/c", "data2/x", "outside"] {
        std::fs::create_dir_all(base.join(d)).unwrap();
    }
    std::fs::write(root.join("file"), b"x").unwrap();
    Tree {
        _dir: dir,
        root,
        base,
    }
}

fn text(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

fn reg(name: &str, real: &Path) -> Registered {
    Registered {
        name: name.to_owned(),
        realpath: real.to_path_buf(),
    }
}

#[test]
fn a_directory_under_the_root_registers() {
    let t = tree();
    let real = register(&text(&t.root.join("a")), &t.root, &[]).unwrap();
    assert_eq!(real, t.root.join("a"));
    // A symlink inside the root to a directory inside the root stores the target.
    symlink(t.root.join("b/c"), t.root.join("link")).unwrap();
    let real = register(&text(&t.root.join("link")), &t.root, &[]).unwrap();
    assert_eq!(real, t.root.join("b/c"));
}

#[test]
fn each_rule_has_its_refusal() {
    let t = tree();
    symlink(t.base.join("outside"), t.root.join("out")).unwrap();
    symlink("/", t.root.join("slash")).unwrap();
    let dotdot = format!("{}/a/../a", t.root.display());
    let cases: Vec<(String, PathRefusal)> = vec![
        ("data/a".to_owned(), PathRefusal::NotAbsolute),
        (String::new(), PathRefusal::NotAbsolute),
        (dotdot, PathRefusal::Invalid),
        (format!("{}/a\0", t.root.display()), PathRefusal::Invalid),
        (format!("{}/a\n", t.root.display()), PathRefusal::Invalid),
        (
            format!("{}/a\u{7f}", t.root.display()),
            PathRefusal::Invalid,
        ),
        (text(&t.root.join("missing")), PathRefusal::NotFound),
        (text(&t.root.join("file/x")), PathRefusal::NotFound),
        (text(&t.root.join("file")), PathRefusal::NotDirectory),
        (text(&t.root.join("out")), PathRefusal::OutsideRoot),
        (text(&t.root.join("slash")), PathRefusal::OutsideRoot),
        (text(&t.base.join("outside")), PathRefusal::OutsideRoot),
        // The sibling with the root as a string prefix.
        (text(&t.base.join("data2/x")), PathRefusal::OutsideRoot),
        (text(&t.root), PathRefusal::IsRoot),
        (format!("{}/./", t.root.display()), PathRefusal::IsRoot),
    ];
    for (path, want) in cases {
        assert_eq!(register(&path, &t.root, &[]), Err(want), "{path:?}");
    }
}

#[test]
fn duplicates_and_overlaps_are_refused() {
    let t = tree();
    let b = t.root.join("b");
    let registered = [reg("bee", &b)];
    symlink(&b, t.root.join("alias")).unwrap();
    let dup = PathRefusal::Duplicate {
        folder: "bee".to_owned(),
    };
    let overlap = PathRefusal::Overlaps {
        folder: "bee".to_owned(),
    };
    assert_eq!(register(&text(&b), &t.root, &registered), Err(dup.clone()));
    assert_eq!(
        register(&text(&t.root.join("alias")), &t.root, &registered),
        Err(dup)
    );
    assert_eq!(
        register(&text(&b.join("c")), &t.root, &registered),
        Err(overlap)
    );
    let inner = [reg("sea", &b.join("c"))];
    let sea = PathRefusal::Overlaps {
        folder: "sea".to_owned(),
    };
    assert_eq!(register(&text(&b), &t.root, &inner), Err(sea));
    // `b` is a string prefix of `bb`, not a parent.
    std::fs::create_dir(t.root.join("bb")).unwrap();
    assert!(register(&text(&t.root.join("bb")), &t.root, &registered).is_ok());
    assert!(register(&text(&t.root.join("a")), &t.root, &registered).is_ok());
}

#[test]
fn a_swapped_folder_is_a_changed_path() {
    let t = tree();
    let path = t.root.join("a");
    let stored = register(&text(&path), &t.root, &[]).unwrap();
    assert_eq!(recheck(&text(&path), &stored, &t.root), Ok(stored.clone()));
    // Swapped for a symlink to a directory inside the root.
    std::fs::remove_dir(&path).unwrap();
    symlink(t.root.join("b"), &path).unwrap();
    assert_eq!(
        recheck(&text(&path), &stored, &t.root),
        Err(PathRefusal::Changed)
    );
    // Swapped for a symlink out of the root.
    std::fs::remove_file(&path).unwrap();
    symlink(t.base.join("outside"), &path).unwrap();
    assert_eq!(
        recheck(&text(&path), &stored, &t.root),
        Err(PathRefusal::OutsideRoot)
    );
    // Gone.
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        recheck(&text(&path), &stored, &t.root),
        Err(PathRefusal::Changed)
    );
    // Back as a fresh directory at the same path: the same realpath passes.
    std::fs::create_dir(&path).unwrap();
    assert_eq!(recheck(&text(&path), &stored, &t.root), Ok(stored));
}

#[test]
fn available_lists_directories_inside_the_root() {
    let t = tree();
    symlink(t.base.join("outside"), t.root.join("out")).unwrap();
    symlink(t.root.join("a"), t.root.join("in")).unwrap();
    let (found, cut) = available(&t.root).unwrap();
    let names: Vec<_> = found.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "in"]);
    assert_eq!(found[0].path, t.root.join("a"));
    assert!(!cut);
}

#[test]
fn codes_are_distinct() {
    let all = [
        PathRefusal::NotAbsolute,
        PathRefusal::Invalid,
        PathRefusal::NotFound,
        PathRefusal::NotDirectory,
        PathRefusal::OutsideRoot,
        PathRefusal::IsRoot,
        PathRefusal::Duplicate {
            folder: String::new(),
        },
        PathRefusal::Overlaps {
            folder: String::new(),
        },
        PathRefusal::Changed,
        PathRefusal::Unreadable(String::new()),
    ];
    let codes: std::collections::BTreeSet<_> = all.iter().map(PathRefusal::code).collect();
    assert_eq!(codes.len(), all.len());
}
