//! `airlock doctor`: checks a deployment and prints one pass/warn/fail/skip line per check,
//! each non-passing line with a fix hint. The exit status is 1 when any check fails.
//!
//! Checks, in order: the DinD over mTLS; a plain (non-TLS) connection refused; the storage
//! driver (vfs warns); whether the node enforces a disk limit; the INPUT rules, tested the way an attacker would: a container on a
//! fresh `internal` network tries to open the DinD's 2376 through its gateway and must fail;
//! the egress proxy (healthy, every live sandbox on its current generation); its resolvers
//! (`AIRLOCK_EGRESS_DNS` unset warns); the infrastructure list the controller pushes; the
//! store and its migrations; each table's rows and size; the images recorded as loaded still
//! present with the same id; default quotas left `unlimited` while several users exist
//! (warns); how the node enforces volume sizes (probed: hard or soft, and why); the host
//! folders root seen alike by the controller and the DinD; free disk under
//! the data dir; and the certificates' expiry.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use time::OffsetDateTime;

use crate::config::{Config, DatabaseConfig, DockerConfig};
use crate::docker::DockerClient;
use crate::store::Store;

mod api_tls;
mod disk_limit;
mod egress_dns;
mod folders;
mod images;
mod infrastructure;
mod init_binary;
mod proxy;
mod quotas;
mod tables;
mod volume_quota;

/// The image the INPUT-rule probe runs (must be on the node; `make up` loads it).
pub const DEFAULT_PROBE_IMAGE: &str = "airlock/testbox:dev";
/// Chooses the probe image.
pub const ENV_DOCTOR_IMAGE: &str = "AIRLOCK_DOCTOR_IMAGE";
/// Less free space than this under the data dir fails; less than 4× warns.
const MIN_FREE_BYTES: u64 = 1 << 30;
/// Certificates expiring within this many days warn.
const EXPIRY_WARN_DAYS: i64 = 30;
/// How long the probe's connection attempt may hang before it counts as dropped.
const PROBE_CONNECT_S: u32 = 3;
/// How long the proxy's admin API may take to answer its health check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// All good.
    Pass,
    /// Works, but not as recommended.
    Warn,
    /// Broken or unsafe.
    Fail,
    /// Not applicable here.
    Skip,
}

/// One line of the report.
#[derive(Clone, Debug)]
pub struct Check {
    /// Short name, e.g. `input-rules`.
    pub name: &'static str,
    /// The outcome.
    pub verdict: Verdict,
    /// What was found.
    pub detail: String,
    /// What to do about it (empty on pass).
    pub fix: String,
}

/// Every check's outcome.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// In the order run.
    pub checks: Vec<Check>,
}

// === impl Verdict ===

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
        })
    }
}

// === impl Check ===

impl Check {
    fn new(
        name: &'static str,
        verdict: Verdict,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            name,
            verdict,
            detail: detail.into(),
            fix: fix.into(),
        }
    }

    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self::new(name, Verdict::Pass, detail, "")
    }
}

// === impl Report ===

impl Report {
    /// True when no check failed (warnings and skips are fine).
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.verdict != Verdict::Fail)
    }

    /// The check called `name`, if it ran.
    pub fn get(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            writeln!(
                f,
                "{:<4}  {:<14} {}",
                check.verdict.to_string(),
                check.name,
                check.detail
            )?;
            if !check.fix.is_empty() {
                writeln!(f, "{:<4}  {:<14} fix: {}", "", "", check.fix)?;
            }
        }
        let failed = self
            .checks
            .iter()
            .filter(|c| c.verdict == Verdict::Fail)
            .count();
        writeln!(f, "{} checks, {failed} failed", self.checks.len())
    }
}

/// Runs every check against the deployment `config` describes.
pub async fn run(config: &Config, probe_image: &str) -> Report {
    let mut report = Report::default();
    let docker = check_dind(config, &mut report).await;
    report
        .checks
        .push(api_tls::check(&config.http, OffsetDateTime::now_utc()));
    report
        .checks
        .push(check_plain_refused(&config.docker).await);
    if let Some(docker) = &docker {
        report.checks.push(check_storage(docker).await);
        report
            .checks
            .push(check_input_rules(docker, probe_image).await);
        report
            .checks
            .push(disk_limit::check(config, docker, probe_image).await);
    }
    let store = check_store(config, &mut report).await;
    if let Some(store) = &store {
        report.checks.push(tables::check(store).await);
    }
    report
        .checks
        .push(proxy::check(config, store.as_ref()).await);
    report.checks.push(egress_dns::check(config));
    report.checks.push(init_binary::check(config).await);
    if let Some(docker) = &docker {
        report
            .checks
            .push(infrastructure::check(config, docker).await);
    }
    if let (Some(docker), Some(store)) = (&docker, &store) {
        report.checks.push(images::check(docker, store).await);
    }
    if let Some(store) = &store {
        report.checks.push(quotas::check(config, store).await);
    }
    report
        .checks
        .push(volume_quota::check(config, docker.as_ref()).await);
    report
        .checks
        .push(folders::check(config, docker.as_ref(), probe_image).await);
    report.checks.push(check_disk(&config.data_dir));
    if let DockerConfig::Tls { cert_dir, .. } = &config.docker {
        report.checks.push(check_certs(cert_dir));
    }
    report
}

async fn check_dind(config: &Config, report: &mut Report) -> Option<DockerClient> {
    let name = "dind-mtls";
    let target = match &config.docker {
        DockerConfig::Tls { host, port, .. } => format!("{host}:{port}"),
        other => {
            let detail = format!("the controller reaches Docker without TLS ({other:?})");
            let fix = "set AIRLOCK_DOCKER_HOST=tcp://dind:2376 and drop AIRLOCK_DOCKER_INSECURE";
            report
                .checks
                .push(Check::new(name, Verdict::Fail, detail, fix));
            return DockerClient::connect(&config.docker).await.ok();
        }
    };
    match DockerClient::connect(&config.docker).await {
        Ok(docker) => match docker.node_info().await {
            Ok(info) => {
                let detail = format!(
                    "dockerd {} answers over mTLS at {target}",
                    info.server_version
                );
                report.checks.push(Check::pass(name, detail));
                Some(docker)
            }
            Err(error) => {
                report
                    .checks
                    .push(fail_dind(name, &target, &error.to_string()));
                None
            }
        },
        Err(error) => {
            report
                .checks
                .push(fail_dind(name, &target, &error.to_string()));
            None
        }
    }
}

fn fail_dind(name: &'static str, target: &str, error: &str) -> Check {
    let fix = "is the dind container up (`docker compose ps`)? do AIRLOCK_DOCKER_CERT_PATH's \
               files come from the same `airlock certs init` as the DinD's server/ folder, and is \
               the host name in its SAN (`airlock certs init --san NAME`)?";
    Check::new(
        name,
        Verdict::Fail,
        format!("cannot reach {target} over mTLS: {error}"),
        fix,
    )
}

/// A client without TLS must not get an answer, neither on the TLS port nor on 2375.
async fn check_plain_refused(docker: &DockerConfig) -> Check {
    let name = "plain-refused";
    let DockerConfig::Tls { host, port, .. } = docker else {
        return Check::new(name, Verdict::Skip, "the controller itself uses no TLS", "");
    };
    for port in [*port, 2375] {
        let plain = DockerConfig::InsecureTcp {
            host: host.clone(),
            port,
        };
        let answered = match DockerClient::new(&plain) {
            Ok(client) => tokio::time::timeout(Duration::from_secs(5), client.ping())
                .await
                .is_ok_and(|ping| ping.is_ok()),
            Err(_) => false,
        };
        if answered {
            let detail = format!("{host}:{port} answers plain HTTP without a client certificate");
            let fix =
                "run dockerd only through the airlock-dind entrypoint (TLS with --tlsverify, \
                       never -H tcp://0.0.0.0:2375)";
            return Check::new(name, Verdict::Fail, detail, fix);
        }
    }
    Check::pass(
        name,
        format!("{host}: plain HTTP is refused on the TLS port and on 2375"),
    )
}

async fn check_storage(docker: &DockerClient) -> Check {
    let name = "storage-driver";
    match docker.node_info().await {
        Ok(info) if info.storage_driver == "vfs" => Check::new(
            name,
            Verdict::Warn,
            "vfs copies the whole image for every container",
            "give the dind a named volume at /var/lib/docker and pass --storage-driver=overlay2",
        ),
        Ok(info) => Check::pass(name, info.storage_driver),
        Err(error) => Check::new(name, Verdict::Fail, error.to_string(), "see dind-mtls"),
    }
}

async fn check_input_rules(docker: &DockerClient, image: &str) -> Check {
    let name = "input-rules";
    match docker.image_exists(image).await {
        Ok(true) => {}
        Ok(false) => {
            let detail = format!("probe image {image} is not on the node; rules not tested");
            let fix =
                format!("airlock images load <bundle with {image}> (or set {ENV_DOCTOR_IMAGE})");
            return Check::new(name, Verdict::Warn, detail, fix);
        }
        Err(error) => return Check::new(name, Verdict::Fail, error.to_string(), "see dind-mtls"),
    }
    let net = format!("airlock-doctor-{}", uuid::Uuid::new_v4().simple());
    let cmd = |gateway: &str| {
        let script = format!(
            "if nc -w {PROBE_CONNECT_S} {gateway} 2376 </dev/null >/dev/null 2>&1; then exit 10; fi; exit 0"
        );
        vec!["sh".to_owned(), "-c".to_owned(), script]
    };
    let limit = Duration::from_secs(u64::from(PROBE_CONNECT_S) + 30);
    match docker.run_bridge_probe(&net, image, cmd, limit).await {
        Ok((0, gateway)) => Check::pass(
            name,
            format!("a container on an internal network cannot open {gateway}:2376 (AIRLOCK-INPUT drops it)"),
        ),
        Ok((10, gateway)) => Check::new(
            name,
            Verdict::Fail,
            format!(
                "a container on an internal network opened the DinD's {gateway}:2376: the \
                 AIRLOCK-INPUT rules (drop NEW from br-+ and docker0) are missing"
            ),
            "restart the dind container: its entrypoint reinstalls the rules before dockerd \
             starts (it needs CAP_NET_ADMIN and iptables)",
        ),
        Ok((code, _)) => Check::new(
            name,
            Verdict::Fail,
            format!("the probe container exited {code}"),
            format!("check that {image} has a busybox `sh` and `nc`"),
        ),
        Err(error) => Check::new(name, Verdict::Fail, format!("probe failed: {error}"), "see dind-mtls"),
    }
}

async fn check_store(config: &Config, report: &mut Report) -> Option<Store> {
    let name = "store";
    match Store::connect(&config.database).await {
        Ok(store) => {
            let detail = format!("{:?} reachable, migrations current", store.backend());
            report.checks.push(Check::pass(name, detail));
            if let DatabaseConfig::Postgres { url } = &config.database {
                report.checks.push(check_database_tls(url.expose()));
            }
            Some(store)
        }
        Err(error) => {
            let fix = "check AIRLOCK_DATABASE_URL and that the database is up; a database \
                       migrated by a newer airlock needs that version";
            report
                .checks
                .push(Check::new(name, Verdict::Fail, error.to_string(), fix));
            None
        }
    }
}

/// The Postgres connection's `sslmode`: anything short of `require` off this host warns.
fn check_database_tls(url: &str) -> Check {
    let name = "database-tls";
    let Some((mode, local)) = crate::config::postgres_tls(url) else {
        return Check::new(name, Verdict::Skip, "not a postgres URL", "");
    };
    let detail = format!("sslmode={mode}{}", if local { " (loopback)" } else { "" });
    if local || matches!(mode.as_str(), "require" | "verify-ca" | "verify-full") {
        return Check::pass(name, detail);
    }
    let fix = "use ?sslmode=verify-full (with sslrootcert=PATH) unless the network between the \
               controller and Postgres is private to them";
    Check::new(name, Verdict::Warn, detail, fix)
}

fn check_disk(dir: &Path) -> Check {
    let name = "disk";
    let probe = if dir.exists() { dir } else { Path::new("/") };
    match rustix::fs::statvfs(probe) {
        Ok(stat) => {
            let free = stat.f_bavail.saturating_mul(stat.f_frsize);
            let detail = format!("{:.1} GB free under {}", free as f64 / 1e9, probe.display());
            let fix = "free space or grow the volume holding the data dir";
            if free < MIN_FREE_BYTES {
                Check::new(name, Verdict::Fail, detail, fix)
            } else if free < 4 * MIN_FREE_BYTES {
                Check::new(name, Verdict::Warn, detail, fix)
            } else {
                Check::pass(name, detail)
            }
        }
        Err(error) => Check::new(
            name,
            Verdict::Fail,
            format!("{}: {error}", probe.display()),
            "",
        ),
    }
}

fn check_certs(cert_dir: &Path) -> Check {
    let name = "certificates";
    let now = OffsetDateTime::now_utc();
    let mut soonest: Option<(OffsetDateTime, String)> = None;
    for file in ["cert.pem", "ca.pem"] {
        let path = cert_dir.join(file);
        let info = std::fs::read_to_string(&path)
            .map_err(|error| error.to_string())
            .and_then(|pem| airlock_certs::inspect_cert(&pem, &path).map_err(|e| e.to_string()));
        match info {
            Ok(info) if soonest.as_ref().is_none_or(|(at, _)| info.not_after < *at) => {
                soonest = Some((info.not_after, path.display().to_string()));
            }
            Ok(_) => {}
            Err(error) => {
                let fix = "airlock certs init --out DIR (re-run it; valid files are kept)";
                return Check::new(name, Verdict::Fail, error, fix);
            }
        }
    }
    let Some((at, path)) = soonest else {
        return Check::new(name, Verdict::Skip, "no certificate found", "");
    };
    let days = (at - now).whole_days();
    let detail = format!("{path} expires in {days} days ({at})");
    let fix =
        "re-run `airlock certs init --out DIR` (it re-issues leaves expiring within 30 days), \
               then restart dind and airlock";
    if at <= now {
        Check::new(name, Verdict::Fail, detail, fix)
    } else if days < EXPIRY_WARN_DAYS {
        Check::new(name, Verdict::Warn, detail, fix)
    } else {
        Check::pass(name, detail)
    }
}

/// Arguments of `airlock doctor` (the deployment comes from the `AIRLOCK_*` variables).
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Image the INPUT-rule probe runs on the node (busybox `sh` + `nc`).
    #[arg(long, env = ENV_DOCTOR_IMAGE, default_value = DEFAULT_PROBE_IMAGE)]
    pub probe_image: String,
}

// === impl DoctorArgs ===

impl DoctorArgs {
    /// Runs every check, writes the table to `out`; `Ok(false)` when a check failed.
    pub fn run(self, out: &mut impl std::io::Write) -> anyhow::Result<bool> {
        let config = Config::from_env()?;
        let runtime = tokio::runtime::Runtime::new()?;
        let report = runtime.block_on(run(&config, &self.probe_image));
        write!(out, "{report}")?;
        Ok(report.ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_tls_warns_only_for_plaintext_off_this_host() {
        let verdict = |url| check_database_tls(url).verdict;
        assert_eq!(
            verdict("postgres://u@db/x?sslmode=verify-full"),
            Verdict::Pass
        );
        assert_eq!(verdict("postgres://u@db/x?sslmode=require"), Verdict::Pass);
        assert_eq!(verdict("postgres://u@127.0.0.1/x"), Verdict::Pass);
        assert_eq!(verdict("postgres://u@db/x?sslmode=disable"), Verdict::Warn);
        assert_eq!(verdict("postgres://u@db/x?sslmode=prefer"), Verdict::Warn);
        let shown = check_database_tls("postgres://u@db/x?sslmode=verify-ca").detail;
        assert_eq!(shown, "sslmode=verify-ca");
    }
}
