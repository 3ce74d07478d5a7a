//! Sandbox logs: a bounded ring per sandbox, fed by a Docker log follower, read as
//! Server-Sent Events with resume.
//!
//! - The follower starts lazily, on the first `follow` request for a sandbox, and reads the
//!   container's log from its start (Docker keeps it in a size-capped `json-file`), so the
//!   ring holds the sandbox's output from the beginning no matter when it was first asked for.
//!   It runs until the container stops, then marks the ring ended; readers then drain what is
//!   left and their streams end.
//! - Sequence numbers count lines of that log from 1. Because a follower always starts from
//!   the log's start, a follower started again (after the controller restarts, or after an
//!   ended ring was dropped) numbers the lines the same way, as long as Docker has not rotated
//!   the log file away.
//! - An ended ring that no reader holds is dropped at the next `follow` request (of any
//!   sandbox); a later request replays it from Docker.
//! - A request without `follow` never starts a follower: it serves the live ring if one
//!   exists, or else reads the log once into a fresh ring, and ends.

mod ring;
mod sse;

pub use ring::{Gap, LogEntry, LogRing, ReadBatch};
pub use sse::{gap_event, line_event, KEEP_ALIVE};

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::sync::watch;
use tracing::{debug, warn};

use super::{SandboxError, Sandboxes};
use crate::audit::{Actor, Command};
use crate::docker::{DockerClient, LogFollow, OutputChunks};
use crate::sandbox::{SandboxId, SandboxState};

/// How often an idle follow stream sends a keep-alive comment.
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(15);
/// Most lines taken from the ring per wake-up.
const BATCH: usize = 256;

/// Every sandbox's log ring; cheap to clone.
#[derive(Clone, Debug)]
pub struct LogHub {
    rings: Arc<Mutex<HashMap<SandboxId, Arc<SharedRing>>>>,
    capacity: usize,
    /// Set at shutdown: every stream ends, so a graceful shutdown is not held open by
    /// followers of long-running sandboxes.
    closing: Arc<watch::Sender<bool>>,
}

/// `GET /v1/sandboxes/{id}/logs`: the sandbox's output after sequence `after`, as SSE text.
/// A sandbox still being created has no log yet.
#[derive(Clone, Copy, Debug)]
pub struct StreamLogs {
    /// The sandbox.
    pub id: SandboxId,
    /// The last sequence number the client already has (0: from the start).
    pub after: u64,
    /// Whether to keep sending new lines.
    pub follow: Follow,
}

/// The SSE text of a sandbox's log.
pub type LogStream = futures_util::stream::BoxStream<'static, Result<String, Infallible>>;

/// Whether a reader waits for more lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// Send what is there, then end.
    No,
    /// Keep sending until the sandbox's output ends.
    Yes,
}

/// One ring and the signal its readers wait on.
#[derive(Debug)]
struct SharedRing {
    ring: Mutex<LogRing>,
    changed: watch::Sender<()>,
}

/// A reader's position.
struct Reader {
    shared: Arc<SharedRing>,
    after: u64,
    follow: Follow,
    changed: watch::Receiver<()>,
    closing: watch::Receiver<bool>,
    done: bool,
}

// === impl LogHub ===

impl LogHub {
    /// A hub whose rings hold about `capacity` bytes each.
    pub fn new(capacity: usize) -> Self {
        Self {
            rings: Arc::default(),
            capacity,
            closing: Arc::new(watch::channel(false).0),
        }
    }

    /// Ends every open log stream (at shutdown); streams opened later end at once.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// The SSE byte stream of `container`'s log (sandbox `id`) after sequence `after`.
    pub async fn stream(
        &self,
        docker: &DockerClient,
        id: SandboxId,
        container: &str,
        after: u64,
        follow: Follow,
    ) -> impl Stream<Item = Result<String, Infallible>> + Send + 'static {
        let shared = match follow {
            Follow::Yes => self.open(docker, id, container),
            Follow::No => match self.live(id) {
                Some(shared) => shared,
                None => self.read_once(docker, container).await,
            },
        };
        let changed = shared.changed.subscribe();
        let reader = Reader {
            shared,
            after,
            follow,
            changed,
            closing: self.closing.subscribe(),
            done: false,
        };
        futures_util::stream::unfold(reader, |mut reader| async move {
            let text = reader.next_text().await?;
            Some((Ok(text), reader))
        })
    }

    /// How many rings are held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no ring is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The live ring for `id`, starting its follower if there is none.
    fn open(&self, docker: &DockerClient, id: SandboxId, container: &str) -> Arc<SharedRing> {
        let mut rings = self.lock();
        // Drop ended rings nobody reads; they can be replayed from Docker.
        rings.retain(|_, shared| Arc::strong_count(shared) > 1 || !shared.lock().is_ended());
        if let Some(shared) = rings.get(&id) {
            return Arc::clone(shared);
        }
        let shared = Arc::new(SharedRing::new(self.capacity));
        rings.insert(id, Arc::clone(&shared));
        let output = docker.container_logs(container, LogFollow::Follow);
        tokio::spawn(feed(Arc::clone(&shared), output, id));
        shared
    }

    fn live(&self, id: SandboxId) -> Option<Arc<SharedRing>> {
        self.lock().get(&id).cloned()
    }

    /// A fresh, ended ring with what Docker has logged so far.
    async fn read_once(&self, docker: &DockerClient, container: &str) -> Arc<SharedRing> {
        let shared = Arc::new(SharedRing::new(self.capacity));
        let output = docker.container_logs(container, LogFollow::Once);
        fill(&shared, output).await;
        shared
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SandboxId, Arc<SharedRing>>> {
        self.rings.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Feeds a ring from a follower until the container stops.
async fn feed(shared: Arc<SharedRing>, output: OutputChunks, id: SandboxId) {
    fill(&shared, output).await;
    debug!(sandbox.id = %id, "Log follower ended");
}

/// Appends every chunk of `output` to the ring, then marks it ended.
async fn fill(shared: &SharedRing, mut output: OutputChunks) {
    while let Some(chunk) = output.next().await {
        match chunk {
            Ok(chunk) => {
                shared.lock().push_chunk(chunk.stream, &chunk.bytes);
                shared.changed.send_replace(());
            }
            // A container that never existed or was removed simply has no (more) output.
            Err(error) if error.is_not_found() => break,
            Err(error) => {
                warn!(%error, "Container log stream failed");
                break;
            }
        }
    }
    shared.lock().end();
    shared.changed.send_replace(());
}

// === impl SharedRing ===

impl SharedRing {
    fn new(capacity: usize) -> Self {
        let (changed, _) = watch::channel(());
        Self {
            ring: Mutex::new(LogRing::new(capacity)),
            changed,
        }
    }

    fn lock(&self) -> MutexGuard<'_, LogRing> {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl Reader ===

impl Reader {
    /// The next piece of the SSE body, or `None` at the end.
    async fn next_text(&mut self) -> Option<String> {
        if self.done || *self.closing.borrow() {
            return None;
        }
        loop {
            // Mark seen before reading, so a line pushed after the read wakes us.
            self.changed.borrow_and_update();
            let (batch, ended) = {
                let ring = self.shared.lock();
                (ring.read_after(self.after, BATCH), ring.is_ended())
            };
            if let Some(text) = self.render(&batch) {
                return Some(text);
            }
            if ended || self.follow == Follow::No {
                self.done = true;
                return None;
            }
            let wake = tokio::select! {
                changed = self.changed.changed() => changed.is_ok(),
                _closing = self.closing.changed() => false,
                () = tokio::time::sleep(KEEP_ALIVE_EVERY) => return Some(KEEP_ALIVE.to_owned()),
            };
            // Not woken by a new line: the ring is gone or the hub is closing.
            if !wake {
                self.done = true;
                return None;
            }
        }
    }

    fn render(&mut self, batch: &ReadBatch) -> Option<String> {
        let mut text = String::new();
        if let Some(gap) = batch.gap {
            text.push_str(&gap_event(gap));
            self.after = gap.last;
        }
        for entry in &batch.entries {
            text.push_str(&line_event(entry));
            self.after = entry.seq;
        }
        (!text.is_empty()).then_some(text)
    }
}

// === impl StreamLogs ===

impl Command<Sandboxes> for StreamLogs {
    type Output = LogStream;
    type Error = SandboxError;

    async fn execute(
        self,
        sandboxes: &Sandboxes,
        actor: &Actor,
    ) -> Result<LogStream, SandboxError> {
        let action = "GET /v1/sandboxes/{id}/logs";
        let sandbox = sandboxes.read_visible(actor, self.id, action).await?;
        let container = match (&sandbox.container_id, sandbox.state) {
            (Some(container), state) if state != SandboxState::Creating => container.clone(),
            _ => return Err(SandboxError::NotStarted),
        };
        let stream = sandboxes
            .logs
            .stream(
                &sandboxes.docker,
                self.id,
                &container,
                self.after,
                self.follow,
            )
            .await;
        Ok(stream.boxed())
    }
}

#[cfg(test)]
mod tests {
    use futures_util::stream;

    use super::*;
    use crate::docker::{OutputChunk, OutputStream};

    fn reader(hub: &LogHub, shared: &Arc<SharedRing>, after: u64, follow: Follow) -> Reader {
        Reader {
            shared: Arc::clone(shared),
            after,
            follow,
            changed: shared.changed.subscribe(),
            closing: hub.closing.subscribe(),
            done: false,
        }
    }

    fn chunk(stream: OutputStream, text: &str) -> Result<OutputChunk, crate::docker::DockerError> {
        Ok(OutputChunk {
            stream,
            bytes: text.as_bytes().to_vec(),
        })
    }

    #[tokio::test]
    async fn a_follower_wakes_resumes_and_ends() {
        let hub = LogHub::new(1 << 20);
        let shared = Arc::new(SharedRing::new(1 << 20));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let rx = stream::unfold(rx, |mut rx| async move { Some((rx.recv().await?, rx)) });
        let feeder = tokio::spawn({
            let shared = Arc::clone(&shared);
            async move { fill(&shared, Box::pin(rx)).await }
        });
        let mut follow = reader(&hub, &shared, 0, Follow::Yes);
        tx.send(chunk(OutputStream::Stdout, "one\ntwo\n")).unwrap();
        let text = follow.next_text().await.unwrap();
        assert_eq!(
            text,
            "id: 1\nevent: stdout\ndata: one\n\nid: 2\nevent: stdout\ndata: two\n\n"
        );
        // A reader that resumes after seq 1 gets only what follows.
        let mut resumed = reader(&hub, &shared, 1, Follow::No);
        assert_eq!(
            resumed.next_text().await.unwrap(),
            "id: 2\nevent: stdout\ndata: two\n\n"
        );
        assert_eq!(
            resumed.next_text().await,
            None,
            "no follow: ends when caught up"
        );
        tx.send(chunk(OutputStream::Stderr, "three\n")).unwrap();
        assert_eq!(
            follow.next_text().await.unwrap(),
            "id: 3\nevent: stderr\ndata: three\n\n"
        );
        drop(tx);
        feeder.await.unwrap();
        assert_eq!(follow.next_text().await, None, "the output ended");
    }

    #[tokio::test]
    async fn closing_the_hub_ends_waiting_followers() {
        let hub = LogHub::new(1 << 20);
        let shared = Arc::new(SharedRing::new(1 << 20));
        let mut follow = reader(&hub, &shared, 0, Follow::Yes);
        let waiting = tokio::spawn(async move { follow.next_text().await });
        hub.close();
        assert_eq!(waiting.await.unwrap(), None);
        let mut late = reader(&hub, &shared, 0, Follow::Yes);
        assert_eq!(
            late.next_text().await,
            None,
            "opened after close: ends at once"
        );
    }

    #[tokio::test]
    async fn a_reader_behind_the_ring_gets_a_gap_then_the_rest() {
        let hub = LogHub::new(1 << 20);
        let shared = Arc::new(SharedRing::new(2 * (ring::ENTRY_OVERHEAD + 1)));
        let lines: Vec<_> = (1..=5)
            .map(|i| chunk(OutputStream::Stdout, &format!("{i}\n")))
            .collect();
        fill(&shared, Box::pin(stream::iter(lines))).await;
        let mut behind = reader(&hub, &shared, 1, Follow::Yes);
        let text = behind.next_text().await.unwrap();
        assert_eq!(
            text,
            "id: 3\nevent: gap\ndata: {\"lost\":2}\n\n\
             id: 4\nevent: stdout\ndata: 4\n\n\
             id: 5\nevent: stdout\ndata: 5\n\n"
        );
        assert_eq!(behind.next_text().await, None);
    }
}
