//! The bollard calls of an inspected sandbox's trust files: reading the image's system bundle
//! out of the created container, and filling the trust volume through a never-started helper
//! (bodies in [`crate::docker::spec::trust`]), and listing the node's trust volumes for the
//! reconciler's sweep.

use std::io::Read as _;

use futures_util::StreamExt;

use super::{DockerClient, DockerError, Removal};
use crate::docker::spec::trust::{
    trust_archive, trust_helper_body, trust_helper_name, trust_volume_body, trust_volume_name,
    TRUST_MOUNT,
};
use crate::docker::spec::LABEL_SANDBOX_ID;
use crate::sandbox::SandboxId;

/// How many symlinks [`DockerClient::read_small_file`] follows.
const MAX_LINKS: usize = 4;

// === impl DockerClient ===

impl DockerClient {
    /// The content of regular file `path` in `container` (created or running), following up
    /// to four symlinks; `None` when it is missing, not a regular file, or larger
    /// than `max` bytes.
    pub async fn read_small_file(
        &self,
        container: &str,
        path: &str,
        max: u64,
    ) -> Result<Option<Vec<u8>>, DockerError> {
        let mut path = path.to_owned();
        for _ in 0..=MAX_LINKS {
            let Some(stat) = self.stat_path(container, &path).await? else {
                return Ok(None);
            };
            if !stat.link_target.is_empty() {
                path = resolve_link(&path, &stat.link_target);
                continue;
            }
            if u64::try_from(stat.size).unwrap_or(u64::MAX) > max {
                return Ok(None);
            }
            let mut archive = Vec::new();
            let mut stream = self.download_archive(container, &path);
            while let Some(chunk) = stream.next().await {
                archive.extend_from_slice(&chunk?);
                if archive.len() as u64 > max + 64 * 1024 {
                    return Ok(None);
                }
            }
            return Ok(first_regular_file(&archive));
        }
        Ok(None)
    }

    /// Creates sandbox `id`'s (empty) trust volume, before the container that mounts it.
    pub async fn create_trust_volume(&self, id: SandboxId, node: &str) -> Result<(), DockerError> {
        self.create_volume(trust_volume_body(id, node)).await
    }

    /// Writes `ca.pem` and `bundle.pem` into sandbox `id`'s trust volume through a helper
    /// made from `image` (already on the node), which is removed again.
    pub async fn fill_trust_volume(
        &self,
        id: SandboxId,
        node: &str,
        image: &str,
        ca_pem: &[u8],
        bundle: &[u8],
    ) -> Result<(), DockerError> {
        let helper = trust_helper_name(id);
        self.create_container(&helper, trust_helper_body(id, node, image))
            .await?;
        let archive = trust_archive(ca_pem, bundle)
            .map_err(|_io| DockerError::Unexpected("trust archive"))?;
        let filled = self.upload_tar(&helper, TRUST_MOUNT, archive).await;
        let removed = self.remove_container(&helper, Removal::Force).await;
        filled.and(removed)
    }

    /// The trust volumes on `node`: every volume labelled for the node and a sandbox, with
    /// that sandbox's id (volumes whose label does not parse are left out).
    pub async fn node_trust_volumes(
        &self,
        node: &str,
    ) -> Result<Vec<(String, SandboxId)>, DockerError> {
        let listed = self.node_volumes_with(node, LABEL_SANDBOX_ID).await?;
        Ok(listed
            .into_iter()
            .filter_map(|(name, id)| Some((name, id.parse().ok()?)))
            .collect())
    }

    /// Removes sandbox `id`'s trust volume (a missing one counts as removed).
    pub async fn remove_trust_volume(&self, id: SandboxId) -> Result<(), DockerError> {
        self.remove_volume(&trust_volume_name(id)).await
    }
}

/// `target` of a symlink at `path`, as an absolute path.
fn resolve_link(path: &str, target: &str) -> String {
    if target.starts_with('/') {
        return target.to_owned();
    }
    let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
    format!("{dir}/{target}")
}

/// The content of the archive's first entry when it is a regular file.
fn first_regular_file(archive: &[u8]) -> Option<Vec<u8>> {
    let mut read = tar::Archive::new(archive);
    let mut entry = read.entries().ok()?.next()?.ok()?;
    if entry.header().entry_type() != tar::EntryType::Regular {
        return None;
    }
    let mut data = Vec::new();
    entry.read_to_end(&mut data).ok()?;
    Some(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_links_resolve_against_their_directory() {
        let link = resolve_link("/etc/ssl/certs/ca-certificates.crt", "../x.pem");
        assert_eq!(link, "/etc/ssl/certs/../x.pem");
        assert_eq!(resolve_link("/etc/a", "/usr/b"), "/usr/b");
    }

    #[test]
    fn only_a_regular_first_entry_is_read() {
        let archive = trust_archive(b"CA", b"B").unwrap();
        // The first entry is the `tls` directory.
        assert_eq!(first_regular_file(&archive), None);
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_cksum();
        builder.append_data(&mut header, "f", &b"abc"[..]).unwrap();
        let archive = builder.into_inner().unwrap();
        assert_eq!(first_regular_file(&archive), Some(b"abc".to_vec()));
    }
}
