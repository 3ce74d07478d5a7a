//! The spool behind the ledger: one global sequence of events, with room accounted per key
//! (sandbox, or source address) so one flooding sandbox can never take another's room.
//!
//! A key may hold another event (spooled or reserved) while it holds fewer than `per_key` and
//! either the spool is under `capacity` or the key holds less than its fair share
//! (`capacity / active keys`) and the spool is under twice its capacity. So memory stays
//! within `2 × capacity` events, and a key that has used its share leaves the rest to the
//! others. A refusal that finds no room is counted against its key; once the key has room
//! again the counts go out as one summary event (`reason: "ledger_full"`, `count: N`).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::SystemTime;

use airlock_wire::{Event, Outcome};

use super::event::{spooled, LedgerEvent, LedgerKey};

/// Keys with refusals waiting for room, at most; beyond it a refusal is only overflow.
const MAX_WAITING_KEYS: usize = 65_536;

/// The reason of a summary event.
pub(super) const REASON_LEDGER_FULL: &str = "ledger_full";

/// The spool's limits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) capacity: usize,
    pub(super) per_key: usize,
}

/// Spooled events and per-key accounting; always used under the ledger's lock.
#[derive(Debug)]
pub(super) struct Spool {
    events: VecDeque<(LedgerKey, Event)>,
    next_seq: u64,
    keys: HashMap<LedgerKey, KeyState>,
    /// Events spooled or reserved, over every key.
    held: usize,
    /// Keys that hold at least one event.
    active: usize,
    limits: Limits,
}

/// One key's share.
#[derive(Debug, Default)]
struct KeyState {
    /// Events spooled or reserved under this key.
    held: usize,
    /// Refusals that found no room, waiting to go out as a summary.
    waiting: Option<Waiting>,
}

/// Refusals that could not be spooled, summarised.
#[derive(Debug)]
struct Waiting {
    count: u64,
    first: SystemTime,
    last: SystemTime,
    /// The last refused event, whose identity fields the summary carries.
    template: LedgerEvent,
}

/// What became of an event offered without a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Offered {
    /// Spooled under this seq.
    Spooled(u64),
    /// No room: counted for the key's summary.
    Waiting,
    /// No room and nothing to count it in.
    Lost,
}

// === impl Spool ===

impl Spool {
    pub(super) fn new(limits: Limits) -> Self {
        Self {
            events: VecDeque::with_capacity(limits.capacity.min(1024)),
            next_seq: 1,
            keys: HashMap::new(),
            held: 0,
            active: 0,
            limits,
        }
    }

    /// Whether `key` may hold one more event now.
    fn has_room(&self, key: &LedgerKey) -> bool {
        let held = self.keys.get(key).map_or(0, |k| k.held);
        let active = self.active + usize::from(held == 0);
        let share = self.limits.capacity / active.max(1);
        held < self.limits.per_key
            && (self.held < self.limits.capacity
                || (held < share && self.held < self.limits.capacity.saturating_mul(2)))
    }

    /// Takes a slot for `key` that a later [`Spool::push`] fills, or refuses.
    pub(super) fn reserve(&mut self, key: &LedgerKey) -> bool {
        self.flush_waiting(key);
        if !self.has_room(key) {
            return false;
        }
        self.take(key);
        true
    }

    /// Gives an unused reservation back.
    pub(super) fn release(&mut self, key: &LedgerKey) {
        self.give_back(key);
    }

    /// Spools `event` into a slot reserved for `key`.
    pub(super) fn push_reserved(&mut self, key: LedgerKey, event: &LedgerEvent) -> u64 {
        self.append(key, event)
    }

    /// Spools `event` if its key has room; otherwise counts a refusal for the key's summary.
    pub(super) fn offer(&mut self, key: LedgerKey, event: &LedgerEvent) -> Offered {
        self.flush_waiting(&key);
        if self.has_room(&key) {
            self.take(&key);
            return Offered::Spooled(self.append(key, event));
        }
        if event.decision != Outcome::Deny || !self.can_wait(&key) {
            return Offered::Lost;
        }
        let state = self.keys.entry(key).or_default();
        match &mut state.waiting {
            Some(waiting) => {
                waiting.count = waiting.count.saturating_add(event.count.max(1));
                waiting.last = event.start;
                waiting.template = event.clone();
            }
            None => {
                state.waiting = Some(Waiting {
                    count: event.count.max(1),
                    first: event.start,
                    last: event.start,
                    template: event.clone(),
                })
            }
        }
        Offered::Waiting
    }

    /// Drops every event with `seq <= upto`, then lets keys that have room again send their
    /// summaries.
    pub(super) fn ack(&mut self, upto: u64) {
        while self.events.front().is_some_and(|(_, e)| e.seq <= upto) {
            if let Some((key, _)) = self.events.pop_front() {
                self.give_back(&key);
            }
        }
        let waiting: Vec<LedgerKey> = self
            .keys
            .iter()
            .filter(|(_, state)| state.waiting.is_some())
            .map(|(key, _)| key.clone())
            .collect();
        for key in waiting {
            self.flush_waiting(&key);
        }
    }

    pub(super) fn events(&self) -> &VecDeque<(LedgerKey, Event)> {
        &self.events
    }

    /// Refusals counted and not yet summarised, over every key.
    pub(super) fn waiting(&self) -> u64 {
        self.keys
            .values()
            .filter_map(|k| k.waiting.as_ref())
            .map(|w| w.count)
            .sum()
    }

    fn can_wait(&self, key: &LedgerKey) -> bool {
        self.keys.contains_key(key) || self.keys.len() < MAX_WAITING_KEYS
    }

    /// Spools the key's summary of refusals, if it has some and room for one event.
    fn flush_waiting(&mut self, key: &LedgerKey) {
        let has_waiting = self.keys.get(key).is_some_and(|k| k.waiting.is_some());
        if !has_waiting || !self.has_room(key) {
            return;
        }
        let Some(waiting) = self.keys.get_mut(key).and_then(|k| k.waiting.take()) else {
            return;
        };
        let summary = summary(waiting);
        self.take(key);
        self.append(key.clone(), &summary);
    }

    fn take(&mut self, key: &LedgerKey) {
        let state = self.keys.entry(key.clone()).or_default();
        if state.held == 0 {
            self.active += 1;
        }
        state.held += 1;
        self.held += 1;
    }

    fn give_back(&mut self, key: &LedgerKey) {
        let Some(state) = self.keys.get_mut(key) else {
            return;
        };
        state.held = state.held.saturating_sub(1);
        self.held = self.held.saturating_sub(1);
        if state.held == 0 {
            self.active = self.active.saturating_sub(1);
            if state.waiting.is_none() {
                self.keys.remove(key);
            }
        }
    }

    fn append(&mut self, key: LedgerKey, event: &LedgerEvent) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.events.push_back((key, spooled(seq, event)));
        seq
    }
}

/// The one event that stands for `waiting.count` refusals of a key.
fn summary(waiting: Waiting) -> LedgerEvent {
    let Waiting {
        count,
        first,
        last,
        template,
    } = waiting;
    let client = match template.sandbox {
        Some(_) => template.client,
        None => SocketAddr::new(template.client.ip(), 0),
    };
    LedgerEvent {
        sandbox: template.sandbox,
        generation: template.generation,
        method: "-".to_owned(),
        host: "-".to_owned(),
        port: 0,
        addr: None,
        decision: Outcome::Deny,
        reason: REASON_LEDGER_FULL,
        rule: None,
        bytes_up: 0,
        bytes_down: 0,
        start: first,
        duration: last.duration_since(first).unwrap_or_default(),
        client,
        ceiling: template.ceiling,
        count,
        inspected: None,
    }
}
