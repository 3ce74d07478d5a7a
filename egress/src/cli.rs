//! The command line: `airlock-egress serve` and `airlock-egress check`.
//!
//! `serve` flags are mapped onto their `AIRLOCK_EGRESS_*` variables and parsed by
//! `Config::from_lookup`, so a flag and its variable share one parser and one error report
//! (a flag wins over its variable). Repeatable flags join into the variable's comma list.

use std::collections::HashMap;

use clap::{Parser, Subcommand};

use crate::check::CheckArgs;
use crate::config::{
    Config, ConfigError, ENV_ADMIN_LISTEN, ENV_ADMIN_TLS_DIR, ENV_ALLOW_CIDRS, ENV_CONNECT_TIMEOUT,
    ENV_DENY_CIDRS, ENV_DNS, ENV_IDLE_TIMEOUT, ENV_LISTEN, ENV_MAX_CONNECTIONS,
    ENV_MAX_CONNECTIONS_PER_SOURCE, ENV_MAX_HEADER_BYTES, ENV_MAX_PENDING_HEADS_PER_SOURCE,
    ENV_MODE, ENV_POLICY, ENV_SHUTDOWN_GRACE, ENV_SPOOL_CAPACITY, ENV_SPOOL_PER_SANDBOX,
};
use crate::config::{ENV_CREDENTIALS, ENV_MITM_CA_CERT, ENV_MITM_CA_KEY, ENV_UPSTREAM_CA};
use crate::log_writer::{BatchWriter, LogGuard};

/// `airlock-egress`: the SSRF-safe egress proxy of an Airlock node.
#[derive(Debug, Parser)]
#[command(name = "airlock-egress", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
// Parsed once at start; the size of the larger variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Serve(ServeArgs),
    /// Print what `serve` would decide for one request, as JSON (exit 0 allow, 1 deny, 2 bad
    /// flags).
    Check(CheckArgs),
}

/// Flags of `airlock-egress serve`; each also reads its `AIRLOCK_EGRESS_*` variable.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Proxy listen address (env AIRLOCK_EGRESS_LISTEN) (default 0.0.0.0:3128).
    #[arg(long)]
    pub listen: Option<String>,
    /// Admin API listen address (env AIRLOCK_EGRESS_ADMIN_LISTEN).
    #[arg(long)]
    pub admin_listen: Option<String>,
    /// Directory with ca.pem, cert.pem, key.pem for the mTLS admin API
    /// (env AIRLOCK_EGRESS_ADMIN_TLS_DIR).
    #[arg(long)]
    pub admin_tls_dir: Option<String>,
    /// DNS server ADDR or ADDR:PORT, repeatable (env AIRLOCK_EGRESS_DNS, comma-separated)
    /// (default /etc/resolv.conf).
    #[arg(long)]
    pub dns: Vec<String>,
    /// Operator exception (exact CIDR), repeatable (env AIRLOCK_EGRESS_ALLOW_CIDRS).
    #[arg(long = "allow-cidr")]
    pub allow_cidr: Vec<String>,
    /// Infrastructure CIDR that no policy or exception opens, repeatable
    /// (env AIRLOCK_EGRESS_DENY_CIDRS, comma-separated).
    #[arg(long = "deny-cidr")]
    pub deny_cidr: Vec<String>,
    /// Default policy file (JSON) (env AIRLOCK_EGRESS_POLICY).
    #[arg(long)]
    pub policy: Option<String>,
    /// standalone or controlled (env AIRLOCK_EGRESS_MODE) (default standalone).
    #[arg(long)]
    pub mode: Option<String>,
    /// Largest request head in bytes (env AIRLOCK_EGRESS_MAX_HEADER_BYTES).
    #[arg(long)]
    pub max_header_bytes: Option<String>,
    /// Upstream connect timeout, e.g. 10s (env AIRLOCK_EGRESS_CONNECT_TIMEOUT).
    #[arg(long)]
    pub connect_timeout: Option<String>,
    /// Idle timeout, e.g. 300s (env AIRLOCK_EGRESS_IDLE_TIMEOUT).
    #[arg(long)]
    pub idle_timeout: Option<String>,
    /// Global client connection cap (env AIRLOCK_EGRESS_MAX_CONNECTIONS).
    #[arg(long)]
    pub max_connections: Option<String>,
    /// Drain deadline on shutdown, e.g. 10s (env AIRLOCK_EGRESS_SHUTDOWN_GRACE).
    #[arg(long)]
    pub shutdown_grace: Option<String>,
    /// Ledger spool capacity (env AIRLOCK_EGRESS_SPOOL_CAPACITY).
    #[arg(long)]
    pub spool_capacity: Option<String>,
    /// Ledger events one sandbox may hold (env AIRLOCK_EGRESS_SPOOL_PER_SANDBOX) (default 4096).
    #[arg(long)]
    pub spool_per_sandbox: Option<String>,
    /// Open client connections per source address
    /// (env AIRLOCK_EGRESS_MAX_CONNECTIONS_PER_SOURCE) (default 256).
    #[arg(long)]
    pub max_connections_per_source: Option<String>,
    /// Connections per source address still sending a request head
    /// (env AIRLOCK_EGRESS_MAX_PENDING_HEADS_PER_SOURCE) (default 32).
    #[arg(long)]
    pub max_pending_heads_per_source: Option<String>,
    /// Inspection CA certificate (PEM) for the policy's `terminate` endpoints
    /// (env AIRLOCK_EGRESS_MITM_CA_CERT).
    #[arg(long)]
    pub mitm_ca_cert: Option<String>,
    /// Inspection CA key (PKCS#8 PEM) (env AIRLOCK_EGRESS_MITM_CA_KEY).
    #[arg(long)]
    pub mitm_ca_key: Option<String>,
    /// A credential an endpoint binds, NAME=FILE, repeatable
    /// (env AIRLOCK_EGRESS_CREDENTIALS, comma-separated).
    #[arg(long)]
    pub credential: Vec<String>,
    /// Extra roots (PEM) for verifying inspected upstreams (env AIRLOCK_EGRESS_UPSTREAM_CA).
    #[arg(long)]
    pub upstream_ca: Option<String>,
}

// === impl ServeArgs ===

impl ServeArgs {
    /// The flags given, keyed by the variable they override.
    pub fn overrides(&self) -> HashMap<&'static str, String> {
        let single = [
            (ENV_LISTEN, &self.listen),
            (ENV_ADMIN_LISTEN, &self.admin_listen),
            (ENV_ADMIN_TLS_DIR, &self.admin_tls_dir),
            (ENV_POLICY, &self.policy),
            (ENV_MODE, &self.mode),
            (ENV_MAX_HEADER_BYTES, &self.max_header_bytes),
            (ENV_CONNECT_TIMEOUT, &self.connect_timeout),
            (ENV_IDLE_TIMEOUT, &self.idle_timeout),
            (ENV_MAX_CONNECTIONS, &self.max_connections),
            (ENV_SHUTDOWN_GRACE, &self.shutdown_grace),
            (ENV_SPOOL_CAPACITY, &self.spool_capacity),
            (ENV_SPOOL_PER_SANDBOX, &self.spool_per_sandbox),
            (
                ENV_MAX_CONNECTIONS_PER_SOURCE,
                &self.max_connections_per_source,
            ),
            (
                ENV_MAX_PENDING_HEADS_PER_SOURCE,
                &self.max_pending_heads_per_source,
            ),
            (ENV_MITM_CA_CERT, &self.mitm_ca_cert),
            (ENV_MITM_CA_KEY, &self.mitm_ca_key),
            (ENV_UPSTREAM_CA, &self.upstream_ca),
        ];
        let mut map: HashMap<&'static str, String> = single
            .into_iter()
            .filter_map(|(var, value)| value.clone().map(|v| (var, v)))
            .collect();
        for (var, values) in [
            (ENV_DNS, &self.dns),
            (ENV_ALLOW_CIDRS, &self.allow_cidr),
            (ENV_DENY_CIDRS, &self.deny_cidr),
            (ENV_CREDENTIALS, &self.credential),
        ] {
            if !values.is_empty() {
                map.insert(var, values.join(","));
            }
        }
        map
    }

    /// The configuration: flags first, then `lookup` (the environment in the binary).
    pub fn config(&self, lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let overrides = self.overrides();
        Config::from_lookup(|var| overrides.get(var).cloned().or_else(|| lookup(var)))
    }
}

/// Installs the tracing subscriber: `RUST_LOG` filter (default `info`), JSON lines when
/// `LOG_FORMAT=json`, written to stderr in batches by a background thread
/// ([`crate::log_writer`]), so the request path never waits on a `write(2)` per ledger line.
/// The writer is not lossy: when its buffer is full, logging waits rather than dropping a
/// ledger line. Keep the returned guard alive until exit; dropping it writes what is buffered.
pub fn init_tracing() -> std::io::Result<LogGuard> {
    use std::io::IsTerminal;

    use tracing_subscriber::EnvFilter;
    let (writer, guard) = BatchWriter::start(std::io::stderr())?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    // A second init (tests) keeps the first subscriber; that is not an error worth reporting.
    let _ = if json {
        // The current span (the client connection) is enough context; the list of every
        // enclosing span would repeat it in each line.
        builder
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_and_join() {
        let cli = Cli::try_parse_from([
            "airlock-egress",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--allow-cidr",
            "127.0.0.2/32",
            "--allow-cidr",
            "127.0.0.3/32",
            "--dns",
            "127.0.0.1:5353",
            "--deny-cidr",
            "10.213.0.0/16",
            "--deny-cidr",
            "10.212.0.2",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        let env: HashMap<&str, &str> =
            HashMap::from([(ENV_LISTEN, "0.0.0.0:1"), (ENV_MODE, "controlled")]);
        let config = args
            .config(|k| env.get(k).map(|v| (*v).to_owned()))
            .unwrap();
        assert_eq!(config.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.allow_cidrs.len(), 2);
        assert_eq!(config.deny_cidrs.len(), 2);
        assert_eq!(config.mode, crate::config::ProxyMode::Controlled);
    }

    #[test]
    fn check_takes_the_request_after_double_dash() {
        let cli = Cli::try_parse_from([
            "airlock-egress",
            "check",
            "--no-dns",
            "--resolve",
            "a.test=192.0.2.1",
            "--",
            "GET http://a.test/",
        ])
        .unwrap();
        let Command::Check(args) = cli.command else {
            panic!("not check")
        };
        assert!(args.no_dns);
        assert_eq!(args.request, ["GET http://a.test/"]);
    }
}
