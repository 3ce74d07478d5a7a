//! `airlock-egress check`, run as the built binary: one JSON line on stdout, exit 0 allow,
//! 1 deny (a malformed request line included), 2 bad flags. Every case uses `--no-dns` (or an
//! IP literal), so no network I/O.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test-only helpers.

use std::process::Command;

use serde_json::{json, Value};

fn check(args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_airlock-egress"))
        .arg("check")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let code = out.status.code().unwrap();
    let json = if code == 2 {
        Value::Null
    } else {
        assert_eq!(
            stdout.lines().count(),
            1,
            "one JSON line expected: {stdout:?}"
        );
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout:?} {stderr}"))
    };
    (code, json, stderr)
}

fn policy_file(dir: &tempfile::TempDir, policy: Value) -> String {
    let path = dir.path().join("policy.json");
    std::fs::write(&path, policy.to_string()).unwrap();
    path.display().to_string()
}

#[test]
fn allow_prints_the_design_json() {
    let (code, out, _) = check(&[
        "--no-dns",
        "--resolve",
        "example.com=93.184.216.34",
        "--",
        "GET http://example.com/path",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        json!({"decision":"allow","reason":"allowed","host":"example.com","port":80,
               "addr":"93.184.216.34:80"})
    );
}

#[test]
fn denials_exit_1_with_the_reason() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--no-dns", "--", "GET http://example.com/"],
            "dns_no_answer",
        ),
        (
            &["--no-dns", "--", "CONNECT 169.254.169.254:443"],
            "metadata",
        ),
        (
            &["--no-dns", "--", "CONNECT [::ffff:127.0.0.1]:443"],
            "loopback",
        ),
        (&["--no-dns", "--", "CONNECT 0x7f.1:443"], "loopback"),
        (
            &["--no-dns", "--", "CONNECT localhost:443"],
            "localhost_name",
        ),
        (
            &["--no-dns", "--", "CONNECT 93.184.216.34:22"],
            "port_not_allowed",
        ),
        (
            &[
                "--no-dns",
                "--resolve",
                "a.test=93.184.216.34,10.0.0.1",
                "--",
                "GET http://a.test/",
            ],
            "private",
        ),
        (
            &["--no-dns", "--", "GET http://user@example.com/"],
            "userinfo",
        ),
        (
            &["--no-dns", "--", "GET https://example.com/"],
            "bad_scheme",
        ),
        (&["--no-dns", "--", "GET /relative"], "origin_form"),
        (
            &[
                "--no-dns",
                "--resolve",
                "example.com=93.184.216.34",
                "--header",
                "Host: evil.com",
                "--",
                "GET http://example.com/",
            ],
            "host_mismatch",
        ),
    ];
    for (args, reason) in cases {
        let (code, out, stderr) = check(args);
        assert_eq!(code, 1, "{args:?}: {out} {stderr}");
        assert_eq!(out["decision"], "deny", "{args:?}");
        assert_eq!(out["reason"], *reason, "{args:?}: {out}");
    }
}

/// Every request line `serve` can receive gets `serve`'s verdict, the gate's refusals and the
/// method-case rule included: a malformed line is a deny, never a usage error.
#[test]
fn malformed_lines_are_denials_with_the_gates_reason() {
    let big = format!("X-Big: {}", "a".repeat(40 * 1024));
    let cases: &[(&[&str], &str)] = &[
        (&["--no-dns", "--", "GET"], "bad_target"),
        (
            &["--no-dns", "--", "GET http://a.test/ extra"],
            "bad_version",
        ),
        (
            &["--no-dns", "--", "GET http://a.test/ HTTP/2.0"],
            "bad_version",
        ),
        (&["--no-dns", "--", "connect a.test:443"], "bad_method"),
        (
            &["--no-dns", "--", "Connect a.test:443 HTTP/1.1"],
            "bad_method",
        ),
        (&["--no-dns", "--", "G(ET http://a.test/"], "bad_method"),
        (&["--no-dns", "--", "GET http://a.test/#frag"], "fragment"),
        (&["--no-dns", "--", "GET http://[::1%25lo]/"], "zone_id"),
        (
            &["--no-dns", "--header", &big, "--", "GET http://a.test/"],
            "header_too_large",
        ),
        (
            &[
                "--no-dns",
                "--header",
                "Content-Length: x",
                "--",
                "GET http://a.test/",
            ],
            "bad_header",
        ),
    ];
    for (args, reason) in cases {
        let (code, out, stderr) = check(args);
        assert_eq!(code, 1, "{args:?}: {out} {stderr}");
        assert_eq!(out["reason"], *reason, "{args:?}: {out}");
    }
}

#[test]
fn deny_cidrs_are_infrastructure_over_every_exception() {
    let dir = tempfile::tempdir().unwrap();
    let wide = policy_file(
        &dir,
        json!({"mode": "report", "allow_cidrs": ["10.0.0.0/8"], "allow_ports": [22, 443]}),
    );
    for target in ["CONNECT 10.213.0.3:22", "CONNECT [::ffff:10.213.0.3]:8080"] {
        let (code, out, _) = check(&[
            "--policy",
            &wide,
            "--allow-cidr",
            "10.0.0.0/8",
            "--deny-cidr",
            "10.213.0.0/16",
            "--no-dns",
            "--",
            target,
        ]);
        assert_eq!(
            (code, &out["reason"]),
            (1, &json!("infrastructure")),
            "{target}"
        );
    }
    let (code, out, _) = check(&[
        "--deny-cidr",
        "10.213.0.0/16",
        "--no-dns",
        "--resolve",
        "n.test=10.213.0.3",
        "--",
        "GET http://n.test/",
    ]);
    assert_eq!((code, &out["reason"]), (1, &json!("infrastructure")));
}

#[test]
fn operator_exceptions_and_policy_files_apply() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = check(&[
        "--no-dns",
        "--allow-cidr",
        "10.0.0.5/32",
        "--resolve",
        "internal.test=10.0.0.5",
        "--",
        "CONNECT internal.test:443",
    ]);
    assert_eq!(
        (code, out["addr"].as_str()),
        (0, Some("10.0.0.5:443")),
        "{out}"
    );

    let strict = policy_file(
        &dir,
        json!({"allow_domains": ["*.github.com"], "allow_ports": [443]}),
    );
    let (code, out, _) = check(&[
        "--policy",
        &strict,
        "--no-dns",
        "--resolve",
        "api.github.com=140.82.112.6",
        "--resolve",
        "example.com=93.184.216.34",
        "--",
        "CONNECT example.com:443",
    ]);
    assert_eq!(
        (code, out["reason"].as_str()),
        (1, Some("domain_not_allowed")),
        "{out}"
    );
    let (code, _, _) = check(&[
        "--policy",
        &strict,
        "--no-dns",
        "--resolve",
        "api.github.com=140.82.112.6",
        "--",
        "CONNECT api.github.com:443",
    ]);
    assert_eq!(code, 0);

    let report = policy_file(&dir, json!({"mode": "report", "allow_domains": ["a.test"]}));
    let (code, out, _) = check(&[
        "--policy",
        &report,
        "--no-dns",
        "--resolve",
        "b.test=93.184.216.34",
        "--",
        "GET http://b.test/",
    ]);
    assert_eq!(
        (code, out["decision"].as_str()),
        (0, Some("allow")),
        "{out}"
    );
    assert_eq!(out["reason"], "domain_not_allowed");
}

#[test]
fn bad_usage_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad_policy = policy_file(&dir, json!({"allow_domains": ["*.com"]}));
    for args in [
        &["--no-dns"][..],
        &[
            "--no-dns",
            "--deny-cidr",
            "10.0.0.0/99",
            "--",
            "GET http://a.test/",
        ][..],
        &[
            "--no-dns",
            "--resolve",
            "nonsense",
            "--",
            "GET http://a.test/",
        ][..],
        &[
            "--no-dns",
            "--allow-cidr",
            "10.0.0.0/99",
            "--",
            "GET http://a.test/",
        ][..],
        &[
            "--no-dns",
            "--header",
            "no-colon",
            "--",
            "GET http://a.test/",
        ][..],
        &[
            "--policy",
            &bad_policy,
            "--no-dns",
            "--",
            "GET http://a.test/",
        ][..],
        &[
            "--policy",
            "/nonexistent/policy.json",
            "--no-dns",
            "--",
            "GET http://a.test/",
        ][..],
        &["--bogus-flag", "--", "GET http://a.test/"][..],
    ] {
        let (code, _, stderr) = check(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(!stderr.is_empty());
    }
}

#[test]
fn serve_reports_every_bad_variable_and_exits_64() {
    let out = Command::new(env!("CARGO_BIN_EXE_airlock-egress"))
        .arg("serve")
        .env("AIRLOCK_EGRESS_LISTEN", "not-an-addr")
        .env("AIRLOCK_EGRESS_MODE", "chaos")
        .env("AIRLOCK_EGRESS_CONNECT_TIMEOUT", "ten")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8(out.stderr).unwrap();
    for var in [
        "AIRLOCK_EGRESS_LISTEN",
        "AIRLOCK_EGRESS_MODE",
        "AIRLOCK_EGRESS_CONNECT_TIMEOUT",
    ] {
        assert!(stderr.contains(var), "{var} missing from {stderr}");
    }
}

#[test]
fn serve_refuses_a_non_loopback_admin_api_without_tls() {
    let out = Command::new(env!("CARGO_BIN_EXE_airlock-egress"))
        .args(["serve", "--listen", "127.0.0.1:0", "--dns", "127.0.0.1:9"])
        .args(["--admin-listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("--admin-tls-dir is required"), "{stderr}");
}

#[test]
fn inner_requests_are_judged_by_the_endpoint_rules() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(
        &dir,
        json!({"allow_domains": ["api.anthropic.com"],
               "endpoints": [{"host": "api.anthropic.com", "tls": "terminate",
                 "credential": {"secret": "anthropic", "header": "x-api-key", "format": "{secret}"},
                 "rules": [{"methods": ["POST"], "paths": ["/v1/messages"]}]}]}),
    );
    let run = |inner: &str| {
        check(&[
            "--no-dns",
            "--policy",
            &policy,
            "--resolve",
            "api.anthropic.com=93.184.216.34",
            "--inner",
            inner,
            "--",
            "CONNECT api.anthropic.com:443",
        ])
    };
    let (code, out, _) = run("POST /v1//messages;x");
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["tls"], "terminate");
    assert_eq!(out["credential"], "anthropic");
    assert_eq!(
        out["inner"],
        json!({"path": "/v1/messages", "rule": "POST /v1/messages"})
    );
    let (code, out, _) = run("GET /v1/messages");
    assert_eq!((code, out["reason"].as_str()), (1, Some("rule_denied")));
    let (code, out, _) = run("POST /v1/%2e%2e/%2e%2e/x");
    assert_eq!((code, out["reason"].as_str()), (1, Some("path_escape")));
}
