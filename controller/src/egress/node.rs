//! Node bootstrap: the proxy image on the node (loaded from the configured bundle when
//! missing), the egress bridge, the hardened proxy container with its admin TLS files, and a
//! health check over mTLS.
//!
//! The TLS files go into a volume (the proxy's root filesystem is read-only) through Docker's
//! archive upload before each start, owned by the proxy's user, the key 0400.

use std::time::Duration;

use airlock_wire::Health;
use futures_util::stream;
use tokio::time::Instant;
use tracing::info;

use super::{EgressError, EgressPlane};
use crate::docker::spec::egress::{
    egress_container_body, egress_network_body, EGRESS_CERTS_DIR, EGRESS_CERTS_VOLUME,
    EGRESS_CONTAINER, EGRESS_NETWORK, UPSTREAM_CA_FILE,
};

/// How long a (re)started proxy may take to answer its health check.
pub const HEALTH_DEADLINE: Duration = Duration::from_secs(30);
/// How long a running proxy that does not answer gets before it is restarted.
const SETTLE: Duration = Duration::from_secs(5);
/// Time between health polls.
const HEALTH_POLL: Duration = Duration::from_millis(100);
/// The proxy's UID and GID (`images/egress`).
const EGRESS_UID: u64 = 65532;

// === impl EgressPlane ===

impl EgressPlane {
    /// Brings the proxy up on the node and waits until it answers.
    pub(super) async fn bootstrap_node(&self) -> Result<Health, EgressError> {
        let started = Instant::now();
        self.ensure_image().await?;
        self.ensure_network().await?;
        let docker = &self.inner.docker;
        match docker.container_running(EGRESS_CONTAINER).await? {
            None => self.create_proxy().await?,
            Some((true, _image)) => {
                if let Ok(health) = self.wait_healthy(SETTLE).await {
                    return Ok(health);
                }
                // Running but not answering us: stale TLS files (a new data dir) or stuck.
                self.upload_certs().await?;
                docker.restart(EGRESS_CONTAINER).await?;
            }
            Some((false, _image)) => {
                self.upload_certs().await?;
                docker.start(EGRESS_CONTAINER).await?;
            }
        }
        let health = self.wait_healthy(HEALTH_DEADLINE).await?;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        info!(egress.boot_id = %health.boot_id, duration_ms, "Egress proxy up");
        Ok(health)
    }

    async fn ensure_image(&self) -> Result<(), EgressError> {
        let docker = &self.inner.docker;
        let image = &self.inner.placement.image;
        if docker.image_exists(image).await? {
            return Ok(());
        }
        let Some(path) = &self.inner.bundle else {
            return Err(EgressError::ImageMissing(image.clone()));
        };
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| EgressError::Bundle {
                path: path.clone(),
                source,
            })?;
        let body = stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(bytes))]);
        docker.load_archive(body).await?;
        if docker.image_exists(image).await? {
            Ok(())
        } else {
            Err(EgressError::ImageMissing(image.clone()))
        }
    }

    async fn ensure_network(&self) -> Result<(), EgressError> {
        let docker = &self.inner.docker;
        if docker.network_exists(EGRESS_NETWORK).await? {
            return Ok(());
        }
        match docker
            .create_network(egress_network_body(&self.inner.placement))
            .await
        {
            Ok(_id) => Ok(()),
            // Another bootstrap created it meanwhile.
            Err(error) if error.is_conflict() => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    async fn create_proxy(&self) -> Result<(), EgressError> {
        let docker = &self.inner.docker;
        docker.ensure_volume(EGRESS_CERTS_VOLUME).await?;
        let body = egress_container_body(&self.inner.placement);
        docker.create_container(EGRESS_CONTAINER, body).await?;
        self.upload_certs().await?;
        docker.start(EGRESS_CONTAINER).await?;
        Ok(())
    }

    /// Uploads `server/{ca,cert,key}.pem` into the proxy's certificate volume.
    async fn upload_certs(&self) -> Result<(), EgressError> {
        let tar = certs_tar(&self.inner.server_certs, self.inner.upstream_ca.as_deref())?;
        self.inner
            .docker
            .upload_tar(EGRESS_CONTAINER, EGRESS_CERTS_DIR, tar)
            .await?;
        Ok(())
    }

    async fn wait_healthy(&self, limit: Duration) -> Result<Health, EgressError> {
        let deadline = Instant::now() + limit;
        loop {
            match self.inner.admin.health().await {
                Ok(health) => return Ok(health),
                Err(error) if Instant::now() >= deadline => {
                    return Err(EgressError::Unhealthy(error.to_string()))
                }
                Err(_not_yet) => tokio::time::sleep(HEALTH_POLL).await,
            }
        }
    }
}

/// A tar of the proxy's admin TLS files, owned by its user; the key readable by it alone.
/// With `upstream_ca`, that file goes along as [`UPSTREAM_CA_FILE`].
fn certs_tar(
    dir: &std::path::Path,
    upstream_ca: Option<&std::path::Path>,
) -> Result<Vec<u8>, EgressError> {
    let mut files: Vec<(&str, std::path::PathBuf, u32)> =
        [("ca.pem", 0o444), ("cert.pem", 0o444), ("key.pem", 0o400)]
            .into_iter()
            .map(|(name, mode)| (name, dir.join(name), mode))
            .collect();
    if let Some(path) = upstream_ca {
        files.push((UPSTREAM_CA_FILE, path.to_owned(), 0o444));
    }
    let mut builder = tar::Builder::new(Vec::new());
    for (name, path, mode) in files {
        let tls = |e: std::io::Error| EgressError::Tls(format!("{}: {e}", path.display()));
        let data = std::fs::read(&path).map_err(tls)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(u64::try_from(data.len()).unwrap_or(u64::MAX));
        header.set_mode(mode);
        header.set_uid(EGRESS_UID);
        header.set_gid(EGRESS_UID);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder
            .append_data(&mut header, name, data.as_slice())
            .map_err(tls)?;
    }
    builder
        .into_inner()
        .map_err(|e| EgressError::Tls(format!("{}: {e}", dir.display())))
}
