//! The staging of an upload: the body goes through the [`Rewriter`] whole, before Docker sees a
//! byte of it. An archive refused anywhere (a bad entry, a cap, a body that broke off or a raw
//! body of the wrong length) so leaves nothing in the target; only what Docker itself refuses
//! while extracting (an entry that would replace a directory with a non-directory, a read-only
//! mount) can stop an extraction half way.
//!
//! The rewritten archive is held in memory while the node's [`StagingMemory`] has room
//! (`AIRLOCK_UPLOAD_MEMORY_MB`, shared by every upload), so a common upload never touches the
//! disk; once it does not fit, what is held moves to a temporary file under the staging
//! directory and the rest follows it there. The file has no name (`O_TMPFILE` on Linux; created
//! and unlinked at once elsewhere), so it goes when it is closed, also when the controller dies
//! mid-upload. It holds at most the rewritten archive (about [`super::MAX_UPLOAD_BYTES`] plus
//! headers).

use std::io::{self, SeekFrom};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::tar::{Rewriter, Summary};
use super::{BodyStream, FilesError};

/// Bytes gathered before they are kept as one piece (in memory) or written (on disk), and read
/// from the staged file per chunk sent to Docker: each file operation is a trip to the blocking
/// pool, so they are few and large.
const CHUNK: usize = 1024 * 1024;

/// The memory every upload of the node may be staged in at once; cheap to clone.
#[derive(Clone, Debug)]
pub(super) struct StagingMemory {
    used: Arc<AtomicU64>,
    limit: u64,
}

/// Bytes of [`StagingMemory`] one upload holds; given back when dropped.
#[derive(Debug)]
struct Grant {
    memory: StagingMemory,
    bytes: u64,
}

/// A rewritten archive that passed every check.
pub(super) struct Staged {
    held: Held,
    /// What it holds.
    pub summary: Summary,
}

/// Where a staged archive is.
enum Held {
    /// In memory, in pieces of about [`CHUNK`], with the memory they take.
    Memory(Vec<Bytes>, Grant),
    /// In an unnamed file (at its start once staged).
    Disk(tokio::fs::File),
}

/// Reads `body` through `rewriter`, in memory while `memory` has room and else into a fresh
/// unnamed file under `dir` (created 0700 when missing); a refusal is returned before anything
/// reaches Docker.
pub(super) async fn stage(
    dir: &Path,
    memory: &StagingMemory,
    mut body: BodyStream,
    mut rewriter: Rewriter,
) -> Result<Staged, FilesError> {
    let mut held = Held::Memory(Vec::new(), memory.grant());
    let mut out = Vec::with_capacity(CHUNK);
    while let Some(chunk) = body.next().await {
        let chunk = chunk
            .map_err(|error| FilesError::BadArchive(format!("the body broke off: {error}")))?;
        rewriter.push(&chunk, &mut out)?;
        if out.len() >= CHUNK {
            held.keep(dir, &mut out).await?;
        }
    }
    let summary = rewriter.finish(&mut out)?;
    held.keep(dir, &mut out).await?;
    if let Held::Disk(file) = &mut held {
        file.flush().await.map_err(FilesError::Staging)?;
        file.seek(SeekFrom::Start(0))
            .await
            .map_err(FilesError::Staging)?;
    }
    Ok(Staged { held, summary })
}

// === impl StagingMemory ===

impl StagingMemory {
    /// `limit` bytes, shared by every upload of the node (0: every upload is staged on disk).
    pub(super) fn new(limit: u64) -> Self {
        Self {
            used: Arc::default(),
            limit,
        }
    }

    /// Bytes held by uploads now.
    #[cfg(test)]
    fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    fn grant(&self) -> Grant {
        Grant {
            memory: self.clone(),
            bytes: 0,
        }
    }
}

// === impl Grant ===

impl Grant {
    /// Takes `bytes` more, if the node has room for them.
    fn grow(&mut self, bytes: u64) -> bool {
        let limit = self.memory.limit;
        let taken = self
            .memory
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= limit)
            });
        if taken.is_ok() {
            self.bytes += bytes;
        }
        taken.is_ok()
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.memory.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

// === impl Held ===

impl Held {
    /// Keeps `out` (emptying it): in memory while the grant can grow, else on disk, moving
    /// what memory held to a new file first.
    async fn keep(&mut self, dir: &Path, out: &mut Vec<u8>) -> Result<(), FilesError> {
        if out.is_empty() {
            return Ok(());
        }
        if let Self::Memory(pieces, grant) = self {
            if grant.grow(out.len() as u64) {
                pieces.push(Bytes::from(std::mem::replace(
                    out,
                    Vec::with_capacity(CHUNK),
                )));
                return Ok(());
            }
            let mut file = unnamed_file(dir).await?;
            for piece in pieces.iter() {
                file.write_all(piece).await.map_err(FilesError::Staging)?;
            }
            // The memory goes back with the grant.
            *self = Self::Disk(file);
        }
        if let Self::Disk(file) = self {
            file.write_all(out).await.map_err(FilesError::Staging)?;
            out.clear();
        }
        Ok(())
    }
}

/// A fresh unnamed file under `dir` (made 0700 when missing).
async fn unnamed_file(dir: &Path) -> Result<tokio::fs::File, FilesError> {
    let dir = dir.to_owned();
    let file = tokio::task::spawn_blocking(move || {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        tempfile::tempfile_in(&dir)
    })
    .await
    .map_err(|error| FilesError::Staging(io::Error::other(error)))?
    .map_err(FilesError::Staging)?;
    Ok(tokio::fs::File::from_std(file))
}

// === impl Staged ===

impl Staged {
    /// Whether the archive is held in memory (else on disk).
    #[cfg(test)]
    fn in_memory(&self) -> bool {
        matches!(self.held, Held::Memory(..))
    }

    /// The staged archive as a body for Docker, from its start. Memory it holds is given back
    /// when the stream is dropped.
    pub(super) fn into_stream(self) -> BoxStream<'static, Result<Bytes, io::Error>> {
        match self.held {
            Held::Memory(pieces, grant) => stream::iter(pieces)
                .map(move |piece| {
                    let _held_until_sent = &grant;
                    Ok(piece)
                })
                .boxed(),
            Held::Disk(file) => stream::unfold(Some(file), |file| async move {
                let mut file = file?;
                let mut buf = vec![0u8; CHUNK];
                match file.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(read) => {
                        buf.truncate(read);
                        Some((Ok(Bytes::from(buf)), Some(file)))
                    }
                    Err(error) => Some((Err(error), None)),
                }
            })
            .boxed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::tar::{Limits, Owner};

    fn body(parts: Vec<Vec<u8>>) -> BodyStream {
        stream::iter(parts.into_iter().map(|p| Ok(Bytes::from(p)))).boxed()
    }

    fn entry(name: &str, content: &[u8]) -> Vec<u8> {
        let mut out = crate::files::tar::file_header(name, content.len() as u64, 0, owner());
        out.extend_from_slice(content);
        out.resize(out.len() + (512 - content.len() % 512) % 512, 0);
        out
    }

    fn owner() -> Owner {
        Owner {
            uid: 1000,
            gid: 1000,
        }
    }

    fn limits() -> Limits {
        Limits {
            max_bytes: 1 << 20,
            max_entries: 10,
        }
    }

    async fn read_back(staged: Staged) -> Vec<u8> {
        staged
            .into_stream()
            .map(|chunk| chunk.unwrap().to_vec())
            .concat()
            .await
    }

    #[tokio::test]
    async fn a_whole_archive_is_staged_on_disk_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join("uploads");
        let mut archive = entry("a.txt", b"hello\n");
        archive.extend(vec![0u8; 1024]);
        let staged = stage(
            &staging,
            &StagingMemory::new(0),
            body(vec![archive]),
            Rewriter::new(owner(), limits()),
        )
        .await
        .unwrap();
        assert!(!staged.in_memory());
        assert_eq!(
            (staged.summary.entries, staged.summary.content_bytes),
            (1, 6)
        );
        let back = read_back(staged).await;
        assert_eq!(&back[512..518], b"hello\n");
        assert_eq!(back.len() % 512, 0);
        // The file had no name: the directory is empty.
        assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&staging).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[tokio::test]
    async fn a_refusal_after_good_entries_stages_nothing_for_docker() {
        let dir = tempfile::tempdir().unwrap();
        let good = entry("good.txt", b"fine\n");
        let mut bad = entry("../escape", b"x");
        bad.extend(vec![0u8; 1024]);
        let memory = StagingMemory::new(1 << 20);
        let refused = stage(
            dir.path(),
            &memory,
            body(vec![good, bad]),
            Rewriter::new(owner(), limits()),
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(refused, FilesError::BadArchive(_)), "{refused}");
        let broken: BodyStream = stream::iter(vec![
            Ok(Bytes::from(entry("a", b"a"))),
            Err(io::Error::other("reset")),
        ])
        .boxed();
        let refused = stage(
            dir.path(),
            &memory,
            broken,
            Rewriter::new(owner(), limits()),
        )
        .await
        .err()
        .unwrap();
        assert!(refused.to_string().contains("broke off"), "{refused}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(memory.used(), 0, "a refusal gives its memory back");
    }

    /// `n` entries of 512 KiB each, then the end.
    fn big(n: usize) -> Vec<Vec<u8>> {
        let mut parts: Vec<Vec<u8>> = (0..n)
            .map(|i| entry(&format!("f{i}"), &vec![b'x'; 512 * 1024]))
            .collect();
        parts.push(vec![0u8; 1024]);
        parts
    }

    fn roomy() -> Limits {
        Limits {
            max_bytes: 64 << 20,
            max_entries: 100,
        }
    }

    #[tokio::test]
    async fn an_archive_that_fits_stays_in_memory_until_it_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let memory = StagingMemory::new(8 << 20);
        let staged = stage(
            dir.path(),
            &memory,
            body(big(6)),
            Rewriter::new(owner(), roomy()),
        )
        .await
        .unwrap();
        assert!(staged.in_memory());
        assert!(memory.used() > 3 << 20, "{}", memory.used());
        assert_eq!(staged.summary.entries, 6);
        let back = read_back(staged).await;
        assert_eq!(back.len(), 6 * (512 + 512 * 1024) + 1024);
        assert_eq!(memory.used(), 0, "given back once sent");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn an_archive_past_the_nodes_memory_moves_to_disk_whole() {
        let dir = tempfile::tempdir().unwrap();
        let memory = StagingMemory::new(3 << 20);
        // Another upload holds most of the node's memory.
        let other = stage(
            dir.path(),
            &memory,
            body(big(4)),
            Rewriter::new(owner(), roomy()),
        )
        .await
        .unwrap();
        assert!(other.in_memory());
        let before = memory.used();
        let staged = stage(
            dir.path(),
            &memory,
            body(big(6)),
            Rewriter::new(owner(), roomy()),
        )
        .await
        .unwrap();
        assert!(!staged.in_memory());
        assert_eq!(memory.used(), before, "the spilled upload holds no memory");
        let back = read_back(staged).await;
        assert_eq!(back.len(), 6 * (512 + 512 * 1024) + 1024);
        let names: Vec<u8> = (0..6)
            .flat_map(|i| back[i * (512 + 512 * 1024)..][..2].to_vec())
            .collect();
        assert_eq!(names, b"f0f1f2f3f4f5", "in order, nothing lost in the move");
        drop(other);
        assert_eq!(memory.used(), 0);
    }
}
