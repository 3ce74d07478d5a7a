//! Every variable, its default and its issue, read through `Config::from_lookup`.

use std::collections::HashMap;

use std::str::FromStr;

use super::*;
use crate::sandbox::Cpus;

fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_lookup(|var| map.get(var).cloned())
}

fn issues(vars: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    load(vars)
        .unwrap_err()
        .issues
        .into_iter()
        .map(|issue| (issue.var, issue.value))
        .collect()
}

#[test]
fn defaults() {
    let config = load(&[]).unwrap();
    assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/airlock"));
    assert_eq!(
        config.database,
        DatabaseConfig::Sqlite {
            path: "/var/lib/airlock/airlock.db".into()
        }
    );
    assert_eq!(
        config.docker,
        DockerConfig::Tls {
            host: "127.0.0.1".into(),
            port: 2376,
            cert_dir: "/var/lib/airlock/certs/client".into()
        }
    );
    assert_eq!(
        config.sandbox_subnets,
        vec!["10.213.0.0/16".parse().unwrap()]
    );
    assert_eq!(config.admin_token, None);
    assert_eq!(config.maximums.limits.cpus, Cpus::from_millis(2000));
    assert_eq!(config.maximums.limits.memory_mb, 2048);
    assert_eq!(config.maximums.limits.pids, 1024);
    assert_eq!(config.maximums.limits.disk_mb, None);
    assert_eq!(config.maximums.timeout, Duration::from_secs(86_400));
    assert_eq!(config.maximums.default_timeout, Duration::from_secs(3600));
    assert_eq!(config.stop_grace, Duration::from_secs(10));
    assert_eq!(config.log_buffer_bytes, 1 << 20);
}

#[test]
fn valid_values() {
    let config = load(&[
        (ENV_LISTEN, "[::1]:9000"),
        (ENV_DATA_DIR, "/srv/airlock"),
        (ENV_SANDBOX_SUBNETS, "10.213.0.0/16, 172.30.0.0/29"),
        (ENV_ADMIN_TOKEN, "0123456789abcdef-token"),
        (ENV_MAX_CPUS, "0.5"),
        (ENV_MAX_MEMORY_MB, "512"),
        (ENV_MAX_PIDS, "64"),
        (ENV_MAX_DISK_MB, "1024"),
        (ENV_MAX_TIMEOUT, "2h"),
        (ENV_DEFAULT_TIMEOUT, "90m"),
        (ENV_STOP_GRACE, "500ms"),
        (ENV_LOG_BUFFER_BYTES, "4096"),
        (ENV_DOCKER_HOST, "tcp://dind:2376"),
    ])
    .unwrap();
    assert_eq!(config.listen, "[::1]:9000".parse().unwrap());
    assert_eq!(
        config.database,
        DatabaseConfig::Sqlite {
            path: "/srv/airlock/airlock.db".into()
        }
    );
    assert_eq!(config.sandbox_subnets.len(), 2);
    assert_eq!(
        config.admin_token.as_ref().map(Secret::expose),
        Some("0123456789abcdef-token")
    );
    assert_eq!(config.maximums.limits.cpus, Cpus::from_millis(500));
    assert_eq!(config.maximums.limits.disk_mb, Some(1024));
    assert_eq!(config.maximums.timeout, Duration::from_secs(7200));
    assert_eq!(config.maximums.default_timeout, Duration::from_secs(5400));
    assert_eq!(config.stop_grace, Duration::from_millis(500));
    assert_eq!(
        config.docker,
        DockerConfig::Tls {
            host: "dind".into(),
            port: 2376,
            cert_dir: "/srv/airlock/certs/client".into()
        }
    );
}

#[test]
fn database_urls() {
    let table: [(&str, Option<DatabaseConfig>); 7] = [
        (
            "postgres://u:p@db:5432/airlock?sslmode=require",
            Some(DatabaseConfig::Postgres {
                url: Secret::new("postgres://u:p@db:5432/airlock?sslmode=require"),
            }),
        ),
        (
            "postgresql://localhost/airlock",
            Some(DatabaseConfig::Postgres {
                url: Secret::new("postgresql://localhost/airlock"),
            }),
        ),
        (
            "sqlite:/tmp/a.db",
            Some(DatabaseConfig::Sqlite {
                path: "/tmp/a.db".into(),
            }),
        ),
        (
            "sqlite:///tmp/a.db",
            Some(DatabaseConfig::Sqlite {
                path: "/tmp/a.db".into(),
            }),
        ),
        ("sqlite:relative.db", None),
        ("mysql://db/airlock", None),
        ("/var/lib/airlock/x.db", None),
    ];
    for (url, want) in table {
        let got = load(&[(ENV_DATABASE_URL, url)]).map(|c| c.database);
        match want {
            Some(want) => assert_eq!(got.unwrap(), want, "{url}"),
            None => {
                let error = got.unwrap_err();
                assert_eq!(error.issues.len(), 1, "{url}");
                assert_eq!(error.issues[0].var, ENV_DATABASE_URL);
                assert_eq!(error.issues[0].value, "***", "the URL may hold a password");
            }
        }
    }
}

#[test]
fn docker_endpoints() {
    let tls = |host: &str, port| DockerConfig::Tls {
        host: host.into(),
        port,
        cert_dir: "/certs".into(),
    };
    let table: [(&str, &str, Option<DockerConfig>); 12] = [
        ("tcp://10.0.0.2:2376", "false", Some(tls("10.0.0.2", 2376))),
        (
            "tcp://dind.local:2376/",
            "no",
            Some(tls("dind.local", 2376)),
        ),
        ("tcp://[fd00::2]:2376", "0", Some(tls("fd00::2", 2376))),
        (
            "tcp://dind:2375",
            "true",
            Some(DockerConfig::InsecureTcp {
                host: "dind".into(),
                port: 2375,
            }),
        ),
        (
            "unix:///var/run/docker.sock",
            "1",
            Some(DockerConfig::InsecureUnix {
                path: "/var/run/docker.sock".into(),
            }),
        ),
        ("unix:///var/run/docker.sock", "false", None),
        ("unix://relative.sock", "true", None),
        ("tcp://dind", "false", None),
        ("tcp://dind:0", "false", None),
        ("tcp://fd00::2:2376", "false", None),
        ("http://dind:2376", "false", None),
        ("tcp://di nd:2376", "false", None),
    ];
    for (host, insecure, want) in table {
        let got = load(&[
            (ENV_DOCKER_HOST, host),
            (ENV_DOCKER_INSECURE, insecure),
            (ENV_DOCKER_CERT_PATH, "/certs"),
        ]);
        match want {
            Some(want) => assert_eq!(got.unwrap().docker, want, "{host}"),
            None => assert_eq!(
                issues(&[
                    (ENV_DOCKER_HOST, host),
                    (ENV_DOCKER_INSECURE, insecure),
                    (ENV_DOCKER_CERT_PATH, "/certs")
                ]),
                vec![(ENV_DOCKER_HOST, host.to_owned())],
                "{host}"
            ),
        }
    }
}

#[test]
fn durations() {
    let table = [
        ("30s", Some(Duration::from_secs(30))),
        ("5m", Some(Duration::from_secs(300))),
        ("1h", Some(Duration::from_secs(3600))),
        ("2d", Some(Duration::from_secs(172_800))),
        ("250ms", Some(Duration::from_millis(250))),
        ("0s", None),
        ("30", None),
        ("s", None),
        ("1.5h", None),
        ("-1s", None),
        ("1 h", None),
        ("1H", None),
        ("99999999999999999999s", None),
        ("999999999999999999d", None),
    ];
    for (text, want) in table {
        assert_eq!(parse_duration(text).ok(), want, "{text}");
    }
}

#[test]
fn subnet_pools() {
    let bad = [
        "10.213.0.0/30",
        "10.213.0.1/16",
        "fd00::/64",
        "10.213.0.0",
        "10.0.0.0/8,10.1.0.0/16",
        "10.0.0.0/16,",
        "nonsense",
    ];
    for value in bad {
        assert_eq!(
            issues(&[(ENV_SANDBOX_SUBNETS, value)]),
            vec![(ENV_SANDBOX_SUBNETS, value.to_owned())],
            "{value}"
        );
    }
    let config = load(&[(ENV_SANDBOX_SUBNETS, "10.0.0.0/29,10.0.0.8/29")]).unwrap();
    assert_eq!(config.sandbox_subnets.len(), 2);
}

#[test]
fn every_bad_variable_is_reported() {
    let got = issues(&[
        (ENV_LISTEN, "localhost"),
        (ENV_DATA_DIR, "relative"),
        (ENV_DATABASE_URL, "mysql://root:hunter2@db/x"),
        (ENV_DOCKER_INSECURE, "maybe"),
        (ENV_SANDBOX_SUBNETS, "10.0.0.0/30"),
        (ENV_ADMIN_TOKEN, "short"),
        (ENV_MAX_CPUS, "0"),
        (ENV_MAX_MEMORY_MB, "-1"),
        (ENV_MAX_PIDS, "many"),
        (ENV_MAX_DISK_MB, "0"),
        (ENV_MAX_TIMEOUT, "forever"),
        (ENV_DEFAULT_TIMEOUT, "1y"),
        (ENV_STOP_GRACE, "10"),
        (ENV_LOG_BUFFER_BYTES, "0"),
    ]);
    let want = [
        (ENV_LISTEN, "localhost"),
        (ENV_DATA_DIR, "relative"),
        (ENV_DATABASE_URL, "***"),
        (ENV_DOCKER_INSECURE, "maybe"),
        (ENV_SANDBOX_SUBNETS, "10.0.0.0/30"),
        (ENV_ADMIN_TOKEN, "***"),
        (ENV_MAX_CPUS, "0"),
        (ENV_MAX_MEMORY_MB, "-1"),
        (ENV_MAX_PIDS, "many"),
        (ENV_MAX_DISK_MB, "0"),
        (ENV_MAX_TIMEOUT, "forever"),
        (ENV_DEFAULT_TIMEOUT, "1y"),
        (ENV_STOP_GRACE, "10"),
        (ENV_LOG_BUFFER_BYTES, "0"),
    ];
    let want: Vec<_> = want.iter().map(|(v, x)| (*v, (*x).to_owned())).collect();
    assert_eq!(got, want);
}

#[test]
fn default_timeout_must_fit_the_maximum() {
    assert_eq!(
        issues(&[(ENV_MAX_TIMEOUT, "10m"), (ENV_DEFAULT_TIMEOUT, "1h")]),
        vec![(ENV_DEFAULT_TIMEOUT, "1h".to_owned())]
    );
    // The default default (1h) is checked too.
    assert_eq!(
        issues(&[(ENV_MAX_TIMEOUT, "10m")]),
        vec![(ENV_DEFAULT_TIMEOUT, "1h".to_owned())]
    );
}

#[test]
fn empty_values_mean_unset() {
    let config = load(&[(ENV_LISTEN, ""), (ENV_ADMIN_TOKEN, "")]).unwrap();
    assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(config.admin_token, None);
}

#[test]
fn secrets_never_print() {
    let config = load(&[
        (ENV_ADMIN_TOKEN, "super-secret-admin-token"),
        (
            ENV_DATABASE_URL,
            "postgres://u:hunter2@db/x?sslmode=disable",
        ),
    ])
    .unwrap();
    let shown = format!("{config:?}");
    assert!(!shown.contains("super-secret"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("***"));
}

#[test]
fn error_message() {
    let error = load(&[(ENV_LISTEN, "nope"), (ENV_ADMIN_TOKEN, "short")]).unwrap_err();
    expect_test::expect![[r#"
        invalid configuration (2 problem(s))
          AIRLOCK_LISTEN="nope": expected a socket address like 127.0.0.1:8080
          AIRLOCK_ADMIN_TOKEN="***": expected at least 16 characters without whitespace"#]]
    .assert_eq(&error.to_string());
}

// Accounts.
#[test]
fn bootstrap_admin_needs_both_variables() {
    assert_eq!(load(&[]).unwrap().bootstrap_admin, None);
    let both = load(&[
        (ENV_BOOTSTRAP_ADMIN_EMAIL, " Root@Example.org "),
        (ENV_BOOTSTRAP_ADMIN_PASSWORD, "a long enough password"),
    ])
    .unwrap();
    let admin = both.bootstrap_admin.unwrap();
    assert_eq!(admin.email, "root@example.org");
    assert_eq!(admin.password.expose(), "a long enough password");
    assert!(!format!("{admin:?}").contains("long enough"));
    let only_email = issues(&[(ENV_BOOTSTRAP_ADMIN_EMAIL, "root@example.org")]);
    assert_eq!(
        only_email,
        vec![(ENV_BOOTSTRAP_ADMIN_PASSWORD, "***".to_owned())]
    );
    let only_password = issues(&[(ENV_BOOTSTRAP_ADMIN_PASSWORD, "a long enough password")]);
    assert_eq!(
        only_password,
        vec![(ENV_BOOTSTRAP_ADMIN_EMAIL, String::new())]
    );
    let weak = issues(&[
        (ENV_BOOTSTRAP_ADMIN_EMAIL, "not-an-email"),
        (ENV_BOOTSTRAP_ADMIN_PASSWORD, "short"),
    ]);
    assert_eq!(
        weak,
        vec![
            (ENV_BOOTSTRAP_ADMIN_EMAIL, "not-an-email".to_owned()),
            (ENV_BOOTSTRAP_ADMIN_PASSWORD, "***".to_owned()),
        ]
    );
}

#[test]
fn reconcile_interval_defaults_to_the_reconciler_constant() {
    let config = load(&[]).unwrap();
    assert_eq!(config.reconcile_interval, DEFAULT_RECONCILE_INTERVAL);
    let config = load(&[(ENV_RECONCILE_INTERVAL_S, "3")]).unwrap();
    assert_eq!(config.reconcile_interval, Duration::from_secs(3));
    let config = load(&[(ENV_RECONCILE_INTERVAL_S, "86400")]).unwrap();
    assert_eq!(config.reconcile_interval, Duration::from_secs(86_400));
    for bad in ["0", "-1", "1.5", "10s", "86401", "soon"] {
        assert_eq!(
            issues(&[(ENV_RECONCILE_INTERVAL_S, bad)]),
            [(ENV_RECONCILE_INTERVAL_S, bad.to_owned())],
            "{bad}"
        );
    }
}

#[test]
fn postgres_tls_urls_parse_and_bad_options_are_config_errors() {
    for url in [
        "postgres://u:p@db/airlock?sslmode=require",
        "postgres://u@db:5432/airlock?sslmode=verify-full&sslrootcert=/etc/airlock/pg-ca.pem",
        "postgresql://db/airlock?sslmode=verify-ca",
        "postgres://u@127.0.0.1/airlock?sslmode=disable",
    ] {
        let config = load(&[(ENV_DATABASE_URL, url)]).unwrap();
        assert_eq!(
            config.database,
            DatabaseConfig::Postgres {
                url: Secret::new(url)
            }
        );
        // What the store hands sqlx: TLS modes are accepted at the connect-option level.
        sqlx::postgres::PgConnectOptions::from_str(url).unwrap();
    }
    // Off loopback, a URL must say how it uses TLS; on loopback the default is fine.
    for url in [
        "postgres://u@127.0.0.1:5432/airlock",
        "postgres://u@[::1]/airlock",
        "postgres://u@localhost/airlock",
        "postgres://u@db/airlock?application_name=x&sslmode=prefer",
    ] {
        assert!(load(&[(ENV_DATABASE_URL, url)]).is_ok(), "{url}");
    }
    for url in [
        "postgres://u@db/airlock?sslmode=sometimes",
        "postgres://u@db:notaport/airlock",
        "postgres://u@db/airlock",
        "postgres://u@10.0.0.5:5432/airlock?application_name=sslmode",
    ] {
        assert_eq!(
            issues(&[(ENV_DATABASE_URL, url)]),
            [(ENV_DATABASE_URL, "***".to_owned())],
            "{url}"
        );
    }
}

#[test]
fn images_default_to_no_list_and_a_list_requires_pins() {
    let config = load(&[]).unwrap();
    assert_eq!(config.images, ImagesConfig::default());
    assert_eq!(config.images.wait, Duration::from_secs(60));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("images.txt");
    let pin = format!("sha256:{}", "e".repeat(64));
    std::fs::write(&file, format!("# allowed\nairlock/probe:dev@{pin}\n")).unwrap();
    let file = file.display().to_string();
    let config = load(&[
        (ENV_IMAGES, "airlock/testbox:dev, busybox"),
        (ENV_IMAGES_FILE, &file),
        (ENV_BUNDLE_DIR, "/srv/bundles"),
        (ENV_REGISTRY, "registry.local:5000"),
        (ENV_IMAGE_WAIT, "5s"),
    ])
    .unwrap();
    let allow = config.images.allow.unwrap();
    assert!(allow.require_pinned);
    let shown: Vec<String> = allow.entries.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "airlock/testbox:dev".to_owned(),
            "busybox:latest".to_owned(),
            format!("airlock/probe:dev@{pin}")
        ]
    );
    assert_eq!(config.images.bundle_dir, Some("/srv/bundles".into()));
    assert_eq!(
        config.images.registry.as_deref(),
        Some("registry.local:5000")
    );
    assert_eq!(config.images.wait, Duration::from_secs(5));
    let unpinned = load(&[(ENV_IMAGES, "x:1"), (ENV_REQUIRE_PINNED, "no")]).unwrap();
    assert!(!unpinned.images.allow.unwrap().require_pinned);
}

#[test]
fn bad_image_variables_are_all_reported() {
    let found = issues(&[
        (ENV_IMAGES, "Bad Image"),
        (ENV_IMAGES_FILE, "/nonexistent/airlock-images.txt"),
        (ENV_BUNDLE_DIR, "relative/dir"),
        (ENV_REGISTRY, "https://registry/x"),
        (ENV_IMAGE_WAIT, "0s"),
    ]);
    let vars: Vec<&str> = found.iter().map(|(var, _)| *var).collect();
    assert_eq!(
        vars,
        [
            ENV_IMAGES,
            ENV_IMAGES_FILE,
            ENV_BUNDLE_DIR,
            ENV_REGISTRY,
            ENV_IMAGE_WAIT
        ]
    );
    // Requiring pins without a list is a mistake, not a silent no-op.
    assert_eq!(
        issues(&[(ENV_REQUIRE_PINNED, "true")]),
        [(ENV_REQUIRE_PINNED, "true".to_owned())]
    );
}
