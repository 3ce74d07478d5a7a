//! `airlock images load`: collect archives, verify them (and a `SHA256SUMS` beside them),
//! then send each to every node with progress and record what landed.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, Stream};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::archive::{self, parse_sums, ArchiveError, ArchiveFormat, VerifiedArchive, SHA256SUMS};
use super::progress::Progress;
use crate::docker::{DockerClient, DockerError};
use crate::store::{ImageRecord, Store, StoreError};

/// Upload chunk size.
const CHUNK: usize = 1 << 20;
/// How often progress is reported during an upload.
const TICK: Duration = Duration::from_millis(250);

/// One node to load into.
#[derive(Clone, Debug)]
pub struct Node {
    /// Its name (as in `airlock.node` labels).
    pub name: String,
    /// Its Docker client.
    pub client: DockerClient,
}

/// The state of one archive's upload to one node.
#[derive(Clone, Debug)]
pub struct Transfer {
    /// What is being sent (tags of the images in the archive).
    pub label: String,
    /// To which node.
    pub node: String,
    /// Bytes sent so far.
    pub sent: u64,
    /// Bytes in all.
    pub total: u64,
    /// Time since the upload started.
    pub elapsed: Duration,
}

/// Why a load failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The archive failed verification; nothing was sent.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// A `SHA256SUMS` file beside the archive disagrees or does not list it.
    #[error("{sums}: {detail}")]
    Sums {
        /// The sums file.
        sums: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The folder holds no archive.
    #[error("{0}: no image archive (*.tar, *.tar.gz, *.tgz) found")]
    Empty(PathBuf),
    /// A node refused or failed the load.
    #[error("node {node}: loading {archive} failed: {source}")]
    Docker {
        /// The node.
        node: String,
        /// The archive.
        archive: PathBuf,
        /// The cause.
        #[source]
        source: DockerError,
    },
    /// The daemon answered, but does not have the image afterwards.
    #[error("node {node}: image {image} is missing after the load")]
    NotLoaded {
        /// The node.
        node: String,
        /// The image id.
        image: String,
    },
    /// Recording the import failed.
    #[error("recording the imported image failed: {0}")]
    Store(#[from] StoreError),
    /// A blocking task died.
    #[error("a background task failed: {0}")]
    Task(String),
}

/// The archives `path` names: the file itself, or the archives directly inside the folder.
pub fn collect(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let io_err = |source| LoadError::Io {
        path: path.to_owned(),
        source,
    };
    if !path.metadata().map_err(io_err)?.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io_err)? {
        let file = entry.map_err(io_err)?.path();
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if file.is_file()
            && [".tar", ".tar.gz", ".tgz"]
                .iter()
                .any(|s| name.ends_with(s))
        {
            found.push(file);
        }
    }
    found.sort();
    if found.is_empty() {
        return Err(LoadError::Empty(path.to_owned()));
    }
    Ok(found)
}

/// Verifies `path` and, when a `SHA256SUMS` sits beside it, that it lists the file with its
/// hash. Blocking; call from `spawn_blocking`.
pub fn verify_with_sums(path: &Path) -> Result<VerifiedArchive, LoadError> {
    let verified = archive::verify(path)?;
    let sums = path.with_file_name(SHA256SUMS);
    if !sums.exists() {
        return Ok(verified);
    }
    let text = std::fs::read_to_string(&sums).map_err(|source| LoadError::Io {
        path: sums.clone(),
        source,
    })?;
    let parsed = parse_sums(&text).map_err(|detail| LoadError::Sums {
        sums: sums.clone(),
        detail,
    })?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let detail = match parsed.get(name.as_ref()) {
        None => format!("does not list `{name}` (refusing an unlisted archive)"),
        Some(expected) if *expected != verified.sha256 => format!(
            "sha256 of `{name}` does not match: expected {expected}, got {}",
            verified.sha256
        ),
        Some(_) => return Ok(verified),
    };
    Err(LoadError::Sums { sums, detail })
}

/// Verifies `path` off the async runtime.
pub async fn verify_async(path: PathBuf) -> Result<VerifiedArchive, LoadError> {
    tokio::task::spawn_blocking(move || verify_with_sums(&path))
        .await
        .map_err(|error| LoadError::Task(error.to_string()))?
}

/// Sends a verified archive to every node in turn, reporting progress, and records each image
/// per node in `store` (when given). OCI layouts get a `manifest.json` first, in a private
/// temporary copy, because dockerd's `/images/load` reads only that.
pub async fn load_into_nodes<P: Progress + ?Sized>(
    verified: &VerifiedArchive,
    nodes: &[Node],
    store: Option<&Store>,
    progress: &mut P,
) -> Result<Vec<ImageRecord>, LoadError> {
    let scratch = tempfile::tempdir().map_err(|source| LoadError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let (send_path, send_sha) = match verified.format {
        ArchiveFormat::DockerSave => (verified.path.clone(), verified.sha256.clone()),
        ArchiveFormat::OciLayout => {
            let out = scratch.path().join("with-manifest.tar");
            let (from, to, archive) = (verified.path.clone(), out.clone(), verified.clone());
            let sha =
                tokio::task::spawn_blocking(move || add_docker_manifest(&archive, &from, &to))
                    .await
                    .map_err(|error| LoadError::Task(error.to_string()))??;
            (out, sha)
        }
    };
    let total = std::fs::metadata(&send_path)
        .map_err(|source| LoadError::Io {
            path: send_path.clone(),
            source,
        })?
        .len();
    let mut records = Vec::new();
    for node in nodes {
        let mut transfer = Transfer {
            label: verified.label(),
            node: node.name.clone(),
            sent: 0,
            total,
            elapsed: Duration::ZERO,
        };
        let file = tokio::fs::File::open(&send_path)
            .await
            .map_err(|source| LoadError::Io {
                path: send_path.clone(),
                source,
            })?;
        send(node, file, &send_sha, &mut transfer, progress)
            .await
            .map_err(|source| LoadError::Docker {
                node: node.name.clone(),
                archive: verified.path.clone(),
                source,
            })?;
        records.extend(check_and_record(verified, node, store).await?);
    }
    Ok(records)
}

async fn send<P: Progress + ?Sized>(
    node: &Node,
    file: tokio::fs::File,
    sha: &str,
    transfer: &mut Transfer,
    progress: &mut P,
) -> Result<(), DockerError> {
    let sent = Arc::new(AtomicU64::new(0));
    let body = upload_stream(file, sha.to_owned(), Arc::clone(&sent));
    let started = Instant::now();
    let load = node.client.load_archive(body);
    tokio::pin!(load);
    let mut tick = tokio::time::interval(TICK);
    let result = loop {
        tokio::select! {
            result = &mut load => break result,
            _ = tick.tick() => {
                transfer.sent = sent.load(Ordering::Relaxed);
                transfer.elapsed = started.elapsed();
                progress.update(transfer);
            }
        }
    };
    transfer.sent = sent.load(Ordering::Relaxed);
    transfer.elapsed = started.elapsed();
    progress.finish(transfer, result.is_ok());
    result.map(drop)
}

/// Checks each image is on the node now, and records it per tag.
async fn check_and_record(
    verified: &VerifiedArchive,
    node: &Node,
    store: Option<&Store>,
) -> Result<Vec<ImageRecord>, LoadError> {
    let mut records = Vec::new();
    for image in &verified.images {
        let present =
            node.client
                .image_id(&image.id)
                .await
                .map_err(|source| LoadError::Docker {
                    node: node.name.clone(),
                    archive: verified.path.clone(),
                    source,
                })?;
        if present.as_deref() != Some(image.id.as_str()) {
            return Err(LoadError::NotLoaded {
                node: node.name.clone(),
                image: image.id.clone(),
            });
        }
        let references = if image.tags.is_empty() {
            vec![String::new()]
        } else {
            image.tags.clone()
        };
        for reference in references {
            let record = ImageRecord {
                node: node.name.clone(),
                reference,
                image_id: image.id.clone(),
                source: verified.path.display().to_string(),
                archive_sha256: verified.sha256.clone(),
                size_bytes: i64::try_from(image.size).unwrap_or(i64::MAX),
                loaded_at: time::OffsetDateTime::now_utc(),
            };
            if let Some(store) = store {
                store.record_image(&record).await?;
            }
            records.push(record);
        }
    }
    Ok(records)
}

struct Upload {
    file: tokio::fs::File,
    hasher: Sha256,
    held: Option<Bytes>,
    expected: String,
    sent: Arc<AtomicU64>,
    finished: bool,
}

/// The file as a stream of chunks that re-hashes it and holds the last chunk back until the
/// hash matches `expected`: a file changed after verification ends in an error, never in a
/// complete tar.
fn upload_stream(
    file: tokio::fs::File,
    expected: String,
    sent: Arc<AtomicU64>,
) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    let state = Upload {
        file,
        hasher: Sha256::new(),
        held: None,
        expected,
        sent,
        finished: false,
    };
    stream::unfold(state, |mut st| async move {
        if st.finished {
            return None;
        }
        loop {
            let mut buf = BytesMut::zeroed(CHUNK);
            let n = match st.file.read(&mut buf).await {
                Ok(n) => n,
                Err(error) => {
                    st.finished = true;
                    return Some((Err(error), st));
                }
            };
            if n == 0 {
                st.finished = true;
                let actual = hex::encode(st.hasher.finalize_reset());
                if actual != st.expected {
                    let message = format!(
                        "the archive changed after verification: expected sha256 {}, read {actual}",
                        st.expected
                    );
                    return Some((Err(io::Error::other(message)), st));
                }
                let last = st.held.take()?;
                st.sent.fetch_add(last.len() as u64, Ordering::Relaxed);
                return Some((Ok(last), st));
            }
            buf.truncate(n);
            st.hasher.update(&buf);
            if let Some(previous) = st.held.replace(buf.freeze()) {
                st.sent.fetch_add(previous.len() as u64, Ordering::Relaxed);
                return Some((Ok(previous), st));
            }
        }
    })
}

/// Copies an OCI layout archive to `to` with a `manifest.json` added, checking the copied
/// bytes still hash to what was verified. Returns the new file's sha256.
fn add_docker_manifest(
    verified: &VerifiedArchive,
    from: &Path,
    to: &Path,
) -> Result<String, LoadError> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| LoadError::Io { path, source }
    };
    let manifest: Vec<serde_json::Value> = verified
        .images
        .iter()
        .map(|image| {
            serde_json::json!({"Config": image.config, "RepoTags": image.tags, "Layers": image.layers})
        })
        .collect();
    let manifest = serde_json::to_vec(&manifest).map_err(|e| LoadError::Task(e.to_string()))?;
    let source = File::open(from).map_err(io_err(from))?;
    let mut hashing = HashingRead(BufReader::new(source), Sha256::new());
    let out = HashingWrite(
        BufWriter::new(File::create(to).map_err(io_err(to))?),
        Sha256::new(),
    );
    let mut builder = tar::Builder::new(out);
    {
        let gz;
        let reader: Box<dyn Read + '_> = if is_gzip(from) {
            gz = flate2::read::GzDecoder::new(&mut hashing);
            Box::new(gz)
        } else {
            Box::new(&mut hashing)
        };
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(io_err(from))? {
            let entry = entry.map_err(io_err(from))?;
            let header = entry.header().clone();
            builder.append(&header, entry).map_err(io_err(to))?;
        }
    }
    io::copy(&mut hashing, &mut io::sink()).map_err(io_err(from))?;
    let mut header = tar::Header::new_gnu();
    header.set_size(manifest.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "manifest.json", manifest.as_slice())
        .map_err(io_err(to))?;
    let mut out = builder.into_inner().map_err(io_err(to))?;
    out.flush().map_err(io_err(to))?;
    let read = hex::encode(hashing.1.finalize());
    if read != verified.sha256 {
        let detail = format!("expected sha256 {}, read {read}", verified.sha256);
        return Err(LoadError::Sums {
            sums: from.to_owned(),
            detail: format!("the archive changed after verification: {detail}"),
        });
    }
    Ok(hex::encode(out.1.finalize()))
}

fn is_gzip(path: &Path) -> bool {
    let mut magic = [0u8; 2];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| magic == [0x1f, 0x8b])
}

struct HashingRead<R>(R, Sha256);

impl<R: Read> Read for HashingRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1.update(&buf[..n]);
        Ok(n)
    }
}

struct HashingWrite<W>(W, Sha256);

impl<W: Write> Write for HashingWrite<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.0.write(buf)?;
        self.1.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
