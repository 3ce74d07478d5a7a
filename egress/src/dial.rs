//! The only module that opens upstream sockets.
//!
//! Invariants:
//! - It connects to `SocketAddr`s taken from `Decision::Allow`, with `TcpSocket::connect`; it never
//!   takes a name and never resolves.
//! - It refuses the proxy's own listen and admin addresses, so a client cannot loop the proxy
//!   into itself.
//! - Happy eyeballs (RFC 8305-ish): answers are interleaved by family, a new attempt starts every
//!   [`STAGGER`] or as soon as the previous one fails, the first success wins and the others are
//!   dropped. The whole race is bounded by the connect timeout.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{sleep_until, timeout_at, Instant};

/// Delay between starting successive connection attempts.
pub const STAGGER: Duration = Duration::from_millis(250);

/// What the dialer must know besides the addresses.
#[derive(Debug, Clone)]
pub struct DialOptions {
    /// Deadline for the whole race.
    pub connect_timeout: Duration,
    /// The proxy's own listening sockets (listen and admin), never dialled.
    pub own_addrs: Vec<SocketAddr>,
}

/// Why no connection could be made.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// Every candidate was one of the proxy's own addresses (or there was none).
    #[error("refusing to connect to the proxy itself")]
    SelfConnect,
    /// No attempt succeeded before the deadline.
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    /// Every attempt failed; the last error is kept.
    #[error("connect failed to {addr}")]
    Failed {
        /// The last address tried.
        addr: SocketAddr,
        /// Its error.
        #[source]
        source: std::io::Error,
    },
}

// === impl DialOptions ===

impl DialOptions {
    /// Whether `addr` is one of the proxy's own listening sockets. A wildcard listen address
    /// (`0.0.0.0` / `::`) covers that port on every address, since the proxy answers there too.
    pub fn is_own(&self, addr: &SocketAddr) -> bool {
        let ip = airlock_egress_policy::canonical(addr.ip());
        self.own_addrs.iter().any(|own| {
            own.port() == addr.port()
                && (own.ip().is_unspecified() || airlock_egress_policy::canonical(own.ip()) == ip)
        })
    }
}

/// Connects to the first of `addrs` that answers, racing them happy-eyeballs style.
pub async fn dial(addrs: &[SocketAddr], opts: &DialOptions) -> Result<TcpStream, DialError> {
    let candidates: Vec<SocketAddr> = interleave(addrs)
        .into_iter()
        .filter(|a| !opts.is_own(a))
        .collect();
    if candidates.is_empty() {
        return Err(DialError::SelfConnect);
    }
    let deadline = Instant::now() + opts.connect_timeout;
    match timeout_at(deadline, race(&candidates)).await {
        Ok(result) => result,
        Err(_) => Err(DialError::Timeout(opts.connect_timeout)),
    }
}

/// Starts one attempt per candidate, each [`STAGGER`] after the previous or right after a failure.
async fn race(candidates: &[SocketAddr]) -> Result<TcpStream, DialError> {
    let mut pending = candidates.iter().copied();
    let mut attempts = FuturesUnordered::new();
    let mut last_error = None;
    let mut next_start = Instant::now();
    loop {
        if attempts.is_empty() {
            match pending.next() {
                Some(addr) => {
                    attempts.push(attempt(addr));
                    next_start = Instant::now() + STAGGER;
                }
                None => break,
            }
        }
        tokio::select! {
            Some((addr, result)) = attempts.next() => match result {
                Ok(stream) => return Ok(stream),
                Err(source) => {
                    tracing::debug!(dst.addr = %addr, error = %source, "Upstream connect attempt failed");
                    last_error = Some(DialError::Failed { addr, source });
                    // A failure starts the next attempt at once.
                    next_start = Instant::now();
                    start_next(&mut pending, &mut attempts, &mut next_start);
                }
            },
            () = sleep_until(next_start), if pending.len() > 0 => {
                start_next(&mut pending, &mut attempts, &mut next_start);
            }
        }
    }
    Err(last_error.unwrap_or(DialError::SelfConnect))
}

type Attempt = std::pin::Pin<
    Box<dyn std::future::Future<Output = (SocketAddr, std::io::Result<TcpStream>)> + Send>,
>;

fn start_next(
    pending: &mut impl Iterator<Item = SocketAddr>,
    attempts: &mut FuturesUnordered<Attempt>,
    next_start: &mut Instant,
) {
    if let Some(addr) = pending.next() {
        attempts.push(attempt(addr));
        *next_start = Instant::now() + STAGGER;
    }
}

fn attempt(addr: SocketAddr) -> Attempt {
    Box::pin(async move { (addr, connect_one(addr).await) })
}

/// One TCP connect to one checked address.
async fn connect_one(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = match addr.ip() {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Orders addresses RFC 8305 style: alternate families, starting with the family of the first
/// answer, keeping the resolver's order within a family.
fn interleave(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return Vec::new();
    };
    let first_v4 = first.is_ipv4();
    let (mut primary, mut secondary): (Vec<_>, Vec<_>) =
        addrs.iter().copied().partition(|a| a.is_ipv4() == first_v4);
    let mut out = Vec::with_capacity(addrs.len());
    primary.reverse();
    secondary.reverse();
    while !primary.is_empty() || !secondary.is_empty() {
        out.extend(primary.pop());
        out.extend(secondary.pop());
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    fn opts(own: Vec<SocketAddr>) -> DialOptions {
        DialOptions {
            connect_timeout: Duration::from_secs(5),
            own_addrs: own,
        }
    }

    #[test]
    fn interleaves_families() {
        let a: Vec<SocketAddr> = ["[::1]:1", "[::2]:1", "1.1.1.1:1", "2.2.2.2:1", "3.3.3.3:1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let got: Vec<String> = interleave(&a).iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            ["[::1]:1", "1.1.1.1:1", "[::2]:1", "2.2.2.2:1", "3.3.3.3:1"]
        );
    }

    #[test]
    fn own_addresses_are_recognised() {
        let o = opts(vec![
            "0.0.0.0:3128".parse().unwrap(),
            "127.0.0.1:9000".parse().unwrap(),
        ]);
        assert!(o.is_own(&"10.1.2.3:3128".parse().unwrap()));
        assert!(o.is_own(&"[::ffff:127.0.0.1]:9000".parse().unwrap()));
        assert!(!o.is_own(&"127.0.0.2:9000".parse().unwrap()));
        assert!(!o.is_own(&"10.1.2.3:80".parse().unwrap()));
    }

    #[tokio::test]
    async fn refuses_self_connect() {
        let own: SocketAddr = "127.0.0.1:3128".parse().unwrap();
        let err = dial(&[own], &opts(vec![own])).await.unwrap_err();
        assert!(matches!(err, DialError::SelfConnect), "{err}");
    }

    #[tokio::test]
    async fn falls_through_a_dead_address() {
        let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let stream = dial(&[dead_addr, live.local_addr().unwrap()], &opts(vec![]))
            .await
            .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), live.local_addr().unwrap());
    }

    #[tokio::test]
    async fn dead_only_is_an_error() {
        let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let err = dial(&[dead_addr], &opts(vec![])).await.unwrap_err();
        assert!(matches!(err, DialError::Failed { .. }), "{err}");
    }
}
