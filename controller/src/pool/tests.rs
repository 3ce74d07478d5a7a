//! The member state machine as a table, the key's hash, and pool validation naming fields.

use std::collections::HashSet;
use std::time::Duration;

use super::*;
use crate::sandbox::user::UidRanges;
use crate::sandbox::{Cpus, Limits, LimitsRequest, Problem, RootFs, RunAs};

use MemberState::{Claimed, Claiming, Destroying, Ready, Warming};

const EVENTS: [MemberEvent; 4] = [
    MemberEvent::Ready,
    MemberEvent::Claim,
    MemberEvent::Bound,
    MemberEvent::Destroy,
];

/// The whole table, written out.
fn expected(from: MemberState, event: MemberEvent) -> Option<MemberState> {
    match (from, event) {
        (Warming, MemberEvent::Ready) => Some(Ready),
        (Ready, MemberEvent::Claim) => Some(Claiming),
        (Claiming, MemberEvent::Bound) => Some(Claimed),
        (Warming | Ready | Claiming | Destroying, MemberEvent::Destroy) => Some(Destroying),
        (Claimed, MemberEvent::Destroy) => None,
        (_, MemberEvent::Ready | MemberEvent::Claim | MemberEvent::Bound) => None,
    }
}

#[test]
fn transition_table() {
    for from in MemberState::ALL {
        for event in EVENTS {
            let got = from.transition(event);
            match expected(from, event) {
                Some(to) => assert_eq!(got, Ok(to), "{from} + {}", event.name()),
                None => assert_eq!(
                    got,
                    Err(MemberTransitionError {
                        from,
                        event: event.name()
                    }),
                    "{from} + {}",
                    event.name()
                ),
            }
        }
    }
}

#[test]
fn only_a_ready_member_can_be_claimed_and_a_claimed_one_is_never_destroyed() {
    assert_eq!(MemberState::accepting(MemberEvent::Claim), vec![Ready]);
    assert_eq!(MemberState::accepting(MemberEvent::Ready), vec![Warming]);
    assert_eq!(MemberState::accepting(MemberEvent::Bound), vec![Claiming]);
    assert!(!MemberState::accepting(MemberEvent::Destroy).contains(&Claimed));
}

#[test]
fn every_state_that_accepts_an_event_goes_to_one_state() {
    // The store's fenced updates set one target state for the whole `IN (…)` list.
    for event in EVENTS {
        let targets: HashSet<MemberState> = MemberState::accepting(event)
            .into_iter()
            .filter_map(|from| from.transition(event).ok())
            .collect();
        assert_eq!(targets.len(), 1, "{}", event.name());
    }
}

#[test]
fn states_round_trip_their_spelling() {
    for state in MemberState::ALL {
        assert_eq!(state.as_str().parse::<MemberState>(), Ok(state));
    }
    assert!("idle".parse::<MemberState>().is_err());
}

fn key() -> PoolKey {
    PoolKey {
        image_digest: format!("sha256:{}", "a".repeat(64)),
        user: RunAs {
            uid: 1000,
            gid: 1000,
        },
        tty: false,
        rootfs: RootFs::ReadOnly,
    }
}

#[test]
fn the_key_hash_is_stable_and_tells_keys_apart() {
    let a = key();
    assert_eq!(a.hash(), key().hash());
    assert_eq!(a.hash().len(), POOL_KEY_HASH_LEN);
    assert_eq!(
        a.canonical(),
        format!("sha256:{}|1000:1000|notty|ro", "a".repeat(64))
    );
    let tty = PoolKey { tty: true, ..key() };
    let rw = PoolKey {
        rootfs: RootFs::Writable,
        ..key()
    };
    let user = PoolKey {
        user: RunAs::NOBODY,
        ..key()
    };
    for other in [tty, rw, user] {
        assert_ne!(a.hash(), other.hash());
    }
    assert!(PoolKey::is_image_digest(&a.image_digest));
    assert!(!PoolKey::is_image_digest("alpine:3"));
    assert!(!PoolKey::is_image_digest(&format!(
        "sha256:{}",
        "A".repeat(64)
    )));
}

fn max() -> Limits {
    Limits {
        cpus: Cpus::from_millis(2000),
        memory_mb: 2048,
        pids: 1024,
        disk_mb: None,
    }
}

fn uids() -> UidRanges {
    UidRanges::parse("1000-60000,65534").unwrap_or_else(|e| panic!("{e}"))
}

fn validate(request: PoolRequest) -> Result<PoolSpec, Vec<FieldError>> {
    request.validate(&PoolBounds {
        limits: max(),
        allowed_uids: uids(),
        max_volume_mb: 1024,
        allow: None,
    })
}

use crate::sandbox::FieldError;

#[test]
fn a_valid_pool_takes_defaults() {
    let spec = validate(PoolRequest {
        image: "airlock/testbox:dev".into(),
        size: Some(4),
        ..PoolRequest::default()
    })
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(spec.size, 4);
    assert_eq!(spec.user, None);
    assert_eq!(spec.max_idle, Duration::from_secs(DEFAULT_IDLE_S));
    assert_eq!(spec.shape, Limits::DEFAULT.capped(&max()));
    assert_eq!(spec.scratch_mb, None);
    let key = spec.key(&key().image_digest, RunAs::NOBODY);
    assert_eq!((key.tty, key.rootfs), (false, RootFs::ReadOnly));
}

#[test]
fn every_bad_field_is_named() {
    let errors = validate(PoolRequest {
        image: String::new(),
        user: Some("0:0".into()),
        size: Some(MAX_POOL_SIZE + 1),
        max_idle_s: Some(9),
        shape: LimitsRequest {
            cpus: Some(4.0),
            memory_mb: Some(1),
            pids: None,
            disk_mb: Some(10),
        },
        scratch_mb: Some(2048),
    })
    .err()
    .unwrap_or_default();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "image",
            "user",
            "size",
            "max_idle_s",
            "shape.cpus",
            "shape.memory_mb",
            "shape.disk_mb",
            "scratch_mb"
        ]
    );
    assert_eq!(errors[1].problem, Problem::Root);
}

#[test]
fn a_pool_cannot_have_a_disk_limit() {
    let errors = validate(PoolRequest {
        image: "airlock/testbox:dev".into(),
        size: Some(1),
        shape: LimitsRequest {
            disk_mb: Some(10),
            ..LimitsRequest::default()
        },
        ..PoolRequest::default()
    })
    .err()
    .unwrap_or_default();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["shape.disk_mb"]);
}

#[test]
fn size_is_required_and_bounded_and_users_are_checked() {
    let base = || PoolRequest {
        image: "airlock/testbox:dev".into(),
        size: Some(1),
        ..PoolRequest::default()
    };
    let missing = validate(PoolRequest {
        size: None,
        ..base()
    })
    .err()
    .unwrap_or_default();
    assert_eq!(missing[0].field, "size");
    assert_eq!(missing[0].problem, Problem::Required);
    let zero = validate(PoolRequest {
        size: Some(0),
        ..base()
    })
    .err()
    .unwrap_or_default();
    assert_eq!(zero[0].field, "size");
    assert!(validate(PoolRequest {
        size: Some(MAX_POOL_SIZE),
        ..base()
    })
    .is_ok());
    assert!(validate(PoolRequest {
        max_idle_s: Some(MAX_IDLE_S + 1),
        ..base()
    })
    .is_err());
    assert!(validate(PoolRequest {
        max_idle_s: Some(MIN_IDLE_S),
        ..base()
    })
    .is_ok());
    let named = validate(PoolRequest {
        user: Some("agent".into()),
        ..base()
    });
    assert_eq!(named.err().unwrap_or_default()[0].field, "user");
    let outside = validate(PoolRequest {
        user: Some("500".into()),
        ..base()
    });
    assert_eq!(outside.err().unwrap_or_default()[0].field, "user");
    let ok = validate(PoolRequest {
        user: Some("1000".into()),
        ..base()
    });
    assert_eq!(
        ok.ok().and_then(|s| s.user),
        Some(RunAs {
            uid: 1000,
            gid: 1000
        })
    );
}

#[test]
fn the_total_and_duplicates_are_checked_together() {
    let pool = |image: &str, size| {
        validate(PoolRequest {
            image: image.into(),
            size: Some(size),
            ..PoolRequest::default()
        })
        .unwrap_or_else(|e| panic!("{e:?}"))
    };
    assert!(check_total(&[pool("a:1", 64), pool("b:1", 64)]).is_empty());
    let many: Vec<PoolSpec> = (0..5).map(|i| pool(&format!("i{i}:1"), 64)).collect();
    let errors = check_total(&many);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field, "");
    let errors = check_total(&[pool("a:1", 1), pool("b:1", 1), pool("a:1", 1)]);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field, "[2].image");
    assert_eq!(errors[0].problem, Problem::Duplicate);
}
