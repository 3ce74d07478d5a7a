//! The image variables: the allowed images, pinning, and where the start-up
//! pre-pull finds missing images.

use std::path::PathBuf;
use std::time::Duration;

use super::{parse_abs_path, parse_bool, parse_duration, Reader};
use crate::images::allow::{AllowList, AllowedImage};

/// Allowed sandbox images, comma-separated: `name[:tag][@sha256:<id>]` or `sha256:<id>`.
/// Unset (and no file): any image on the node may be used.
pub const ENV_IMAGES: &str = "AIRLOCK_IMAGES";
/// A file of allowed images, one or more per line (`#` comments); adds to [`ENV_IMAGES`].
pub const ENV_IMAGES_FILE: &str = "AIRLOCK_IMAGES_FILE";
/// Refuse an allowed tag that no digest pins (default: true when a list is configured).
pub const ENV_REQUIRE_PINNED: &str = "AIRLOCK_REQUIRE_PINNED";
/// Folder of image archives (`*.tar`, `*.tar.gz`, `*.tgz`, bundles) the pre-pull loads from.
pub const ENV_BUNDLE_DIR: &str = "AIRLOCK_BUNDLE_DIR";
/// A registry (`host[:port]`) the pre-pull pulls from when a bundle lacks an image.
pub const ENV_REGISTRY: &str = "AIRLOCK_REGISTRY";
/// How long a create waits for an allowed image that is still loading.
pub const ENV_IMAGE_WAIT: &str = "AIRLOCK_IMAGE_WAIT";
/// Default of [`ENV_IMAGE_WAIT`].
pub const DEFAULT_IMAGE_WAIT: &str = "60s";

/// What the controller needs to know about images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImagesConfig {
    /// The allowed images; `None` allows any image on the node.
    pub allow: Option<AllowList>,
    /// Where the pre-pull looks for archives.
    pub bundle_dir: Option<PathBuf>,
    /// The registry the pre-pull may pull from.
    pub registry: Option<String>,
    /// How long a create waits for a loading image.
    pub wait: Duration,
}

// === impl ImagesConfig ===

impl Default for ImagesConfig {
    /// No list, no bundle folder, no registry: the permissive default.
    fn default() -> Self {
        Self {
            allow: None,
            bundle_dir: None,
            registry: None,
            wait: Duration::from_secs(60),
        }
    }
}

// === impl Reader ===

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    /// Parses the image variables.
    pub(super) fn images(&mut self) -> Option<ImagesConfig> {
        let listed = self.optional(ENV_IMAGES, AllowList::parse_entries);
        let from_file = self.optional(ENV_IMAGES_FILE, read_images_file);
        let require_pinned = self.optional(ENV_REQUIRE_PINNED, parse_bool);
        let bundle_dir = self.optional(ENV_BUNDLE_DIR, parse_abs_path);
        let registry = self.optional(ENV_REGISTRY, parse_registry);
        let wait = self.parse_with(ENV_IMAGE_WAIT, DEFAULT_IMAGE_WAIT, parse_duration);
        let (listed, from_file, require_pinned) = (listed?, from_file?, require_pinned?);
        let configured = listed.is_some() || from_file.is_some();
        let entries: Vec<AllowedImage> = listed.into_iter().chain(from_file).flatten().collect();
        if require_pinned == Some(true) && !configured {
            let expected = format!("set together with {ENV_IMAGES} or {ENV_IMAGES_FILE}");
            self.issue(ENV_REQUIRE_PINNED, "true", false, expected);
            return None;
        }
        let allow = configured.then(|| AllowList {
            entries,
            require_pinned: require_pinned.unwrap_or(true),
        });
        Some(ImagesConfig {
            allow,
            bundle_dir: bundle_dir?,
            registry: registry?,
            wait: wait?,
        })
    }
}

fn read_images_file(v: &str) -> Result<Vec<AllowedImage>, &'static str> {
    let path = parse_abs_path(v)?;
    let text = std::fs::read_to_string(path).map_err(|_unreadable| "a readable file")?;
    AllowList::parse_entries(&text)
}

fn parse_registry(v: &str) -> Result<String, &'static str> {
    let valid = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
        && !v.starts_with(['-', '.', ':']);
    if valid {
        Ok(v.to_owned())
    } else {
        Err("a registry host[:port], without scheme or path")
    }
}
