//! Volume names, requests and the quota check.

use super::*;

fn request(name: &str, size_mb: u64) -> VolumeRequest {
    VolumeRequest {
        name: name.to_owned(),
        size_mb,
        labels: BTreeMap::new(),
    }
}

fn fields(result: Result<VolumeSpec, Vec<FieldError>>) -> Vec<String> {
    result
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.field)
        .collect()
}

#[test]
fn names_follow_the_pattern() {
    let longest = "a".repeat(MAX_NAME);
    for good in ["repo", "0", "a.b_c-d", longest.as_str()] {
        assert_eq!(
            VolumeName::parse(good).map(|n| n.to_string()),
            Ok(good.to_owned())
        );
    }
    let too_long = "a".repeat(MAX_NAME + 1);
    for bad in [
        "",
        "-a",
        ".a",
        "_a",
        "Repo",
        "a b",
        "a/b",
        "ä",
        "a\0",
        too_long.as_str(),
    ] {
        assert!(VolumeName::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn requests_are_checked_field_by_field() {
    assert!(request("repo", 1024).validate(1024).is_ok());
    assert_eq!(
        fields(request("Repo", 0).validate(1024)),
        ["name", "size_mb"]
    );
    assert_eq!(fields(request("repo", 1025).validate(1024)), ["size_mb"]);
    let mut labelled = request("repo", 1);
    labelled.labels.insert("airlock.owner".into(), "x".into());
    assert_eq!(fields(labelled.validate(10)), ["labels.airlock.owner"]);
}

#[test]
fn docker_names_carry_the_id() {
    let id = VolumeId::new();
    assert_eq!(docker_name(id), format!("airlock-vol-{id}"));
    assert_ne!(docker_name(id), docker_name(VolumeId::new()));
}

#[test]
fn the_quota_counts_volumes_then_bytes() {
    let quota = VolumeQuota {
        max_volumes: 2,
        max_volume_bytes: 100 * MIB,
    };
    let usage = |volumes, mb: u64| VolumeUsage {
        volumes,
        bytes: mb * MIB,
    };
    assert!(check(&quota, &usage(1, 50), 50).is_ok());
    let count = check(&quota, &usage(2, 0), 1).unwrap_err();
    assert_eq!(count.kind, QuotaKind::MaxVolumes);
    let bytes = check(&quota, &usage(1, 60), 41).unwrap_err();
    assert_eq!(bytes.kind, QuotaKind::MaxVolumeBytes);
    assert!(check(
        &VolumeQuota::UNLIMITED,
        &usage(u64::MAX - 1, 1 << 30),
        1 << 20
    )
    .is_ok());
    let over = VolumeQuotaOverride {
        max_volumes: Some(7),
        max_volume_bytes: None,
    };
    assert_eq!(quota.with(&over).max_volumes, 7);
    assert_eq!(quota.with(&over).max_volume_bytes, 100 * MIB);
}

#[test]
fn quota_modes_round_trip() {
    for mode in QuotaMode::ALL {
        assert_eq!(mode.as_str().parse::<QuotaMode>().ok(), Some(mode));
    }
}
