//! Server-Sent Events framing for log lines.
//!
//! Each line is one event: `id: <seq>`, `event: stdout|stderr`, `data: <line>`. A line
//! always has a `data:` field, even when empty, so every event reaches the client and moves
//! its `Last-Event-ID`. A carriage return inside a line would end the field, so the line is
//! cut there into several `data:` fields, which the client joins with `\n`. A gap is
//! `event: gap` with `data: {"lost":N}` and the id of the last missed line, so a client that
//! reconnects after it does not ask for the lost lines again.

use std::fmt::Write as _;

use super::ring::{Gap, LogEntry};
use crate::docker::OutputStream;

/// A comment that keeps idle connections open through proxies.
pub const KEEP_ALIVE: &str = ": keep-alive\n\n";

/// The event for one line.
pub fn line_event(entry: &LogEntry) -> String {
    let event = match entry.stream {
        OutputStream::Stdout => "stdout",
        OutputStream::Stderr => "stderr",
    };
    let mut out = String::with_capacity(entry.line.len() + 40);
    // Writing to a String cannot fail.
    let _ = write!(out, "id: {}\nevent: {event}\n", entry.seq);
    for piece in entry.line.split(['\r', '\n']) {
        out.push_str("data: ");
        out.push_str(piece);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// The event telling a reader it missed `gap.lost` lines.
pub fn gap_event(gap: Gap) -> String {
    format!(
        "id: {}\nevent: gap\ndata: {{\"lost\":{}}}\n\n",
        gap.last, gap.lost
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn entry(seq: u64, stream: OutputStream, line: &str) -> LogEntry {
        LogEntry {
            seq,
            stream,
            line: Arc::from(line),
        }
    }

    #[test]
    fn events_are_framed() {
        let out = line_event(&entry(7, OutputStream::Stdout, "hello"));
        assert_eq!(out, "id: 7\nevent: stdout\ndata: hello\n\n");
        let out = line_event(&entry(8, OutputStream::Stderr, ""));
        assert_eq!(out, "id: 8\nevent: stderr\ndata: \n\n");
        let out = line_event(&entry(9, OutputStream::Stdout, "a\rb"));
        assert_eq!(out, "id: 9\nevent: stdout\ndata: a\ndata: b\n\n");
        let out = gap_event(Gap { lost: 3, last: 10 });
        assert_eq!(out, "id: 10\nevent: gap\ndata: {\"lost\":3}\n\n");
    }
}
