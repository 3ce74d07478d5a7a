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

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzDecoder as GzWriteDecoder;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Members up to this size are kept in memory for parsing (configs, manifests, indexes).
const KEEP_LIMIT: u64 = 4 << 20;
/// Name of the checksum manifest, inside a bundle or next to an archive.
pub const SHA256SUMS: &str = "SHA256SUMS";
/// The gzip magic bytes.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

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

/// What the scan learnt about one member.
#[derive(Clone, Debug)]
struct Member {
    size: u64,
    sha256: String,
    /// sha256 of the decompressed content for gzip members, else equal to `sha256`.
    uncompressed: String,
    /// The content, for members up to [`KEEP_LIMIT`].
    content: Option<Vec<u8>>,
}

/// The scan of one archive: members by normalised path.
#[derive(Debug)]
struct Scan {
    path: PathBuf,
    members: BTreeMap<String, Member>,
    bytes: u64,
    sha256: String,
}

#[derive(Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct ImageConfig {
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

#[derive(Deserialize)]
struct OciIndex {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct OciManifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// A reader that hashes and counts what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

/// A writer that only hashes.
struct HashSink(Sha256);

// === impl HashingReader ===

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

// === impl HashSink ===

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
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
    let scan = scan(path)?;
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

/// Opens `path`, undoing an outer gzip if there is one.
fn open(path: &Path) -> Result<(Box<dyn Read>, bool), ArchiveError> {
    let io_err = |source| ArchiveError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic).map_err(io_err)?;
    drop(file);
    let file = BufReader::with_capacity(1 << 20, File::open(path).map_err(io_err)?);
    Ok((Box::new(file), n == 2 && magic == GZIP_MAGIC))
}

fn scan(path: &Path) -> Result<Scan, ArchiveError> {
    let (file, gzipped) = open(path)?;
    let mut counted = HashingReader {
        inner: file,
        hasher: Sha256::new(),
        count: 0,
    };
    let members = if gzipped {
        scan_tar(path, GzDecoder::new(&mut counted))?
    } else {
        scan_tar(path, &mut counted)?
    };
    // The tar reader stops at the end-of-archive blocks; hash whatever follows too.
    io::copy(&mut counted, &mut io::sink()).map_err(|source| ArchiveError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(Scan {
        path: path.to_owned(),
        members,
        bytes: counted.count,
        sha256: hex::encode(counted.hasher.finalize()),
    })
}

fn scan_tar(path: &Path, reader: impl Read) -> Result<BTreeMap<String, Member>, ArchiveError> {
    let truncated = |member: &str, error: io::Error| ArchiveError::Truncated {
        path: path.to_owned(),
        member: member.to_owned(),
        detail: error.to_string(),
    };
    let mut archive = tar::Archive::new(reader);
    let mut members = BTreeMap::new();
    let entries = archive.entries().map_err(|e| truncated("-", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| truncated("-", e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(|e| truncated("-", e))?;
        let name = normalise(&name.to_string_lossy());
        let member = read_member(&mut entry).map_err(|e| truncated(&name, e))?;
        members.insert(name, member);
    }
    Ok(members)
}

fn read_member(entry: &mut impl Read) -> io::Result<Member> {
    let mut raw = Sha256::new();
    let mut gunzip: Option<GzWriteDecoder<HashSink>> = None;
    let mut content = Some(Vec::new());
    let mut size = 0u64;
    let mut gzip_error = None;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = entry.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        if size == 0 && chunk.starts_with(&GZIP_MAGIC) {
            gunzip = Some(GzWriteDecoder::new(HashSink(Sha256::new())));
        }
        raw.update(chunk);
        if let Some(gz) = gunzip.as_mut() {
            // A corrupt gzip member is a digest mismatch, reported by `verify`, not a read error.
            if let Err(error) = gz.write_all(chunk) {
                gzip_error = Some(error.to_string());
                gunzip = None;
            }
        }
        size += n as u64;
        match content.as_mut() {
            Some(kept) if size <= KEEP_LIMIT => kept.extend_from_slice(chunk),
            _ => content = None,
        }
    }
    let sha256 = hex::encode(raw.finalize());
    let uncompressed = match (gunzip, gzip_error) {
        (_, Some(error)) => format!("<corrupt gzip: {error}>"),
        (Some(gz), None) => match gz.finish() {
            Ok(sink) => hex::encode(sink.0.finalize()),
            Err(error) => format!("<corrupt gzip: {error}>"),
        },
        (None, None) => sha256.clone(),
    };
    Ok(Member {
        size,
        sha256,
        uncompressed,
        content,
    })
}

/// `./a//b` → `a/b`.
fn normalise(name: &str) -> String {
    name.split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// `sha256:<hex>` → `<hex>`, lower case; None for another algorithm or a bad hex.
fn sha256_hex(digest: &str) -> Option<String> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

// === impl Scan ===

impl Scan {
    fn malformed(&self, member: &str, detail: impl Into<String>) -> ArchiveError {
        ArchiveError::Malformed {
            path: self.path.clone(),
            member: member.to_owned(),
            detail: detail.into(),
        }
    }

    fn digest_error(
        &self,
        member: &str,
        what: String,
        expected: &str,
        actual: &str,
    ) -> ArchiveError {
        ArchiveError::Digest {
            path: self.path.clone(),
            member: member.to_owned(),
            what,
            expected: expected.to_owned(),
            actual: actual.to_owned(),
        }
    }

    fn member(&self, name: &str, by: &str) -> Result<&Member, ArchiveError> {
        self.members
            .get(&normalise(name))
            .ok_or_else(|| ArchiveError::Missing {
                path: self.path.clone(),
                member: name.to_owned(),
                by: by.to_owned(),
            })
    }

    fn json<T: for<'de> Deserialize<'de>>(&self, name: &str, by: &str) -> Result<T, ArchiveError> {
        let member = self.member(name, by)?;
        let content = member
            .content
            .as_deref()
            .ok_or_else(|| self.malformed(name, "too large for a manifest or config"))?;
        serde_json::from_slice(content).map_err(|e| self.malformed(name, e.to_string()))
    }

    /// Every `blobs/sha256/<hex>` member hashes to `<hex>`.
    fn check_blob_names(&self) -> Result<(), ArchiveError> {
        for (name, member) in &self.members {
            if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                if member.sha256 != hex {
                    let what = "sha256 (the blob's name)".to_owned();
                    return Err(self.digest_error(name, what, hex, &member.sha256));
                }
            }
        }
        Ok(())
    }

    /// A `SHA256SUMS` member lists every other member, each with its hash.
    fn check_bundle_sums(&self) -> Result<(), ArchiveError> {
        let Some(member) = self.members.get(SHA256SUMS) else {
            return Ok(());
        };
        let text = member.content.as_deref().unwrap_or_default();
        let text = String::from_utf8_lossy(text);
        let sums = parse_sums(&text).map_err(|detail| self.malformed(SHA256SUMS, detail))?;
        for (name, member) in self.members.iter().filter(|(name, _)| *name != SHA256SUMS) {
            let expected = sums.get(name).ok_or_else(|| {
                self.malformed(SHA256SUMS, format!("does not list member `{name}`"))
            })?;
            if *expected != member.sha256 {
                let what = "sha256 (SHA256SUMS)".to_owned();
                return Err(self.digest_error(name, what, expected, &member.sha256));
            }
        }
        if let Some(name) = sums.keys().find(|name| !self.members.contains_key(*name)) {
            return Err(self
                .member(name, SHA256SUMS)
                .err()
                .unwrap_or_else(|| self.malformed(SHA256SUMS, format!("lists `{name}`"))));
        }
        Ok(())
    }

    fn docker_images(&self) -> Result<Vec<ArchiveImage>, ArchiveError> {
        let entries: Vec<DockerManifestEntry> = self.json("manifest.json", "the archive")?;
        entries
            .into_iter()
            .map(|entry| {
                let config = self.member(&entry.config, "manifest.json")?;
                // `<hex>.json` (old layout) or `blobs/sha256/<hex>` (newer): the name is the id.
                let base = entry.config.rsplit('/').next().unwrap_or_default();
                let named = base.strip_suffix(".json").unwrap_or(base);
                if named != config.sha256 {
                    let what = "sha256 (the image id in its name)".to_owned();
                    return Err(self.digest_error(&entry.config, what, named, &config.sha256));
                }
                let tags = entry.repo_tags.unwrap_or_default();
                self.image(&entry.config, &entry.layers, tags)
            })
            .collect()
    }

    fn oci_images(&self) -> Result<Vec<ArchiveImage>, ArchiveError> {
        let index: OciIndex = self.json("index.json", "the archive")?;
        let mut images = Vec::new();
        let mut pending: Vec<(Descriptor, String)> = index
            .manifests
            .into_iter()
            .map(|d| (d, "index.json".to_owned()))
            .collect();
        while let Some((descriptor, by)) = pending.pop() {
            let blob = self.blob(&descriptor, &by)?;
            if descriptor.media_type.contains("index")
                || descriptor.media_type.contains("manifest.list")
            {
                let nested: OciIndex = self.json(&blob, &by)?;
                pending.extend(nested.manifests.into_iter().map(|d| (d, blob.clone())));
                continue;
            }
            let manifest: OciManifest = self.json(&blob, &by)?;
            let config = self.blob(&manifest.config, &blob)?;
            let layers = manifest
                .layers
                .iter()
                .map(|layer| self.blob(layer, &blob))
                .collect::<Result<Vec<_>, _>>()?;
            let tags = descriptor
                .annotations
                .get("io.containerd.image.name")
                .or_else(|| {
                    descriptor
                        .annotations
                        .get("org.opencontainers.image.ref.name")
                })
                .filter(|name| name.contains(':') || name.contains('/'))
                .into_iter()
                .cloned()
                .collect();
            images.push(self.image(&config, &layers, tags)?);
        }
        Ok(images)
    }

    /// The member a descriptor points to, its size checked (its hash is checked by name).
    fn blob(&self, descriptor: &Descriptor, by: &str) -> Result<String, ArchiveError> {
        let hex = sha256_hex(&descriptor.digest).ok_or_else(|| {
            self.malformed(by, format!("unsupported digest `{}`", descriptor.digest))
        })?;
        let name = format!("blobs/sha256/{hex}");
        let member = self.member(&name, by)?;
        if member.size != descriptor.size {
            let what = "size".to_owned();
            let (expected, actual) = (descriptor.size.to_string(), member.size.to_string());
            return Err(self.digest_error(&name, what, &expected, &actual));
        }
        Ok(name)
    }

    /// Checks the config's `diff_ids` against the layers' uncompressed digests.
    fn image(
        &self,
        config: &str,
        layers: &[String],
        tags: Vec<String>,
    ) -> Result<ArchiveImage, ArchiveError> {
        let parsed: ImageConfig = self.json(config, "the manifest")?;
        let diff_ids = &parsed.rootfs.diff_ids;
        if diff_ids.len() != layers.len() {
            let detail = format!(
                "rootfs.diff_ids has {} entries but the manifest lists {} layers",
                diff_ids.len(),
                layers.len()
            );
            return Err(self.malformed(config, detail));
        }
        let mut size = 0;
        for (i, (layer, diff_id)) in layers.iter().zip(diff_ids).enumerate() {
            let member = self.member(layer, config)?;
            let expected = sha256_hex(diff_id)
                .ok_or_else(|| self.malformed(config, format!("diff_id {i} is `{diff_id}`")))?;
            if member.uncompressed != expected {
                let what = format!("uncompressed sha256 (rootfs.diff_ids[{i}])");
                return Err(self.digest_error(layer, what, &expected, &member.uncompressed));
            }
            size += member.size;
        }
        let id = format!("sha256:{}", self.member(config, "the manifest")?.sha256);
        Ok(ArchiveImage {
            id,
            tags,
            config: config.to_owned(),
            layers: layers.to_vec(),
            size,
        })
    }
}

#[cfg(test)]
mod tests;
