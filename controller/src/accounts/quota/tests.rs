//! Unit tests of the pure quota check.

use super::*;
use crate::sandbox::{Limits, LimitsRequest, Maximums, SandboxRequest};

fn spec(memory_mb: u64, cpus: f64, timeout_s: u64) -> SandboxSpec {
    let max = Maximums {
        limits: Limits {
            cpus: Cpus::from_millis(8000),
            memory_mb: 8192,
            pids: 1024,
            disk_mb: None,
        },
        timeout: Duration::from_secs(86_400),
        default_timeout: Duration::from_secs(3600),
    };
    SandboxRequest {
        image: "alpine:3".into(),
        limits: LimitsRequest {
            cpus: Some(cpus),
            memory_mb: Some(memory_mb),
            ..LimitsRequest::default()
        },
        timeout: Some(Duration::from_secs(timeout_s)),
        ..SandboxRequest::default()
    }
    .validate(&max)
    .unwrap()
}

const QUOTA: Quota = Quota {
    max_sandboxes: 2,
    max_memory_mb: 1024,
    max_cpus: Cpus::from_millis(2000),
    max_lifetime: Duration::from_secs(3600),
    creates_per_min: 3,
    creates_per_hour: 5,
};

#[test]
fn each_quota_refuses_just_past_its_limit() {
    let ok = spec(512, 1.0, 3600);
    let empty = Usage::default();
    assert_eq!(check(&QUOTA, &empty, &ok), Ok(()));
    let kind = |usage: Usage, spec: &SandboxSpec| check(&QUOTA, &usage, spec).err().map(|e| e.kind);
    assert_eq!(
        kind(empty, &spec(512, 1.0, 3601)),
        Some(QuotaKind::MaxLifetime)
    );
    let two = Usage {
        sandboxes: 2,
        ..empty
    };
    assert_eq!(kind(two, &ok), Some(QuotaKind::MaxSandboxes));
    let mem = Usage {
        sandboxes: 1,
        memory_mb: 513,
        ..empty
    };
    assert_eq!(kind(mem, &ok), Some(QuotaKind::MaxMemoryMb));
    let mem_ok = Usage {
        memory_mb: 512,
        ..mem
    };
    assert_eq!(kind(mem_ok, &ok), None);
    let cpus = Usage {
        cpus_milli: 1001,
        ..empty
    };
    assert_eq!(kind(cpus, &ok), Some(QuotaKind::MaxCpus));
    let rate = Usage {
        recent_creates: 3,
        rate_resets_in: Duration::from_millis(10),
        ..empty
    };
    let refused = check(&QUOTA, &rate, &ok).unwrap_err();
    assert_eq!(refused.kind, QuotaKind::CreatesPerMin);
    assert_eq!(refused.retry_after, Some(Duration::from_secs(1)));
    let hour = Usage {
        recent_creates: 1,
        hour_creates: 5,
        hour_resets_in: Duration::from_secs(1800),
        ..empty
    };
    let refused = check(&QUOTA, &hour, &ok).unwrap_err();
    assert_eq!(refused.kind, QuotaKind::CreatesPerHour);
    assert_eq!(refused.limit, Amount::Whole(5));
    assert_eq!(refused.retry_after, Some(Duration::from_secs(1800)));
    let under = Usage {
        hour_creates: 4,
        ..hour
    };
    assert_eq!(check(&QUOTA, &under, &ok), Ok(()));
}

#[test]
fn unlimited_never_refuses() {
    let heavy = Usage {
        sandboxes: 10_000,
        memory_mb: 1 << 40,
        cpus_milli: 1 << 40,
        recent_creates: 1 << 20,
        rate_resets_in: Duration::ZERO,
        hour_creates: 1 << 20,
        hour_resets_in: Duration::ZERO,
    };
    assert_eq!(
        check(&Quota::UNLIMITED, &heavy, &spec(8192, 8.0, 86_400)),
        Ok(())
    );
}

#[test]
fn overrides_replace_only_what_they_set() {
    let over = QuotaOverride {
        max_sandboxes: Some(5),
        ..QuotaOverride::default()
    };
    let quota = QUOTA.with(&over);
    assert_eq!(quota.max_sandboxes, 5);
    assert_eq!(quota.max_memory_mb, QUOTA.max_memory_mb);
}

#[test]
fn amounts_render_as_json_numbers() {
    assert_eq!(Amount::Whole(5).to_json().to_string(), "5");
    assert_eq!(Amount::CpusMilli(1500).to_json().to_string(), "1.5");
}
