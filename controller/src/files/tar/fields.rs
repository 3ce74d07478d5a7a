//! The checks on entry names and link targets, and the PAX record reader.

use super::{bad, Pending, TarError, MAX_NAME};

/// Reads a PAX extended header's records into `pending`.
pub(super) fn pax(mut data: &[u8], pending: &mut Pending) -> Result<(), TarError> {
    while !data.is_empty() {
        let space = data.iter().position(|&b| b == b' ');
        let length = space
            .and_then(|at| std::str::from_utf8(&data[..at]).ok())
            .and_then(|text| text.parse::<usize>().ok())
            .filter(|&length| length > space.unwrap_or(0) + 1 && length <= data.len());
        let (Some(space), Some(length)) = (space, length) else {
            return Err(bad(None, "a malformed PAX record"));
        };
        let record = &data[space + 1..length];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        let eq = record.iter().position(|&b| b == b'=');
        let Some(eq) = eq else {
            return Err(bad(None, "a malformed PAX record"));
        };
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        match key {
            b"path" => pending.name = Some(value.to_vec()),
            b"linkpath" => pending.link = Some(value.to_vec()),
            b"size" => {
                let size = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                let size = size.ok_or_else(|| bad(None, "a malformed PAX size"))?;
                pending.size = Some(size);
            }
            key if key.starts_with(b"GNU.sparse.") => {
                return Err(bad(None, "sparse files are not accepted"));
            }
            _ => {}
        }
        data = &data[length..];
    }
    Ok(())
}

/// The relative, normalised form of an entry name; `None` for the archive root itself.
pub fn normalise(raw: &[u8]) -> Result<Option<String>, &'static str> {
    if raw.contains(&0) {
        return Err("a NUL in the name");
    }
    if raw.len() > MAX_NAME {
        return Err("a name over 4096 bytes");
    }
    let text = std::str::from_utf8(raw).map_err(|_bad| "a name that is not UTF-8")?;
    if text.starts_with('/') {
        return Err("an absolute name");
    }
    if text.chars().any(char::is_control) {
        return Err("a control character in the name");
    }
    let mut segments = Vec::new();
    for segment in text.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err("a `..` segment"),
            other => segments.push(other),
        }
    }
    Ok((!segments.is_empty()).then(|| segments.join("/")))
}

pub(super) fn checked_link(raw: &[u8]) -> Result<String, &'static str> {
    if raw.is_empty() {
        return Err("a symlink without a target");
    }
    if raw.contains(&0) {
        return Err("a NUL in the link target");
    }
    if raw.len() > MAX_NAME {
        return Err("a link target over 4096 bytes");
    }
    let text = std::str::from_utf8(raw).map_err(|_bad| "a link target that is not UTF-8")?;
    if text.chars().any(char::is_control) {
        return Err("a control character in the link target");
    }
    Ok(text.to_owned())
}
