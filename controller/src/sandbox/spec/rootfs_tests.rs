//! The root filesystem's rules: a writable root is accepted only with a disk limit.

use super::tests::{lim, max};
use super::*;

#[test]
fn a_writable_root_needs_a_disk_limit() {
    let fields = |disk_mb, max: &Maximums| {
        let req = SandboxRequest {
            image: "busybox".to_owned(),
            limits: lim(None, None, None, disk_mb),
            rootfs: RootFs::Writable,
            ..SandboxRequest::default()
        };
        req.validate(max)
            .map_or_else(|e| e.into_iter().map(|e| e.field).collect(), |_| vec![])
    };
    assert_eq!(fields(None, &max()), ["read_only_rootfs"]);
    assert!(fields(Some(100), &max()).is_empty());
    // Where the operator set no disk maximum, a writable root cannot be asked for at all.
    let no_disk = Maximums {
        limits: Limits {
            disk_mb: None,
            ..max().limits
        },
        ..max()
    };
    assert_eq!(
        fields(Some(100), &no_disk),
        ["limits.disk_mb", "read_only_rootfs"]
    );
}
