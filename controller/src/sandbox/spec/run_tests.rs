//! Request validation of the run settings: the workdir, the home, mounts and the user.

use super::tests::{max, one, problems, request};
use super::*;

#[test]
fn workdir_is_absolute_and_normalised() {
    let expected = crate::sandbox::path::EXPECTED_PATH;
    for bad in ["", "x", "/a/../b", "/a/", "/a//b", "/a/."] {
        let req = SandboxRequest {
            workdir: Some(bad.into()),
            ..request()
        };
        assert_eq!(
            problems(req),
            one("workdir", Problem::Malformed { expected }),
            "{bad:?}"
        );
    }
    let req = SandboxRequest {
        workdir: Some("/a\0b".into()),
        ..request()
    };
    assert_eq!(problems(req), one("workdir", Problem::ContainsNul));
}

#[test]
fn the_home_and_user_are_settled_at_create_and_never_root() {
    let spec = request().validate(&max()).unwrap();
    assert_eq!(spec.home(), None);
    let home = Home::Tmpfs { size_mb: 64 };
    let root = spec.clone().run_with(RunAs { uid: 0, gid: 0 }, home);
    assert_eq!(root.map_err(|e| e.problem), Err(Problem::Root));
    let spec = spec
        .run_with(
            RunAs {
                uid: 1000,
                gid: 1000,
            },
            home,
        )
        .unwrap();
    assert_eq!(spec.home(), Some(home));
    assert_eq!(spec.run_as().uid, 1000);
}

#[test]
fn the_workdir_defaults_to_the_first_mount_and_a_home_volume_is_a_mount() {
    use crate::sandbox::mounts::{MountRequest, MountSource};
    let req = SandboxRequest {
        mounts: vec![MountRequest {
            source: MountSource::Volume("repo".into()),
            target: "/workspace".into(),
            read_only: None,
        }],
        home_volume: Some("state".into()),
        ..request()
    };
    let spec = req.validate(&max()).unwrap();
    assert_eq!(spec.workdir().map(|w| w.as_str()), Some("/workspace"));
    assert_eq!(spec.home(), Some(Home::Volume));
    assert_eq!(spec.mounts().len(), 2);
    let spec = spec
        .run_with(
            RunAs {
                uid: 1000,
                gid: 1000,
            },
            Home::Tmpfs { size_mb: 1 },
        )
        .unwrap();
    assert_eq!(spec.home(), Some(Home::Volume), "a home volume is kept");
}
