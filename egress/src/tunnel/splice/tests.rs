//! The splice loop over real loopback sockets: bulk bytes both ways with half-close, and a
//! spent budget ending the tunnel. Real sockets, so real time.

use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket};

use super::*;

/// A connected loopback pair: (our end, the proxy's end).
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ours, accepted) = tokio::join!(
        TcpSocket::new_v4().unwrap().connect(addr),
        listener.accept()
    );
    (ours.unwrap(), accepted.unwrap().0)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from(i % 251).unwrap() ^ seed)
        .collect::<Vec<u8>>()
}

/// Runs `splice` between a client pair and an upstream pair; returns the outer ends.
async fn tunnel(
    budget: Budget,
    counters: Arc<Counters>,
    prefix: &'static [u8],
) -> (TcpStream, TcpStream, tokio::task::JoinHandle<Ended>) {
    let (client, proxy_client) = pair().await;
    let (upstream, proxy_upstream) = pair().await;
    let task = tokio::spawn(async move {
        let metrics = Metrics::new();
        let activity = Activity::new();
        let revoked = CancellationToken::new();
        let up = Meter {
            direction: Direction::Up,
            counters: &counters,
            budget: &budget,
            metrics: &metrics,
            activity: &activity,
            revoked: &revoked,
        };
        let down = Meter {
            direction: Direction::Down,
            ..up
        };
        splice(
            proxy_client,
            Bytes::from_static(prefix),
            proxy_upstream,
            &up,
            &down,
        )
        .await
    });
    (client, upstream, task)
}

#[tokio::test]
async fn bulk_bytes_cross_intact_both_ways_with_half_close() {
    let counters = Arc::new(Counters::default());
    let (client, upstream, task) = tunnel(Budget::unlimited(), Arc::clone(&counters), b"pre").await;
    let up_data = pattern(8 << 20, 0x5a);
    let down_data = pattern(3 << 20, 0xa5);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let sent_up = up_data.clone();
    let sent_down = down_data.clone();
    let writers = tokio::spawn(async move {
        client_write.write_all(&sent_up).await.unwrap();
        client_write.shutdown().await.unwrap();
        upstream_write.write_all(&sent_down).await.unwrap();
        upstream_write.shutdown().await.unwrap();
    });
    let mut got_up = Vec::new();
    let mut got_down = Vec::new();
    let (a, b) = tokio::join!(
        upstream_read.read_to_end(&mut got_up),
        client_read.read_to_end(&mut got_down),
    );
    a.unwrap();
    b.unwrap();
    writers.await.unwrap();
    assert_eq!(task.await.unwrap(), None);
    assert_eq!(&got_up[..3], b"pre");
    assert!(got_up[3..] == up_data[..], "upstream got other bytes");
    assert!(got_down == down_data, "client got other bytes");
    assert_eq!(counters.up.load(Ordering::Relaxed), 3 + (8 << 20));
    assert_eq!(counters.down.load(Ordering::Relaxed), 3 << 20);
}

#[tokio::test]
async fn spent_budget_ends_the_tunnel() {
    let counters = Arc::new(Counters::default());
    let (mut client, upstream, task) =
        tunnel(Budget::new(None, Some(1 << 20)), counters, b"").await;
    let data = pattern(4 << 20, 1);
    // Keep the upstream's receive side drained so the tunnel is never stuck on a write.
    let drain = tokio::spawn(async move {
        let mut upstream = upstream;
        let mut sink = Vec::new();
        let _ = upstream.read_to_end(&mut sink).await;
        sink.len()
    });
    let _ = client.write_all(&data).await;
    let ended = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ended,
        Some(Budget::new(None, Some(0)).add_bytes(1).unwrap_err().code())
    );
    drop(client);
    let forwarded = drain.await.unwrap();
    assert!(
        forwarded < 4 << 20,
        "forwarded {forwarded} bytes past the budget"
    );
}

/// The idle clock alone, so time is paused: a touch pushes the deadline back by the whole idle
/// timeout, and nothing resolves before it.
#[tokio::test(start_paused = true)]
async fn idle_resolves_only_after_a_quiet_idle_timeout() {
    let activity = Activity::new();
    let idle = Duration::from_secs(300);
    tokio::time::advance(Duration::from_secs(200)).await;
    activity.touch();
    let early = tokio::time::timeout(Duration::from_secs(299), activity.idle(idle)).await;
    assert!(early.is_err(), "idle 299 s after the last byte");
    tokio::time::timeout(Duration::from_secs(2), activity.idle(idle))
        .await
        .unwrap();
}
