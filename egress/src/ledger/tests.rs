//! Ledger tests: ordering, cursor paging, ack and overflow accounting (the canonical log line
//! is tested in `egress/tests/ledger_log.rs`).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use airlock_wire::Outcome;

use super::*;

mod fairness;

pub(super) fn event(n: u64) -> LedgerEvent {
    LedgerEvent {
        sandbox: Some("sbx".to_owned()),
        generation: 3,
        method: "CONNECT".to_owned(),
        host: format!("host{n}.example"),
        port: 443,
        addr: Some("93.184.215.14:443".parse().unwrap()),
        decision: Outcome::Allow,
        reason: "allowed",
        rule: Some("*.example".to_owned()),
        bytes_up: n,
        bytes_down: 2 * n,
        start: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        duration: Duration::from_micros(12_345),
        client: "10.213.0.2:40000".parse().unwrap(),
        ceiling: Some(Arc::from("role:member@3f2a9c1e")),
        count: 1,
        inspected: None,
    }
}

fn seqs(page: &EventPage) -> Vec<u64> {
    page.events.iter().map(|e| e.seq).collect()
}

#[test]
fn events_are_ordered_with_consecutive_seqs() {
    let ledger = Ledger::new(100);
    for n in 0..10 {
        ledger.record(event(n));
    }
    let page = ledger.events_after(0, 100);
    assert_eq!(seqs(&page), (1..=10).collect::<Vec<_>>());
    assert_eq!(page.next, 10);
    assert_eq!(page.overflowed, 0);
    for (n, e) in page.events.iter().enumerate() {
        assert_eq!(e.host, format!("host{n}.example"));
    }
}

#[test]
fn cursor_paging_visits_every_event_once() {
    let ledger = Ledger::new(100);
    for n in 0..25 {
        ledger.record(event(n));
    }
    let mut cursor = 0;
    let mut seen = Vec::new();
    loop {
        let page = ledger.events_after(cursor, 7);
        if page.events.is_empty() {
            assert_eq!(page.next, cursor, "an empty page keeps the cursor");
            break;
        }
        seen.extend(seqs(&page));
        cursor = page.next;
    }
    assert_eq!(seen, (1..=25).collect::<Vec<_>>());
    // Reading does not consume: the same page comes back until acked.
    assert_eq!(seqs(&ledger.events_after(20, 100)), [21, 22, 23, 24, 25]);
    assert_eq!(ledger.depth(), 25);
}

#[test]
fn ack_frees_room_and_reads_skip_acked_events() {
    let ledger = Ledger::new(5);
    for n in 0..5 {
        ledger.record(event(n));
    }
    ledger.record(event(99));
    assert_eq!(ledger.overflowed(), 1);
    ledger.ack(3);
    assert_eq!(ledger.depth(), 2);
    // A cursor behind the acked point starts at the oldest kept event.
    assert_eq!(seqs(&ledger.events_after(0, 100)), [4, 5]);
    for n in 0..3 {
        ledger.record(event(n));
    }
    assert_eq!(seqs(&ledger.events_after(0, 100)), [4, 5, 6, 7, 8]);
    assert_eq!(ledger.overflowed(), 1);
    ledger.ack(u64::MAX);
    assert_eq!(ledger.depth(), 0);
    assert_eq!(ledger.events_after(8, 10).events, []);
    ledger.record(event(1));
    assert_eq!(
        seqs(&ledger.events_after(8, 10)),
        [9],
        "seqs are never reused"
    );
}

#[test]
fn overflow_is_counted_exactly_and_keeps_the_oldest() {
    let ledger = Ledger::new(10);
    for n in 0..37 {
        ledger.record(event(n));
    }
    assert_eq!(ledger.depth(), 10);
    assert_eq!(ledger.overflowed(), 27);
    let page = ledger.events_after(0, 100);
    assert_eq!(page.overflowed, 27);
    assert_eq!(page.events.first().unwrap().host, "host0.example");
    assert_eq!(page.events.last().unwrap().host, "host9.example");
}

#[test]
fn zero_capacity_spools_nothing() {
    let ledger = Ledger::new(0);
    ledger.record(event(0));
    assert_eq!(ledger.depth(), 0);
    assert_eq!(ledger.overflowed(), 1);
}

#[test]
fn no_loss_under_concurrency_while_there_is_room() {
    let ledger = Arc::new(Ledger::new(8 * 500));
    std::thread::scope(|s| {
        for t in 0..8 {
            let ledger = Arc::clone(&ledger);
            s.spawn(move || {
                for n in 0..500 {
                    ledger.record(event(t * 1000 + n));
                }
            });
        }
    });
    assert_eq!(ledger.overflowed(), 0);
    let page = ledger.events_after(0, MAX_PAGE);
    assert_eq!(seqs(&page), (1..=4000).collect::<Vec<_>>());
    let mut ups: Vec<u64> = page.events.iter().map(|e| e.bytes_up).collect();
    ups.sort_unstable();
    ups.dedup();
    assert_eq!(ups.len(), 4000, "every event arrived exactly once");
}

#[test]
fn overflow_is_exact_under_concurrency() {
    let ledger = Arc::new(Ledger::new(1000));
    std::thread::scope(|s| {
        for t in 0..8 {
            let ledger = Arc::clone(&ledger);
            s.spawn(move || {
                for n in 0..500 {
                    ledger.record(event(t * 1000 + n));
                }
            });
        }
    });
    assert_eq!(ledger.depth(), 1000);
    assert_eq!(
        ledger.overflowed(),
        3000,
        "recorded = spooled + overflowed, exactly"
    );
    let page = ledger.events_after(0, MAX_PAGE);
    assert_eq!(seqs(&page), (1..=1000).collect::<Vec<_>>());
}

#[test]
fn page_limit_is_capped() {
    let ledger = Ledger::with_limits(MAX_PAGE + 10, MAX_PAGE + 10);
    for n in 0..(MAX_PAGE as u64 + 10) {
        ledger.record(event(n));
    }
    assert_eq!(ledger.events_after(0, usize::MAX).events.len(), MAX_PAGE);
}

#[test]
fn wire_format_snapshot() {
    let ledger = Ledger::new(4);
    ledger.record(event(5));
    let mut deny = event(6);
    deny.sandbox = None;
    deny.addr = None;
    deny.rule = None;
    deny.decision = Outcome::WouldDeny;
    deny.reason = "domain_not_allowed";
    ledger.record(deny);
    let page = Served::from(ledger.events_after(0, 10));
    let json = serde_json::to_string_pretty(&page).unwrap();
    expect_test::expect![[r#"
        {
          "events": [
            {
              "seq": 1,
              "sandbox": "sbx",
              "generation": 3,
              "method": "CONNECT",
              "host": "host5.example",
              "port": 443,
              "addr": "93.184.215.14:443",
              "decision": "allow",
              "reason": "allowed",
              "rule": "*.example",
              "bytes_up": 5,
              "bytes_down": 10,
              "start_ms": 1700000000123,
              "duration_ms": 12,
              "client": "10.213.0.2:40000",
              "ceiling": "role:member@3f2a9c1e",
              "count": 1
            },
            {
              "seq": 2,
              "sandbox": null,
              "generation": 3,
              "method": "CONNECT",
              "host": "host6.example",
              "port": 443,
              "addr": null,
              "decision": "would_deny",
              "reason": "domain_not_allowed",
              "rule": null,
              "bytes_up": 6,
              "bytes_down": 12,
              "start_ms": 1700000000123,
              "duration_ms": 12,
              "client": "10.213.0.2:40000",
              "ceiling": "role:member@3f2a9c1e",
              "count": 1
            }
          ],
          "next": 2,
          "overflowed": 0
        }"#]]
    .assert_eq(&json);
    let back: Served = serde_json::from_str(&json).unwrap();
    assert_eq!(back, page);
}

/// The page as the admin API serves it, less the boot id it adds (`airlock_wire::EventsPage`
/// pins that whole body).
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Served {
    events: Vec<Event>,
    next: u64,
    overflowed: u64,
}

impl From<EventPage> for Served {
    fn from(page: EventPage) -> Self {
        Self {
            events: page.events,
            next: page.next,
            overflowed: page.overflowed,
        }
    }
}
