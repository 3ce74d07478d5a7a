//! Fair sharing of the spool: per-key caps, fair shares past capacity, reservations, and the
//! `ledger_full` summary for refusals that found no room.

use std::net::SocketAddr;

use super::*;

fn denied(sandbox: Option<&str>, n: u64) -> LedgerEvent {
    let mut e = event(n);
    e.sandbox = sandbox.map(str::to_owned);
    e.decision = Outcome::Deny;
    e.reason = "port_not_allowed";
    e
}

fn key(sandbox: &str) -> LedgerKey {
    LedgerKey::Sandbox(Arc::from(sandbox))
}

fn count_for(page: &EventPage, sandbox: &str) -> usize {
    page.events
        .iter()
        .filter(|e| e.sandbox.as_deref() == Some(sandbox))
        .count()
}

#[test]
fn a_flooding_sandbox_never_takes_anothers_room() {
    let ledger = Ledger::with_limits(100, 60);
    for n in 0..500 {
        ledger.record(denied(Some("a"), n));
    }
    for n in 0..30 {
        ledger.record(denied(Some("b"), n));
    }
    let page = ledger.events_after(0, MAX_PAGE);
    assert_eq!(count_for(&page, "a"), 60, "a stops at its per-sandbox cap");
    assert_eq!(
        count_for(&page, "b"),
        30,
        "every one of b's events is spooled"
    );
    assert_eq!(ledger.waiting(), 440);
    assert_eq!(
        ledger.overflowed(),
        0,
        "refusals wait for a summary, none is lost"
    );
}

#[test]
fn past_capacity_each_key_gets_a_fair_share_and_memory_stays_bounded() {
    let ledger = Ledger::with_limits(10, 1000);
    for n in 0..50 {
        ledger.record(denied(Some("a"), n));
    }
    assert_eq!(ledger.depth(), 10, "alone, a may fill the spool");
    for n in 0..50 {
        ledger.record(denied(Some("b"), n));
    }
    assert_eq!(
        count_for(&ledger.events_after(0, MAX_PAGE), "b"),
        5,
        "10 / 2 keys"
    );
    for id in 0..1000 {
        ledger.record(denied(Some(&format!("k{id}")), 0));
    }
    assert!(
        ledger.depth() <= 20,
        "at most twice the capacity: {}",
        ledger.depth()
    );
}

#[test]
fn reservations_hold_room_and_refuse_when_the_share_is_full() {
    let ledger = Arc::new(Ledger::with_limits(100, 3));
    let held: Vec<Reservation> = (0..3).map(|_| ledger.reserve(key("a")).unwrap()).collect();
    assert_eq!(ledger.reserve(key("a")).unwrap_err(), LedgerFull);
    let other = ledger.reserve(key("b")).unwrap();
    let mut held = held.into_iter();
    // A reservation filled by its event keeps the slot until the event is acked.
    ledger.record_reserved(denied(Some("a"), 1), held.next().unwrap());
    // Dropped unused, it gives the slot back.
    drop(held.next());
    let again = ledger.reserve(key("a")).unwrap();
    assert_eq!(ledger.reserve(key("a")).unwrap_err(), LedgerFull);
    drop((again, held, other));
    assert_eq!(ledger.depth(), 1);
    ledger.ack(u64::MAX);
    let all: Vec<Reservation> = (0..3).map(|_| ledger.reserve(key("a")).unwrap()).collect();
    assert_eq!(all.len(), 3);
}

#[test]
fn refusals_without_room_come_back_as_one_summary() {
    let ledger = Ledger::with_limits(100, 2);
    for n in 0..7 {
        ledger.record(denied(Some("a"), n));
    }
    assert_eq!(ledger.depth(), 2);
    assert_eq!(ledger.waiting(), 5);
    let first = ledger.events_after(0, MAX_PAGE);
    ledger.ack(first.next);
    assert_eq!(ledger.waiting(), 0);
    let page = ledger.events_after(first.next, MAX_PAGE);
    let summary = match page.events.as_slice() {
        [summary] => summary,
        other => panic!("one summary expected: {other:?}"),
    };
    assert_eq!(summary.reason, "ledger_full");
    assert_eq!(summary.decision, Outcome::Deny);
    assert_eq!(summary.count, 5);
    assert_eq!(summary.sandbox.as_deref(), Some("a"));
    assert_eq!(summary.ceiling.as_deref(), Some("role:member@3f2a9c1e"));
    assert_eq!(summary.seq, first.next + 1, "seqs stay consecutive");
}

#[test]
fn unattributed_sources_have_their_own_shares() {
    let ledger = Ledger::with_limits(100, 2);
    let from = |ip: &str, n| {
        let mut e = denied(None, n);
        e.client = SocketAddr::new(ip.parse().unwrap(), 5000 + u16::try_from(n).unwrap());
        e
    };
    for n in 0..5 {
        ledger.record(from("10.213.0.3", n));
        ledger.record(from("10.213.0.11", n));
    }
    assert_eq!(ledger.depth(), 4);
    ledger.ack(u64::MAX);
    let summaries = ledger.events_after(0, MAX_PAGE).events;
    assert_eq!(summaries.len(), 2, "{summaries:?}");
    assert!(summaries
        .iter()
        .all(|s| s.count == 3 && s.client.port() == 0));
}

#[test]
fn an_allowed_event_without_a_reservation_is_overflow_when_there_is_no_room() {
    // Standalone mode: nothing reserves, and an allowed event is never summarised as a refusal.
    let ledger = Ledger::with_limits(100, 1);
    ledger.record(event(1));
    ledger.record(event(2));
    assert_eq!(
        (ledger.depth(), ledger.overflowed(), ledger.waiting()),
        (1, 1, 0)
    );
}
