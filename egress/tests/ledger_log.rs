//! The ledger's canonical log line. This lives in its own test binary: tracing caches each
//! callsite's interest process-wide, so a thread-local subscriber in a crate's shared unit-test
//! process can miss events when other tests touch the same callsite concurrently.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test helpers may fail loudly.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use airlock_egress::ledger::{Ledger, LedgerEvent};
use airlock_wire::Outcome;

fn event(n: u64) -> LedgerEvent {
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

/// An `io::Write` that appends to a shared buffer, to capture log lines.
#[derive(Clone, Default)]
struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn record_emits_exactly_one_canonical_log_line() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .finish();
    let ledger = Ledger::new(1);
    tracing::subscriber::with_default(subscriber, || {
        ledger.record(event(7));
        let mut overflow = event(8);
        overflow.addr = None;
        overflow.sandbox = None;
        ledger.record(overflow);
    });
    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "one line per event, spooled or not: {text}");
    let first = &lines[0];
    assert_eq!(first["target"], "airlock_egress::ledger");
    assert_eq!(first["level"], "INFO");
    let fields = &first["fields"];
    assert_eq!(
        fields,
        &serde_json::json!({
            "message": "proxy decision",
            "ledger.seq": 1,
            "sandbox.id": "sbx",
            "policy.generation": 3,
            "policy.ceiling": "role:member@3f2a9c1e",
            "request.method": "CONNECT",
            "dst.host": "host7.example",
            "dst.port": 443,
            "dst.addr": "93.184.215.14:443",
            "policy.decision": "allow",
            "policy.reason": "allowed",
            "policy.rule": "*.example",
            "bytes.tx": 7,
            "bytes.rx": 14,
            "request.count": 1,
            "duration_ms": 12,
            "client.addr": "10.213.0.2:40000",
        })
    );
    // The overflowed event still reaches the log, without a seq, sandbox or address.
    let second = &lines[1]["fields"];
    assert!(second.get("ledger.seq").is_none(), "{second}");
    assert!(second.get("sandbox.id").is_none(), "{second}");
    assert!(second.get("dst.addr").is_none(), "{second}");
    assert_eq!(second["dst.host"], "host8.example");
}
