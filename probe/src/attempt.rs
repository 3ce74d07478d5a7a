//! The attempts themselves: the only code in the probe that touches the network.
//!
//! Every attempt has a deadline (the plan's `timeout_ms`) and runs on its own thread, so a
//! whole plan takes about one timeout however many checks it holds. Nothing resolves a name
//! except [`Kind::DnsLookup`], which asks the nameservers of `/etc/resolv.conf` directly
//! (a static binary has no NSS, so `getaddrinfo` would fail for reasons that prove nothing).

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use socket2::{Domain, Protocol, Socket, Type};

use crate::plan::{Check, Kind, Plan};
use crate::report::{Attempt, Outcome, Report};

mod proxy;

use proxy::http_proxy;
pub use proxy::{
    leaked_address, parse_proxy_url, proxy_connect, proxy_request, status_code, ProxyAnswer,
    ProxyUrl,
};

/// Largest DNS reply or HTTP status line read.
const READ_LIMIT: usize = 2048;

/// What the probe reads from its environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeEnv {
    /// `HTTP_PROXY` (or `http_proxy`): `http://user:token@ip:port`.
    pub http_proxy: Option<String>,
    /// The text of `/etc/resolv.conf`.
    pub resolv_conf: String,
}

/// Runs every check of `plan`, each on its own thread, and judges them.
pub fn run(plan: &Plan, env: &ProbeEnv) -> Report {
    let timeout = Duration::from_millis(plan.timeout_ms);
    let attempts = std::thread::scope(|scope| {
        let handles: Vec<_> = plan
            .checks
            .iter()
            .map(|check| scope.spawn(move || attempt(check, timeout, env)))
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle.join().unwrap_or_else(|_panicked| Attempt {
                    outcome: Outcome::Error,
                    detail: "the attempt panicked".to_owned(),
                    code: None,
                    elapsed_ms: 0,
                })
            })
            .collect()
    });
    Report::new(&plan.checks, attempts)
}

/// Makes one attempt.
pub fn attempt(check: &Check, timeout: Duration, env: &ProbeEnv) -> Attempt {
    let started = Instant::now();
    if check.kind == Kind::ProxyConnect {
        let answer = proxy_connect(&check.target, env, timeout);
        return Attempt {
            outcome: answer.outcome,
            detail: answer.detail,
            code: answer.code,
            elapsed_ms: elapsed_ms(started),
        };
    }
    let (outcome, detail) = match (check.kind, check.socket_addr()) {
        (Kind::Tcp, Some(addr)) => tcp(addr, timeout),
        (Kind::UdpDns, Some(addr)) => udp_dns(addr, timeout),
        (Kind::HttpProxy, Some(upstream)) => http_proxy(upstream, env, timeout),
        (Kind::DnsLookup, _) => dns_lookup(&check.target, &env.resolv_conf, timeout),
        (Kind::Icmp, _) => match check.target.parse() {
            Ok(ip) => icmp(ip, timeout),
            Err(_bad) => (Outcome::Error, "target is not an IP address".to_owned()),
        },
        (Kind::RawSocket, _) => raw_socket(),
        (Kind::ProxyConnect, _) | (_, None) => (Outcome::Error, "target is not ip:port".to_owned()),
    };
    Attempt {
        outcome,
        detail,
        code: None,
        elapsed_ms: elapsed_ms(started),
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A TCP handshake with `addr`.
pub fn tcp(addr: SocketAddr, timeout: Duration) -> (Outcome, String) {
    match TcpStream::connect_timeout(&addr, timeout) {
        Ok(_stream) => (Outcome::Reached, "connected".to_owned()),
        Err(error) => io_outcome(&error),
    }
}

/// How a failed send, connect or receive ended.
pub fn io_outcome(error: &std::io::Error) -> (Outcome, String) {
    let outcome = match error.kind() {
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset => Outcome::Refused,
        ErrorKind::TimedOut | ErrorKind::WouldBlock => Outcome::TimedOut,
        _ => Outcome::Unreachable,
    };
    (outcome, error.to_string())
}

/// A DNS query for [`crate::plan::LOOKUP_NAME`] to `addr`; any reply counts as reached.
fn udp_dns(addr: SocketAddr, timeout: Duration) -> (Outcome, String) {
    let query = dns_query(query_id(), crate::plan::LOOKUP_NAME);
    match exchange(addr, &query, timeout) {
        Ok(reply) => (
            Outcome::Reached,
            format!("{} byte DNS reply came back", reply.len()),
        ),
        Err(error) => io_outcome(&error),
    }
}

/// Asks each nameserver in `resolv_conf` for `name`; reached when one answers with records.
fn dns_lookup(name: &str, resolv_conf: &str, timeout: Duration) -> (Outcome, String) {
    let servers = nameservers(resolv_conf);
    if servers.is_empty() {
        return (Outcome::Unreachable, "no nameserver configured".to_owned());
    }
    let mut details = Vec::new();
    for server in servers {
        let addr = SocketAddr::new(server, 53);
        let id = query_id();
        let detail = match exchange(addr, &dns_query(id, name), timeout) {
            Ok(reply) => match parse_reply(id, &reply) {
                Some(reply) if reply.rcode == 0 && reply.answers > 0 => {
                    let detail = format!("{addr}: {} answer(s) for {name}", reply.answers);
                    return (Outcome::Reached, detail);
                }
                Some(reply) => format!("{addr}: rcode {}, no answer", reply.rcode),
                None => format!("{addr}: malformed reply"),
            },
            Err(error) => format!("{addr}: {error}"),
        };
        details.push(detail);
    }
    (Outcome::Denied, details.join("; "))
}

/// Sends `payload` over UDP to `addr` and waits for one datagram.
fn exchange(addr: SocketAddr, payload: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(addr)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.send(payload)?;
    let mut buf = vec![0; READ_LIMIT];
    let n = socket.recv(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// An ICMP echo through an unprivileged ping socket.
fn icmp(ip: IpAddr, timeout: Duration) -> (Outcome, String) {
    let (domain, protocol, request, reply_type) = match ip {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4, 8u8, 0u8),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6, 128, 129),
    };
    let socket = match Socket::new(domain, Type::DGRAM, Some(protocol)) {
        Ok(socket) => socket,
        Err(error) => return (Outcome::Unavailable, format!("no ping socket: {error}")),
    };
    let socket: UdpSocket = socket.into();
    let packet = echo_request(request);
    let sent = socket
        .connect(SocketAddr::new(ip, 0))
        .and_then(|()| socket.set_read_timeout(Some(timeout)))
        .and_then(|()| socket.send(&packet));
    if let Err(error) = sent {
        return io_outcome(&error);
    }
    let mut buf = [0u8; READ_LIMIT];
    match socket.recv(&mut buf) {
        Ok(n) if n > 0 && buf[0] == reply_type => (Outcome::Reached, "echo reply".to_owned()),
        Ok(n) => (
            Outcome::Denied,
            format!("{n} byte ICMP message, not a reply"),
        ),
        Err(error) => io_outcome(&error),
    }
}

/// Opening a raw ICMP socket: only possible with `CAP_NET_RAW`.
fn raw_socket() -> (Outcome, String) {
    match Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)) {
        Ok(_socket) => (
            Outcome::Reached,
            "raw socket opened: CAP_NET_RAW is held".to_owned(),
        ),
        Err(error) => (Outcome::Unavailable, format!("raw socket refused: {error}")),
    }
}

/// The `nameserver` addresses of a `resolv.conf`.
pub fn nameservers(resolv_conf: &str) -> Vec<IpAddr> {
    resolv_conf
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            words.next()?.parse().ok()
        })
        .collect()
}

fn query_id() -> u16 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    u16::try_from((nanos ^ (nanos >> 16)) & 0xffff).unwrap_or(0)
}

/// A recursive DNS query for the A records of `name` (a [`crate::plan::valid_name`]).
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut query = Vec::with_capacity(18 + name.len());
    query.extend_from_slice(&id.to_be_bytes());
    // Flags: recursion desired; one question, no answers, authority or additional records.
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        query.push(u8::try_from(label.len()).unwrap_or(63).min(63));
        query.extend(label.bytes().take(63));
    }
    query.push(0);
    // QTYPE A, QCLASS IN.
    query.extend_from_slice(&[0, 1, 0, 1]);
    query
}

/// The header fields of a DNS reply that matter here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsReply {
    /// The response code (0: no error).
    pub rcode: u8,
    /// How many answer records it carries.
    pub answers: u16,
}

/// Reads the header of a reply to query `id`; `None` for anything else.
pub fn parse_reply(id: u16, reply: &[u8]) -> Option<DnsReply> {
    let header = reply.get(..12)?;
    let is_reply = header[2] & 0x80 != 0;
    if u16::from_be_bytes([header[0], header[1]]) != id || !is_reply {
        return None;
    }
    Some(DnsReply {
        rcode: header[3] & 0x0f,
        answers: u16::from_be_bytes([header[6], header[7]]),
    })
}

/// An ICMP echo request of `kind` (8 for IPv4, 128 for IPv6) with a valid checksum.
fn echo_request(kind: u8) -> Vec<u8> {
    let mut packet = vec![kind, 0, 0, 0, 0, 0, 0, 1];
    packet.extend_from_slice(b"airlock-probe");
    let sum = checksum(&packet);
    packet[2..4].copy_from_slice(&sum.to_be_bytes());
    packet
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(0xffff)
}

/// Standard base64 with padding (RFC 4648), for `Proxy-Authorization: Basic`.
pub fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
