//! Verifying an image archive before any byte of it reaches a daemon.
//!
//! One streaming pass over the tar (optionally gzip-compressed) hashes the whole file and every
//! member: the raw bytes, and for gzip members also the decompressed stream, because a config's
//! `rootfs.diff_ids` name *uncompressed* layers. Small members (configs, manifests) are kept in
//! memory to be parsed. Then [`verify`] checks, per format:
//!
//! - `docker save` (both the old `<id>/layer.tar` layout and the newer `blobs/sha256/` one):
//!   `manifest.json` → each image's config hashes to the image id its name carries, and each
//!   listed layer's uncompressed digest equals the config's `diff_ids[i]`;
//! - OCI layout (`oci-layout` + `index.json`): each descriptor's blob hashes to its digest and
//!   has its size, and the config's `diff_ids` match the (decompressed) layers;
//! - any `blobs/sha256/<hex>` member hashes to `<hex>`;
//! - a `SHA256SUMS` member (our bundles) lists every other member with a matching hash.
//!
//! A truncated archive fails while reading (the tar ends inside a member) or later, when a
//! member the manifest references is missing. Every refusal names the archive, the member, and
//! the expected and actual values.

mod scan;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Members up to this size are kept in memory for parsing (configs, manifests, indexes).
pub(crate) const KEEP_LIMIT: u64 = 4 << 20;
/// Name of the checksum manifest, inside a bundle or next to an archive.
pub const SHA256SUMS: &str = "SHA256SUMS";
/// The gzip magic bytes.
pub(crate) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Which layout an archive uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `docker save`: a `manifest.json` the daemon's `/images/load` reads directly.
    DockerSave,
    /// An OCI image layout without `manifest.json`; a manifest is added before loading.
    OciLayout,
}

/// One image an archive holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveImage {
    /// `sha256:<hex>` of the config: the image id the daemon will report.
    pub id: String,
    /// Tags it carries (`name:tag`); may be empty.
    pub tags: Vec<String>,
    /// The config member's path.
    pub config: String,
    /// The layer members' paths, in order.
    pub layers: Vec<String>,
    /// Bytes of its layers as stored.
    pub size: u64,
}

/// What [`verify`] established about an archive.
#[derive(Clone, Debug)]
pub struct VerifiedArchive {
    /// The file.
    pub path: PathBuf,
    /// Its layout.
    pub format: ArchiveFormat,
    /// Every image in it.
    pub images: Vec<ArchiveImage>,
    /// The file's size.
    pub bytes: u64,
    /// `sha256` of the whole file, hex; what is sent must hash to this again.
    pub sha256: String,
}

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The tar ended early or a member could not be read: a truncated or corrupt archive.
    #[error("{path}: corrupt or truncated archive (in member `{member}`): {detail}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The member being read, or `-` between members.
        member: String,
        /// What went wrong.
        detail: String,
    },
    /// A referenced member is absent.
    #[error("{path}: member `{member}` is referenced by {by} but missing (truncated archive?)")]
    Missing {
        /// The file.
        path: PathBuf,
        /// The missing member.
        member: String,
        /// Who references it.
        by: String,
    },
    /// A digest did not match.
    #[error("{path}: {what} of `{member}` does not match: expected {expected}, got {actual}")]
    Digest {
        /// The file.
        path: PathBuf,
        /// The member whose hash is wrong.
        member: String,
        /// Which digest (e.g. "uncompressed sha256 (diff_id 2)").
        what: String,
        /// The expected value.
        expected: String,
        /// The computed value.
        actual: String,
    },
    /// A manifest, index or config is not what the format requires.
    #[error("{path}: `{member}` is malformed: {detail}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The member.
        member: String,
        /// What is wrong.
        detail: String,
    },
}

// === impl VerifiedArchive ===

impl VerifiedArchive {
    /// A short label: the first tag of each image, or its short id.
    pub fn label(&self) -> String {
        let names: Vec<String> = self
            .images
            .iter()
            .map(|image| {
                image.tags.first().cloned().unwrap_or_else(|| {
                    image.id.chars().take(19).collect() // "sha256:" + 12 hex
                })
            })
            .collect();
        names.join(", ")
    }
}

/// Reads `path` once and verifies everything the module docs list. Nothing is sent anywhere.
pub fn verify(path: &Path) -> Result<VerifiedArchive, ArchiveError> {
    let scan = scan::scan(path)?;
    scan.check_blob_names()?;
    scan.check_bundle_sums()?;
    let (format, images) = if scan.members.contains_key("manifest.json") {
        (ArchiveFormat::DockerSave, scan.docker_images()?)
    } else if scan.members.contains_key("index.json") {
        (ArchiveFormat::OciLayout, scan.oci_images()?)
    } else {
        return Err(scan.malformed(
            "-",
            "neither manifest.json (docker save) nor index.json (OCI)",
        ));
    };
    if images.is_empty() {
        return Err(scan.malformed("manifest", "the archive lists no image"));
    }
    Ok(VerifiedArchive {
        path: scan.path,
        format,
        images,
        bytes: scan.bytes,
        sha256: scan.sha256,
    })
}

/// Parses a `SHA256SUMS` text (`<hex>  <name>` or `<hex> *<name>` per line) into name → hex.
pub fn parse_sums(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut sums = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed = line.split_once(' ').and_then(|(hex, name)| {
            let name = name.trim_start_matches(' ').trim_start_matches('*');
            let ok = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
            (ok && !name.is_empty()).then(|| (name.to_owned(), hex.to_ascii_lowercase()))
        });
        let (name, hex) =
            parsed.ok_or_else(|| format!("line {} is not `<sha256>  <name>`", number + 1))?;
        sums.insert(name, hex);
    }
    Ok(sums)
}

#[cfg(test)]
mod tests;
