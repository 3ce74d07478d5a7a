//! The operator's list of allowed sandbox images (`AIRLOCK_IMAGES` / `AIRLOCK_IMAGES_FILE`),
//! and the decision whether a create may name an image. Pure: the digests recorded by
//! `airlock images load` come in through a lookup function.
//!
//! - An entry is `name[:tag]@sha256:<hex>` (pinned), `name[:tag]` (a tag, pinnable by
//!   importing it: the image id `airlock images load` recorded for the tag pins it) or
//!   `sha256:<hex>` (an image id). A missing tag means `latest`.
//! - The digest is the image id (`sha256` of the image config), which `docker save`,
//!   `docker load` and OCI layouts all preserve, so it pins an image without any registry.
//! - A request matches an entry by tag (`name:tag`), by image id, or by `name@sha256:<hex>`
//!   when the entry's pin is that digest. Anything else is refused as `image_not_allowed`;
//!   a matching tag with no pin, when pinning is required, as `image_unpinned`.

use std::fmt;

/// One allowed image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedImage {
    /// `name:tag` (tag filled in), or `None` for an entry that is only an image id.
    pub name: Option<String>,
    /// The pinned image id (`sha256:<hex>`), when the entry gives one.
    pub digest: Option<String>,
}

/// The allowed images and whether each must be pinned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowList {
    /// The entries, in configuration order.
    pub entries: Vec<AllowedImage>,
    /// Refuse a tag that has no digest (neither in the list nor recorded by an import).
    pub require_pinned: bool,
}

/// A create's image that the list admits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    /// The entry it matched, as written in the status list (`name:tag` or the id).
    pub entry: String,
    /// The image id the node's image must have, if pinned.
    pub pinned: Option<String>,
}

/// Why a create's image was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefusal {
    /// The image matches no entry of the allow list.
    #[error("image `{image}` is not in the operator's allowed images (AIRLOCK_IMAGES)")]
    NotAllowed {
        /// The image as requested.
        image: String,
    },
    /// The image is allowed as a tag, but pinning is required and no digest pins it.
    #[error(
        "image `{image}` is an unpinned tag and AIRLOCK_REQUIRE_PINNED is on: list it as \
         `{image}@sha256:<id>` or import it with `airlock images load` to record its digest"
    )]
    Unpinned {
        /// The image as requested.
        image: String,
        /// The entry it matched (an import of it, once done, pins it).
        entry: String,
    },
    /// The node's image under that name is not the pinned one.
    #[error("image `{image}` on the node is {actual}, but the allowed digest is {expected}")]
    DigestMismatch {
        /// The image as requested.
        image: String,
        /// The pinned digest.
        expected: String,
        /// What the node has.
        actual: String,
    },
}

/// A create's image reference, split.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Requested {
    /// `sha256:<hex>`.
    Id(String),
    /// `name[:tag][@sha256:<hex>]`.
    Named {
        /// `name:tag`, tag filled in.
        name_tag: String,
        /// Whether the tag was written (rather than defaulted to `latest`).
        explicit_tag: bool,
        /// The digest after `@`.
        digest: Option<String>,
    },
}

// === impl AllowList ===

impl AllowList {
    /// Parses comma- or newline-separated entries; `#` starts a comment (an empty text
    /// gives no entries).
    pub fn parse_entries(text: &str) -> Result<Vec<AllowedImage>, &'static str> {
        text.lines()
            .map(|line| line.split('#').next().unwrap_or_default())
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(AllowedImage::parse)
            .collect()
    }

    /// Decides whether `image` may be used; `recorded` gives the image id an import recorded
    /// for a `name:tag`.
    pub fn admit(
        &self,
        image: &str,
        recorded: impl Fn(&str) -> Option<String>,
    ) -> Result<Admission, ImageRefusal> {
        let requested = Requested::parse(image);
        let entry = self
            .entries
            .iter()
            .find(|entry| entry.matches(&requested, &recorded))
            .ok_or_else(|| ImageRefusal::NotAllowed {
                image: image.to_owned(),
            })?;
        let pinned = entry.pin(&recorded);
        if pinned.is_none() && self.require_pinned {
            return Err(ImageRefusal::Unpinned {
                image: image.to_owned(),
                entry: entry.to_string(),
            });
        }
        Ok(Admission {
            entry: entry.to_string(),
            pinned,
        })
    }
}

// === impl AllowedImage ===

impl AllowedImage {
    /// Parses one entry: `name[:tag][@sha256:<hex>]` or `sha256:<hex>`.
    pub fn parse(entry: &str) -> Result<AllowedImage, &'static str> {
        const EXPECTED: &str =
            "comma-separated images, each name[:tag][@sha256:<64 hex>] or sha256:<64 hex>";
        crate::sandbox::ImageRef::parse(entry).map_err(|_invalid| EXPECTED)?;
        Ok(match Requested::parse(entry) {
            Requested::Id(id) => AllowedImage {
                name: None,
                digest: Some(id),
            },
            Requested::Named {
                name_tag, digest, ..
            } => AllowedImage {
                name: Some(name_tag),
                digest,
            },
        })
    }

    /// The image id that pins this entry: its own digest, else the one an import recorded.
    pub fn pin(&self, recorded: &impl Fn(&str) -> Option<String>) -> Option<String> {
        self.digest
            .clone()
            .or_else(|| self.name.as_deref().and_then(recorded))
    }

    fn matches(&self, requested: &Requested, recorded: &impl Fn(&str) -> Option<String>) -> bool {
        match requested {
            Requested::Id(id) => self.pin(recorded).as_deref() == Some(id.as_str()),
            Requested::Named {
                name_tag,
                explicit_tag,
                digest,
            } => {
                let Some(name) = &self.name else {
                    return false;
                };
                let same_name = if *explicit_tag || digest.is_none() {
                    name == name_tag
                } else {
                    repository(name) == repository(name_tag)
                };
                same_name
                    && digest
                        .as_ref()
                        .is_none_or(|d| self.pin(recorded).as_ref() == Some(d))
            }
        }
    }
}

impl fmt::Display for AllowedImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.name, &self.digest) {
            (Some(name), Some(digest)) => write!(f, "{name}@{digest}"),
            (Some(name), None) => f.write_str(name),
            (None, Some(digest)) => f.write_str(digest),
            (None, None) => f.write_str("?"),
        }
    }
}

// === impl Requested ===

impl Requested {
    /// Splits a reference that [`crate::sandbox::ImageRef::parse`] accepted.
    fn parse(image: &str) -> Requested {
        if image.starts_with("sha256:") {
            return Requested::Id(image.to_owned());
        }
        let (name, digest) = match image.split_once('@') {
            Some((name, digest)) => (name, Some(digest.to_owned())),
            None => (image, None),
        };
        let last = name.rsplit('/').next().unwrap_or(name);
        let explicit_tag = last.contains(':');
        let name_tag = if explicit_tag {
            name.to_owned()
        } else {
            format!("{name}:latest")
        };
        Requested::Named {
            name_tag,
            explicit_tag,
            digest,
        }
    }
}

/// `name` of a `name:tag`.
fn repository(name_tag: &str) -> &str {
    let slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    match name_tag[slash..].rfind(':') {
        Some(colon) => &name_tag[..slash + colon],
        None => name_tag,
    }
}

#[cfg(test)]
mod tests;
