//! The files commands: the upload pipe (body → [`Rewriter`] → staged file → Docker), the download and
//! listing streams (Docker → [`Reader`] → client), and stat.

use std::io;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::StreamExt;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::place::{Access, Intent};
use super::stage::stage;
use super::tar::read::{Event, Reader};
use super::tar::{file_header, Limits, Rewriter};
use super::{
    bad_path, kind_of_mode, listed_from_stat, BodyStream, Download, Files, FilesError, ListFiles,
    Place, StatFile, Upload, UploadForm, Uploaded, MAX_LIST_DEPTH, MAX_LIST_ENTRIES,
    MAX_UPLOAD_BYTES, MAX_UPLOAD_ENTRIES,
};
use crate::audit::{status, Actor, Command, Entry};
use crate::docker::DockerError;
use crate::sandbox::path::ContainerPath;

/// One entry of a listing or a stat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedFile {
    /// The name, relative to the listed directory (a stat: the base name).
    pub name: String,
    /// `file`, `dir`, `symlink` or `other`.
    pub kind: &'static str,
    /// Bytes (files).
    pub size: u64,
    /// Permission and special bits.
    pub mode: u32,
    /// RFC 3339.
    pub mtime: Option<String>,
    /// The target, for a symlink.
    pub link_target: Option<String>,
}

/// A directory's entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// At most [`MAX_LIST_ENTRIES`], in archive order.
    pub entries: Vec<ListedFile>,
    /// Whether more were left out.
    pub truncated: bool,
}

/// A download on its way.
pub struct Downloaded {
    /// The bytes.
    pub body: BoxStream<'static, Result<Bytes, io::Error>>,
    /// Raw file bytes (else a tar).
    pub raw: bool,
    /// The length, when known (raw).
    pub length: Option<u64>,
    /// The base name, for `Content-Disposition`.
    pub name: String,
}

impl std::fmt::Debug for Downloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downloaded")
            .field("raw", &self.raw)
            .field("length", &self.length)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

// === impl Upload ===

impl Command<Files> for Upload {
    type Output = Uploaded;
    type Error = FilesError;

    /// Writes, and files the row either way: the target, the path, and what was written or
    /// the refusal's code and reason.
    async fn execute(self, files: &Files, actor: &Actor) -> Result<Uploaded, FilesError> {
        let action = match (self.place, self.form) {
            (Place::Sandbox(_), UploadForm::Archive) => "PUT /v1/sandboxes/{id}/files",
            (Place::Sandbox(_), UploadForm::Content { .. }) => {
                "PUT /v1/sandboxes/{id}/files/content"
            }
            (Place::Volume(_), UploadForm::Archive) => "PUT /v1/volumes/{id}/files",
            (Place::Volume(_), UploadForm::Content { .. }) => "PUT /v1/volumes/{id}/files/content",
        };
        let object = match self.place {
            Place::Sandbox(id) => id.to_string(),
            Place::Volume(id) => id.to_string(),
        };
        let path = shown_path(&self.path);
        let result = self.write(files, actor).await;
        let entry = match &result {
            Ok(summary) => Entry::new(action, status::OK).detail(format!(
                "path={path} entries={} bytes={}",
                summary.entries, summary.bytes
            )),
            Err(error) => Entry::new(action, error.status()).detail(format!(
                "path={path} refused={}: {}",
                error.code(),
                shown_reason(error)
            )),
        };
        files.audit.record(actor, entry.object(object)).await;
        result
    }
}

/// Most characters of a caller's text an audit row repeats.
const AUDIT_TEXT_MAX: usize = 512;

/// The path as a row shows it: at most [`AUDIT_TEXT_MAX`] characters, control characters
/// escaped.
fn shown_path(path: &str) -> String {
    let shown: String = path.chars().take(AUDIT_TEXT_MAX).collect();
    let shown = shown.escape_debug().to_string();
    if path.chars().count() > AUDIT_TEXT_MAX {
        format!("{shown}…")
    } else {
        shown
    }
}

/// The refusal's reason as a row shows it (bounded like the path).
fn shown_reason(error: &FilesError) -> String {
    shown_path(&error.to_string())
}

impl Upload {
    async fn write(self, files: &Files, actor: &Actor) -> Result<Uploaded, FilesError> {
        let (dir, file) = match self.form {
            UploadForm::Archive => (self.path.clone(), None),
            UploadForm::Content { length } => {
                let parsed = ContainerPath::parse(&self.path).map_err(bad_path)?;
                let Some((parent, name)) = parsed.as_str().rsplit_once('/') else {
                    return Err(FilesError::BadPath("must name a file".to_owned()));
                };
                if name.is_empty() {
                    return Err(FilesError::BadPath("must name a file, not `/`".to_owned()));
                }
                let parent = if parent.is_empty() { "/" } else { parent };
                (parent.to_owned(), Some((name.to_owned(), length)))
            }
        };
        let resolved = files
            .resolve(actor, self.place, &dir, Intent::Write)
            .await?;
        let file = match file {
            Some((_, None)) => return Err(FilesError::LengthRequired),
            Some((name, Some(length))) => Some((name, length)),
            None => None,
        };
        let owner = resolved.owner;
        let body = match file {
            None => self.body,
            Some((name, length)) => raw_as_tar(&name, length, owner, self.body),
        };
        let limits = Limits {
            max_bytes: MAX_UPLOAD_BYTES,
            max_entries: MAX_UPLOAD_ENTRIES,
        };
        let rewriter = Rewriter::new(owner, limits);
        // The slot bounds the controller's disk that staging can hold (see `slots`); the
        // node's staging memory bounds the memory.
        let _slot = files
            .uploads
            .take(actor.user())
            .map_err(FilesError::TooManyUploads)?;
        // Whole and checked before Docker sees a byte, so a refusal leaves the target untouched.
        // The target is opened (a volume's helper made) and checked while the body arrives;
        // the first failure of either ends both.
        let target = async {
            let access = resolved.open(files).await?;
            match files
                .docker
                .stat_path(&access.container, &access.path)
                .await?
            {
                None => Err(FilesError::PathNotFound(dir.clone())),
                Some(stat)
                    if kind_of_mode(stat.mode) == "file" || kind_of_mode(stat.mode) == "other" =>
                {
                    Err(FilesError::NotADirectory(dir.clone()))
                }
                Some(_) => Ok(access),
            }
        };
        let staging = stage(&files.settings.staging_dir, &files.memory, body, rewriter);
        let (staged, access) = tokio::try_join!(staging, target)?;
        let summary = staged.summary;
        files
            .docker
            .upload_archive(&access.container, &access.path, staged.into_stream())
            .await
            .map_err(|error| docker_error(error, &access))?;
        Ok(Uploaded {
            entries: summary.entries,
            bytes: summary.content_bytes,
        })
    }
}

/// Raw bytes of one file as a one-entry tar: its header, exactly `length` bytes (else a
/// broken archive), padding and the end.
fn raw_as_tar(name: &str, length: u64, owner: super::tar::Owner, body: BodyStream) -> BodyStream {
    let now = u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
    let header = Bytes::from(file_header(name, length, now, owner));
    let counted = stream::unfold(Some((body, 0u64)), move |state| async move {
        let (mut body, seen) = state?;
        match body.next().await {
            Some(Ok(chunk)) => {
                let seen = seen + chunk.len() as u64;
                if seen > length {
                    return Some((
                        Err(io::Error::other("more bytes than Content-Length")),
                        None,
                    ));
                }
                Some((Ok(chunk), Some((body, seen))))
            }
            Some(Err(error)) => Some((Err(error), None)),
            None if seen == length => {
                let pad = (512 - length % 512) % 512;
                let pad = usize::try_from(pad).unwrap_or(0);
                Some((Ok(Bytes::from(vec![0u8; pad + 1024])), None))
            }
            None => Some((
                Err(io::Error::other("fewer bytes than Content-Length")),
                None,
            )),
        }
    });
    stream::once(async move { Ok(header) })
        .chain(counted)
        .boxed()
}

/// What a Docker refusal means for the caller.
fn docker_error(error: DockerError, access: &Access) -> FilesError {
    let shown = access.shown.clone();
    match &error {
        DockerError::DockerStatus { status: 404, .. } => FilesError::PathNotFound(shown),
        DockerError::DockerStatus { message, .. } if message.contains("read-only") => {
            FilesError::PathNotWritable(shown)
        }
        DockerError::DockerStatus { message, .. } if message.contains("not a directory") => {
            FilesError::NotADirectory(shown)
        }
        DockerError::DockerStatus { message, .. } if message.contains("cannot overwrite") => {
            FilesError::BadArchive(
                "an entry would replace a directory with a non-directory, or a non-directory \
                 (such as an existing symlink) with a directory"
                    .to_owned(),
            )
        }
        _ => FilesError::Docker(error),
    }
}

// === impl Download ===

impl Command<Files> for Download {
    type Output = Downloaded;
    type Error = FilesError;

    async fn execute(self, files: &Files, actor: &Actor) -> Result<Downloaded, FilesError> {
        let access = files
            .access(actor, self.place, &self.path, Intent::Read)
            .await?;
        let stat = files
            .docker
            .stat_path(&access.container, &access.path)
            .await?;
        let stat = stat.ok_or_else(|| FilesError::PathNotFound(self.path.clone()))?;
        let archive = files
            .docker
            .download_archive(&access.container, &access.path);
        let raw = self.raw && kind_of_mode(stat.mode) == "file";
        let length = raw.then(|| u64::try_from(stat.size).unwrap_or(0));
        let body = if raw {
            let state = (archive, Reader::default(), 0u32, access);
            stream::unfold(Some(state), |state| async move {
                let (mut archive, mut reader, mut seen, access) = state?;
                loop {
                    let chunk = match archive.next().await? {
                        Ok(chunk) => chunk,
                        Err(error) => return Some((Err(io::Error::other(error)), None)),
                    };
                    let mut content = Vec::new();
                    let pushed = reader.push(&chunk, &mut |event| match event {
                        Event::Entry(_) => seen += 1,
                        Event::Content(bytes) if seen == 1 => content.extend_from_slice(bytes),
                        Event::Content(_) => {}
                    });
                    if let Err(error) = pushed {
                        return Some((Err(io::Error::other(error)), None));
                    }
                    if !content.is_empty() {
                        return Some((
                            Ok(Bytes::from(content)),
                            Some((archive, reader, seen, access)),
                        ));
                    }
                }
            })
            .boxed()
        } else {
            stream::unfold(Some((archive, access)), |state| async move {
                let (mut archive, access) = state?;
                match archive.next().await? {
                    Ok(chunk) => Some((Ok(chunk), Some((archive, access)))),
                    Err(error) => Some((Err(io::Error::other(error)), None)),
                }
            })
            .boxed()
        };
        Ok(Downloaded {
            body,
            raw,
            length,
            name: stat.name,
        })
    }
}

// === impl ListFiles ===

impl Command<Files> for ListFiles {
    type Output = Listing;
    type Error = FilesError;

    async fn execute(self, files: &Files, actor: &Actor) -> Result<Listing, FilesError> {
        if !(1..=MAX_LIST_DEPTH).contains(&self.depth) {
            let message = format!("must be between 1 and {MAX_LIST_DEPTH}");
            return Err(FilesError::Invalid {
                field: "depth",
                message,
            });
        }
        let access = files
            .access(actor, self.place, &self.path, Intent::Read)
            .await?;
        let stat = files
            .docker
            .stat_path(&access.container, &access.path)
            .await?;
        let stat = stat.ok_or_else(|| FilesError::PathNotFound(self.path.clone()))?;
        if kind_of_mode(stat.mode) != "dir" {
            return Ok(Listing {
                entries: vec![listed_from_stat(&stat)],
                truncated: false,
            });
        }
        let strip = access.path != "/";
        let mut archive = files
            .docker
            .download_archive(&access.container, &access.path);
        let mut reader = Reader::default();
        let mut listing = Listing {
            entries: Vec::new(),
            truncated: false,
        };
        while let Some(chunk) = archive.next().await {
            let chunk = chunk?;
            reader.push(&chunk, &mut |event| {
                let Event::Entry(entry) = event else { return };
                let name = if strip {
                    match entry.name.split_once('/') {
                        Some((_, rest)) => rest.to_owned(),
                        None => return,
                    }
                } else {
                    entry.name.clone()
                };
                if name.is_empty() || name.split('/').count() > self.depth as usize {
                    return;
                }
                if listing.entries.len() >= MAX_LIST_ENTRIES {
                    listing.truncated = true;
                    return;
                }
                listing.entries.push(ListedFile {
                    name,
                    kind: match entry.typeflag {
                        b'0' | 0 | b'7' => "file",
                        b'5' => "dir",
                        b'2' => "symlink",
                        _ => "other",
                    },
                    size: entry.size,
                    mode: entry.mode,
                    mtime: rfc3339(entry.mtime),
                    link_target: (entry.typeflag == b'2').then(|| entry.link.clone()),
                });
            })?;
            if listing.truncated {
                break;
            }
        }
        Ok(listing)
    }
}

fn rfc3339(seconds: u64) -> Option<String> {
    let at = OffsetDateTime::from_unix_timestamp(i64::try_from(seconds).ok()?).ok()?;
    at.format(&Rfc3339).ok()
}

// === impl StatFile ===

impl Command<Files> for StatFile {
    type Output = super::ListedFile;
    type Error = FilesError;

    async fn execute(self, files: &Files, actor: &Actor) -> Result<super::ListedFile, FilesError> {
        let access = files
            .access(actor, self.place, &self.path, Intent::Read)
            .await?;
        let stat = files
            .docker
            .stat_path(&access.container, &access.path)
            .await?;
        let stat = stat.ok_or(FilesError::PathNotFound(self.path))?;
        Ok(listed_from_stat(&stat))
    }
}
