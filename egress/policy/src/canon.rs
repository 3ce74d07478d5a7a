//! Canonical request paths for inspected (terminated or gateway) traffic.
//!
//! The proxy matches L7 rules against, and forwards, only the canonical form of a path, so an
//! upstream never sees a spelling that a rule did not see. [`canonical_path`] takes an
//! origin-form target (`/a/b?q`) and, in this order:
//! 1. splits off the query, kept verbatim but never matched or ledgered;
//! 2. refuses control bytes, non-ASCII bytes, `#`, and anything but an absolute path;
//! 3. strips `;params` from each segment (matrix parameters some servers read as path);
//! 4. decodes percent-encoded unreserved characters (`A–Z a–z 0–9 - . _ ~`), upper-cases the
//!    hex of every other escape, and refuses `%2F`, `%5C`, `%00` and malformed escapes;
//! 5. collapses empty segments (`//`) and resolves `.` and `..`, refusing a `..` above the root.
//!
//! The result starts with `/`, holds only printable ASCII, and a trailing slash is kept.

/// Why a path was refused; [`PathError::code`] is the ledger and API code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// Not an origin-form path starting with `/`.
    #[error("the request target is not an absolute path")]
    NotAbsolute,
    /// A control byte, a space, a non-ASCII byte, `\` or `#`.
    #[error("the path holds a control, non-ASCII or reserved byte")]
    BadByte,
    /// A `%` not followed by two hex digits.
    #[error("the path holds a malformed percent escape")]
    BadEscape,
    /// An encoded `/`, `\` or NUL, which servers split or decode differently.
    #[error("the path holds an encoded slash, backslash or NUL")]
    EncodedSeparator,
    /// A `..` segment that would climb above the root.
    #[error("the path climbs above the root")]
    Escape,
}

impl PathError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            PathError::NotAbsolute => "path_not_absolute",
            PathError::BadByte => "path_bad_byte",
            PathError::BadEscape => "path_bad_escape",
            PathError::EncodedSeparator => "path_encoded_separator",
            PathError::Escape => "path_escape",
        }
    }
}

/// An origin-form target split into its canonical path and its untouched query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanonicalTarget {
    /// The canonical path: what rules match, what is forwarded and what the ledger keeps.
    pub path: String,
    /// The query without its `?`, forwarded as sent; never matched, logged or ledgered.
    pub query: Option<String>,
}

impl CanonicalTarget {
    /// The origin-form target to forward: the canonical path and the query.
    pub fn to_origin_form(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.clone(),
        }
    }
}

/// Canonicalises an origin-form request target; see the module docs for the steps.
pub fn canonical_path(target: &str) -> Result<CanonicalTarget, PathError> {
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    if let Some(query) = query {
        if query.bytes().any(|b| !is_visible(b) || b == b'#') {
            return Err(PathError::BadByte);
        }
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if path
        .bytes()
        .any(|b| !is_visible(b) || b == b'\\' || b == b'#')
    {
        return Err(PathError::BadByte);
    }
    let mut out: Vec<String> = Vec::new();
    let trailing = path.ends_with('/') && path.len() > 1;
    let mut last_was_dir = false;
    for raw in path.split('/').skip(1) {
        let bare = raw.split(';').next().unwrap_or_default();
        let segment = decode_segment(bare)?;
        last_was_dir = false;
        match segment.as_str() {
            "" => {}
            "." => last_was_dir = true,
            ".." => {
                if out.pop().is_none() {
                    return Err(PathError::Escape);
                }
                last_was_dir = true;
            }
            _ => out.push(segment),
        }
    }
    let mut canonical = String::with_capacity(path.len());
    for segment in &out {
        canonical.push('/');
        canonical.push_str(segment);
    }
    if canonical.is_empty() || ((trailing || last_was_dir) && !out.is_empty()) {
        canonical.push('/');
    }
    Ok(CanonicalTarget {
        path: canonical,
        query: query.map(str::to_owned),
    })
}

/// Printable ASCII other than space.
fn is_visible(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}

/// Whether `b` is an RFC 3986 unreserved character.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decodes unreserved escapes and upper-cases the rest; refuses encoded separators.
fn decode_segment(segment: &str) -> Result<String, PathError> {
    let bytes = segment.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).and_then(|h| hex(*h)),
            bytes.get(i + 2).and_then(|l| hex(*l)),
        ) else {
            return Err(PathError::BadEscape);
        };
        let decoded = hi << 4 | lo;
        match decoded {
            b'/' | b'\\' | 0 => return Err(PathError::EncodedSeparator),
            d if is_unreserved(d) => out.push(char::from(d)),
            d => {
                out.push('%');
                out.push(char::from(HEX[usize::from(d >> 4)]));
                out.push(char::from(HEX[usize::from(d & 0xf)]));
            }
        }
        i += 3;
    }
    Ok(out)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(target: &str) -> Result<String, PathError> {
        canonical_path(target).map(|t| t.path)
    }

    #[test]
    fn plain_paths_are_unchanged() {
        for p in [
            "/",
            "/v1/messages",
            "/a/b/",
            "/repo.git/info/refs",
            "/a-b_c~d.e",
        ] {
            assert_eq!(path(p).unwrap(), p, "{p}");
        }
    }

    #[test]
    fn dot_segments_and_empty_segments_resolve() {
        assert_eq!(path("//v1//messages").unwrap(), "/v1/messages");
        assert_eq!(path("/a/./b").unwrap(), "/a/b");
        assert_eq!(path("/a/b/../c").unwrap(), "/a/c");
        assert_eq!(path("/a/b/..").unwrap(), "/a/");
        assert_eq!(path("/a/.").unwrap(), "/a/");
        assert_eq!(path("/a/%2e%2E/b").unwrap(), "/b");
        assert_eq!(path("/a/.%2e/b").unwrap(), "/b");
    }

    #[test]
    fn escapes_above_the_root_are_refused() {
        for p in ["/..", "/../x", "/a/../../x", "/%2e%2e/x", "/.%2E/etc"] {
            assert_eq!(path(p), Err(PathError::Escape), "{p}");
        }
    }

    #[test]
    fn params_are_stripped_before_decoding() {
        assert_eq!(path("/v1/messages;x=1").unwrap(), "/v1/messages");
        assert_eq!(path("/a;..;/b").unwrap(), "/a/b");
        assert_eq!(path("/..;/x"), Err(PathError::Escape));
        assert_eq!(path("/a/;x/b").unwrap(), "/a/b");
    }

    #[test]
    fn unreserved_escapes_decode_and_others_normalise() {
        assert_eq!(path("/%76%31/messages").unwrap(), "/v1/messages");
        assert_eq!(path("/a%20b").unwrap(), "/a%20b");
        assert_eq!(path("/a%3fb").unwrap(), "/a%3Fb");
    }

    #[test]
    fn separators_controls_and_non_ascii_are_refused() {
        assert_eq!(path("/a%2Fb"), Err(PathError::EncodedSeparator));
        assert_eq!(path("/a%2fb"), Err(PathError::EncodedSeparator));
        assert_eq!(path("/a%5Cb"), Err(PathError::EncodedSeparator));
        assert_eq!(path("/a%00"), Err(PathError::EncodedSeparator));
        assert_eq!(path("/a\\b"), Err(PathError::BadByte));
        assert_eq!(path("/a\nb"), Err(PathError::BadByte));
        assert_eq!(path("/a b"), Err(PathError::BadByte));
        assert_eq!(path("/é"), Err(PathError::BadByte));
        assert_eq!(path("/a#frag"), Err(PathError::BadByte));
        assert_eq!(path("/a%4"), Err(PathError::BadEscape));
        assert_eq!(path("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(path("a/b"), Err(PathError::NotAbsolute));
        assert_eq!(path("*"), Err(PathError::NotAbsolute));
        assert_eq!(path(""), Err(PathError::NotAbsolute));
    }

    #[test]
    fn the_query_is_kept_but_not_canonicalised() {
        let t = canonical_path("/a/../b?x=/../y&k=%2F").unwrap();
        assert_eq!(t.path, "/b");
        assert_eq!(t.query.as_deref(), Some("x=/../y&k=%2F"));
        assert_eq!(t.to_origin_form(), "/b?x=/../y&k=%2F");
        assert_eq!(canonical_path("/a?b c"), Err(PathError::BadByte));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_output_is_canonical(input in r"[/a.%2eEfF;?\\\x00-\x7f]{0,40}") {
            if let Ok(t) = canonical_path(&input) {
                proptest::prop_assert!(t.path.starts_with('/'));
                proptest::prop_assert!(!t.path.contains("//"));
                proptest::prop_assert_eq!(path(&t.path), Ok(t.path.clone()));
            }
        }
    }

    #[test]
    fn canonical_output_is_a_fixed_point() {
        for p in [
            "//a/./b/../c;x/",
            "/%7e/%41%2e",
            "/a/%20/b",
            "/x/y/z/../../w",
        ] {
            let once = path(p).unwrap();
            assert_eq!(path(&once).unwrap(), once, "{p}");
        }
    }
}
