//! Record: one proxied request or tunnel, from the first byte of its request line to its
//! canonical ledger event.
//!
//! `Exchange` carries what the ledger needs (client, sandbox, generation, ceiling, destination,
//! decision, byte counts, timing) and guarantees exactly one `Ledger::record` per request:
//! `refuse` records a refusal, `finish` records the end of an allowed exchange, and dropping an
//! unfinished exchange records it as well (reason `client_gone`), so no request disappears from
//! the ledger. An identified sandbox's exchange reserves its spool slot before any upstream
//! byte (`reserve`), so what is let through is always recorded. A refusal that came before
//! identification is attributed to the sandbox its source address is registered to, if any.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use airlock_egress_policy::Target;
use airlock_wire::Outcome;
use bytes::Bytes;
use http::Response;

use crate::budget::BudgetExceeded;
use crate::error::{EgressError, ErrorContext};
use crate::ledger::{Inspected, LedgerEvent, LedgerKey, Reservation};
use crate::proxy::{ClientConn, Proxy};
use crate::registry::ClientCtx;

/// Reason recorded for an allowed exchange that ended normally.
pub(crate) const REASON_ALLOWED: &str = "allowed";

/// Byte counters shared between the two copy directions and the exchange.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Bytes sent from the client towards the upstream.
    pub(crate) up: AtomicU64,
    /// Bytes sent from the upstream towards the client.
    pub(crate) down: AtomicU64,
    /// Set when a body was cut because the sandbox's budget ran out: that, not the upstream
    /// failure the cut causes, is why the exchange ended.
    pub(crate) cut: OnceLock<BudgetExceeded>,
}

/// The ledger state of one request or tunnel.
#[derive(Debug)]
pub(crate) struct Exchange {
    proxy: Arc<Proxy>,
    conn: Arc<ClientConn>,
    client: SocketAddr,
    method: String,
    host: String,
    port: u16,
    sandbox: Option<String>,
    generation: u64,
    ceiling: Option<Arc<str>>,
    /// The spool slot taken for an identified sandbox, filled by the event.
    reservation: Option<Reservation>,
    addr: Option<SocketAddr>,
    decision: Outcome,
    reason: &'static str,
    rule: Option<String>,
    start: SystemTime,
    started: Instant,
    counters: Arc<Counters>,
    /// Set when the exchange is an inspected tunnel.
    inspected: Option<Inspected>,
    recorded: bool,
}

// === impl Exchange ===

impl Exchange {
    /// Starts an exchange for `method` and the raw request target (used as the host until the
    /// target is parsed).
    pub(crate) fn begin(
        proxy: Arc<Proxy>,
        conn: &Arc<ClientConn>,
        method: &str,
        raw: &str,
    ) -> Self {
        Self {
            proxy,
            conn: Arc::clone(conn),
            client: conn.peer,
            method: method.to_owned(),
            host: raw.chars().take(255).collect(),
            port: 0,
            sandbox: None,
            generation: 0,
            ceiling: None,
            reservation: None,
            addr: None,
            decision: Outcome::Deny,
            reason: "client_gone",
            rule: None,
            start: SystemTime::now(),
            started: Instant::now(),
            counters: Arc::new(Counters::default()),
            inspected: None,
            recorded: false,
        }
    }

    /// Records the parsed destination.
    pub(crate) fn set_target(&mut self, target: &Target) {
        self.host = target.host_str();
        self.port = target.port;
    }

    /// Records who the client is.
    pub(crate) fn set_identity(&mut self, ctx: &ClientCtx) {
        self.sandbox.clone_from(&ctx.sandbox);
        self.generation = ctx.generation;
        self.ceiling.clone_from(&ctx.ceiling);
    }

    /// Takes the identified sandbox's spool slot, or refuses with `ledger_full` when its
    /// share is full. Unidentified (standalone) clients take none.
    pub(crate) fn reserve(&mut self) -> Result<(), EgressError> {
        let Some(sandbox) = &self.sandbox else {
            return Ok(());
        };
        let key = LedgerKey::Sandbox(Arc::from(sandbox.as_str()));
        let reservation = self
            .proxy
            .ledger_arc()
            .reserve(key)
            .map_err(|full| EgressError::limited("ledger_full", full.to_string()))?;
        self.reservation = Some(reservation);
        Ok(())
    }

    /// Records an allow decision (or a report-mode would-deny) and its rule.
    pub(crate) fn set_allowed(&mut self, would_deny: Option<&'static str>, rule: Option<String>) {
        self.rule = rule;
        match would_deny {
            Some(code) => {
                self.decision = Outcome::WouldDeny;
                self.reason = code;
            }
            None => {
                self.decision = Outcome::Allow;
                self.reason = REASON_ALLOWED;
            }
        }
    }

    /// Records the rule that denied the request.
    pub(crate) fn set_rule(&mut self, rule: Option<String>) {
        self.rule = rule;
    }

    /// Records the upstream address actually dialled (or the address that was denied).
    pub(crate) fn set_addr(&mut self, addr: Option<SocketAddr>) {
        self.addr = addr;
    }

    /// Marks the exchange as the inspected tunnel `tunnel` (seen into in `mode`) and returns
    /// the event its requests' rows start from: the same client, sandbox, generation,
    /// ceiling and destination, the same tunnel id and mode.
    pub(crate) fn inspect(&mut self, tunnel: u64, mode: &'static str) -> LedgerEvent {
        let inspected = Inspected {
            tunnel,
            mode,
            request: None,
        };
        self.inspected = Some(inspected.clone());
        LedgerEvent {
            sandbox: self.sandbox.clone(),
            generation: self.generation,
            method: String::new(),
            host: self.host.clone(),
            port: self.port,
            addr: self.addr,
            decision: Outcome::Allow,
            reason: REASON_ALLOWED,
            rule: None,
            bytes_up: 0,
            bytes_down: 0,
            start: self.start,
            duration: std::time::Duration::ZERO,
            client: self.client,
            ceiling: self.ceiling.clone(),
            count: 1,
            inspected: Some(inspected),
        }
    }

    /// The shared byte counters.
    pub(crate) fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// The proxy this exchange runs in.
    pub(crate) fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }

    /// Refuses the request: records the refusal and builds the JSON error response.
    pub(crate) fn refuse(mut self, error: &EgressError) -> Response<Bytes> {
        let cut = self.counters.cut.get().map(|e| EgressError::from(*e));
        let error = cut.as_ref().unwrap_or(error);
        if error.is_denial() {
            self.decision = Outcome::Deny;
        }
        if let EgressError::Internal { message } = error {
            tracing::error!(error.message = %message, "Internal proxy error");
        }
        self.reason = error.code();
        let ctx = ErrorContext {
            // The host is echoed only once the target parsed; raw input stays in the ledger.
            host: (self.port != 0).then(|| self.host.clone()),
            sandbox: self.sandbox.clone(),
        };
        self.record();
        error.to_response(&ctx)
    }

    /// Ends an allowed exchange; `reason` overrides the decision's reason when the exchange was
    /// cut short (budget, idle timeout, revocation).
    pub(crate) fn finish(mut self, ended_by: Option<&'static str>) {
        let stalled = self.conn.stalled().then_some("idle_timeout");
        if let Some(reason) = self
            .counters
            .cut
            .get()
            .map(BudgetExceeded::code)
            .or(ended_by)
            .or(stalled)
        {
            self.reason = reason;
        }
        self.record();
    }

    fn record(&mut self) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        self.proxy
            .metrics()
            .record_decision(self.decision.as_str(), self.reason);
        if self.sandbox.is_none() {
            self.attribute();
        }
        let event = LedgerEvent {
            sandbox: self.sandbox.take(),
            generation: self.generation,
            method: std::mem::take(&mut self.method),
            host: std::mem::take(&mut self.host),
            port: self.port,
            addr: self.addr,
            decision: self.decision,
            reason: self.reason,
            rule: self.rule.take(),
            bytes_up: self.counters.up.load(Ordering::Relaxed),
            bytes_down: self.counters.down.load(Ordering::Relaxed),
            start: self.start,
            duration: self.started.elapsed(),
            client: self.client,
            ceiling: self.ceiling.take(),
            count: 1,
            inspected: self.inspected.take(),
        };
        match self.reservation.take() {
            Some(reservation) => self.proxy.ledger().record_reserved(event, reservation),
            None => self.proxy.ledger().record(event),
        }
    }

    /// A refusal before (or without) identification belongs to the sandbox its source address
    /// is registered to: its ledger shows it, and it counts against that sandbox's share.
    fn attribute(&mut self) {
        if let Some(owner) = self.proxy.registry().owner_of(self.client.ip()) {
            self.sandbox = Some(owner.sandbox);
            self.generation = owner.generation;
            self.ceiling = owner.ceiling;
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.record();
    }
}
