//! The API listener's variables: how long a client may take to send a request head, how long
//! an idle keep-alive connection stays open, how long a non-streaming request may run, how
//! many connections are served at once (in all and per source address), and which reverse
//! proxies' `X-Forwarded-For` is believed; and the API's own TLS certificate and key
//! (`AIRLOCK_TLS_CERT` and `AIRLOCK_TLS_KEY`, set together or not at all).

use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use super::values::parse_duration;
use super::Reader;

/// Longest time a client may take to send a whole request head.
pub const ENV_HEADER_TIMEOUT: &str = "AIRLOCK_HEADER_TIMEOUT";
/// Default of [`ENV_HEADER_TIMEOUT`].
pub const DEFAULT_HEADER_TIMEOUT: &str = "10s";
/// How long a keep-alive connection with no request in flight stays open.
pub const ENV_KEEPALIVE_IDLE: &str = "AIRLOCK_KEEPALIVE_IDLE";
/// Default of [`ENV_KEEPALIVE_IDLE`].
pub const DEFAULT_KEEPALIVE_IDLE: &str = "60s";
/// Longest time a non-streaming request may take (logs, exec, wait and create excepted).
pub const ENV_REQUEST_TIMEOUT: &str = "AIRLOCK_REQUEST_TIMEOUT";
/// Default of [`ENV_REQUEST_TIMEOUT`].
pub const DEFAULT_REQUEST_TIMEOUT: &str = "60s";
/// Connections served at once; more are answered `503` and closed.
pub const ENV_MAX_CONNECTIONS: &str = "AIRLOCK_MAX_CONNECTIONS";
/// Default of [`ENV_MAX_CONNECTIONS`].
pub const DEFAULT_MAX_CONNECTIONS: &str = "1024";
/// Connections served at once from one source address; more are answered `429` and closed.
pub const ENV_MAX_CONNECTIONS_PER_SOURCE: &str = "AIRLOCK_MAX_CONNECTIONS_PER_SOURCE";
/// Default of [`ENV_MAX_CONNECTIONS_PER_SOURCE`].
pub const DEFAULT_MAX_CONNECTIONS_PER_SOURCE: &str = "64";
/// Comma-separated CIDRs of reverse proxies whose `X-Forwarded-For` names the client.
pub const ENV_TRUSTED_PROXIES: &str = "AIRLOCK_TRUSTED_PROXIES";
/// The API's TLS certificate chain (PEM, leaf first); with [`ENV_TLS_KEY`] the API serves
/// HTTPS only.
pub const ENV_TLS_CERT: &str = "AIRLOCK_TLS_CERT";
/// The private key (PEM) of [`ENV_TLS_CERT`].
pub const ENV_TLS_KEY: &str = "AIRLOCK_TLS_KEY";

/// The files of the API's TLS identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
}

/// The listener's limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Longest time to receive a request head.
    pub header_timeout: Duration,
    /// Idle keep-alive lifetime.
    pub keepalive_idle: Duration,
    /// Longest non-streaming request.
    pub request_timeout: Duration,
    /// Global connection cap.
    pub max_connections: usize,
    /// Per-source connection cap.
    pub max_connections_per_source: usize,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Serve HTTPS with these files; plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
}

// === impl HttpConfig ===

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            keepalive_idle: Duration::from_secs(60),
            request_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_connections_per_source: 64,
            trusted_proxies: Vec::new(),
            tls: None,
        }
    }
}

// === impl Reader ===

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    /// Parses the listener's variables.
    pub(super) fn http(&mut self) -> Option<HttpConfig> {
        let header_timeout =
            self.parse_with(ENV_HEADER_TIMEOUT, DEFAULT_HEADER_TIMEOUT, parse_duration);
        let keepalive_idle =
            self.parse_with(ENV_KEEPALIVE_IDLE, DEFAULT_KEEPALIVE_IDLE, parse_duration);
        let request_timeout =
            self.parse_with(ENV_REQUEST_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, parse_duration);
        let max_connections =
            self.parse_with(ENV_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS, parse_count);
        let per_source = self.parse_with(
            ENV_MAX_CONNECTIONS_PER_SOURCE,
            DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
            parse_count,
        );
        let trusted = self.optional(ENV_TRUSTED_PROXIES, parse_cidrs);
        let tls = match (self.raw(ENV_TLS_CERT), self.raw(ENV_TLS_KEY)) {
            (Some(cert), Some(key)) => Some(Some(TlsFiles {
                cert: cert.into(),
                key: key.into(),
            })),
            (None, None) => Some(None),
            (Some(_), None) => {
                self.issue(ENV_TLS_KEY, "", false, "set together with AIRLOCK_TLS_CERT");
                None
            }
            (None, Some(_)) => {
                self.issue(ENV_TLS_CERT, "", false, "set together with AIRLOCK_TLS_KEY");
                None
            }
        };
        Some(HttpConfig {
            header_timeout: header_timeout?,
            keepalive_idle: keepalive_idle?,
            request_timeout: request_timeout?,
            max_connections: max_connections?,
            max_connections_per_source: per_source?,
            trusted_proxies: trusted?.unwrap_or_default(),
            tls: tls?,
        })
    }
}

fn parse_count(v: &str) -> Result<usize, &'static str> {
    v.parse::<usize>()
        .ok()
        .filter(|n| (1..=1_000_000).contains(n))
        .ok_or("a whole number from 1 to 1000000")
}

fn parse_cidrs(v: &str) -> Result<Vec<IpNet>, &'static str> {
    v.split(',')
        .map(|part| {
            let part = part.trim();
            part.parse::<IpNet>()
                .or_else(|_| part.parse::<std::net::IpAddr>().map(IpNet::from))
                .map(|net| net.trunc())
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_invalid| "comma-separated IP addresses or CIDRs, e.g. 10.0.0.0/8,::1")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config::Config;

    fn read(vars: &[(&str, &str)]) -> Result<HttpConfig, Vec<&'static str>> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|var| vars.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone()))
            .map(|config| config.http)
            .map_err(|error| error.issues.iter().map(|issue| issue.var).collect())
    }

    #[test]
    fn defaults() {
        assert_eq!(read(&[]).unwrap(), HttpConfig::default());
    }

    #[test]
    fn every_variable_parses() {
        let http = read(&[
            (ENV_HEADER_TIMEOUT, "2s"),
            (ENV_KEEPALIVE_IDLE, "5m"),
            (ENV_REQUEST_TIMEOUT, "30s"),
            (ENV_MAX_CONNECTIONS, "5000"),
            (ENV_MAX_CONNECTIONS_PER_SOURCE, "10"),
            (ENV_TRUSTED_PROXIES, "10.0.0.1, 192.168.0.0/16,::1"),
            (ENV_TLS_CERT, "/etc/airlock/api.pem"),
            (ENV_TLS_KEY, "/etc/airlock/api.key"),
        ])
        .unwrap();
        let tls = http.tls.clone().unwrap();
        assert_eq!(tls.cert, PathBuf::from("/etc/airlock/api.pem"));
        assert_eq!(tls.key, PathBuf::from("/etc/airlock/api.key"));
        assert_eq!(http.header_timeout, Duration::from_secs(2));
        assert_eq!(http.keepalive_idle, Duration::from_secs(300));
        assert_eq!(http.request_timeout, Duration::from_secs(30));
        assert_eq!(http.max_connections, 5000);
        assert_eq!(http.max_connections_per_source, 10);
        let nets: Vec<String> = http.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["10.0.0.1/32", "192.168.0.0/16", "::1/128"]);
    }

    #[test]
    fn mistakes_are_all_reported() {
        let issues = read(&[
            (ENV_HEADER_TIMEOUT, "0s"),
            (ENV_KEEPALIVE_IDLE, "forever"),
            (ENV_REQUEST_TIMEOUT, "-1"),
            (ENV_MAX_CONNECTIONS, "0"),
            (ENV_MAX_CONNECTIONS_PER_SOURCE, "many"),
            (ENV_TRUSTED_PROXIES, "10.0.0.0/8,proxy.local"),
            (ENV_TLS_CERT, "/etc/airlock/api.pem"),
        ])
        .unwrap_err();
        assert_eq!(
            issues,
            [
                ENV_HEADER_TIMEOUT,
                ENV_KEEPALIVE_IDLE,
                ENV_REQUEST_TIMEOUT,
                ENV_MAX_CONNECTIONS,
                ENV_MAX_CONNECTIONS_PER_SOURCE,
                ENV_TRUSTED_PROXIES,
                ENV_TLS_KEY
            ]
        );
    }
}
