//! The configuration of `airlock serve`, read from `AIRLOCK_*` variables.
//!
//! Every variable is declared once below with its default beside it. [`Config::from_lookup`]
//! parses all of them before failing, so one run reports every mistake; secrets are redacted
//! in errors and in `Debug`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};

use crate::sandbox::{Cpus, Limits, Maximums};
use crate::subnet::SANDBOX_PREFIX;

// Network plane variables (issue 6).
mod egress;
pub use egress::{
    EgressConfig, DEFAULT_EGRESS, DEFAULT_EGRESS_IMAGE, DEFAULT_EGRESS_SUBNET, ENV_EGRESS,
    ENV_EGRESS_ADMIN_ADDR, ENV_EGRESS_ALLOW_CIDRS, ENV_EGRESS_BUNDLE, ENV_EGRESS_DNS,
    ENV_EGRESS_IMAGE, ENV_EGRESS_SUBNET,
};

// Isolation self-test variables (issue 6).
mod selftest;
pub use selftest::{
    SelftestConfig, DEFAULT_PROBE_IMAGE, DEFAULT_SELFTEST_ADMIN_PORT, ENV_PROBE_IMAGE,
    ENV_SELFTEST_ADMIN_PORT, ENV_SELFTEST_CONTROLLER, ENV_SELFTEST_NODE_ADDRS,
    ENV_SELFTEST_UPSTREAM,
};
// Quotas and the secret key (issue 5).
mod quota;
pub use quota::{
    DEFAULT_QUOTA_CREATES_PER_MIN, DEFAULT_QUOTA_MAX_CPUS, DEFAULT_QUOTA_MAX_LIFETIME,
    DEFAULT_QUOTA_MAX_MEMORY_MB, DEFAULT_QUOTA_MAX_SANDBOXES, ENV_QUOTA_CREATES_PER_MIN,
    ENV_QUOTA_MAX_CPUS, ENV_QUOTA_MAX_LIFETIME, ENV_QUOTA_MAX_MEMORY_MB, ENV_QUOTA_MAX_SANDBOXES,
    ENV_SECRET_KEY,
};
// Operator ceilings, the default policy and extra infrastructure CIDRs.
mod policy;
pub use policy::{
    PolicyConfig, PolicyFile, DEFAULT_DEFAULT_POLICY, ENV_DEFAULT_POLICY, ENV_INFRA_CIDRS,
    ENV_POLICY_FILE,
};
// Allowed images, pre-pull and first boot (issue 7).
mod images;
pub use images::{
    ImagesConfig, DEFAULT_IMAGE_WAIT, ENV_BUNDLE_DIR, ENV_IMAGES, ENV_IMAGES_FILE, ENV_IMAGE_WAIT,
    ENV_REGISTRY, ENV_REQUIRE_PINNED,
};

/// Address the API listens on.
pub const ENV_LISTEN: &str = "AIRLOCK_LISTEN";
/// Default of [`ENV_LISTEN`].
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Folder for the SQLite database, certificates and generated keys.
pub const ENV_DATA_DIR: &str = "AIRLOCK_DATA_DIR";
/// Default of [`ENV_DATA_DIR`].
pub const DEFAULT_DATA_DIR: &str = "/var/lib/airlock";
/// Database URL: `postgres://…`/`postgresql://…`, or `sqlite:PATH`.
pub const ENV_DATABASE_URL: &str = "AIRLOCK_DATABASE_URL";
/// Default of [`ENV_DATABASE_URL`]: this file under the data dir.
pub const DEFAULT_SQLITE_FILE: &str = "airlock.db";
/// The DinD daemon: `tcp://HOST:PORT` or `unix:///PATH`.
pub const ENV_DOCKER_HOST: &str = "AIRLOCK_DOCKER_HOST";
/// Default of [`ENV_DOCKER_HOST`].
pub const DEFAULT_DOCKER_HOST: &str = "tcp://127.0.0.1:2376";
/// Folder holding the client `ca.pem`, `cert.pem` and `key.pem` for mTLS.
pub const ENV_DOCKER_CERT_PATH: &str = "AIRLOCK_DOCKER_CERT_PATH";
/// Default of [`ENV_DOCKER_CERT_PATH`], relative to the data dir (`airlock certs init` layout).
pub const DEFAULT_DOCKER_CERT_SUBDIR: &str = "certs/client";
/// Explicit opt-in to reach Docker without TLS (plain TCP or a unix socket).
pub const ENV_DOCKER_INSECURE: &str = "AIRLOCK_DOCKER_INSECURE";
/// Default of [`ENV_DOCKER_INSECURE`].
pub const DEFAULT_DOCKER_INSECURE: &str = "false";
/// Comma-separated IPv4 pools that sandbox /29s are carved from.
pub const ENV_SANDBOX_SUBNETS: &str = "AIRLOCK_SANDBOX_SUBNETS";
/// Default of [`ENV_SANDBOX_SUBNETS`] (8192 sandboxes).
pub const DEFAULT_SANDBOX_SUBNETS: &str = "10.213.0.0/16";
/// The single admin bearer token (until multi-user lands). Secret.
pub const ENV_ADMIN_TOKEN: &str = "AIRLOCK_ADMIN_TOKEN";
/// Most CPUs one sandbox may ask for.
pub const ENV_MAX_CPUS: &str = "AIRLOCK_MAX_CPUS";
/// Default of [`ENV_MAX_CPUS`].
pub const DEFAULT_MAX_CPUS: &str = "2";
/// Most memory one sandbox may ask for, in MiB.
pub const ENV_MAX_MEMORY_MB: &str = "AIRLOCK_MAX_MEMORY_MB";
/// Default of [`ENV_MAX_MEMORY_MB`].
pub const DEFAULT_MAX_MEMORY_MB: &str = "2048";
/// Most processes one sandbox may ask for.
pub const ENV_MAX_PIDS: &str = "AIRLOCK_MAX_PIDS";
/// Default of [`ENV_MAX_PIDS`].
pub const DEFAULT_MAX_PIDS: &str = "1024";
/// Largest writable-layer size in MiB; unset means disk limits may not be asked for.
pub const ENV_MAX_DISK_MB: &str = "AIRLOCK_MAX_DISK_MB";
/// Longest absolute timeout.
pub const ENV_MAX_TIMEOUT: &str = "AIRLOCK_MAX_TIMEOUT";
/// Default of [`ENV_MAX_TIMEOUT`].
pub const DEFAULT_MAX_TIMEOUT: &str = "24h";
/// Timeout of a sandbox that asks for none.
pub const ENV_DEFAULT_TIMEOUT: &str = "AIRLOCK_DEFAULT_TIMEOUT";
/// Default of [`ENV_DEFAULT_TIMEOUT`].
pub const DEFAULT_DEFAULT_TIMEOUT: &str = "1h";
/// Time between SIGTERM and SIGKILL when stopping.
pub const ENV_STOP_GRACE: &str = "AIRLOCK_STOP_GRACE";
/// Default of [`ENV_STOP_GRACE`].
pub const DEFAULT_STOP_GRACE: &str = "10s";
/// Size of each sandbox's log ring buffer, in bytes.
pub const ENV_LOG_BUFFER_BYTES: &str = "AIRLOCK_LOG_BUFFER_BYTES";
/// Default of [`ENV_LOG_BUFFER_BYTES`] (1 MiB).
pub const DEFAULT_LOG_BUFFER_BYTES: &str = "1048576";
/// Whole seconds between the reconciler's full passes (1..=86400); the default is
/// [`crate::reconcile::DEFAULT_INTERVAL`].
pub const ENV_RECONCILE_INTERVAL_S: &str = "AIRLOCK_RECONCILE_INTERVAL_S";
// Accounts (issue 5).
/// Email of the admin created at boot (with [`ENV_BOOTSTRAP_ADMIN_PASSWORD`]; both or neither).
pub const ENV_BOOTSTRAP_ADMIN_EMAIL: &str = "AIRLOCK_BOOTSTRAP_ADMIN_EMAIL";
/// Password of the admin created at boot (at least 12 characters). Secret.
pub const ENV_BOOTSTRAP_ADMIN_PASSWORD: &str = "AIRLOCK_BOOTSTRAP_ADMIN_PASSWORD";

/// The first admin account, created at boot if no account has that email.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapAdmin {
    /// The email (lower-cased).
    pub email: String,
    /// The password.
    pub password: Secret,
}

/// The effective configuration of `airlock serve`.
#[derive(Clone, Debug)]
pub struct Config {
    /// API listen address.
    pub listen: SocketAddr,
    /// Data folder.
    pub data_dir: PathBuf,
    /// Which database, and where.
    pub database: DatabaseConfig,
    /// How to reach the DinD daemon.
    pub docker: DockerConfig,
    /// IPv4 pools for sandbox /29s, each /29 or larger.
    pub sandbox_subnets: Vec<Ipv4Net>,
    /// The admin bearer token, if set.
    pub admin_token: Option<Secret>,
    /// Operator maximums and the default timeout.
    pub maximums: Maximums,
    /// Time between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// Size of each sandbox's log ring buffer.
    pub log_buffer_bytes: usize,
    /// Time between the reconciler's full passes.
    pub reconcile_interval: Duration,
    /// The admin account to create at boot, if configured.
    pub bootstrap_admin: Option<BootstrapAdmin>,
    /// The isolation self-test's settings.
    pub selftest: SelftestConfig,
    /// Per-user quota defaults (overridable per user).
    pub quota: crate::quota::Quota,
    /// The key sealing secrets at rest, when given by `AIRLOCK_SECRET_KEY`.
    pub secret_key: Option<Secret>,
    /// Allowed images and the pre-pull's sources.
    pub images: ImagesConfig,
    /// The network plane (egress proxy) settings.
    pub egress: EgressConfig,
    /// Egress policy authority: ceilings file, default policy, infrastructure CIDRs.
    pub policy: PolicyConfig,
}

/// The database backend, chosen by the URL scheme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// A SQLite file (WAL mode).
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A Postgres server; the URL may hold a password, so it is a secret.
    Postgres {
        /// `postgres://…`.
        url: Secret,
    },
}

/// How the controller reaches Docker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DockerConfig {
    /// Mutual TLS over TCP (the only secure choice).
    Tls {
        /// Host name or address as it appears in the server certificate.
        host: String,
        /// TCP port.
        port: u16,
        /// Folder with `ca.pem`, `cert.pem` and `key.pem`.
        cert_dir: PathBuf,
    },
    /// Plain TCP; only with `AIRLOCK_DOCKER_INSECURE=true`.
    InsecureTcp {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// A unix socket; only with `AIRLOCK_DOCKER_INSECURE=true`.
    InsecureUnix {
        /// Socket path.
        path: PathBuf,
    },
}

/// A secret string: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// Every invalid variable found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// One entry per invalid variable, in declaration order.
    pub issues: Vec<ConfigIssue>,
}

/// One invalid variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The variable's name.
    pub var: &'static str,
    /// Its value as given, or `***` for a secret.
    pub value: String,
    /// What was expected instead.
    pub expected: String,
}

/// Collects values and issues while every variable is parsed.
struct Reader<F> {
    lookup: F,
    issues: Vec<ConfigIssue>,
}

// === impl Config ===

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    /// Reads every variable through `lookup`, then fails with all issues at once.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut reader = Reader {
            lookup,
            issues: Vec::new(),
        };
        match reader.config() {
            Some(config) if reader.issues.is_empty() => Ok(config),
            _ => Err(ConfigError {
                issues: reader.issues,
            }),
        }
    }
}

// === impl Reader ===

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    /// Parses every variable first (so every issue is collected), then assembles.
    fn config(&mut self) -> Option<Config> {
        let listen = self.parse(
            ENV_LISTEN,
            DEFAULT_LISTEN,
            "a socket address like 127.0.0.1:8080",
        );
        let data_dir = self.parse_with(ENV_DATA_DIR, DEFAULT_DATA_DIR, parse_abs_path);
        let database = self.database(data_dir.as_ref());
        let docker = self.docker(data_dir.as_ref());
        let subnets = self.parse_with(ENV_SANDBOX_SUBNETS, DEFAULT_SANDBOX_SUBNETS, parse_pools);
        let admin_token = self.secret(ENV_ADMIN_TOKEN);
        let maximums = self.maximums();
        let stop_grace = self.parse_with(ENV_STOP_GRACE, DEFAULT_STOP_GRACE, parse_duration);
        let log_buffer_bytes =
            self.parse_with(ENV_LOG_BUFFER_BYTES, DEFAULT_LOG_BUFFER_BYTES, |v| {
                v.parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or("a positive number of bytes")
            });
        let reconcile_interval = self.optional(ENV_RECONCILE_INTERVAL_S, |v| {
            v.parse::<u64>()
                .ok()
                .filter(|s| (1..=86_400).contains(s))
                .map(Duration::from_secs)
                .ok_or("a whole number of seconds from 1 to 86400")
        });
        let bootstrap_admin = self.bootstrap_admin();
        let selftest = self.selftest(listen);
        let quota = self.quota();
        let secret_key = self.secret_key();
        let images = self.images();
        let egress = self.egress(docker.as_ref());
        let policy = self.policy();
        Some(Config {
            policy: policy?,
            quota: quota?,
            secret_key: secret_key?,
            egress: egress?,
            bootstrap_admin: bootstrap_admin?,
            listen: listen?,
            data_dir: data_dir?,
            database: database?,
            docker: docker?,
            sandbox_subnets: subnets?,
            admin_token: admin_token?,
            maximums: maximums?,
            stop_grace: stop_grace?,
            log_buffer_bytes: log_buffer_bytes?,
            reconcile_interval: reconcile_interval?.unwrap_or(crate::reconcile::DEFAULT_INTERVAL),
            selftest: selftest?,
            images: images?,
        })
    }

    fn raw(&self, var: &str) -> Option<String> {
        (self.lookup)(var).filter(|v| !v.is_empty())
    }

    fn issue(&mut self, var: &'static str, value: &str, secret: bool, expected: impl Into<String>) {
        let value = if secret {
            "***".to_owned()
        } else {
            value.to_owned()
        };
        self.issues.push(ConfigIssue {
            var,
            value,
            expected: expected.into(),
        });
    }

    fn parse<T: std::str::FromStr>(
        &mut self,
        var: &'static str,
        default: &str,
        expected: &'static str,
    ) -> Option<T> {
        self.parse_with(var, default, |v| v.parse().map_err(|_invalid| expected))
    }

    fn parse_with<T>(
        &mut self,
        var: &'static str,
        default: &str,
        parse: impl Fn(&str) -> Result<T, &'static str>,
    ) -> Option<T> {
        let value = self.raw(var).unwrap_or_else(|| default.to_owned());
        self.check(var, &value, parse(value.trim()), false)
    }

    fn optional<T>(
        &mut self,
        var: &'static str,
        parse: impl Fn(&str) -> Result<T, &'static str>,
    ) -> Option<Option<T>> {
        match self.raw(var) {
            None => Some(None),
            Some(value) => self
                .check(var, &value, parse(value.trim()), false)
                .map(Some),
        }
    }

    fn check<T>(
        &mut self,
        var: &'static str,
        value: &str,
        parsed: Result<T, &'static str>,
        secret: bool,
    ) -> Option<T> {
        parsed
            .map_err(|expected| self.issue(var, value, secret, expected))
            .ok()
    }

    fn secret(&mut self, var: &'static str) -> Option<Option<Secret>> {
        match self.raw(var) {
            None => Some(None),
            Some(value) if value.len() >= 16 && !value.chars().any(char::is_whitespace) => {
                Some(Some(Secret(value)))
            }
            Some(value) => {
                self.issue(
                    var,
                    &value,
                    true,
                    "at least 16 characters without whitespace",
                );
                None
            }
        }
    }

    /// Both bootstrap variables or neither; a lone one is an issue on the missing one.
    fn bootstrap_admin(&mut self) -> Option<Option<BootstrapAdmin>> {
        let email = self.raw(ENV_BOOTSTRAP_ADMIN_EMAIL);
        let password = self.raw(ENV_BOOTSTRAP_ADMIN_PASSWORD);
        match (email, password) {
            (None, None) => Some(None),
            (Some(_), None) => {
                let expected = format!("set together with {ENV_BOOTSTRAP_ADMIN_EMAIL}");
                self.issue(ENV_BOOTSTRAP_ADMIN_PASSWORD, "", true, expected);
                None
            }
            (None, Some(_)) => {
                let expected = format!("set together with {ENV_BOOTSTRAP_ADMIN_PASSWORD}");
                self.issue(ENV_BOOTSTRAP_ADMIN_EMAIL, "", false, expected);
                None
            }
            (Some(email), Some(password)) => {
                let email = email.trim().to_lowercase();
                let email_ok = email.split_once('@').is_some_and(|(local, domain)| {
                    !local.is_empty() && !domain.is_empty() && !email.contains(char::is_whitespace)
                });
                if !email_ok {
                    self.issue(ENV_BOOTSTRAP_ADMIN_EMAIL, &email, false, "an email address");
                }
                let problem = crate::credential::password_problem(&password);
                if let Some(problem) = &problem {
                    self.issue(
                        ENV_BOOTSTRAP_ADMIN_PASSWORD,
                        &password,
                        true,
                        problem.clone(),
                    );
                }
                let admin = BootstrapAdmin {
                    email,
                    password: Secret(password),
                };
                (email_ok && problem.is_none()).then_some(Some(admin))
            }
        }
    }

    fn database(&mut self, data_dir: Option<&PathBuf>) -> Option<DatabaseConfig> {
        let Some(url) = self.raw(ENV_DATABASE_URL) else {
            let path = data_dir?.join(DEFAULT_SQLITE_FILE);
            return Some(DatabaseConfig::Sqlite { path });
        };
        let parsed = parse_database_url(&url);
        self.check(ENV_DATABASE_URL, &url, parsed, true)
    }

    fn docker(&mut self, data_dir: Option<&PathBuf>) -> Option<DockerConfig> {
        let insecure = self.parse_with(ENV_DOCKER_INSECURE, DEFAULT_DOCKER_INSECURE, parse_bool);
        let cert_dir = self.optional(ENV_DOCKER_CERT_PATH, parse_abs_path);
        let host = self
            .raw(ENV_DOCKER_HOST)
            .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_owned());
        let parsed = parse_docker_host(&host);
        let endpoint = self.check(ENV_DOCKER_HOST, &host, parsed, false)?;
        let (insecure, cert_dir) = (insecure?, cert_dir?);
        let cert_dir = cert_dir.or_else(|| Some(data_dir?.join(DEFAULT_DOCKER_CERT_SUBDIR)));
        let config = match (endpoint, insecure) {
            (Endpoint::Tcp { host, port }, false) => DockerConfig::Tls {
                host,
                port,
                cert_dir: cert_dir?,
            },
            (Endpoint::Tcp { host, port }, true) => DockerConfig::InsecureTcp { host, port },
            (Endpoint::Unix(path), true) => DockerConfig::InsecureUnix { path },
            (Endpoint::Unix(_), false) => {
                self.issue(
                    ENV_DOCKER_HOST,
                    &host,
                    false,
                    "tcp://HOST:PORT (a unix socket needs AIRLOCK_DOCKER_INSECURE=true)",
                );
                return None;
            }
        };
        Some(config)
    }

    fn maximums(&mut self) -> Option<Maximums> {
        let cpus = self.parse_with(ENV_MAX_CPUS, DEFAULT_MAX_CPUS, |v| {
            v.parse::<f64>()
                .ok()
                .and_then(Cpus::from_f64)
                .filter(|c| *c >= Cpus::MIN)
                .ok_or("a number of CPUs of at least 0.01")
        });
        let memory_mb = self.parse_with(ENV_MAX_MEMORY_MB, DEFAULT_MAX_MEMORY_MB, |v| {
            positive(v, "a positive number of MiB")
        });
        let pids = self.parse_with(ENV_MAX_PIDS, DEFAULT_MAX_PIDS, |v| {
            positive(v, "a positive number of processes")
        });
        let disk_mb = self.optional(ENV_MAX_DISK_MB, |v| positive(v, "a positive number of MiB"));
        let timeout = self.parse_with(ENV_MAX_TIMEOUT, DEFAULT_MAX_TIMEOUT, parse_duration);
        let default_timeout =
            self.parse_with(ENV_DEFAULT_TIMEOUT, DEFAULT_DEFAULT_TIMEOUT, parse_duration);
        let (timeout, default_timeout) = (timeout?, default_timeout?);
        if default_timeout > timeout {
            let value = self
                .raw(ENV_DEFAULT_TIMEOUT)
                .unwrap_or_else(|| DEFAULT_DEFAULT_TIMEOUT.to_owned());
            self.issue(
                ENV_DEFAULT_TIMEOUT,
                &value,
                false,
                "a duration no longer than AIRLOCK_MAX_TIMEOUT",
            );
            return None;
        }
        let limits = Limits {
            cpus: cpus?,
            memory_mb: memory_mb?,
            pids: pids?,
            disk_mb: disk_mb?,
        };
        Some(Maximums {
            limits,
            timeout,
            default_timeout,
        })
    }
}

/// Where the Docker daemon listens, before the transport is chosen.
enum Endpoint {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

fn positive_or_zero(v: &str, expected: &'static str) -> Result<u64, &'static str> {
    v.parse().map_err(|_invalid| expected)
}

fn positive(v: &str, expected: &'static str) -> Result<u64, &'static str> {
    v.parse().ok().filter(|n| *n > 0).ok_or(expected)
}

fn parse_abs_path(v: &str) -> Result<PathBuf, &'static str> {
    let path = PathBuf::from(v);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err("an absolute path")
    }
}

fn parse_bool(v: &str) -> Result<bool, &'static str> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("true or false"),
    }
}

/// Parses `30s`, `5m`, `1h`, `2d` or `250ms` (one number and one unit; never zero): the
/// grammar the egress proxy shares, `airlock_wire::parse_duration`.
pub fn parse_duration(v: &str) -> Result<Duration, &'static str> {
    airlock_wire::parse_positive_duration(v)
        .map_err(|_invalid| "a positive duration like 30s, 5m or 1h")
}

fn parse_pools(v: &str) -> Result<Vec<Ipv4Net>, &'static str> {
    const EXPECTED: &str = "comma-separated IPv4 CIDRs, each /29 or larger, e.g. 10.213.0.0/16";
    let pools = v
        .split(',')
        .map(|part| match part.trim().parse::<IpNet>() {
            Ok(IpNet::V4(net)) if net.prefix_len() <= SANDBOX_PREFIX && net == net.trunc() => {
                Ok(net)
            }
            _ => Err(EXPECTED),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let overlaps = pools
        .iter()
        .enumerate()
        .any(|(i, a)| pools[..i].iter().any(|b| a.contains(b) || b.contains(a)));
    if overlaps {
        return Err("IPv4 CIDRs that do not overlap");
    }
    Ok(pools)
}

fn parse_database_url(url: &str) -> Result<DatabaseConfig, &'static str> {
    const EXPECTED: &str = "postgres://…, postgresql://… or sqlite:/ABSOLUTE/PATH";
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // Refuse what sqlx would refuse at connect time (a bad port, an unknown `sslmode`), so
        // it is a configuration error; TLS modes (`require`, `verify-ca`, `verify-full`) work.
        sqlx::postgres::PgConnectOptions::from_str(url).map_err(|_invalid| {
            "a valid postgres:// URL (options: sslmode=disable|prefer|require|verify-ca|verify-full, sslrootcert=PATH)"
        })?;
        return Ok(DatabaseConfig::Postgres {
            url: Secret(url.to_owned()),
        });
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or(EXPECTED)?;
    let path = parse_abs_path(path).map_err(|_invalid| EXPECTED)?;
    Ok(DatabaseConfig::Sqlite { path })
}

fn parse_docker_host(v: &str) -> Result<Endpoint, &'static str> {
    const EXPECTED: &str = "tcp://HOST:PORT or unix:///PATH";
    if let Some(path) = v.strip_prefix("unix://") {
        return parse_abs_path(path)
            .map(Endpoint::Unix)
            .map_err(|_invalid| EXPECTED);
    }
    let authority = v.strip_prefix("tcp://").ok_or(EXPECTED)?;
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    let (host, port) = authority.rsplit_once(':').ok_or(EXPECTED)?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or(EXPECTED)?;
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let valid = !bare.is_empty()
        && bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
        && (bare.contains(':') == host.starts_with('['));
    if !valid {
        return Err(EXPECTED);
    }
    Ok(Endpoint::Tcp {
        host: bare.to_owned(),
        port,
    })
}

// === impl DockerConfig ===

impl DockerConfig {
    /// The daemon's IP address, when it is reached over TCP at an address (not a name).
    pub fn host_ip(&self) -> Option<std::net::IpAddr> {
        match self {
            Self::Tls { host, .. } | Self::InsecureTcp { host, .. } => {
                host.trim_matches(['[', ']']).parse().ok()
            }
            Self::InsecureUnix { .. } => None,
        }
    }
}

// === impl Secret ===

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

// === impl ConfigError ===

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration ({} problem(s))",
            self.issues.len()
        )?;
        for issue in &self.issues {
            write!(
                f,
                "\n  {}={:?}: expected {}",
                issue.var, issue.value, issue.expected
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
