//! A streaming tar reader for what Docker sends back (downloads): it reports each entry's
//! header and, when asked, its content, without holding more than one header in memory. Used
//! to list a directory and to turn a one-file archive into raw bytes.

use super::header::{parse_header, BLOCK};
use super::{bad, padding, pax, trim_nul, Pending, TarError, MAX_EXTENSION};

/// One entry of a read archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadEntry {
    /// The name as stored (no leading `./`, no trailing `/`).
    pub name: String,
    /// The type byte (`0` file, `5` directory, `2` symlink, ...).
    pub typeflag: u8,
    /// Mode bits (`& 0o7777`).
    pub mode: u32,
    /// Content bytes.
    pub size: u64,
    /// Seconds since the epoch.
    pub mtime: u64,
    /// The link target, for links.
    pub link: String,
}

/// What the reader found in a chunk.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A new entry.
    Entry(ReadEntry),
    /// Content of the last entry.
    Content(&'a [u8]),
}

#[derive(Debug)]
enum State {
    Header,
    Extension { kind: u8, left: u64, pad: u64 },
    Content { left: u64, pad: u64 },
    Skip { left: u64 },
    End,
}

/// The streaming reader.
#[derive(Debug)]
pub struct Reader {
    state: State,
    block: Vec<u8>,
    extension: Vec<u8>,
    pending: Pending,
}

impl Default for Reader {
    fn default() -> Self {
        Self {
            state: State::Header,
            block: Vec::with_capacity(BLOCK),
            extension: Vec::new(),
            pending: Pending::default(),
        }
    }
}

// === impl Reader ===

impl Reader {
    /// Reads `input`, reporting each entry and content chunk to `on`.
    pub fn push<'a>(
        &mut self,
        mut input: &'a [u8],
        on: &mut impl FnMut(Event<'a>),
    ) -> Result<(), TarError> {
        while !input.is_empty() {
            match &mut self.state {
                State::End => return Ok(()),
                State::Header => {
                    let take = (BLOCK - self.block.len()).min(input.len());
                    self.block.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.block.len() == BLOCK {
                        let block = std::mem::take(&mut self.block);
                        self.header(&block, on)?;
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
                        let kind = *kind;
                        self.state = State::Skip { left: *pad };
                        self.extension_done(kind)?;
                    }
                }
                State::Content { left, pad } => {
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    on(Event::Content(&input[..take]));
                    input = &input[take..];
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = State::Skip { left: *pad };
                    }
                }
                State::Skip { left } => {
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    input = &input[take..];
                    *left -= take as u64;
                }
            }
            if matches!(self.state, State::Skip { left: 0 }) {
                self.state = State::Header;
            }
        }
        Ok(())
    }

    fn header<'a>(&mut self, block: &[u8], on: &mut impl FnMut(Event<'a>)) -> Result<(), TarError> {
        let Some(parsed) = parse_header(block)? else {
            self.state = State::End;
            return Ok(());
        };
        let size = self.pending.size.take().unwrap_or(parsed.size);
        let pad = padding(size);
        match parsed.typeflag {
            b'L' | b'K' | b'x' => {
                if size > MAX_EXTENSION {
                    return Err(bad(None, "an extension record is over 64 KiB"));
                }
                self.extension.clear();
                self.state = State::Extension {
                    kind: parsed.typeflag,
                    left: size,
                    pad,
                };
                if size == 0 {
                    self.state = State::Skip { left: pad };
                    self.extension_done(parsed.typeflag)?;
                }
            }
            b'g' => self.state = State::Skip { left: size + pad },
            typeflag => {
                let name = self.pending.name.take().unwrap_or(parsed.name);
                let link = self.pending.link.take().unwrap_or(parsed.link);
                let name = String::from_utf8_lossy(&name);
                let name = name.trim_start_matches("./").trim_end_matches('/');
                on(Event::Entry(ReadEntry {
                    name: name.to_owned(),
                    typeflag,
                    mode: parsed.mode,
                    size: if typeflag == b'0' || typeflag == 0 {
                        size
                    } else {
                        0
                    },
                    mtime: parsed.mtime,
                    link: String::from_utf8_lossy(&link).into_owned(),
                }));
                self.state = if size > 0 && (typeflag == b'0' || typeflag == 0) {
                    State::Content { left: size, pad }
                } else {
                    State::Skip { left: size + pad }
                };
            }
        }
        Ok(())
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
}
