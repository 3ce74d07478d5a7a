//! `airlock images bundle`: save images from a daemon into one tar that carries a
//! `SHA256SUMS` member listing every other member, then verify the result like a load would.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::archive::{self, VerifiedArchive, SHA256SUMS};
use super::load::LoadError;
use crate::docker::DockerClient;

/// Writes `images` (as the daemon names them) from `client` to `out` with a `SHA256SUMS`
/// member, through temporary siblings renamed into place, and verifies the result.
pub async fn bundle(
    client: &DockerClient,
    images: &[String],
    out: &Path,
) -> Result<VerifiedArchive, LoadError> {
    let exported = sibling(out, ".export.partial");
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| LoadError::Io { path, source }
    };
    let mut file = tokio::fs::File::create(&exported)
        .await
        .map_err(io_err(&exported))?;
    let names: Vec<&str> = images.iter().map(String::as_str).collect();
    let mut stream = client.export_images(&names);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|source| LoadError::Docker {
            node: "source daemon".to_owned(),
            archive: out.to_owned(),
            source,
        })?;
        file.write_all(&chunk).await.map_err(io_err(&exported))?;
    }
    file.flush().await.map_err(io_err(&exported))?;
    drop(file);
    let (from, to) = (exported.clone(), out.to_owned());
    let result = tokio::task::spawn_blocking(move || {
        let partial = sibling(&to, ".partial");
        add_sums(&from, &partial)?;
        std::fs::rename(&partial, &to).map_err(io_err(&to))?;
        Ok::<_, LoadError>(archive::verify(&to)?)
    })
    .await
    .map_err(|error| LoadError::Task(error.to_string()));
    drop(std::fs::remove_file(&exported));
    result?
}

/// `out` with `suffix` appended to its file name.
fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    out.with_file_name(name)
}

/// Copies every member of the tar at `from` to `to`, hashing each, and appends `SHA256SUMS`.
fn add_sums(from: &Path, to: &Path) -> Result<(), LoadError> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| LoadError::Io { path, source }
    };
    let source = BufReader::new(File::open(from).map_err(io_err(from))?);
    let out = BufWriter::new(File::create(to).map_err(io_err(to))?);
    let mut builder = tar::Builder::new(out);
    let mut sums = String::new();
    let mut archive = tar::Archive::new(source);
    for entry in archive.entries().map_err(io_err(from))? {
        let entry = entry.map_err(io_err(from))?;
        let header = entry.header().clone();
        let name = entry
            .path()
            .map_err(io_err(from))?
            .to_string_lossy()
            .into_owned();
        let file = header.entry_type().is_file();
        let mut hashing = HashingEntry(entry, Sha256::new());
        builder.append(&header, &mut hashing).map_err(io_err(to))?;
        if file {
            let name = name.trim_start_matches("./");
            sums.push_str(&format!("{}  {name}\n", hex::encode(hashing.1.finalize())));
        }
    }
    let mut header = tar::Header::new_gnu();
    header.set_size(sums.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, SHA256SUMS, sums.as_bytes())
        .map_err(io_err(to))?;
    let mut out = builder.into_inner().map_err(io_err(to))?;
    out.flush().map_err(io_err(to))?;
    out.get_ref().sync_all().map_err(io_err(to))
}

struct HashingEntry<R>(R, Sha256);

impl<R: io::Read> io::Read for HashingEntry<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1.update(&buf[..n]);
        Ok(n)
    }
}
