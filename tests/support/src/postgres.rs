//! A throwaway Postgres for store tests, from Debian's `postgresql` package.
//!
//! One server per test process, started on first use: `initdb` into a fresh temp dir, then
//! `postgres` on `127.0.0.1` and a free port (unix sockets off), as the unprivileged
//! `postgres` user when the tests run as root (initdb refuses root). Each test gets its own
//! database from [`database`], dropped again when the [`TestDatabase`] is dropped.
//!
//! The private server also speaks TLS (`ssl=on`, a certificate for `127.0.0.1` from a fresh
//! CA, see [`TestDatabase::ca_cert`]), so `?sslmode=require` and `verify-full` can be tested;
//! plain connections (`sslmode=disable`, or `prefer` falling back) keep working.
//!
//! The server dies with the test process: a supervising `sh` runs under
//! `setpriv --pdeathsig TERM`, spawned from a thread that lives as long as the process, and
//! on that signal it stops Postgres (fast shutdown) and removes the data dir.
//!
//! With `TEST_DATABASE_URL` set (`postgres://user:pass@host:port/db`, a superuser or a role
//! with CREATEDB), that server is used instead and nothing is started.
//!
//! Needs: `postgresql` (server binaries under /usr/lib/postgresql/N/bin, and `psql`),
//! util-linux `setpriv`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

/// Environment variable naming an existing server to use instead of starting one.
pub const ENV_TEST_DATABASE_URL: &str = "TEST_DATABASE_URL";

/// How long the server may take to accept connections.
const READY_DEADLINE: Duration = Duration::from_secs(60);

/// Why no test database could be made.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    /// The server binaries are missing.
    #[error(
        "no Postgres server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)"
    )]
    NotInstalled,
    /// A command failed.
    #[error("{command} failed: {detail}")]
    Command {
        /// What ran.
        command: String,
        /// Its stderr or the spawn error.
        detail: String,
    },
    /// The server did not become ready in time.
    #[error("Postgres was not ready within {0:?}: {1}")]
    NotReady(Duration, String),
    /// `TEST_DATABASE_URL` is malformed.
    #[error("TEST_DATABASE_URL must look like postgres://user[:pass]@host[:port]/db")]
    BadUrl,
}

/// A fresh, empty database on the shared test server.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
    ca_cert: Option<PathBuf>,
}

/// The running (or external) server, as an admin URL without a database path.
#[derive(Debug)]
struct Server {
    /// `postgres://user[:pass]@host:port` — append `/<db>`.
    base: String,
    /// The CA of the server's TLS certificate (the private server only).
    ca_cert: Option<PathBuf>,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

/// Creates a new database for one test; the first call starts the server.
pub fn database() -> Result<TestDatabase, PostgresError> {
    let server = SERVER
        .get_or_init(|| server().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|detail| PostgresError::Command {
            command: "starting the test Postgres".into(),
            detail: detail.clone(),
        })?;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let admin_url = format!("{}/postgres", server.base);
    psql(&admin_url, &format!("CREATE DATABASE \"{name}\""))?;
    Ok(TestDatabase {
        url: format!("{}/{name}", server.base),
        name,
        admin_url,
        ca_cert: server.ca_cert.clone(),
    })
}

// === impl TestDatabase ===

impl TestDatabase {
    /// The database's URL (`postgres://…/t_<uuid>`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA that signed the server's TLS certificate (for `sslrootcert=`); `None` for a
    /// `TEST_DATABASE_URL` server, whose TLS set-up is unknown.
    pub fn ca_cert(&self) -> Option<&Path> {
        self.ca_cert.as_deref()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Best effort: the private server is deleted at exit anyway; this keeps a shared
        // TEST_DATABASE_URL server clean. FORCE ends connections a pool still holds.
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        if let Err(error) = psql(&self.admin_url, &sql) {
            tracing::warn!(%error, db.name = %self.name, "Dropping the test database failed");
        }
    }
}

fn server() -> Result<Server, PostgresError> {
    if let Ok(url) = std::env::var(ENV_TEST_DATABASE_URL) {
        return external(&url);
    }
    let bin = bin_dir()?;
    let mut last = None;
    // The port is free when picked but could be taken before Postgres binds it: retry.
    for _ in 0..3 {
        match start(&bin) {
            Ok(server) => return Ok(server),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or(PostgresError::NotInstalled))
}

fn external(url: &str) -> Result<Server, PostgresError> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or(PostgresError::BadUrl)?;
    let authority = rest.split(['/', '?']).next().ok_or(PostgresError::BadUrl)?;
    Ok(Server {
        base: format!("postgres://{authority}"),
        ca_cert: None,
    })
}

fn bin_dir() -> Result<PathBuf, PostgresError> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_missing| PostgresError::NotInstalled)?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or(PostgresError::NotInstalled)
}

fn start(bin: &Path) -> Result<Server, PostgresError> {
    let port = free_port()?;
    let dir = tempfile::Builder::new()
        .prefix("airlock-pg-")
        .tempdir()
        .map_err(|e| command_error("mkdtemp", e))?
        .keep();
    let tls = dir.join("tls");
    airlock_certs::init(&airlock_certs::InitOptions::new(&tls))
        .map_err(|e| command_error("making the TLS certificate", e))?;
    let as_user = privilege_drop(&dir)?;
    let script = r#"
        set -u
        "$@" "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust --no-sync -E UTF8 >"$PG_DIR/initdb.log" 2>&1 || { rm -rf "$PG_DIR"; exit 1; }
        "$@" "$PG_BIN/postgres" -D "$PG_DIR/data" -h 127.0.0.1 -p "$PG_PORT" -k "" \
            -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
            -c max_connections=300 -c ssl=on \
            -c ssl_cert_file="$PG_DIR/tls/server/cert.pem" -c ssl_key_file="$PG_DIR/tls/server/key.pem" \
            >"$PG_DIR/postgres.log" 2>&1 &
        child=$!
        trap 'kill -INT $child 2>/dev/null; wait $child; rm -rf "$PG_DIR"; exit 0' TERM INT HUP
        wait $child
        rm -rf "$PG_DIR"
    "#;
    let mut cmd = Command::new("setpriv");
    cmd.args(["--pdeathsig", "TERM", "--", "sh", "-c", script, "sh"])
        .args(&as_user)
        .env("PG_BIN", bin)
        .env("PG_DIR", &dir)
        .env("PG_PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    spawn_from_keeper(cmd)?;
    let base = format!("postgres://postgres@127.0.0.1:{port}");
    wait_ready(bin, port, &dir)?;
    Ok(Server {
        base,
        ca_cert: Some(tls.join("ca").join("cert.pem")),
    })
}

/// Spawns `cmd` from a thread that never exits: `--pdeathsig` fires when the *thread* that
/// spawned the child ends, and test threads end long before the process does.
fn spawn_from_keeper(mut cmd: Command) -> Result<(), PostgresError> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("test-postgres-keeper".into())
        .spawn(move || {
            let spawned = cmd.spawn();
            let ok = spawned.is_ok();
            let _ = tx.send(spawned.map(|_| ()));
            if ok {
                loop {
                    std::thread::park();
                }
            }
        })
        .map_err(|e| command_error("spawning the keeper thread", e))?;
    rx.recv()
        .map_err(|e| command_error("keeper thread", e))?
        .map_err(|e| command_error("setpriv sh", e))
}

/// The `setpriv` prefix that runs a command as `postgres` when we are root (and hands it the
/// data dir); nothing otherwise.
fn privilege_drop(dir: &Path) -> Result<Vec<String>, PostgresError> {
    let me = std::fs::metadata("/proc/self").map_err(|e| command_error("stat /proc/self", e))?;
    if me.uid() != 0 {
        return Ok(Vec::new());
    }
    let uid = id_of("-u")?;
    let gid = id_of("-g")?;
    // Postgres reads its TLS key only when it owns it (mode 0600): hand over everything.
    chown_tree(dir, uid, gid)?;
    Ok(vec![
        "setpriv".into(),
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
        "--clear-groups".into(),
        "--".into(),
    ])
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<(), PostgresError> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|e| command_error("chown", e))?;
    let meta = std::fs::symlink_metadata(path).map_err(|e| command_error("stat", e))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(|e| command_error("read_dir", e))? {
            let entry = entry.map_err(|e| command_error("read_dir", e))?;
            chown_tree(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}

fn id_of(flag: &str) -> Result<u32, PostgresError> {
    let out = run(Command::new("id").args([flag, "postgres"]), "id postgres")?;
    out.trim()
        .parse()
        .map_err(|e| command_error("id postgres", e))
}

fn free_port() -> Result<u16, PostgresError> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| command_error("bind", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| command_error("local_addr", e))?
        .port();
    Ok(port)
}

fn wait_ready(bin: &Path, port: u16, dir: &Path) -> Result<(), PostgresError> {
    let start = Instant::now();
    loop {
        let status = Command::new(bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "1", "-q"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| command_error("pg_isready", e))?;
        if status.success() {
            return Ok(());
        }
        if start.elapsed() > READY_DEADLINE || !dir.exists() {
            let log = std::fs::read_to_string(dir.join("postgres.log"))
                .or_else(|_| std::fs::read_to_string(dir.join("initdb.log")))
                .unwrap_or_else(|_| "the supervisor exited (see initdb/postgres logs)".into());
            return Err(PostgresError::NotReady(READY_DEADLINE, log));
        }
        // Poll interval, not a fixed wait: the loop ends as soon as the server answers.
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn psql(url: &str, sql: &str) -> Result<String, PostgresError> {
    let psql = bin_dir()
        .map(|bin| bin.join("psql"))
        .unwrap_or_else(|_| PathBuf::from("psql"));
    run(
        Command::new(psql).args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql]),
        "psql",
    )
}

fn run(cmd: &mut Command, what: &str) -> Result<String, PostgresError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| command_error(what, e))?;
    if !out.status.success() {
        return Err(PostgresError::Command {
            command: what.to_owned(),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn command_error(what: &str, error: impl std::fmt::Display) -> PostgresError {
    PostgresError::Command {
        command: what.to_owned(),
        detail: error.to_string(),
    }
}
