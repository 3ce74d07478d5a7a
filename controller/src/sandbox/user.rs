//! Which user a sandbox runs as, decided from the image's `USER` and the operator's rules.
//!
//! Pure. The rule, in order:
//! - an image whose `USER` is root (`0`, `root`, `0:…`, `root:…`) is refused
//!   ([`UserRefusal::RunsAsRoot`]) unless the operator set [`RootImages::Demote`], in which
//!   case it runs as [`RunAs::NOBODY`] — a sandbox never runs as uid 0;
//! - a numeric `uid[:gid]` inside the operator's allowed ranges ([`UidRanges`]) is honoured
//!   (a missing gid takes the uid);
//! - anything else (no `USER`, a user name, a uid outside the ranges) runs as
//!   [`RunAs::NOBODY`], as every sandbox did before images could choose.

use std::fmt;

use super::spec::RunAs;

/// Default of the allowed uid ranges.
pub const DEFAULT_ALLOWED_UIDS: &str = "1000-60000,65534";

/// Inclusive uid ranges an image's `USER` may pick from. Never contains 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UidRanges(Vec<(u32, u32)>);

/// What the operator does with an image whose `USER` is root.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RootImages {
    /// Refuse the create with `image_runs_as_root` (the default).
    #[default]
    Refuse,
    /// Run it as `nobody` (65534:65534) instead.
    Demote,
}

/// Why an image's user cannot run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UserRefusal {
    /// The image's `USER` is root and the operator does not demote root images.
    #[error(
        "image `{image}` runs as root (USER `{user}`); sandboxes never run as root: rebuild it \
         with a non-root USER, or ask the operator to set AIRLOCK_ROOT_IMAGES=demote"
    )]
    RunsAsRoot {
        /// The image.
        image: String,
        /// Its `USER`.
        user: String,
    },
}

// === impl UidRanges ===

impl UidRanges {
    /// Parses `A-B,C,…`: comma-separated uids or inclusive ranges, none containing 0.
    pub fn parse(text: &str) -> Result<UidRanges, &'static str> {
        const EXPECTED: &str =
            "comma-separated uids or ranges `A-B` (1..=4294967294, A <= B, never 0)";
        let mut ranges = Vec::new();
        for part in text.split(',').map(str::trim) {
            let (low, high) = part.split_once('-').unwrap_or((part, part));
            let low: u32 = low.trim().parse().map_err(|_bad| EXPECTED)?;
            let high: u32 = high.trim().parse().map_err(|_bad| EXPECTED)?;
            if low == 0 || low > high || high == u32::MAX {
                return Err(EXPECTED);
            }
            ranges.push((low, high));
        }
        Ok(UidRanges(ranges))
    }

    /// Whether `uid` lies in one of the ranges.
    pub fn contains(&self, uid: u32) -> bool {
        self.0
            .iter()
            .any(|&(low, high)| (low..=high).contains(&uid))
    }
}

impl Default for UidRanges {
    fn default() -> Self {
        UidRanges(vec![(1000, 60000), (65534, 65534)])
    }
}

impl fmt::Display for UidRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (low, high)) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            if low == high {
                write!(f, "{sep}{low}")?;
            } else {
                write!(f, "{sep}{low}-{high}")?;
            }
        }
        Ok(())
    }
}

/// The user a sandbox of `image` runs as, from the image's `USER` (`None` or empty: unset).
pub fn resolve(
    image: &str,
    user: Option<&str>,
    allowed: &UidRanges,
    root: RootImages,
) -> Result<RunAs, UserRefusal> {
    let user = user.map(str::trim).unwrap_or_default();
    if user.is_empty() {
        return Ok(RunAs::NOBODY);
    }
    let (name, group) = user.split_once(':').unwrap_or((user, ""));
    if name == "0" || name == "root" {
        return match root {
            RootImages::Refuse => Err(UserRefusal::RunsAsRoot {
                image: image.to_owned(),
                user: user.to_owned(),
            }),
            RootImages::Demote => Ok(RunAs::NOBODY),
        };
    }
    let Ok(uid) = name.parse::<u32>() else {
        return Ok(RunAs::NOBODY);
    };
    let gid = match group {
        "" => Some(uid),
        group => group.parse::<u32>().ok(),
    };
    match gid {
        Some(gid) if allowed.contains(uid) => Ok(RunAs { uid, gid }),
        _ => Ok(RunAs::NOBODY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn run(uid: u32, gid: u32) -> RunAs {
        RunAs { uid, gid }
    }

    #[test]
    fn the_image_user_is_honoured_only_when_numeric_non_root_and_allowed() {
        let allowed = UidRanges::default();
        let table: [(Option<&str>, RunAs); 11] = [
            (None, RunAs::NOBODY),
            (Some(""), RunAs::NOBODY),
            (Some("1000:1000"), run(1000, 1000)),
            (Some("1000"), run(1000, 1000)),
            (Some("1000:0"), run(1000, 0)),
            (Some("65534:65534"), RunAs::NOBODY),
            (Some("60000"), run(60000, 60000)),
            (Some("60001"), RunAs::NOBODY),
            (Some("999"), RunAs::NOBODY),
            (Some("agent"), RunAs::NOBODY),
            (Some("1000:staff"), RunAs::NOBODY),
        ];
        for (user, want) in table {
            let got = resolve("img", user, &allowed, RootImages::Refuse);
            assert_eq!(got, Ok(want), "{user:?}");
        }
    }

    #[test]
    fn root_is_refused_unless_demoted_and_never_run() {
        let allowed = UidRanges::parse("0-10").unwrap_or_default();
        for user in ["0", "root", "0:0", "root:root", " 0 "] {
            let refused = resolve("img", Some(user), &allowed, RootImages::Refuse);
            assert!(
                matches!(refused, Err(UserRefusal::RunsAsRoot { .. })),
                "{user}"
            );
            let demoted = resolve("img", Some(user), &allowed, RootImages::Demote);
            assert_eq!(demoted, Ok(RunAs::NOBODY), "{user}");
        }
    }

    #[test]
    fn ranges_parse_strictly_and_never_hold_root() {
        assert_eq!(
            UidRanges::parse(DEFAULT_ALLOWED_UIDS),
            Ok(UidRanges::default())
        );
        assert_eq!(
            UidRanges::parse("5, 10-20").map(|r| r.to_string()),
            Ok("5,10-20".to_owned())
        );
        for bad in ["", "0", "0-5", "5-1", "a", "1-", "1,,2", "4294967295"] {
            assert!(UidRanges::parse(bad).is_err(), "{bad}");
        }
    }
}
