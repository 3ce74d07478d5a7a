//! `airlock admin backup` and `restore`, round-tripped on both backends: users, API tokens
//! (they still authenticate), secrets (they still decrypt, with the key restored from the
//! sealed copy) and ledger rows survive backup → wipe → restore. Refusals: no passphrase,
//! a wrong passphrase, a newer schema, a non-empty target without `--force`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::Path;

use airlock::accounts::quota::Quota;
use airlock::accounts::user::{Role, Scopes, TokenScope};
use airlock::accounts::{Accounts, CreateToken, CreateUser, TokenOwner};
use airlock::audit::{Actor, AuditLog, Via};
use airlock::config::{Config, DatabaseConfig};
use airlock::ops::backup::archive::{self, Manifest};
use airlock::ops::backup::{backup, restore, BackupArgs, BackupError, RestoreArgs};
use airlock::secrets::vault::{SecretKey, Vault};
use airlock::secrets::{Exposure, PutSecret, Secrets};
use airlock::store::{EgressEvent, EgressQuery, Store};
use airlock_wire::Outcome;

const PASS: &str = "correct horse battery staple";

fn config(data_dir: &Path, database_url: Option<&str>) -> Config {
    let mut vars = HashMap::new();
    vars.insert("AIRLOCK_DATA_DIR", data_dir.display().to_string());
    if let Some(url) = database_url {
        vars.insert("AIRLOCK_DATABASE_URL", url.to_owned());
    }
    Config::from_lookup(|var| vars.get(var).cloned()).unwrap()
}

fn ledger_event(sandbox: &str, seq: i64) -> EgressEvent {
    EgressEvent {
        boot_id: "b00t".to_owned(),
        seq,
        sandbox_id: sandbox.to_owned(),
        generation: 1,
        method: "GET".to_owned(),
        host: "example.test".to_owned(),
        port: 80,
        addr: None,
        decision: Outcome::Deny,
        reason: "private".to_owned(),
        rule: None,
        bytes_up: 1,
        bytes_down: 2,
        start_ms: 1_800_000_000_000 + seq,
        duration_ms: 1,
        ceiling: None,
        count: 1,
        tunnel: None,
        path: None,
        status: None,
        credential: None,
        mode: None,
    }
}

/// Fills the store; returns (email, token text, sandbox id).
async fn fill(config: &Config) -> (String, String, uuid::Uuid) {
    let store = Store::connect(&config.database).await.unwrap();
    let (key, source) = SecretKey::load_or_generate(None, &config.secret_key_file).unwrap();
    let vault = Vault::open(&store, &key, &source).await.unwrap();
    let audit = AuditLog::new(store.clone());
    let accounts = Accounts::new(store.clone(), audit.clone(), Quota::UNLIMITED);
    let email = format!("bk-{}@example.test", uuid::Uuid::new_v4());
    let user = accounts
        .run(
            &Actor::cli(),
            CreateUser {
                email: email.clone(),
                display_name: "Backup".to_owned(),
                role: Role::Member,
                password: None,
            },
        )
        .await
        .unwrap();
    let issued = accounts
        .run(
            &Actor::cli(),
            CreateToken {
                owner: TokenOwner::Email(email.clone()),
                name: "ci".to_owned(),
                scopes: [TokenScope::SandboxesRead].into_iter().collect::<Scopes>(),
                expires_in: None,
            },
        )
        .await
        .unwrap();
    let secrets = Secrets::new(store.clone(), audit, Some(vault));
    let owner = Actor::new(user.id, Role::Member, Via::Session);
    for (name, expose) in [("db", Some(Exposure::Env)), ("held", None)] {
        let put = PutSecret {
            name: name.to_owned(),
            value: "hunter2".to_owned(),
            expose,
        };
        secrets.run(&owner, put).await.unwrap();
    }
    let sandbox = uuid::Uuid::new_v4();
    let events: Vec<_> = (1..=50)
        .map(|i| ledger_event(&sandbox.to_string(), i))
        .collect();
    store
        .store_egress_events("local", &events, "b00t", 50)
        .await
        .unwrap();
    store.close().await;
    (email, issued.text, sandbox)
}

async fn check_restored(config: &Config, email: &str, token: &str, sandbox: uuid::Uuid) {
    let store = Store::connect(&config.database).await.unwrap();
    let user = store
        .get_user_by_email(email)
        .await
        .unwrap()
        .expect("user restored");
    let accounts = Accounts::new(
        store.clone(),
        AuditLog::new(store.clone()),
        Quota::UNLIMITED,
    );
    let authenticated = accounts.authenticate(token).await.unwrap();
    assert!(authenticated.is_some(), "the API token still authenticates");
    let (key, _) = SecretKey::load_existing(None, &config.secret_key_file).unwrap();
    let sealed = store.sealed_secret(user.id, "db").await.unwrap().unwrap();
    let plain = Vault::new(&key)
        .open_secret(user.id, "db", &sealed)
        .unwrap();
    assert_eq!(plain, b"hunter2", "the secret still decrypts");
    let exposures: Vec<_> = store
        .list_secrets(user.id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.name, s.expose))
        .collect();
    let want = [
        ("db".to_owned(), Exposure::Env),
        ("held".to_owned(), Exposure::EgressOnly),
    ];
    assert_eq!(exposures, want, "each secret keeps its exposure");
    let query = EgressQuery {
        limit: 100,
        ..Default::default()
    };
    let rows = store
        .list_egress_events(sandbox.to_string().parse().unwrap(), &query)
        .await
        .unwrap();
    assert_eq!(rows.len(), 50, "ledger rows survive");
    store.close().await;
}

async fn round_trip(config: Config, wipe: impl AsyncFnOnce()) {
    let (email, token, sandbox) = fill(&config).await;
    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("airlock.backup");
    let args = BackupArgs { out: file.clone() };
    let mut out = Vec::new();

    let refused = backup(&config, &args, None, &mut out).await.unwrap_err();
    assert!(matches!(refused, BackupError::NoPassphrase), "{refused}");
    assert_eq!(refused.exit_code(), 64);
    backup(&config, &args, Some(PASS), &mut out).await.unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    let restore_args = RestoreArgs {
        file: file.clone(),
        force: false,
    };
    // Not over a live database without --force.
    let refused = restore(&config, &restore_args, Some(PASS), &mut out)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, BackupError::TargetNotEmpty { .. }),
        "{refused}"
    );

    wipe().await;
    std::fs::remove_file(config.data_dir.join("secret.key")).unwrap();

    let refused = restore(&config, &restore_args, Some("wrong passphrase!"), &mut out)
        .await
        .unwrap_err();
    assert!(matches!(refused, BackupError::WrongPassphrase), "{refused}");
    assert_eq!(refused.exit_code(), 65);

    // A backup from a newer schema is refused before anything is written.
    let newer = out_dir.path().join("newer.backup");
    let db = out_dir.path().join("db");
    let opened = archive::read(&file, &db).unwrap();
    let m = &opened.manifest;
    // The seal binds the database's checksum: an edited manifest does not open.
    let tampered = Manifest {
        database_sha256: "00".repeat(32),
        ..m.clone()
    };
    let edited = tampered.open(PASS, &opened.sealed_key).unwrap_err();
    assert!(matches!(edited, BackupError::WrongPassphrase), "{edited}");
    let forged = Manifest::new(&m.backend, 9_999, &m.database, m.database_sha256.clone());
    let sealed = forged.seal(PASS, &[7; 32]).unwrap();
    archive::write(&newer, &forged, &db, &sealed).unwrap();
    let newer_args = RestoreArgs {
        file: newer,
        force: false,
    };
    let refused = restore(&config, &newer_args, Some(PASS), &mut out)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, BackupError::SchemaNewer { backup: 9_999, .. }),
        "{refused}"
    );

    restore(&config, &restore_args, Some(PASS), &mut out)
        .await
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out));
    check_restored(&config, &email, &token, sandbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_round_trip_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), None);
    let DatabaseConfig::Sqlite { path } = config.database.clone() else {
        panic!("sqlite expected");
    };
    round_trip(config, async move || {
        for suffix in ["", "-wal", "-shm"] {
            let file = format!("{}{suffix}", path.display());
            drop(std::fs::remove_file(file));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_round_trip_on_postgres() {
    let db = tokio::task::spawn_blocking(test_support::postgres::database)
        .await
        .unwrap()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = db.url();
    let config = config(dir.path(), Some(url));
    round_trip(config, async move || {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query("DROP SCHEMA public CASCADE")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("CREATE SCHEMA public")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    })
    .await;
}

/// The binary: no passphrase exits 64 with the code in the message; the audit prune runs
/// offline and reports its count.
#[test]
fn the_cli_refuses_without_a_passphrase_and_prunes_the_audit() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(args)
            .env_clear()
            .env("AIRLOCK_DATA_DIR", dir.path())
            .output()
            .unwrap()
    };
    let out = dir.path().join("b.tar");
    let refused = run(&["admin", "backup", "--out", out.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("backup_passphrase_missing"), "{stderr}");
    assert!(!out.exists());

    let bad = run(&["admin", "audit", "prune", "--before", "yesterday"]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "clap refuses a non-RFC 3339 time"
    );
    let pruned = run(&[
        "admin",
        "audit",
        "prune",
        "--before",
        "2000-01-01T00:00:00Z",
    ]);
    let stdout = String::from_utf8_lossy(&pruned.stdout);
    assert!(
        pruned.status.success(),
        "{}",
        String::from_utf8_lossy(&pruned.stderr)
    );
    assert!(stdout.starts_with("deleted 0 audit row(s)"), "{stdout}");
}
