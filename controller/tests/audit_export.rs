//! `airlock admin audit export`, the binary: it streams a time range of the trail to stdout
//! as JSON lines, oldest first, across more rows than one page; `--until` bounds it; a bad
//! time or format is refused by the argument parser (exit 2) naming what it wanted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use airlock::config::{DatabaseConfig, DEFAULT_SQLITE_FILE};
use airlock::store::{NewAuditRecord, Store};
use serde_json::Value;

/// More than one page (500 rows).
const ROWS: usize = 1_203;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_streams_a_range_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let config = DatabaseConfig::Sqlite {
        path: dir.path().join(DEFAULT_SQLITE_FILE),
    };
    let store = Store::connect(&config).await.unwrap();
    for i in 0..ROWS {
        let row = NewAuditRecord {
            action: format!("test.{i}"),
            object: Some(format!("o{i}")),
            status: 200,
            ..NewAuditRecord::default()
        };
        store.append_audit(&row).await.unwrap();
    }
    store.close().await;
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(args)
            .env_clear()
            .env("AIRLOCK_DATA_DIR", dir.path())
            .output()
            .unwrap()
    };
    let export = |extra: &[&str]| {
        let mut args = vec!["admin", "audit", "export", "--format", "jsonl"];
        args.extend_from_slice(extra);
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{args:?}: {stderr}");
        String::from_utf8(out.stdout).unwrap()
    };

    let text = export(&["--since", "2000-01-01T00:00:00Z"]);
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), ROWS, "every row once; reading files none");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["action"], format!("test.{i}"), "oldest first");
        assert_eq!(line["object"], format!("o{i}"));
        assert_eq!(line["status"], 200);
        assert_eq!(line["count"], 1);
        assert!(line["at"].as_str().unwrap().ends_with('Z'), "{line}");
    }

    // A range: from the 100th row's instant, up to the 200th's.
    let since = lines[100]["at"].as_str().unwrap();
    let until = lines[200]["at"].as_str().unwrap();
    let ranged = export(&["--since", since, "--until", until]);
    let ranged: Vec<Value> = ranged
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let first = ranged.first().unwrap();
    assert!(first["id"].as_i64() <= lines[100]["id"].as_i64());
    // Compared as instants: RFC 3339 text drops trailing zeros of the fraction, so
    // `…00.12Z` sorts after `…00.123Z` as text.
    let instant = |v: &Value| {
        let text = v.as_str().unwrap();
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
    };
    let until_at = instant(&lines[200]["at"]);
    assert!(ranged.iter().all(|r| instant(&r["at"]) < until_at));
    assert!(
        ranged.len() >= 100 && ranged.len() < 200,
        "{}",
        ranged.len()
    );
    assert!(export(&[
        "--since",
        "2000-01-01T00:00:00Z",
        "--until",
        "2000-01-02T00:00:00Z"
    ])
    .is_empty());

    for (args, wants) in [
        (
            vec!["--since", "yesterday", "--format", "jsonl"],
            "RFC 3339",
        ),
        (
            vec!["--since", "2000-01-01T00:00:00Z", "--format", "csv"],
            "jsonl",
        ),
        (vec!["--format", "jsonl"], "--since"),
    ] {
        let mut all = vec!["admin", "audit", "export"];
        all.extend_from_slice(&args);
        let out = run(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(wants), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty());
    }
}
