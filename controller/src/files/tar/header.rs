//! One 512-byte tar header: reading ustar, GNU and V7 headers (octal or base-256 numbers,
//! the ustar prefix), and writing the GNU form the rewriter emits.

use super::{bad, Entry, Kind, Owner, TarError};

/// The tar block size.
pub(super) const BLOCK: usize = 512;

/// The fields the rewriter reads from a header.
#[derive(Debug)]
pub(super) struct Parsed {
    /// The name (prefix joined), raw.
    pub(super) name: Vec<u8>,
    /// The link target, raw.
    pub(super) link: Vec<u8>,
    /// The type byte.
    pub(super) typeflag: u8,
    /// The mode.
    pub(super) mode: u32,
    /// The content size.
    pub(super) size: u64,
    /// The modification time (negative times read as 0).
    pub(super) mtime: u64,
}

/// Parses one header block; `None` for an all-zero block (the end of the archive).
pub(super) fn parse_header(block: &[u8]) -> Result<Option<Parsed>, TarError> {
    if block.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    let stored = octal(&block[148..156]).ok_or_else(|| bad(None, "a malformed header"))?;
    let unsigned: u64 = block
        .iter()
        .enumerate()
        .map(|(at, &b)| {
            if (148..156).contains(&at) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    let signed: i64 = block
        .iter()
        .enumerate()
        .map(|(at, &b)| {
            if (148..156).contains(&at) {
                32
            } else {
                i64::from(b as i8)
            }
        })
        .sum();
    if stored != unsigned && i64::try_from(stored).ok() != Some(signed) {
        return Err(bad(None, "a header with a bad checksum"));
    }
    let mut name = field(&block[0..100]).to_vec();
    if &block[257..262] == b"ustar" && block[262] == 0 {
        let prefix = field(&block[345..500]);
        if !prefix.is_empty() {
            let mut joined = prefix.to_vec();
            joined.push(b'/');
            joined.extend_from_slice(&name);
            name = joined;
        }
    }
    let shown = || Some(String::from_utf8_lossy(&name).into_owned());
    let size = number(&block[124..136]).ok_or_else(|| bad(shown(), "a malformed size"))?;
    let mode = number(&block[100..108]).ok_or_else(|| bad(shown(), "a malformed mode"))?;
    let mtime = number(&block[136..148]).unwrap_or(0);
    Ok(Some(Parsed {
        link: field(&block[157..257]).to_vec(),
        typeflag: block[156],
        mode: u32::try_from(mode & 0o7777).unwrap_or(0),
        size,
        mtime,
        name,
    }))
}

/// A NUL-terminated header field.
fn field(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

/// An octal field (spaces and NULs around it ignored).
fn octal(bytes: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field(bytes)).ok()?;
    let text = text.trim_matches(|c| c == ' ' || c == '\0');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// An octal or base-256 numeric field.
fn number(bytes: &[u8]) -> Option<u64> {
    match bytes.first() {
        Some(0x80) => bytes[1..].iter().try_fold(0u64, |acc, &b| {
            acc.checked_mul(256).map(|acc| acc + u64::from(b))
        }),
        Some(&b) if b & 0x80 != 0 => None,
        _ => octal(bytes),
    }
}

/// Appends the header (and any GNU long-name records) of `entry`, owned by `owner`.
pub fn write_entry_header(entry: &Entry, owner: Owner, out: &mut Vec<u8>) {
    let mut name = entry.name.clone();
    if entry.kind == Kind::Dir {
        name.push('/');
    }
    if name.len() > 100 {
        long_record(b'L', name.as_bytes(), out);
    }
    if entry.link.len() > 100 {
        long_record(b'K', entry.link.as_bytes(), out);
    }
    let typeflag = match entry.kind {
        Kind::File => b'0',
        Kind::Dir => b'5',
        Kind::Symlink => b'2',
    };
    let mut block = [0u8; BLOCK];
    put(&mut block[0..100], name.as_bytes());
    put_octal(&mut block[100..108], u64::from(entry.mode & 0o777));
    put_octal(&mut block[108..116], u64::from(owner.uid));
    put_octal(&mut block[116..124], u64::from(owner.gid));
    put_octal(&mut block[124..136], entry.size);
    put_octal(&mut block[136..148], entry.mtime.min(0o77_777_777_777));
    block[156] = typeflag;
    put(&mut block[157..257], entry.link.as_bytes());
    finish_block(&mut block);
    out.extend_from_slice(&block);
}

/// The header of one regular file `name` of `size` bytes, mode 0644, now-less (mtime 0 is
/// replaced by `mtime`).
pub fn file_header(name: &str, size: u64, mtime: u64, owner: Owner) -> Vec<u8> {
    let entry = Entry {
        name: name.to_owned(),
        kind: Kind::File,
        mode: 0o644,
        size,
        mtime,
        link: String::new(),
    };
    let mut out = Vec::with_capacity(BLOCK);
    write_entry_header(&entry, owner, &mut out);
    out
}

fn long_record(kind: u8, value: &[u8], out: &mut Vec<u8>) {
    let mut block = [0u8; BLOCK];
    put(&mut block[0..100], b"././@LongLink");
    put_octal(&mut block[100..108], 0o644);
    put_octal(&mut block[124..136], value.len() as u64 + 1);
    block[156] = kind;
    finish_block(&mut block);
    out.extend_from_slice(&block);
    let start = out.len();
    out.extend_from_slice(value);
    out.push(0);
    let written = out.len() - start;
    out.resize(out.len() + (BLOCK - written % BLOCK) % BLOCK, 0);
}

/// GNU magic and the checksum.
fn finish_block(block: &mut [u8; BLOCK]) {
    block[257..263].copy_from_slice(b"ustar ");
    block[263..265].copy_from_slice(b" \0");
    block[148..156].fill(b' ');
    let sum: u64 = block.iter().map(|&b| u64::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    block[148..156].copy_from_slice(text.as_bytes());
}

fn put(field: &mut [u8], value: &[u8]) {
    let take = value.len().min(field.len());
    field[..take].copy_from_slice(&value[..take]);
}

fn put_octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    if text.len() <= width {
        field[..width].copy_from_slice(text.as_bytes());
        field[width] = 0;
    } else {
        // Too large for octal: base-256.
        field.fill(0);
        field[0] = 0x80;
        let bytes = value.to_be_bytes();
        let at = field.len() - bytes.len();
        field[at..].copy_from_slice(&bytes);
    }
}
