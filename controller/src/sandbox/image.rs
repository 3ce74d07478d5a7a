//! Image references: what `image` in a create request may name. Syntax only; whether the
//! node has the image is checked against Docker, never by pulling.

use std::fmt;

use super::spec::Problem;

/// Longest image reference.
pub const MAX_IMAGE_REF: usize = 512;

/// A syntactically valid image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef(String);

// === impl ImageRef ===

impl ImageRef {
    /// Parses `[host[:port]/]path[:tag][@sha256:<64 hex>]` or `sha256:<64 hex>` (an image id).
    pub fn parse(s: &str) -> Result<ImageRef, Problem> {
        const EXPECTED: &str = "an image reference like `name[:tag][@sha256:<hex>]`";
        if s.is_empty() {
            return Err(Problem::Required);
        }
        if s.len() > MAX_IMAGE_REF {
            return Err(Problem::TooLong { max: MAX_IMAGE_REF });
        }
        let ok = match s.strip_prefix("sha256:") {
            Some(hex) => is_sha256_hex(hex),
            None => is_named_ref(s),
        };
        if ok {
            Ok(ImageRef(s.to_owned()))
        } else {
            Err(Problem::Malformed { expected: EXPECTED })
        }
    }

    /// The reference as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_named_ref(s: &str) -> bool {
    let (name_tag, digest_ok) = match s.split_once('@') {
        Some((name_tag, digest)) => (
            name_tag,
            digest.strip_prefix("sha256:").is_some_and(is_sha256_hex),
        ),
        None => (s, true),
    };
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    digest_ok && tag.is_none_or(is_tag) && is_repository(name)
}

fn is_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    tag.len() <= 128
        && matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn is_repository(name: &str) -> bool {
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1 && is_registry(parts[0]) {
        parts.remove(0);
    }
    parts.iter().all(|part| is_path_component(part))
}

fn is_registry(part: &str) -> bool {
    let host = part.split_once(':').map_or(part, |(host, port)| {
        if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            host
        } else {
            ""
        }
    });
    (part.contains('.') || part.contains(':') || part == "localhost")
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
}

fn is_path_component(part: &str) -> bool {
    let bytes = part.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes
            .iter()
            .all(|b| alnum(b) || matches!(b, b'.' | b'_' | b'-'))
        && !part.contains("..")
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
