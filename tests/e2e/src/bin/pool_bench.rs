//! The warm pool benchmark (`bench/pool/run.sh`): the real `airlock serve` binary with one
//! pool of the testbox (`AIRLOCK_POOLS`, size `--size`) on one real DinD over mTLS. In one
//! run it measures, against the cold path of the same controller:
//! - claim latency (API request → 201 `running`), one client at a time, the pool ready
//!   before each: p50/p99; and cold creates (the same request with a label, which forces the
//!   cold path) interleaved with them; the ratio;
//! - create → `exited` of a `true` workload, warm and cold;
//! - create → the workload's first instruction, warm and cold: the request's start and the
//!   workload's first shell builtin read the same clock (`/proc/uptime`: the sandbox shares the
//!   kernel and has no time namespace), so the figure has 10 ms resolution;
//! - 8 concurrent clients claiming from a ready pool: p50/p99;
//! - a burst of `--burst` concurrent creates on the pool: errors, hit rate (from
//!   `GET /v1/pools`), p50/p99;
//! - sustained sequential creates for `--sustain-s` with refill on: creates/s and hit rate;
//! - the controller's RSS with the pool ready.
//!
//! It prints figures; it asserts only that the harness works. Usage:
//! `pool_bench [--airlock PATH] [--size N] [--iterations N] [--burst N] [--sustain-s N]`.
// A benchmark driver: a failed harness step must stop it loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use e2e::serve::{airlock_binary, http, listen_addr, spawn_serve_with};
use e2e::stats::{line, mib, ms, rss_kib, step_table, Latencies};
use futures_util::{stream, StreamExt};
use serde_json::{json, Value};
use test_support::dind::{Dind, DindOptions, TESTBOX_IMAGE};

const TOKEN: &str = "pool-bench-token-0123456789";
/// How long the pool may take to fill.
const FILL_LIMIT: Duration = Duration::from_secs(300);

struct Args {
    airlock: Option<PathBuf>,
    size: u64,
    iterations: usize,
    burst: usize,
    sustain: Duration,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let binary = match &args.airlock {
        Some(path) => path.clone(),
        None => airlock_binary().await,
    };
    println!("bench airlock={}", binary.display());
    let dind = Dind::start(DindOptions::new("pool-bench")).await.unwrap();
    dind.load_image(TESTBOX_IMAGE).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let pools = json!([{"image": TESTBOX_IMAGE, "size": args.size, "max_idle_s": 3600}]);
    let pools = pools.to_string();
    let env = [
        ("RUST_LOG", "info,airlock::sandboxes=debug"),
        ("AIRLOCK_POOLS", pools.as_str()),
    ];
    let mut child = spawn_serve_with(&binary, &dind, data.path(), TOKEN, &env);
    let pid = child.id().unwrap();
    let (addr, log) = listen_addr(&mut child).await;
    let filled = Instant::now();
    wait_ready(addr, args.size).await;
    println!(
        "bench fill size={} took={:.2}s rss-ready={:.1}MiB",
        args.size,
        filled.elapsed().as_secs_f64(),
        mib(rss_kib(pid))
    );
    let mut made = Vec::new();

    // One client: warm claims and cold creates, interleaved, the pool ready before each.
    let (mut warm, mut cold, mut warm_exit, mut cold_exit) = (vec![], vec![], vec![], vec![]);
    let (mut warm_first, mut cold_first) = (vec![], vec![]);
    for _ in 0..args.iterations {
        wait_ready(addr, args.size).await;
        let (id, took) = create(addr, sleeping(false)).await.unwrap();
        warm.push(took);
        made.push(id);
        let (id, took) = create(addr, sleeping(true)).await.unwrap();
        cold.push(took);
        made.push(id);
        wait_ready(addr, args.size).await;
        warm_exit.push(to_exit(addr, false, &mut made).await);
        cold_exit.push(to_exit(addr, true, &mut made).await);
        wait_ready(addr, args.size).await;
        warm_first.push(to_first_instruction(addr, false, &mut made).await);
        cold_first.push(to_first_instruction(addr, true, &mut made).await);
    }
    let (warm_first, cold_first) = (Latencies::new(warm_first), Latencies::new(cold_first));
    let (warm, cold) = (Latencies::new(warm), Latencies::new(cold));
    let (warm_exit, cold_exit) = (Latencies::new(warm_exit), Latencies::new(cold_exit));
    line("warm claim (1 client)", &warm);
    line("cold create (1 client)", &cold);
    line("warm create-to-exited", &warm_exit);
    line("cold create-to-exited", &cold_exit);
    line("warm create-to-first-instruction", &warm_first);
    line("cold create-to-first-instruction", &cold_first);
    delete_all(addr, &mut made).await;

    // Eight concurrent clients on a ready pool.
    let mut eight = Vec::new();
    for _ in 0..3 {
        wait_ready(addr, args.size).await;
        let clients = usize::try_from(args.size).unwrap_or(8).min(8);
        let round = concurrent(addr, clients).await;
        eight.extend(
            round
                .iter()
                .filter_map(|r| r.as_ref().ok())
                .map(|(_, d)| *d),
        );
        made.extend(round.into_iter().filter_map(Result::ok).map(|(id, _)| id));
    }
    let eight = Latencies::new(eight);
    line("warm claim (8 concurrent clients)", &eight);
    delete_all(addr, &mut made).await;

    // A burst larger than the pool.
    wait_ready(addr, args.size).await;
    let before = pool(addr).await;
    let started = Instant::now();
    let burst = concurrent(addr, args.burst).await;
    let wall = started.elapsed();
    let after = pool(addr).await;
    let errors = burst.iter().filter(|r| r.is_err()).count();
    let burst_ok = Latencies::new(
        burst
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|(_, d)| *d)
            .collect(),
    );
    let hits = after["claims"].as_u64().unwrap() - before["claims"].as_u64().unwrap();
    println!(
        "bench burst n={} pool={} errors={errors} hits={hits} hit-rate={:.2} wall={:.2}s p50={:.0}ms p99={:.0}ms",
        args.burst,
        args.size,
        hits as f64 / args.burst as f64,
        wall.as_secs_f64(),
        ms(burst_ok.percentile(50)),
        ms(burst_ok.percentile(99)),
    );
    made.extend(burst.into_iter().filter_map(Result::ok).map(|(id, _)| id));
    delete_all(addr, &mut made).await;

    // Sustained sequential creates with refill on.
    wait_ready(addr, args.size).await;
    let before = pool(addr).await;
    let started = Instant::now();
    let mut sustained = Vec::new();
    while started.elapsed() < args.sustain {
        let (id, took) = create(addr, sleeping(false)).await.unwrap();
        sustained.push(took);
        made.push(id);
    }
    let after = pool(addr).await;
    let n = sustained.len();
    let hits = after["claims"].as_u64().unwrap() - before["claims"].as_u64().unwrap();
    let sustained = Latencies::new(sustained);
    println!(
        "bench sustained n={n} creates/s={:.1} hit-rate={:.2} p50={:.0}ms p99={:.0}ms",
        n as f64 / started.elapsed().as_secs_f64(),
        hits as f64 / n as f64,
        ms(sustained.percentile(50)),
        ms(sustained.percentile(99)),
    );
    delete_all(addr, &mut made).await;
    wait_ready(addr, args.size).await;
    let rss = mib(rss_kib(pid));

    println!();
    println!("| figure | value |");
    println!("| --- | --- |");
    println!(
        "| claim p50 / p99 (1 client) | {:.0} ms / {:.0} ms |",
        ms(warm.percentile(50)),
        ms(warm.percentile(99))
    );
    println!(
        "| cold create p50 / p99 (same run) | {:.0} ms / {:.0} ms (warm/cold p50 {:.2}x) |",
        ms(cold.percentile(50)),
        ms(cold.percentile(99)),
        ms(warm.percentile(50)) / ms(cold.percentile(50)).max(0.001)
    );
    println!(
        "| create-to-exited p50 warm / cold | {:.0} ms / {:.0} ms |",
        ms(warm_exit.percentile(50)),
        ms(cold_exit.percentile(50))
    );
    println!(
        "| create-to-first-instruction p50 / p99 warm | {:.0} ms / {:.0} ms (cold {:.0} / {:.0} ms) |",
        ms(warm_first.percentile(50)),
        ms(warm_first.percentile(99)),
        ms(cold_first.percentile(50)),
        ms(cold_first.percentile(99))
    );
    println!(
        "| claim p50 / p99 (8 concurrent) | {:.0} ms / {:.0} ms |",
        ms(eight.percentile(50)),
        ms(eight.percentile(99))
    );
    println!(
        "| controller RSS, {} ready members | {rss:.1} MiB |",
        args.size
    );
    child.kill().await.unwrap();
    step_table(&log.await.unwrap_or_default());
    drop(dind);
}

fn args() -> Args {
    let mut args = Args {
        airlock: None,
        size: 10,
        iterations: 20,
        burst: 50,
        sustain: Duration::from_secs(20),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--airlock" => args.airlock = Some(PathBuf::from(value)),
            "--size" => args.size = value.parse().unwrap(),
            "--iterations" => args.iterations = value.parse().unwrap(),
            "--burst" => args.burst = value.parse().unwrap(),
            "--sustain-s" => args.sustain = Duration::from_secs(value.parse().unwrap()),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// A sleeping sandbox; `cold`: with a label, which no member can take.
fn sleeping(cold: bool) -> Value {
    let mut body = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "600"]});
    if cold {
        body["labels"] = json!({"bench": "cold"});
    }
    body
}

/// `POST /v1/sandboxes`: the id and the time to the 201.
async fn create(addr: SocketAddr, body: Value) -> Result<(String, Duration), String> {
    let started = Instant::now();
    let (status, made) = http(addr, TOKEN, "POST", "/v1/sandboxes", Some(body)).await;
    let took = started.elapsed();
    if status != 201 {
        return Err(format!("{status}: {made}"));
    }
    Ok((made["id"].as_str().unwrap().to_owned(), took))
}

/// `n` creates at once.
async fn concurrent(addr: SocketAddr, n: usize) -> Vec<Result<(String, Duration), String>> {
    stream::iter(0..n)
        .map(|_| create(addr, sleeping(false)))
        .buffer_unordered(n)
        .collect()
        .await
}

/// A `true` sandbox, created then waited for: the time to `exited`.
async fn to_exit(addr: SocketAddr, cold: bool, made: &mut Vec<String>) -> Duration {
    let mut body = json!({"image": TESTBOX_IMAGE, "cmd": ["true"]});
    if cold {
        body["labels"] = json!({"bench": "cold"});
    }
    let started = Instant::now();
    let (id, _) = create(addr, body).await.unwrap();
    let (status, ended) = http(
        addr,
        TOKEN,
        "GET",
        &format!("/v1/sandboxes/{id}/wait?timeout_s=60"),
        None,
    )
    .await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{ended}");
    made.push(id);
    took
}

/// Seconds since boot, as the kernel counts them for every process of the machine.
fn uptime() -> f64 {
    let text = std::fs::read_to_string("/proc/uptime").unwrap();
    text.split_whitespace().next().unwrap().parse().unwrap()
}

/// A sandbox whose workload's first instruction records `/proc/uptime` (a shell builtin, no
/// fork): the time from the create request to it.
async fn to_first_instruction(addr: SocketAddr, cold: bool, made: &mut Vec<String>) -> Duration {
    let script = "read up _ < /proc/uptime; echo $up > /tmp/first; exec sleep 600";
    let mut body = json!({"image": TESTBOX_IMAGE, "cmd": ["sh", "-c", script]});
    if cold {
        body["labels"] = json!({"bench": "cold"});
    }
    let asked = uptime();
    let (id, _) = create(addr, body).await.unwrap();
    made.push(id.clone());
    let exec = json!({"cmd": ["cat", "/tmp/first"]});
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let uri = format!("/v1/sandboxes/{id}/exec");
        let (status, out) = http(addr, TOKEN, "POST", &uri, Some(exec.clone())).await;
        let first = out["stdout"]
            .as_str()
            .and_then(|s| s.trim().parse::<f64>().ok());
        if let (200, Some(first)) = (status, first) {
            return Duration::from_secs_f64((first - asked).max(0.0));
        }
        assert!(
            Instant::now() < deadline,
            "no first instruction: {status} {out}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The pool as `GET /v1/pools` shows it.
async fn pool(addr: SocketAddr) -> Value {
    let (status, pools) = http(addr, TOKEN, "GET", "/v1/pools", None).await;
    assert_eq!(status, 200, "{pools}");
    pools[0].clone()
}

/// Polls until the pool has `size` ready members.
async fn wait_ready(addr: SocketAddr, size: u64) {
    let deadline = Instant::now() + FILL_LIMIT;
    loop {
        let pool = pool(addr).await;
        if pool["ready"].as_u64() == Some(size) {
            return;
        }
        assert!(Instant::now() < deadline, "the pool did not fill: {pool}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Deletes every sandbox in `made`, 8 at a time.
async fn delete_all(addr: SocketAddr, made: &mut Vec<String>) {
    let ids = std::mem::take(made);
    let statuses: Vec<u16> = stream::iter(ids)
        .map(|id| async move {
            http(addr, TOKEN, "DELETE", &format!("/v1/sandboxes/{id}"), None)
                .await
                .0
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let failed = statuses.iter().filter(|s| **s != 204).count();
    if failed > 0 {
        println!("bench delete failed={failed}");
    }
}
