//! Paths inside a sandbox (the workdir, later mount targets): absolute and already
//! normalised, so the string the API accepted is exactly the path Docker gets.
//!
//! Pure. A [`ContainerPath`] holds: it starts with `/`; no segment is empty, `.` or `..`; no
//! trailing `/` (except the root itself); no NUL or other control character; at most
//! [`MAX_PATH`] bytes.

use std::fmt;

/// Longest path accepted, in bytes (Linux `PATH_MAX`).
pub const MAX_PATH: usize = 4096;

/// What a container path must look like, for error messages.
pub const EXPECTED_PATH: &str = "an absolute, normalised path (no `.`, `..`, `//`, trailing `/` \
                                 or control characters)";

/// An absolute, normalised path inside a container.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerPath(String);

/// Why a string is not a [`ContainerPath`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathProblem {
    /// Longer than [`MAX_PATH`] bytes.
    TooLong,
    /// Holds a NUL byte.
    Nul,
    /// Not absolute, not normalised, or holds a control character.
    Malformed,
}

// === impl ContainerPath ===

impl ContainerPath {
    /// Checks `text`; nothing is rewritten, so `/a/../b` is refused rather than read as `/b`.
    pub fn parse(text: &str) -> Result<ContainerPath, PathProblem> {
        if text.len() > MAX_PATH {
            return Err(PathProblem::TooLong);
        }
        if text.contains('\0') {
            return Err(PathProblem::Nul);
        }
        if text.chars().any(char::is_control) {
            return Err(PathProblem::Malformed);
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(PathProblem::Malformed);
        };
        if rest.is_empty() {
            return Ok(ContainerPath(text.to_owned()));
        }
        if rest
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(PathProblem::Malformed);
        }
        Ok(ContainerPath(text.to_owned()))
    }

    /// The path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is `/`.
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// Whether `self` is `other` or lies below it (by whole segments: `/data2` is not under
    /// `/data`).
    pub fn is_within(&self, other: &ContainerPath) -> bool {
        other.is_root()
            || self.0 == other.0
            || self
                .0
                .strip_prefix(&other.0)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

impl fmt::Display for ContainerPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_normalised_paths_pass() {
        for good in ["/", "/workspace", "/home/agent/x.y", "/a b/..c", "/.hidden"] {
            assert_eq!(
                ContainerPath::parse(good).map(|p| p.to_string()),
                Ok(good.to_owned())
            );
        }
        let bad = [
            ("", PathProblem::Malformed),
            ("workspace", PathProblem::Malformed),
            ("/a/", PathProblem::Malformed),
            ("//a", PathProblem::Malformed),
            ("/a//b", PathProblem::Malformed),
            ("/a/./b", PathProblem::Malformed),
            ("/a/../b", PathProblem::Malformed),
            ("/..", PathProblem::Malformed),
            ("/a\nb", PathProblem::Malformed),
            ("/a\0b", PathProblem::Nul),
        ];
        for (text, want) in bad {
            assert_eq!(ContainerPath::parse(text), Err(want), "{text:?}");
        }
        let long = format!("/{}", "a".repeat(MAX_PATH));
        assert_eq!(ContainerPath::parse(&long), Err(PathProblem::TooLong));
    }

    #[test]
    fn within_compares_whole_segments() {
        let p = |s: &str| ContainerPath::parse(s).unwrap_or_else(|e| panic!("{s}: {e:?}"));
        assert!(p("/data/x").is_within(&p("/data")));
        assert!(p("/data").is_within(&p("/data")));
        assert!(p("/data").is_within(&p("/")));
        assert!(!p("/data2").is_within(&p("/data")));
        assert!(!p("/data").is_within(&p("/data/x")));
    }
}
