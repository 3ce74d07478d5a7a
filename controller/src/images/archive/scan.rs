//! The archive's one streaming pass ([`scan`]): every member's size and hashes (raw, and
//! decompressed for gzip members), small members kept to be parsed; and the checks
//! [`super::verify`] runs over what the pass learnt ([`Scan`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzDecoder as GzWriteDecoder;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{parse_sums, ArchiveError, ArchiveImage, GZIP_MAGIC, KEEP_LIMIT, SHA256SUMS};

/// What the scan learnt about one member.
#[derive(Clone, Debug)]
pub(super) struct Member {
    size: u64,
    sha256: String,
    /// sha256 of the decompressed content for gzip members, else equal to `sha256`.
    uncompressed: String,
    /// The content, for members up to [`KEEP_LIMIT`].
    content: Option<Vec<u8>>,
}

/// The scan of one archive: members by normalised path.
#[derive(Debug)]
pub(super) struct Scan {
    pub(super) path: PathBuf,
    pub(super) members: BTreeMap<String, Member>,
    pub(super) bytes: u64,
    pub(super) sha256: String,
}

#[derive(Deserialize)]
pub(super) struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

#[derive(Deserialize)]
pub(super) struct ImageConfig {
    rootfs: RootFs,
}

#[derive(Deserialize)]
pub(super) struct RootFs {
    diff_ids: Vec<String>,
}

#[derive(Deserialize)]
pub(super) struct OciIndex {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
pub(super) struct OciManifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
pub(super) struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// A reader that hashes and counts what passes through it.
pub(super) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

/// A writer that only hashes.
pub(super) struct HashSink(Sha256);

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

/// Opens `path`, undoing an outer gzip if there is one.
pub(super) fn open(path: &Path) -> Result<(Box<dyn Read>, bool), ArchiveError> {
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

pub(super) fn scan(path: &Path) -> Result<Scan, ArchiveError> {
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

pub(super) fn scan_tar(
    path: &Path,
    reader: impl Read,
) -> Result<BTreeMap<String, Member>, ArchiveError> {
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

pub(super) fn read_member(entry: &mut impl Read) -> io::Result<Member> {
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
pub(super) fn normalise(name: &str) -> String {
    name.split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// `sha256:<hex>` → `<hex>`, lower case; None for another algorithm or a bad hex.
pub(super) fn sha256_hex(digest: &str) -> Option<String> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

// === impl Scan ===

impl Scan {
    pub(super) fn malformed(&self, member: &str, detail: impl Into<String>) -> ArchiveError {
        ArchiveError::Malformed {
            path: self.path.clone(),
            member: member.to_owned(),
            detail: detail.into(),
        }
    }

    pub(super) fn digest_error(
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

    pub(super) fn member(&self, name: &str, by: &str) -> Result<&Member, ArchiveError> {
        self.members
            .get(&normalise(name))
            .ok_or_else(|| ArchiveError::Missing {
                path: self.path.clone(),
                member: name.to_owned(),
                by: by.to_owned(),
            })
    }

    pub(super) fn json<T: for<'de> Deserialize<'de>>(
        &self,
        name: &str,
        by: &str,
    ) -> Result<T, ArchiveError> {
        let member = self.member(name, by)?;
        let content = member
            .content
            .as_deref()
            .ok_or_else(|| self.malformed(name, "too large for a manifest or config"))?;
        serde_json::from_slice(content).map_err(|e| self.malformed(name, e.to_string()))
    }

    /// Every `blobs/sha256/<hex>` member hashes to `<hex>`.
    pub(super) fn check_blob_names(&self) -> Result<(), ArchiveError> {
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
    pub(super) fn check_bundle_sums(&self) -> Result<(), ArchiveError> {
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

    pub(super) fn docker_images(&self) -> Result<Vec<ArchiveImage>, ArchiveError> {
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

    pub(super) fn oci_images(&self) -> Result<Vec<ArchiveImage>, ArchiveError> {
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
    pub(super) fn blob(&self, descriptor: &Descriptor, by: &str) -> Result<String, ArchiveError> {
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
    pub(super) fn image(
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
