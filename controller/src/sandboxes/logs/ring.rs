//! The per-sandbox log ring: lines with increasing sequence numbers, bounded in bytes.
//!
//! Sequence numbers start at 1 and never repeat within one ring. When the ring is full the
//! oldest lines go first; a reader that asks for lines after a sequence the ring no longer
//! holds gets a [`Gap`] saying how many it missed.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::docker::OutputStream;

/// Bytes charged per line on top of its text, for the entry's own bookkeeping.
pub(crate) const ENTRY_OVERHEAD: usize = 48;

/// One line of output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Its sequence number (from 1).
    pub seq: u64,
    /// stdout or stderr.
    pub stream: OutputStream,
    /// The line, without its newline (invalid UTF-8 replaced).
    pub line: Arc<str>,
}

/// Lines a reader missed because the ring dropped them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    /// How many.
    pub lost: u64,
    /// The last missed sequence number; a reader resumes after it.
    pub last: u64,
}

/// What [`LogRing::read_after`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadBatch {
    /// Lines dropped before the reader could see them.
    pub gap: Option<Gap>,
    /// The lines, in order.
    pub entries: Vec<LogEntry>,
}

/// A bounded ring of log lines.
#[derive(Debug)]
pub struct LogRing {
    entries: VecDeque<LogEntry>,
    bytes: usize,
    capacity: usize,
    next_seq: u64,
    ended: bool,
}

// === impl LogRing ===

impl LogRing {
    /// An empty ring holding about `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
            capacity,
            next_seq: 1,
            ended: false,
        }
    }

    /// Appends a line, dropping the oldest ones beyond the capacity (the newest line is
    /// always kept). Returns its sequence number.
    pub fn push(&mut self, stream: OutputStream, line: &str) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += cost(line);
        self.entries.push_back(LogEntry {
            seq,
            stream,
            line: Arc::from(line),
        });
        while self.bytes > self.capacity && self.entries.len() > 1 {
            if let Some(old) = self.entries.pop_front() {
                self.bytes -= cost(&old.line);
            }
        }
        seq
    }

    /// Splits a chunk of output into lines and appends each. A trailing piece without a
    /// newline is a line of its own (Docker frames each logged line separately).
    pub fn push_chunk(&mut self, stream: OutputStream, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        for line in text.split('\n') {
            self.push(stream, line.strip_suffix('\r').unwrap_or(line));
        }
    }

    /// Up to `max` lines with a sequence above `after`, and the gap before them if the ring
    /// already dropped some of those.
    pub fn read_after(&self, after: u64, max: usize) -> ReadBatch {
        let first = self.entries.front().map_or(self.next_seq, |e| e.seq);
        let gap = (after + 1 < first).then(|| Gap {
            lost: first - after - 1,
            last: first - 1,
        });
        let skip = after.saturating_sub(first - 1);
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        let entries = self.entries.iter().skip(skip).take(max).cloned().collect();
        ReadBatch { gap, entries }
    }

    /// Marks the output finished: no line will follow.
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// Whether the output is finished.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The last sequence number handed out (0 before the first line).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Bytes charged for the lines held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

fn cost(line: &str) -> usize {
    line.len() + ENTRY_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(batch: &ReadBatch) -> Vec<(u64, &str)> {
        batch.entries.iter().map(|e| (e.seq, &*e.line)).collect()
    }

    #[test]
    fn chunks_become_numbered_lines() {
        let mut ring = LogRing::new(1 << 20);
        ring.push_chunk(OutputStream::Stdout, b"a\nb\r\n");
        ring.push_chunk(OutputStream::Stderr, b"partial");
        ring.push_chunk(OutputStream::Stdout, b"\n");
        let all = ring.read_after(0, 100);
        assert_eq!(all.gap, None);
        assert_eq!(lines(&all), [(1, "a"), (2, "b"), (3, "partial"), (4, "")]);
        assert_eq!(all.entries[2].stream, OutputStream::Stderr);
        assert_eq!(lines(&ring.read_after(2, 1)), [(3, "partial")]);
        assert_eq!(lines(&ring.read_after(4, 10)), []);
        assert_eq!(lines(&ring.read_after(99, 10)), []);
        assert_eq!(ring.last_seq(), 4);
    }

    #[test]
    fn a_full_ring_drops_the_oldest_and_reports_the_gap() {
        let mut ring = LogRing::new(3 * (ENTRY_OVERHEAD + 2));
        for i in 1..=10 {
            ring.push(OutputStream::Stdout, &format!("{i:02}"));
        }
        assert!(ring.bytes() <= 3 * (ENTRY_OVERHEAD + 2));
        let batch = ring.read_after(0, 100);
        assert_eq!(batch.gap, Some(Gap { lost: 7, last: 7 }));
        assert_eq!(lines(&batch), [(8, "08"), (9, "09"), (10, "10")]);
        let batch = ring.read_after(5, 100);
        assert_eq!(batch.gap, Some(Gap { lost: 2, last: 7 }));
        assert_eq!(batch.entries.len(), 3);
        // A reader exactly at the edge lost nothing.
        let batch = ring.read_after(7, 100);
        assert_eq!(batch.gap, None);
        assert_eq!(lines(&batch), [(8, "08"), (9, "09"), (10, "10")]);
        let batch = ring.read_after(9, 100);
        assert_eq!(lines(&batch), [(10, "10")]);
    }

    #[test]
    fn a_line_larger_than_the_ring_is_still_kept() {
        let mut ring = LogRing::new(10);
        ring.push(OutputStream::Stdout, "small");
        ring.push(OutputStream::Stdout, &"x".repeat(100));
        let batch = ring.read_after(0, 10);
        assert_eq!(batch.gap, Some(Gap { lost: 1, last: 1 }));
        assert_eq!(batch.entries.len(), 1);
        assert!(!ring.is_ended());
        ring.end();
        assert!(ring.is_ended());
    }
}
