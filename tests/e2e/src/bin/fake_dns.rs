//! `fake-dns`: the test-support fake DNS server ([`test_support::dns::FakeDns`]) on
//! `0.0.0.0:53`, for a container on a sealed outer network (the network-plane e2e test points
//! the egress proxy at it).
//!
//! Arguments: `NAME=IP[,IP...]` for a fixed answer, `NAME=IP[,IP...]/IP[,IP...]` for a
//! rebinding name (the first set to the first query of each type, the second afterwards).
//! Prints `LISTENING` once bound, then serves until killed.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use test_support::dns::FakeDns;

fn ips(list: &str) -> Vec<IpAddr> {
    list.split(',').filter_map(|ip| ip.parse().ok()).collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let dns = FakeDns::start_on(SocketAddr::from(([0, 0, 0, 0], 53)), []).await?;
    for arg in std::env::args().skip(1) {
        let Some((name, answers)) = arg.split_once('=') else {
            continue;
        };
        match answers.split_once('/') {
            Some((first, then)) => dns.rebind(name, ips(first), ips(then)),
            None => dns.set(name, ips(answers)),
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "LISTENING {}", dns.addr())?;
    out.flush()?;
    drop(out);
    std::future::pending::<()>().await;
    Ok(())
}
