//! The configuration of `airlock serve`, read from `AIRLOCK_*` variables.
//!
//! Every variable is declared once below with its default beside it. [`Config::from_lookup`]
//! parses all of them before failing, so one run reports every mistake; secrets are redacted
//! in errors and in `Debug`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::sandbox::Maximums;
use reader::Reader;
use values::{
    parse_abs_path, parse_bool, parse_database_url, parse_docker_host, parse_pools, positive,
    positive_or_zero, Endpoint,
};
pub use values::{parse_duration, postgres_tls};

mod accounts;
mod limits;
mod reader;
mod values;

pub use accounts::{
    BootstrapAdmin, DEFAULT_INITIAL_TOKEN_TTL, ENV_BOOTSTRAP_ADMIN_EMAIL,
    ENV_BOOTSTRAP_ADMIN_PASSWORD, ENV_INITIAL_TOKEN_TTL,
};
pub use limits::{
    DEFAULT_DEFAULT_TIMEOUT, DEFAULT_MAX_CPUS, DEFAULT_MAX_MEMORY_MB, DEFAULT_MAX_PIDS,
    DEFAULT_MAX_SUBNETS_PER_USER, DEFAULT_MAX_TIMEOUT, ENV_DEFAULT_TIMEOUT, ENV_MAX_CPUS,
    ENV_MAX_DISK_MB, ENV_MAX_MEMORY_MB, ENV_MAX_PIDS, ENV_MAX_SUBNETS_PER_USER, ENV_MAX_TIMEOUT,
};

// Network plane variables.
mod egress;
pub use egress::{
    EgressConfig, DEFAULT_EGRESS, DEFAULT_EGRESS_IMAGE, DEFAULT_EGRESS_SUBNET, ENV_EGRESS,
    ENV_EGRESS_ADMIN_ADDR, ENV_EGRESS_ALLOW_CIDRS, ENV_EGRESS_BUNDLE, ENV_EGRESS_DNS,
    ENV_EGRESS_IMAGE, ENV_EGRESS_SUBNET, ENV_EGRESS_UPSTREAM_CA,
};

// Isolation self-test variables.
mod selftest;
pub use selftest::{
    SelftestConfig, DEFAULT_PROBE_IMAGE, DEFAULT_SELFTEST_ADMIN_PORT, ENV_PROBE_IMAGE,
    ENV_SELFTEST_ADMIN_PORT, ENV_SELFTEST_CONTROLLER, ENV_SELFTEST_NODE_ADDRS,
    ENV_SELFTEST_UPSTREAM,
};
// Quotas and the secret key.
mod quota;
pub use quota::{
    parse_secret_key, DEFAULT_QUOTA_CREATES_PER_HOUR, DEFAULT_QUOTA_CREATES_PER_MIN,
    DEFAULT_QUOTA_MAX_CPUS, DEFAULT_QUOTA_MAX_LIFETIME, DEFAULT_QUOTA_MAX_MEMORY_MB,
    DEFAULT_QUOTA_MAX_SANDBOXES, DEFAULT_SECRET_KEY_FILE, ENV_QUOTA_CREATES_PER_HOUR,
    ENV_QUOTA_CREATES_PER_MIN, ENV_QUOTA_MAX_CPUS, ENV_QUOTA_MAX_LIFETIME, ENV_QUOTA_MAX_MEMORY_MB,
    ENV_QUOTA_MAX_SANDBOXES, ENV_SECRET_KEY, ENV_SECRET_KEY_FILE,
};
// Operator ceilings, the default policy and extra infrastructure CIDRs.
mod policy;
pub use policy::{
    PolicyConfig, PolicyFile, DEFAULT_DEFAULT_POLICY, ENV_DEFAULT_POLICY, ENV_INFRA_CIDRS,
    ENV_POLICY_FILE,
};
// Table bounds: ledger retention and cap, secrets per user.
mod tables;
pub use tables::{
    TablesConfig, DEFAULT_LEDGER_MAX_ROWS_PER_SANDBOX, DEFAULT_LEDGER_RETENTION,
    DEFAULT_QUOTA_MAX_SECRETS, ENV_LEDGER_MAX_ROWS_PER_SANDBOX, ENV_LEDGER_RETENTION,
    ENV_QUOTA_MAX_SECRETS,
};
// The API listener: timeouts, connection caps, trusted proxies.
mod http;
pub use http::{
    HttpConfig, TlsFiles, DEFAULT_HEADER_TIMEOUT, DEFAULT_KEEPALIVE_IDLE, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_SOURCE, DEFAULT_REQUEST_TIMEOUT, ENV_HEADER_TIMEOUT,
    ENV_KEEPALIVE_IDLE, ENV_MAX_CONNECTIONS, ENV_MAX_CONNECTIONS_PER_SOURCE, ENV_REQUEST_TIMEOUT,
    ENV_TLS_CERT, ENV_TLS_KEY, ENV_TRUSTED_PROXIES,
};
// How sandboxes run: home, allowed uids, root images.
mod run;
pub use run::{
    RunConfig, DEFAULT_AGENT_IMAGE, DEFAULT_HOME_TMPFS_MB, DEFAULT_INIT_BINARY,
    DEFAULT_ROOT_IMAGES, ENV_AGENT_IMAGE, ENV_ALLOWED_UIDS, ENV_HOME_TMPFS_MB, ENV_INIT_BINARY,
    ENV_ROOT_IMAGES,
};
// Volumes: sizes, quotas, the usage sampler.
mod volumes;
pub use volumes::{
    VolumesConfig, DEFAULT_MAX_VOLUME_MB, DEFAULT_QUOTA_MAX_VOLUMES,
    DEFAULT_QUOTA_MAX_VOLUME_BYTES, DEFAULT_UPLOAD_MEMORY_MB, DEFAULT_VOLUME_HELPER_IMAGE,
    DEFAULT_VOLUME_SAMPLE_INTERVAL, ENV_FOLDERS_ROOT, ENV_MAX_VOLUME_MB, ENV_QUOTA_MAX_VOLUMES,
    ENV_QUOTA_MAX_VOLUME_BYTES, ENV_UPLOAD_MEMORY_MB, ENV_VOLUME_HELPER_IMAGE,
    ENV_VOLUME_SAMPLE_INTERVAL,
};
// Warm pools.
mod pools;
pub use pools::ENV_POOLS;
// Allowed images, pre-pull and first boot.
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
/// A bearer token `/metrics` requires when set (unset: `/metrics` needs no token). Secret.
pub const ENV_METRICS_TOKEN: &str = "AIRLOCK_METRICS_TOKEN";
/// Time between SIGTERM and SIGKILL when stopping.
pub const ENV_STOP_GRACE: &str = "AIRLOCK_STOP_GRACE";
/// Default of [`ENV_STOP_GRACE`].
pub const DEFAULT_STOP_GRACE: &str = "10s";
/// Size of each sandbox's log ring buffer, in bytes.
pub const ENV_LOG_BUFFER_BYTES: &str = "AIRLOCK_LOG_BUFFER_BYTES";
/// Default of [`ENV_LOG_BUFFER_BYTES`] (1 MiB).
pub const DEFAULT_LOG_BUFFER_BYTES: &str = "1048576";
/// The node name written into `airlock.node` labels until several nodes are supported.
pub const DEFAULT_NODE: &str = "local";
/// Whole seconds between the reconciler's full passes (1..=86400).
pub const ENV_RECONCILE_INTERVAL_S: &str = "AIRLOCK_RECONCILE_INTERVAL_S";
/// Default time between the reconciler's full passes.
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(10);
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
    /// The token `/metrics` requires, if set.
    pub metrics_token: Option<Secret>,
    /// Operator maximums and the default timeout.
    pub maximums: Maximums,
    /// Most /29s one user's sandboxes may hold at once.
    pub subnets_per_user: u64,
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
    pub quota: crate::accounts::quota::Quota,
    /// The key sealing secrets at rest, when given by `AIRLOCK_SECRET_KEY`.
    pub secret_key: Option<Secret>,
    /// The secret key file (when `secret_key` is unset): `AIRLOCK_SECRET_KEY_FILE`, else
    /// `<data_dir>/secret.key`.
    pub secret_key_file: PathBuf,
    /// Allowed images and the pre-pull's sources.
    pub images: ImagesConfig,
    /// The network plane (egress proxy) settings.
    pub egress: EgressConfig,
    /// Egress policy authority: ceilings file, default policy, infrastructure CIDRs.
    pub policy: PolicyConfig,
    /// Table bounds: ledger retention and cap, secrets per user.
    pub tables: TablesConfig,
    /// The API listener's timeouts, connection caps and trusted proxies.
    pub http: HttpConfig,
    /// How long the first-boot admin's API token lasts.
    pub initial_token_ttl: Duration,
    /// How sandboxes run: home size, allowed uids, root images.
    pub run: RunConfig,
    /// Volumes: sizes, quotas, the usage sampler.
    pub volumes: VolumesConfig,
    /// The node's warm pools as `AIRLOCK_POOLS` has them (`None`: unset; the stored
    /// document, if any, applies).
    pub pools: Option<crate::pool::doc::CheckedDoc>,
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
        let metrics_token = self.secret(ENV_METRICS_TOKEN);
        let maximums = self.maximums();
        let subnets_per_user = self.subnets_per_user();
        let stop_grace = self.parse_with(ENV_STOP_GRACE, DEFAULT_STOP_GRACE, parse_duration);
        let log_buffer_bytes = self.log_buffer_bytes();
        let reconcile_interval = self.reconcile_interval();
        let bootstrap_admin = self.bootstrap_admin();
        let selftest = self.selftest(listen);
        let quota = self.quota();
        let secret_key = self.secret_key();
        let secret_key_file = self.optional(ENV_SECRET_KEY_FILE, parse_abs_path);
        let images = self.images();
        let egress = self.egress(docker.as_ref());
        let policy = self.policy();
        let tables = self.tables();
        let http = self.http();
        let initial_token_ttl = self.initial_token_ttl();
        let run = self.run();
        let volumes = self.volumes();
        let pools = self.pools(&pools::PoolContext {
            maximums: maximums.as_ref(),
            run: run.as_ref(),
            volumes: volumes.as_ref(),
            images: images.as_ref(),
        });
        Some(Config {
            pools: pools?,
            tables: tables?,
            http: http?,
            initial_token_ttl: initial_token_ttl?,
            volumes: volumes?,
            run: run?,
            policy: policy?,
            quota: quota?,
            secret_key: secret_key?,
            secret_key_file: secret_key_file?.unwrap_or_else(|| {
                data_dir
                    .clone()
                    .unwrap_or_default()
                    .join(DEFAULT_SECRET_KEY_FILE)
            }),
            egress: egress?,
            bootstrap_admin: bootstrap_admin?,
            listen: listen?,
            data_dir: data_dir?,
            database: database?,
            docker: docker?,
            sandbox_subnets: subnets?,
            admin_token: admin_token?,
            metrics_token: metrics_token?,
            maximums: maximums?,
            subnets_per_user: subnets_per_user?,
            stop_grace: stop_grace?,
            log_buffer_bytes: log_buffer_bytes?,
            reconcile_interval: reconcile_interval?.unwrap_or(DEFAULT_RECONCILE_INTERVAL),
            selftest: selftest?,
            images: images?,
        })
    }

    fn log_buffer_bytes(&mut self) -> Option<usize> {
        self.parse_with(ENV_LOG_BUFFER_BYTES, DEFAULT_LOG_BUFFER_BYTES, |v| {
            v.parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or("a positive number of bytes")
        })
    }

    fn reconcile_interval(&mut self) -> Option<Option<Duration>> {
        self.optional(ENV_RECONCILE_INTERVAL_S, |v| {
            v.parse::<u64>()
                .ok()
                .filter(|s| (1..=86_400).contains(s))
                .map(Duration::from_secs)
                .ok_or("a whole number of seconds from 1 to 86400")
        })
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
