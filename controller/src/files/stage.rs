//! The staging of an upload: the body goes through the [`Rewriter`] into a temporary file under
//! the staging directory, whole, before Docker sees a byte of it. An archive refused anywhere
//! (a bad entry, a cap, a body that broke off or a raw body of the wrong length) so leaves
//! nothing in the target; only what Docker itself refuses while extracting (an entry that
//! would replace a directory with a non-directory, a read-only mount) can stop an extraction
//! half way.
//!
//! The file has no name (`O_TMPFILE` on Linux; created and unlinked at once elsewhere), so it
//! goes when it is closed, also when the controller dies mid-upload. It holds at most the
//! rewritten archive (about [`super::MAX_UPLOAD_BYTES`] plus headers).

use std::io::{self, SeekFrom};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::tar::{Rewriter, Summary};
use super::{BodyStream, FilesError};

/// Bytes read from the staged file per chunk sent to Docker, and buffered per write to it:
/// each file operation is a trip to the blocking pool, so they are few and large.
const CHUNK: usize = 1024 * 1024;

/// A rewritten archive that passed every check, on disk.
pub(super) struct Staged {
    file: tokio::fs::File,
    /// What it holds.
    pub summary: Summary,
}

/// Reads `body` through `rewriter` into a fresh unnamed file under `dir` (created 0700 when
/// missing); a refusal is returned before anything reaches Docker.
pub(super) async fn stage(
    dir: &Path,
    mut body: BodyStream,
    mut rewriter: Rewriter,
) -> Result<Staged, FilesError> {
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
    let mut file = tokio::io::BufWriter::with_capacity(CHUNK, tokio::fs::File::from_std(file));
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk
            .map_err(|error| FilesError::BadArchive(format!("the body broke off: {error}")))?;
        out.clear();
        rewriter.push(&chunk, &mut out)?;
        file.write_all(&out).await.map_err(FilesError::Staging)?;
    }
    out.clear();
    let summary = rewriter.finish(&mut out)?;
    file.write_all(&out).await.map_err(FilesError::Staging)?;
    file.flush().await.map_err(FilesError::Staging)?;
    let mut file = file.into_inner();
    file.seek(SeekFrom::Start(0))
        .await
        .map_err(FilesError::Staging)?;
    Ok(Staged { file, summary })
}

// === impl Staged ===

impl Staged {
    /// The staged archive as a body for Docker, from its start.
    pub(super) fn into_stream(self) -> BoxStream<'static, Result<Bytes, io::Error>> {
        stream::unfold(Some(self.file), |file| async move {
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
        .boxed()
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

    #[tokio::test]
    async fn a_whole_archive_is_staged_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join("uploads");
        let mut archive = entry("a.txt", b"hello\n");
        archive.extend(vec![0u8; 1024]);
        let staged = stage(
            &staging,
            body(vec![archive]),
            Rewriter::new(owner(), limits()),
        )
        .await
        .unwrap();
        assert_eq!(
            (staged.summary.entries, staged.summary.content_bytes),
            (1, 6)
        );
        let back: Vec<u8> = staged
            .into_stream()
            .map(|chunk| chunk.unwrap().to_vec())
            .concat()
            .await;
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
        let refused = stage(
            dir.path(),
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
        let refused = stage(dir.path(), broken, Rewriter::new(owner(), limits()))
            .await
            .err()
            .unwrap();
        assert!(refused.to_string().contains("broke off"), "{refused}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
