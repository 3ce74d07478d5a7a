//! Request validation: every field's problems, named by path.

use super::*;
use crate::sandbox::MAX_IMAGE_REF;

pub(super) fn max() -> Maximums {
    Maximums {
        limits: Limits {
            cpus: Cpus::from_millis(4000),
            memory_mb: 4096,
            pids: 1024,
            disk_mb: Some(10_240),
        },
        timeout: Duration::from_secs(3600),
        default_timeout: Duration::from_secs(600),
    }
}

pub(super) fn request() -> SandboxRequest {
    SandboxRequest {
        image: "testbox:latest".into(),
        ..SandboxRequest::default()
    }
}

pub(super) type Found = Vec<(String, Problem)>;

pub(super) fn problems(req: SandboxRequest) -> Found {
    match req.validate(&max()) {
        Ok(spec) => panic!("expected errors, got {spec:?}"),
        Err(errors) => errors.into_iter().map(|e| (e.field, e.problem)).collect(),
    }
}

fn found(req: SandboxRequest) -> Found {
    let errors = req.validate(&max()).err().unwrap_or_default();
    errors.into_iter().map(|e| (e.field, e.problem)).collect()
}

pub(super) fn one(field: &str, problem: Problem) -> Found {
    vec![(field.to_owned(), problem)]
}

pub(super) fn lim(
    cpus: Option<f64>,
    memory_mb: Option<u64>,
    pids: Option<u64>,
    disk: Option<u64>,
) -> LimitsRequest {
    LimitsRequest {
        cpus,
        memory_mb,
        pids,
        disk_mb: disk,
    }
}

#[test]
fn minimal_request_gets_defaults() {
    let spec = request().validate(&max()).unwrap();
    assert_eq!(spec.image().as_str(), "testbox:latest");
    assert_eq!(spec.limits(), &Limits::DEFAULT);
    assert_eq!(spec.timeout(), Duration::from_secs(600));
    assert_eq!(spec.idle_timeout(), None);
    assert_eq!(spec.rootfs(), RootFs::ReadOnly);
    assert_eq!(spec.run_as(), RunAs::NOBODY);
}

#[test]
fn defaults_are_capped_at_small_maximums() {
    let mut small = max();
    small.limits = Limits {
        cpus: Cpus::from_millis(500),
        memory_mb: 128,
        pids: 64,
        disk_mb: None,
    };
    let spec = request().validate(&small).unwrap();
    assert_eq!(spec.limits(), &small.limits);
}

#[test]
fn full_request_is_kept() {
    let req = SandboxRequest {
        image: "registry.local:5000/team/agent@sha256:".to_owned() + &"a".repeat(64),
        cmd: vec!["python".into(), "-c".into(), "print(1)".into()],
        env: vec![("A".into(), "1".into()), ("_b2".into(), String::new())],
        limits: lim(Some(0.5), Some(4096), Some(8), Some(100)),
        timeout: Some(Duration::from_secs(3600)),
        idle_timeout: Some(Duration::from_secs(60)),
        labels: BTreeMap::from([("team".into(), "ml".into())]),
        rootfs: RootFs::Writable,
        run_as: Some(RunAs { uid: 1000, gid: 0 }),
        workdir: Some("/workspace/repo".into()),
        mounts: Vec::new(),
        home_volume: None,
    };
    let spec = req.clone().validate(&max()).unwrap();
    assert_eq!(spec.cmd(), req.cmd.as_slice());
    assert_eq!(spec.env()[1].name(), "_b2");
    assert_eq!(spec.limits().cpus, Cpus::from_millis(500));
    assert_eq!(spec.limits().disk_mb, Some(100));
    assert_eq!(spec.labels(), &req.labels);
    assert_eq!(spec.rootfs(), RootFs::Writable);
    assert_eq!(spec.run_as().uid, 1000);
    assert_eq!(spec.workdir().map(|w| w.as_str()), Some("/workspace/repo"));
}

#[test]
fn image_references() {
    let hex = "0123456789abcdef".repeat(4);
    let good = [
        "busybox".to_owned(),
        "busybox:1.36".into(),
        "library/busybox:latest".into(),
        "localhost/agent".into(),
        "localhost:5000/agent:v1".into(),
        "registry.example.com/a/b/c:tag_1.2-x".into(),
        format!("sha256:{hex}"),
        format!("agent@sha256:{hex}"),
        format!("agent:v1@sha256:{hex}"),
        "a.b-c_d".into(),
    ];
    for image in good {
        assert!(ImageRef::parse(&image).is_ok(), "{image}");
    }
    let malformed = [
        "Busybox".to_owned(),
        "busybox:".into(),
        "busybox:-x".into(),
        "bad image".into(),
        "/busybox".into(),
        "busybox/".into(),
        "a//b".into(),
        "a..b".into(),
        "-a".into(),
        "agent@sha256:abc".into(),
        format!("agent@md5:{hex}"),
        format!("sha256:{}", hex.to_uppercase()),
        "host:port/x".into(),
        "x:".to_owned() + &"t".repeat(129),
        "busybox\0".into(),
        "busybox\n".into(),
    ];
    for image in malformed {
        assert!(
            matches!(ImageRef::parse(&image), Err(Problem::Malformed { .. })),
            "{image:?}"
        );
    }
    assert_eq!(ImageRef::parse(""), Err(Problem::Required));
    assert_eq!(
        ImageRef::parse(&"a".repeat(MAX_IMAGE_REF + 1)),
        Err(Problem::TooLong { max: MAX_IMAGE_REF })
    );
    assert!(ImageRef::parse(&"a".repeat(MAX_IMAGE_REF)).is_ok());
}

#[test]
fn cmd_bounds() {
    let cases: Vec<(Vec<String>, Found)> = vec![
        (vec!["x".into(); MAX_CMD_ARGS], vec![]),
        (
            vec!["x".into(); MAX_CMD_ARGS + 1],
            one("cmd", Problem::TooMany { max: MAX_CMD_ARGS }),
        ),
        (vec!["x".repeat(MAX_CMD_BYTES)], vec![]),
        (
            vec!["x".repeat(MAX_CMD_BYTES), "y".into()],
            one("cmd", Problem::TooLong { max: MAX_CMD_BYTES }),
        ),
        (
            vec!["ok".into(), "a\0b".into()],
            one("cmd[1]", Problem::ContainsNul),
        ),
    ];
    for (cmd, want) in cases {
        assert_eq!(found(SandboxRequest { cmd, ..request() }), want);
    }
}

#[test]
fn env_names_and_values() {
    let malformed = Problem::Malformed {
        expected: "a name of letters, digits and `_`, not starting with a digit",
    };
    let cases: Vec<(Vec<(&str, &str)>, Found)> = vec![
        (vec![("PATH", "/bin"), ("_x1", "")], vec![]),
        (vec![("", "v")], one("env[0].name", malformed.clone())),
        (vec![("1A", "v")], one("env[0].name", malformed.clone())),
        (vec![("A-B", "v")], one("env[0].name", malformed.clone())),
        (vec![("A=B", "v")], one("env[0].name", malformed.clone())),
        (vec![("É", "v")], one("env[0].name", malformed)),
        (
            vec![("HTTP_PROXY", "x")],
            one("env[0].name", Problem::Reserved),
        ),
        (
            vec![("no_proxy", "x")],
            one("env[0].name", Problem::Reserved),
        ),
        (
            vec![("DOCKER_HOST", "x")],
            one("env[0].name", Problem::Reserved),
        ),
        (
            vec![("AIRLOCK_X", "x")],
            one("env[0].name", Problem::Reserved),
        ),
        (
            vec![("A", "1"), ("A", "2")],
            one("env[1].name", Problem::Duplicate),
        ),
        (
            vec![("A", "a\0")],
            one("env[0].value", Problem::ContainsNul),
        ),
    ];
    for (env, want) in cases {
        let env = env
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(found(SandboxRequest { env, ..request() }), want);
    }
}

#[test]
fn env_totals() {
    let many: Vec<_> = (0..=MAX_ENV_VARS)
        .map(|i| (format!("V{i}"), String::new()))
        .collect();
    let req = SandboxRequest {
        env: many,
        ..request()
    };
    assert_eq!(
        problems(req),
        one("env", Problem::TooMany { max: MAX_ENV_VARS })
    );
    let big = vec![("A".to_owned(), "x".repeat(MAX_ENV_BYTES))];
    let req = SandboxRequest {
        env: big,
        ..request()
    };
    assert_eq!(
        problems(req),
        one("env", Problem::TooLong { max: MAX_ENV_BYTES })
    );
}

#[test]
fn limits_within_bounds() {
    let above = |max: &str| Problem::AboveMaximum { max: max.into() };
    let below = |min: &str| Problem::BelowMinimum { min: min.into() };
    let bad_cpus = Problem::Malformed {
        expected: "a positive number of CPUs",
    };
    let cases: Vec<(LimitsRequest, Found)> = vec![
        (lim(Some(4.0), None, None, None), vec![]),
        (lim(Some(0.01), None, None, None), vec![]),
        (
            lim(Some(4.001), None, None, None),
            one("limits.cpus", above("4")),
        ),
        (
            lim(Some(0.009), None, None, None),
            one("limits.cpus", below("0.01")),
        ),
        (
            lim(Some(0.0), None, None, None),
            one("limits.cpus", bad_cpus.clone()),
        ),
        (
            lim(Some(-1.0), None, None, None),
            one("limits.cpus", bad_cpus.clone()),
        ),
        (
            lim(Some(f64::NAN), None, None, None),
            one("limits.cpus", bad_cpus.clone()),
        ),
        (
            lim(Some(f64::INFINITY), None, None, None),
            one("limits.cpus", bad_cpus),
        ),
        (lim(None, Some(4096), None, None), vec![]),
        (
            lim(None, Some(4097), None, None),
            one("limits.memory_mb", above("4096")),
        ),
        (
            lim(None, Some(5), None, None),
            one("limits.memory_mb", below("6")),
        ),
        (lim(None, None, Some(1024), None), vec![]),
        (
            lim(None, None, Some(1025), None),
            one("limits.pids", above("1024")),
        ),
        (
            lim(None, None, Some(7), None),
            one("limits.pids", below("8")),
        ),
        (lim(None, None, None, Some(10_240)), vec![]),
        (
            lim(None, None, None, Some(10_241)),
            one("limits.disk_mb", above("10240")),
        ),
        (
            lim(None, None, None, Some(0)),
            one("limits.disk_mb", below("1")),
        ),
        (
            lim(Some(9.0), Some(1 << 40), Some(0), None),
            vec![
                ("limits.cpus".into(), above("4")),
                ("limits.memory_mb".into(), above("4096")),
                ("limits.pids".into(), below("8")),
            ],
        ),
    ];
    for (limits, want) in cases {
        assert_eq!(
            found(SandboxRequest {
                limits,
                ..request()
            }),
            want,
            "{limits:?}"
        );
    }
}

#[test]
fn disk_limit_needs_an_operator_maximum() {
    let mut no_disk = max();
    no_disk.limits.disk_mb = None;
    let req = SandboxRequest {
        limits: lim(None, None, None, Some(1)),
        ..request()
    };
    let errors = req.validate(&no_disk).unwrap_err();
    assert_eq!(errors[0].field, "limits.disk_mb");
    assert!(matches!(errors[0].problem, Problem::AboveMaximum { .. }));
}

#[test]
fn timeouts() {
    let s = Duration::from_secs;
    let above = |max: &str| Problem::AboveMaximum { max: max.into() };
    let below = Problem::BelowMinimum { min: "1s".into() };
    let cases: Vec<(Option<Duration>, Option<Duration>, Found)> = vec![
        (None, None, vec![]),
        (Some(s(3600)), Some(s(3600)), vec![]),
        (Some(s(1)), Some(s(1)), vec![]),
        (Some(s(3601)), None, one("timeout_s", above("3600s"))),
        (Some(s(0)), None, one("timeout_s", below.clone())),
        (
            Some(Duration::from_millis(999)),
            None,
            one("timeout_s", below.clone()),
        ),
        (None, Some(s(0)), one("idle_timeout_s", below)),
        (None, Some(s(601)), one("idle_timeout_s", above("600s"))),
        (
            Some(s(10)),
            Some(s(11)),
            one("idle_timeout_s", above("10s")),
        ),
    ];
    for (timeout, idle_timeout, want) in cases {
        let req = SandboxRequest {
            timeout,
            idle_timeout,
            ..request()
        };
        assert_eq!(found(req), want, "{timeout:?} {idle_timeout:?}");
    }
}

#[test]
fn labels() {
    let cases: Vec<(&str, String, Option<Problem>)> = vec![
        ("team", "ml".into(), None),
        ("example.com/owner-x_y", String::new(), None),
        ("airlockish", "v".into(), None),
        ("airlock.sandbox.id", "x".into(), Some(Problem::Reserved)),
        ("airlock.", "x".into(), Some(Problem::Reserved)),
        ("AIRLOCK.node", "x".into(), Some(Problem::Reserved)),
        ("Airlock.Generation", "x".into(), Some(Problem::Reserved)),
        ("", "x".into(), Some(Problem::Required)),
        (
            "has space",
            "x".into(),
            Some(Problem::Malformed {
                expected: "letters, digits, `.`, `_`, `-` and `/`",
            }),
        ),
        ("v", "x".repeat(MAX_LABEL_VALUE), None),
        (
            "v",
            "x".repeat(MAX_LABEL_VALUE + 1),
            Some(Problem::TooLong {
                max: MAX_LABEL_VALUE,
            }),
        ),
        ("v", "a\0".into(), Some(Problem::ContainsNul)),
    ];
    for (key, value, want) in cases {
        let req = SandboxRequest {
            labels: BTreeMap::from([(key.to_owned(), value)]),
            ..request()
        };
        let want: Found = want
            .into_iter()
            .map(|p| (format!("labels.{key}"), p))
            .collect();
        assert_eq!(found(req), want, "{key}");
    }
    let long_key = "k".repeat(MAX_LABEL_KEY + 1);
    let req = SandboxRequest {
        labels: BTreeMap::from([(long_key.clone(), String::new())]),
        ..request()
    };
    assert_eq!(
        problems(req),
        one(
            &format!("labels.{long_key}"),
            Problem::TooLong { max: MAX_LABEL_KEY }
        )
    );
    let many = (0..=MAX_LABELS).map(|i| (format!("l{i}"), String::new()));
    let req = SandboxRequest {
        labels: many.collect(),
        ..request()
    };
    assert_eq!(
        problems(req),
        one("labels", Problem::TooMany { max: MAX_LABELS })
    );
}

#[test]
fn root_is_refused() {
    let req = SandboxRequest {
        run_as: Some(RunAs { uid: 0, gid: 0 }),
        ..request()
    };
    assert_eq!(problems(req), one("run_as", Problem::Root));
}

#[test]
fn every_problem_is_reported_at_once() {
    let req = SandboxRequest {
        image: String::new(),
        cmd: vec!["\0".into()],
        env: vec![("1".into(), String::new())],
        limits: lim(None, None, Some(1), None),
        timeout: Some(Duration::ZERO),
        idle_timeout: None,
        labels: BTreeMap::from([("airlock.x".into(), String::new())]),
        rootfs: RootFs::ReadOnly,
        run_as: Some(RunAs { uid: 0, gid: 0 }),
        workdir: Some("relative".into()),
        mounts: vec![crate::sandbox::mounts::MountRequest {
            source: crate::sandbox::mounts::MountSource::Volume("repo".into()),
            target: "/proc".into(),
            read_only: None,
        }],
        home_volume: None,
    };
    let fields: Vec<_> = problems(req).into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        [
            "image",
            "cmd[0]",
            "env[0].name",
            "limits.pids",
            "timeout_s",
            "labels.airlock.x",
            "run_as",
            "workdir",
            "mounts[0].target"
        ]
    );
}

#[test]
fn problem_messages() {
    let error = FieldError {
        field: "limits.cpus".into(),
        problem: Problem::AboveMaximum { max: "4".into() },
    };
    expect_test::expect!["limits.cpus: must be at most 4 (operator maximum)"]
        .assert_eq(&error.to_string());
}
