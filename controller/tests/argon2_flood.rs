//! An argon2 flood against the in-process app over SQLite: 500 bogus invite acceptances and
//! 500 wrong-password logins at once, while the owner logs in; the process's peak RSS
//! (`VmHWM`) is measured and printed (`--nocapture`). Its own binary: it fills the
//! process-wide argon2 queue on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/mod.rs"]
mod common;
#[path = "login_abuse/support.rs"]
mod support;

use std::net::IpAddr;
use std::time::Duration;

use airlock::accounts::user::Role;
use axum::http::StatusCode;
use serde_json::json;
use tokio::time::Instant;

use support::{ip, Abuse, PASSWORD};

/// The process's peak resident set, in MiB.
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_argon2_flood_is_bounded_and_a_real_login_still_succeeds() {
    let h = Abuse::new(&[]).await;
    h.user("owner@example.org", Role::Member).await;
    let before = peak_rss_mib();
    let started = Instant::now();
    // 500 bogus invite acceptances at once: looked up before any hash, so no argon2 at all.
    let invites = (0..500).map(|n| {
        let h = &h;
        async move {
            let body = json!({
                "token": format!("ali_{n:064x}"),
                "password": "a long enough password",
                "display_name": "x",
            });
            h.post("/v1/auth/accept-invite", body, ip("198.51.100.1"), &[])
                .await
        }
    });
    let invites = futures_util::future::join_all(invites).await;
    let invite_time = started.elapsed();
    assert!(invites.iter().all(|r| r.status == StatusCode::NOT_FOUND));
    // 500 wrong-password logins at once from 500 addresses: the argon2 gate lets a few hash,
    // a short line wait, and the rest get 503 with Retry-After at once.
    let started = Instant::now();
    let guesses = (0..500u16).map(|n| {
        let h = &h;
        async move {
            let [high, low] = n.to_be_bytes();
            let source: IpAddr = [10, 50, high, low].into();
            h.login("owner@example.org", "a wrong password!", source, None)
                .await
        }
    });
    let owner = async {
        // The owner logs in meanwhile, honouring Retry-After like any client.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let reply = h
                .login("owner@example.org", PASSWORD, ip("192.0.2.10"), None)
                .await;
            if reply.status != StatusCode::SERVICE_UNAVAILABLE {
                return (reply, started.elapsed());
            }
            assert_eq!(reply.body["error"], "busy");
            assert_eq!(reply.retry_after, Some(1));
            assert!(Instant::now() < deadline, "the owner never got a slot");
            tokio::task::yield_now().await;
        }
    };
    let (guesses, (owner, owner_time)) =
        tokio::join!(futures_util::future::join_all(guesses), owner);
    let flood_time = started.elapsed();
    assert_eq!(owner.status, StatusCode::OK, "{}", owner.body);
    let count = |status| guesses.iter().filter(|r| r.status == status).count();
    let (busy, failed) = (
        count(StatusCode::SERVICE_UNAVAILABLE),
        count(StatusCode::UNAUTHORIZED),
    );
    assert_eq!(busy + failed, 500);
    assert!(busy > 0, "the gate never refused");
    let peak = peak_rss_mib();
    println!(
        "argon2 flood: 500 bogus accept-invites answered 404 in {invite_time:?}; 500 parallel \
         wrong-password logins: {failed} verified (401), {busy} refused at once (503, \
         Retry-After: 1) in {flood_time:?}; the owner's login succeeded after {owner_time:?}; \
         peak RSS of the whole test process {before} MiB before, {peak} MiB after"
    );
    assert!(peak < 200, "peak RSS {peak} MiB");
}
