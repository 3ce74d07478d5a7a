//! The value grammars of the configuration: counts, booleans, absolute paths, durations,
//! address pools, database URLs and Docker hosts. Each returns what it expected on failure,
//! which [`super::reader::Reader`] turns into an issue.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};

use super::{DatabaseConfig, Secret};
use crate::sandbox::subnet::SANDBOX_PREFIX;

/// Where the Docker daemon listens, before the transport is chosen.
pub(super) enum Endpoint {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

pub(super) fn positive_or_zero(v: &str, expected: &'static str) -> Result<u64, &'static str> {
    v.parse().map_err(|_invalid| expected)
}

pub(super) fn positive(v: &str, expected: &'static str) -> Result<u64, &'static str> {
    v.parse().ok().filter(|n| *n > 0).ok_or(expected)
}

pub(super) fn parse_abs_path(v: &str) -> Result<PathBuf, &'static str> {
    let path = PathBuf::from(v);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err("an absolute path")
    }
}

pub(super) fn parse_bool(v: &str) -> Result<bool, &'static str> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("true or false"),
    }
}

/// Parses `30s`, `5m`, `1h`, `2d` or `250ms` (one number and one unit; never zero): the
/// grammar the egress proxy shares, `airlock_wire::parse_positive_duration`.
pub fn parse_duration(v: &str) -> Result<Duration, &'static str> {
    airlock_wire::parse_positive_duration(v)
        .map_err(|_invalid| "a positive duration like 30s, 5m or 1h")
}

pub(super) fn parse_pools(v: &str) -> Result<Vec<Ipv4Net>, &'static str> {
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

pub(super) fn parse_database_url(url: &str) -> Result<DatabaseConfig, &'static str> {
    const EXPECTED: &str = "postgres://…, postgresql://… or sqlite:/ABSOLUTE/PATH";
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // Refuse what sqlx would refuse at connect time (a bad port, an unknown `sslmode`), so
        // it is a configuration error; TLS modes (`require`, `verify-ca`, `verify-full`) work.
        let options = sqlx::postgres::PgConnectOptions::from_str(url).map_err(|_invalid| {
            "a valid postgres:// URL (options: sslmode=disable|prefer|require|verify-ca|verify-full, sslrootcert=PATH)"
        })?;
        // Without an explicit `sslmode` the driver may fall back to plaintext without a word:
        // off loopback, the operator must choose (`require`/`verify-full`, or `disable`).
        if !has_sslmode(url) && !is_local_host(options.get_host()) {
            return Err(
                "a postgres:// URL with an explicit sslmode when the host is not \
                        loopback: ?sslmode=verify-full (or require), or ?sslmode=disable on a \
                        network you trust",
            );
        }
        return Ok(DatabaseConfig::Postgres {
            url: Secret::new(url.to_owned()),
        });
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or(EXPECTED)?;
    let path = parse_abs_path(path).map_err(|_invalid| EXPECTED)?;
    Ok(DatabaseConfig::Sqlite { path })
}

/// How a Postgres URL uses TLS, for `airlock doctor`: its `sslmode` (`prefer` when unset) and
/// whether the server is on this host. `None` for anything but a Postgres URL.
pub fn postgres_tls(url: &str) -> Option<(String, bool)> {
    let options = sqlx::postgres::PgConnectOptions::from_str(url).ok()?;
    let mode = format!("{:?}", options.get_ssl_mode()).to_ascii_lowercase();
    let mode = mode
        .replace("verifyca", "verify-ca")
        .replace("verifyfull", "verify-full");
    Some((mode, is_local_host(options.get_host())))
}

/// Whether a database URL's query names `sslmode`.
fn has_sslmode(url: &str) -> bool {
    url.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|pair| pair.split('=').next() == Some("sslmode"))
    })
}

/// Loopback, `localhost` or a unix socket directory: no network between the two ends.
fn is_local_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.starts_with('/')
        || bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub(super) fn parse_docker_host(v: &str) -> Result<Endpoint, &'static str> {
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
