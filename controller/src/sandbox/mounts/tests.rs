//! Mount checks: targets, nesting, counts, folders and the home volume.

use super::*;

fn volume(name: &str, target: &str) -> MountRequest {
    MountRequest {
        source: MountSource::Volume(name.to_owned()),
        target: target.to_owned(),
        read_only: None,
    }
}

fn folder(name: &str, target: &str, read_only: Option<bool>) -> MountRequest {
    MountRequest {
        source: MountSource::Folder(name.to_owned()),
        target: target.to_owned(),
        read_only,
    }
}

fn problems(mounts: Vec<MountRequest>, home: Option<&str>) -> Vec<(String, Problem)> {
    check_mounts(mounts, home)
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.field, e.problem))
        .collect()
}

#[test]
fn good_mounts_pass_and_the_home_comes_last() {
    let mounts = vec![volume("repo", "/workspace"), volume("data", "/data/sets")];
    let checked = check_mounts(mounts, Some("state")).unwrap().volumes;
    let targets: Vec<_> = checked.iter().map(|m| m.target.as_str()).collect();
    assert_eq!(targets, ["/workspace", "/data/sets", "/home/agent"]);
    assert!(checked.iter().all(|m| m.bound.is_none() && !m.read_only));
}

#[test]
fn targets_are_refused_by_field() {
    let reserved = [
        "/",
        "/proc",
        "/proc/x",
        "/sys",
        "/dev/shm",
        "/etc",
        "/etc/ssl",
        "/run/airlock",
        "/run/airlock/x",
        "/run",
        "/tmp",
        "/tmp/x",
        "/home/agent",
        "/home/agent/.config",
        "/home",
    ];
    for target in reserved {
        assert_eq!(
            problems(vec![volume("a", target)], None),
            [("mounts[0].target".to_owned(), Problem::Reserved)],
            "{target}"
        );
    }
    for target in ["work", "/a/../b", "/a/", "//a", "/a\0"] {
        let found = problems(vec![volume("a", target)], None);
        assert_eq!(found.len(), 1, "{target}");
        assert_eq!(found[0].0, "mounts[0].target");
    }
    // `/etcetera` and `/procfs` are not under `/etc` or `/proc`.
    assert!(check_mounts(vec![volume("a", "/etcetera"), volume("b", "/procfs")], None).is_ok());
}

#[test]
fn duplicates_nesting_counts_and_folders() {
    let nested = problems(vec![volume("a", "/w"), volume("b", "/w/x")], None);
    assert_eq!(nested, [("mounts[1].target".to_owned(), Problem::Overlaps)]);
    let around = problems(vec![volume("a", "/w/x"), volume("b", "/w")], None);
    assert_eq!(around, [("mounts[1].target".to_owned(), Problem::Overlaps)]);
    let same = problems(vec![volume("a", "/w"), volume("b", "/w")], None);
    assert_eq!(same, [("mounts[1].target".to_owned(), Problem::Overlaps)]);
    let twice = problems(vec![volume("a", "/w"), volume("a", "/v")], None);
    assert_eq!(twice, [("mounts[1].volume".to_owned(), Problem::Duplicate)]);
    let home_twice = problems(vec![volume("a", "/w")], Some("a"));
    assert_eq!(home_twice, [("home.volume".to_owned(), Problem::Duplicate)]);
    let many: Vec<_> = (0..=MAX_MOUNTS)
        .map(|i| volume(&format!("v{i}"), &format!("/m{i}")))
        .collect();
    assert_eq!(
        problems(many, None),
        [("mounts".to_owned(), Problem::TooMany { max: MAX_MOUNTS })]
    );
    // Folders: checked like volumes, nested with them, never twice.
    let both = check_mounts(
        vec![volume("a", "/w"), folder("datasets", "/data", Some(true))],
        None,
    )
    .unwrap();
    assert_eq!(both.volumes.len(), 1);
    assert_eq!(both.folders.len(), 1);
    assert_eq!(both.folders[0].read_only, Some(true));
    let inside = problems(vec![volume("a", "/w"), folder("d", "/w/d", None)], None);
    assert_eq!(inside, [("mounts[1].target".to_owned(), Problem::Overlaps)]);
    let twice = problems(vec![folder("d", "/a", None), folder("d", "/b", None)], None);
    assert_eq!(twice, [("mounts[1].folder".to_owned(), Problem::Duplicate)]);
    let bad = problems(vec![folder("../etc", "/a", None)], None);
    assert_eq!(bad[0].0, "mounts[0].folder");
    let ambiguous = MountRequest {
        source: MountSource::Ambiguous,
        target: "/a".into(),
        read_only: None,
    };
    let found = problems(vec![ambiguous], None);
    assert_eq!(found[0].0, "mounts[0]");
    let bad_name = problems(vec![volume("Repo", "/w")], Some("-x"));
    let fields: Vec<_> = bad_name.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["mounts[0].volume", "home.volume"]);
}

#[test]
fn binding_names_the_first_missing_volume() {
    let mut mounts = check_mounts(vec![volume("repo", "/w"), volume("gone", "/g")], None)
        .unwrap()
        .volumes;
    let repo = VolumeName::parse("repo").unwrap();
    let bound = BoundVolume {
        id: VolumeId::new(),
        docker_name: "airlock-vol-x".into(),
    };
    let found = BTreeMap::from([(repo, bound.clone())]);
    let missing = bind(&mut mounts, &found).unwrap_err();
    assert_eq!(missing.as_str(), "gone");
    let gone = VolumeName::parse("gone").unwrap();
    let found = BTreeMap::from([(gone, bound.clone()), (mounts[0].volume.clone(), bound)]);
    assert!(bind(&mut mounts, &found).is_ok());
    assert!(mounts.iter().all(|m| m.bound.is_some()));
}
