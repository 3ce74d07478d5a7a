//! The upload rewrite: a streaming, sans-I/O tar reader and writer. Bytes go in as they
//! arrive ([`Rewriter::push`]); a fresh archive comes out, entry by entry, never buffering a
//! file's content.
//!
//! Invariants of what comes out:
//! - only regular files, directories and symbolic links; a hardlink, device, FIFO, sparse or
//!   unknown entry is refused, naming the entry;
//! - every name is relative and normalised: an absolute name, a `..` segment, a NUL or a name
//!   over [`MAX_NAME`] bytes is refused; `.` segments and empty segments are dropped;
//! - uid and gid are the given owner's, user and group names are empty, setuid, setgid and
//!   sticky bits are gone (mode `& 0o777`);
//! - no entry lies under a symlink the same archive made (symlink-then-file is refused), and
//!   no entry lies under a name this archive did not first make a directory: missing parents
//!   are emitted as directories (0755) just before, so Docker's extraction (with
//!   `noOverwriteDirNonDir`) checks every segment, and a segment that is already a symlink in
//!   the target fails there instead of being followed;
//! - at most [`Limits::max_bytes`] bytes in and [`Limits::max_entries`] entries, else
//!   [`TarError::TooLarge`];
//! - long names and link targets are written as GNU `L`/`K` records; PAX `path`, `linkpath`
//!   and `size` are read, other PAX keys dropped, global PAX headers skipped.

mod fields;
mod header;
pub mod read;
#[cfg(test)]
mod tests;

use std::collections::HashSet;

pub use fields::normalise;
use fields::{checked_link, pax};
pub use header::{file_header, write_entry_header};
use header::{parse_header, Parsed, BLOCK};

/// Longest entry name or link target, in bytes.
pub const MAX_NAME: usize = 4096;
/// Longest PAX or GNU long-name record accepted.
const MAX_EXTENSION: u64 = 64 * 1024;
/// Most bytes of directory and symlink names remembered for the parent checks.
const MAX_TRACKED: usize = 64 * 1024 * 1024;

/// The caps of one upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of archive accepted.
    pub max_bytes: u64,
    /// Most entries accepted.
    pub max_entries: u64,
}

/// Who owns every entry written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Why an archive was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TarError {
    /// Past a cap.
    #[error("the archive is over its cap of {0}")]
    TooLarge(String),
    /// A bad entry, or a malformed archive.
    #[error("{}: {reason}", entry.as_deref().unwrap_or("archive"))]
    Bad {
        /// The entry's name as given, when one was read.
        entry: Option<String>,
        /// What is wrong.
        reason: String,
    },
}

/// What one rewritten archive held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Entries written (parents added included).
    pub entries: u64,
    /// Bytes of file content.
    pub content_bytes: u64,
    /// Bytes of archive read.
    pub archive_bytes: u64,
}

/// The kind of an entry that passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
}

/// One entry about to be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The normalised relative name.
    pub name: String,
    /// Its kind.
    pub kind: Kind,
    /// Permission bits (`& 0o777`).
    pub mode: u32,
    /// Bytes of content (files only).
    pub size: u64,
    /// Seconds since the epoch.
    pub mtime: u64,
    /// The link target (symlinks only).
    pub link: String,
}

#[derive(Debug)]
enum State {
    /// Reading a header block.
    Header,
    /// Reading an extension record's content.
    Extension { kind: u8, left: u64, pad: u64 },
    /// Copying a file's content.
    Content { left: u64, pad: u64 },
    /// Dropping bytes (a skipped entry's content, or padding).
    Skip { left: u64 },
    /// After the end-of-archive block.
    End,
}

/// Extension records waiting for their entry.
#[derive(Debug, Default)]
struct Pending {
    name: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
}

/// The streaming rewriter.
#[derive(Debug)]
pub struct Rewriter {
    limits: Limits,
    owner: Owner,
    state: State,
    block: Vec<u8>,
    extension: Vec<u8>,
    pending: Pending,
    dirs: HashSet<String>,
    symlinks: HashSet<String>,
    tracked: usize,
    summary: Summary,
}

// === impl Rewriter ===

impl Rewriter {
    /// A rewriter writing entries owned by `owner`, within `limits`.
    pub fn new(owner: Owner, limits: Limits) -> Self {
        Self {
            limits,
            owner,
            state: State::Header,
            block: Vec::with_capacity(BLOCK),
            extension: Vec::new(),
            pending: Pending::default(),
            dirs: HashSet::new(),
            symlinks: HashSet::new(),
            tracked: 0,
            summary: Summary::default(),
        }
    }

    /// Reads `input`, appending the rewritten archive to `out`.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), TarError> {
        self.summary.archive_bytes += input.len() as u64;
        if self.summary.archive_bytes > self.limits.max_bytes {
            return Err(TarError::TooLarge(format!(
                "{} bytes",
                self.limits.max_bytes
            )));
        }
        while !input.is_empty() {
            match &mut self.state {
                State::End => return Ok(()),
                State::Header => {
                    let want = BLOCK - self.block.len();
                    let take = want.min(input.len());
                    self.block.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.block.len() == BLOCK {
                        let block = std::mem::take(&mut self.block);
                        self.header(&block, out)?;
                        self.block = block;
                        self.block.clear();
                    }
                }
                State::Extension { kind, left, pad } => {
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    self.extension.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    *left -= take as u64;
                    if *left == 0 {
                        let (kind, pad) = (*kind, *pad);
                        self.state = State::Skip { left: pad };
                        self.extension_done(kind)?;
                    }
                }
                State::Content { left, pad } => {
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    *left -= take as u64;
                    if *left == 0 {
                        let pad = *pad;
                        out.resize(out.len() + usize::try_from(pad).unwrap_or(0), 0);
                        self.state = State::Skip { left: pad };
                    }
                }
                State::Skip { left } => {
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    input = &input[take..];
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = State::Header;
                    }
                }
            }
            if matches!(self.state, State::Skip { left: 0 }) {
                self.state = State::Header;
            }
        }
        Ok(())
    }

    /// Ends the archive: refuses a truncated one, writes the end-of-archive blocks.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<Summary, TarError> {
        let clean = match self.state {
            State::End => true,
            State::Header => self.block.is_empty(),
            _ => false,
        };
        let pending = self.pending.name.is_some() || self.pending.link.is_some();
        if !clean || pending {
            return Err(bad(None, "the archive ends in the middle of an entry"));
        }
        out.resize(out.len() + 2 * BLOCK, 0);
        self.state = State::End;
        Ok(self.summary)
    }

    /// What was written so far.
    pub fn summary(&self) -> Summary {
        self.summary
    }

    fn header(&mut self, block: &[u8], out: &mut Vec<u8>) -> Result<(), TarError> {
        let parsed = match parse_header(block)? {
            None => {
                self.state = State::End;
                return Ok(());
            }
            Some(parsed) => parsed,
        };
        let size = self.pending.size.take().unwrap_or(parsed.size);
        let pad = padding(size);
        match parsed.typeflag {
            b'L' | b'K' | b'x' => {
                if size > MAX_EXTENSION {
                    return Err(bad(None, "an extension record is over 64 KiB"));
                }
                self.extension.clear();
                self.state = if size == 0 {
                    State::Skip { left: pad }
                } else {
                    State::Extension {
                        kind: parsed.typeflag,
                        left: size,
                        pad,
                    }
                };
                if size == 0 {
                    self.extension_done(parsed.typeflag)?;
                }
                Ok(())
            }
            b'g' => {
                self.state = State::Skip { left: size + pad };
                Ok(())
            }
            _ => self.entry(parsed, size, pad, out),
        }
    }

    fn extension_done(&mut self, kind: u8) -> Result<(), TarError> {
        let data = std::mem::take(&mut self.extension);
        match kind {
            b'L' => self.pending.name = Some(trim_nul(&data).to_vec()),
            b'K' => self.pending.link = Some(trim_nul(&data).to_vec()),
            _ => pax(&data, &mut self.pending)?,
        }
        Ok(())
    }

    fn entry(
        &mut self,
        parsed: Parsed,
        size: u64,
        pad: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), TarError> {
        let raw = self.pending.name.take().unwrap_or(parsed.name);
        let link = self.pending.link.take().unwrap_or(parsed.link);
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let kind = match parsed.typeflag {
            b'0' | 0 => Kind::File,
            b'5' => Kind::Dir,
            b'2' => Kind::Symlink,
            b'1' => return Err(bad(Some(shown), "hardlinks are not accepted")),
            b'3' | b'4' => return Err(bad(Some(shown), "device nodes are not accepted")),
            b'6' => return Err(bad(Some(shown), "FIFOs are not accepted")),
            other => {
                let reason = format!("entry type `{}` is not accepted", other.escape_ascii());
                return Err(bad(Some(shown), &reason));
            }
        };
        let name = normalise(&raw).map_err(|reason| bad(Some(shown.clone()), reason))?;
        // A directory naming the target itself (`./`) would re-own and re-mode it: skipped.
        let Some(name) = name else {
            if kind == Kind::Dir {
                self.state = State::Skip { left: size + pad };
                return Ok(());
            }
            return Err(bad(Some(shown), "an empty name"));
        };
        let link = match kind {
            Kind::Symlink => {
                checked_link(&link).map_err(|reason| bad(Some(shown.clone()), reason))?
            }
            _ => String::new(),
        };
        self.parents(&name, &shown, out)?;
        match kind {
            Kind::Dir if self.symlinks.contains(&name) => {
                return Err(bad(
                    Some(shown),
                    "a directory over a symlink of this archive",
                ));
            }
            Kind::Dir => self.track(name.clone(), true)?,
            Kind::Symlink | Kind::File if self.dirs.contains(&name) => {
                return Err(bad(
                    Some(shown),
                    "a non-directory over a directory of this archive",
                ));
            }
            Kind::Symlink => self.track(name.clone(), false)?,
            Kind::File => {
                self.symlinks.remove(&name);
            }
        }
        let content = if kind == Kind::File { size } else { 0 };
        let entry = Entry {
            name,
            kind,
            mode: parsed.mode & 0o777,
            size: content,
            mtime: parsed.mtime,
            link,
        };
        self.emit(&entry, out)?;
        self.summary.content_bytes += content;
        self.state = if kind == Kind::File && size > 0 {
            State::Content { left: size, pad }
        } else {
            State::Skip { left: size + pad }
        };
        Ok(())
    }

    /// Emits every missing parent of `name` as a directory; refuses one under a symlink.
    fn parents(&mut self, name: &str, shown: &str, out: &mut Vec<u8>) -> Result<(), TarError> {
        let mut missing = Vec::new();
        let mut at = name.rfind('/');
        while let Some(end) = at {
            let parent = &name[..end];
            if self.symlinks.contains(parent) {
                let reason = format!("its parent `{parent}` is a symlink of this archive");
                return Err(bad(Some(shown.to_owned()), &reason));
            }
            if self.dirs.contains(parent) {
                break;
            }
            missing.push(parent.to_owned());
            at = parent.rfind('/');
        }
        for parent in missing.into_iter().rev() {
            let entry = Entry {
                name: parent.clone(),
                kind: Kind::Dir,
                mode: 0o755,
                size: 0,
                mtime: 0,
                link: String::new(),
            };
            self.emit(&entry, out)?;
            self.track(parent, true)?;
        }
        Ok(())
    }

    fn track(&mut self, name: String, dir: bool) -> Result<(), TarError> {
        self.tracked += name.len();
        if self.tracked > MAX_TRACKED {
            return Err(TarError::TooLarge(format!(
                "{MAX_TRACKED} bytes of directory and symlink names"
            )));
        }
        if dir {
            self.dirs.insert(name);
        } else {
            self.symlinks.insert(name);
        }
        Ok(())
    }

    fn emit(&mut self, entry: &Entry, out: &mut Vec<u8>) -> Result<(), TarError> {
        self.summary.entries += 1;
        if self.summary.entries > self.limits.max_entries {
            return Err(TarError::TooLarge(format!(
                "{} entries",
                self.limits.max_entries
            )));
        }
        write_entry_header(entry, self.owner, out);
        Ok(())
    }
}

fn bad(entry: Option<String>, reason: &str) -> TarError {
    TarError::Bad {
        entry,
        reason: reason.to_owned(),
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn trim_nul(data: &[u8]) -> &[u8] {
    let end = data.iter().rposition(|&b| b != 0).map_or(0, |at| at + 1);
    &data[..end]
}
