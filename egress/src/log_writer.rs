//! `BatchWriter`: log lines (the ledger's JSON lines among them) leave the request path as one
//! `memcpy` into a shared buffer; a background thread writes the buffer out in batches.
//!
//! Why not a channel per line: every line then costs an allocation and, on a busy proxy, a
//! cross-thread wake-up of the writer. Here the writer is woken only by the first line after it
//! emptied the buffer, then waits a moment ([`BATCH_DELAY`]) so that one `write(2)` carries
//! every line that arrived meanwhile.
//!
//! Invariants:
//! - Lossless: a line is never dropped. When [`CAPACITY`] bytes are waiting, loggers wait for
//!   the writer (back-pressure) instead of growing the buffer or discarding.
//! - Lines stay whole and in order: each event is appended under the lock in one piece.
//! - Dropping the [`LogGuard`] writes out everything buffered before it returns.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the writer lets lines gather after the first one of a batch.
pub const BATCH_DELAY: Duration = Duration::from_millis(2);
/// Bytes that may wait in the buffer before loggers wait for the writer.
pub const CAPACITY: usize = 1024 * 1024;

/// The `MakeWriter` for `tracing_subscriber`: cheap to clone, one handle per event.
#[derive(Debug, Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// Keeps the writer thread; dropping it flushes and stops the thread.
#[derive(Debug)]
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// The buffer went from empty to not empty, or the guard was dropped.
    writer_wanted: Condvar,
    /// The writer took the buffer: there is room again.
    room: Condvar,
}

#[derive(Debug, Default)]
struct State {
    buf: Vec<u8>,
    closed: bool,
}

// === impl BatchWriter ===

impl BatchWriter {
    /// Starts the writer thread sending batches to `out`.
    pub fn start<W: Write + Send + 'static>(out: W) -> std::io::Result<(Self, LogGuard)> {
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new()
            .name("airlock-egress-log".to_owned())
            .spawn({
                let shared = Arc::clone(&shared);
                move || write_batches(&shared, out)
            })?;
        let guard = LogGuard {
            shared: Arc::clone(&shared),
            thread: Some(thread),
        };
        Ok((Self { shared }, guard))
    }
}

impl Write for BatchWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut state = self.shared.lock();
        while state.buf.len() >= CAPACITY && !state.closed {
            state = self
                .shared
                .room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let first = state.buf.is_empty();
        state.buf.extend_from_slice(line);
        drop(state);
        if first {
            self.shared.writer_wanted.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchWriter {
    type Writer = BatchWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

// === impl Shared ===

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writer thread: waits for a first line, lets a batch gather, writes it, repeats; after
/// the guard is dropped, writes what is left and returns.
fn write_batches<W: Write>(shared: &Shared, mut out: W) {
    let mut batch = Vec::new();
    loop {
        let mut state = shared.lock();
        while state.buf.is_empty() && !state.closed {
            state = shared
                .writer_wanted
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.buf.is_empty() {
            return;
        }
        if !state.closed {
            drop(state);
            std::thread::sleep(BATCH_DELAY);
            state = shared.lock();
        }
        std::mem::swap(&mut state.buf, &mut batch);
        drop(state);
        shared.room.notify_all();
        // Nowhere to report a failed log write; the next batch tries again.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
    }
}

// === impl LogGuard ===

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.writer_wanted.notify_one();
        self.shared.room.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_arrives_whole_and_in_order_per_thread_and_the_guard_flushes() {
        let sink = Sink::default();
        let (writer, guard) = BatchWriter::start(sink.clone()).unwrap();
        // More than CAPACITY in all, so loggers hit the back-pressure path too.
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut w = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000 {
                        let line = format!(
                            "{{\"thread\":{t},\"seq\":{i},\"pad\":\"{}\"}}\n",
                            "x".repeat(i % 40)
                        );
                        w.write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let mut next = [0usize; 4];
        for line in out.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let t = usize::try_from(v["thread"].as_u64().unwrap()).unwrap();
            assert_eq!(
                v["seq"].as_u64().unwrap(),
                next[t] as u64,
                "thread {t} out of order"
            );
            next[t] += 1;
        }
        assert_eq!(next, [20_000; 4]);
    }
}
