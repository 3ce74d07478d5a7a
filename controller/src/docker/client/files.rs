//! The bollard calls of the files API: the archive endpoints (upload, download, stat) on a
//! running sandbox or on a never-started files helper that mounts a volume (its body is
//! [`crate::docker::spec::files`]).

use std::io;

use bollard::body_try_stream;
use bollard::query_parameters::{
    ContainerArchiveInfoOptions, DownloadFromContainerOptions, UploadToContainerOptions,
};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};

use super::{DockerClient, DockerError, Removal};
use crate::docker::spec::files::{files_helper_body, files_helper_name};
use crate::volume::VolumeId;

/// What Docker's archive stat reports about one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathStat {
    /// The base name.
    pub name: String,
    /// Bytes.
    pub size: i64,
    /// Go `os.FileMode` bits (type bits high, permissions low).
    pub mode: u32,
    /// RFC 3339, as Docker formats it.
    pub mtime: Option<String>,
    /// The link target, for a symlink.
    pub link_target: String,
}

/// A download: the archive's bytes as Docker sends them.
pub type ArchiveStream = BoxStream<'static, Result<Bytes, DockerError>>;

// === impl DockerClient ===

impl DockerClient {
    /// Extracts the tar `archive` into directory `path` of `container`, refusing to replace a
    /// directory with a non-directory or the reverse (`noOverwriteDirNonDir`). An error item
    /// aborts the request, so Docker sees a broken archive.
    pub async fn upload_archive(
        &self,
        container: &str,
        path: &str,
        archive: impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static,
    ) -> Result<(), DockerError> {
        let options = UploadToContainerOptions {
            path: path.to_owned(),
            no_overwrite_dir_non_dir: Some("true".to_owned()),
            copy_uidgid: None,
        };
        let body = body_try_stream(archive);
        self.bollard()
            .upload_to_container(container, Some(options), body)
            .await?;
        Ok(())
    }

    /// Streams `path` of `container` as a tar.
    pub fn download_archive(&self, container: &str, path: &str) -> ArchiveStream {
        let options = DownloadFromContainerOptions {
            path: path.to_owned(),
        };
        self.bollard()
            .download_from_container(container, Some(options))
            .map(|chunk| chunk.map_err(DockerError::from))
            .boxed()
    }

    /// Stats `path` of `container`; `None` when it does not exist.
    pub async fn stat_path(
        &self,
        container: &str,
        path: &str,
    ) -> Result<Option<PathStat>, DockerError> {
        let options = ContainerArchiveInfoOptions {
            path: path.to_owned(),
        };
        match self
            .bollard()
            .get_container_archive_info(container, Some(options))
            .await
            .map_err(DockerError::from)
        {
            Ok(stat) => Ok(Some(PathStat {
                name: stat.name,
                size: stat.size,
                mode: stat.file_mode,
                mtime: stat.modification_time,
                link_target: stat.link_target,
            })),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Creates (never starts) the files helper of volume `id` on `node`; returns its name.
    pub async fn create_files_helper(
        &self,
        id: VolumeId,
        docker_name: &str,
        image: &str,
        read_only: bool,
        node: &str,
    ) -> Result<String, DockerError> {
        let run = uuid::Uuid::new_v4().simple().to_string();
        let name = files_helper_name(id, &run[..12]);
        let body = files_helper_body(id, docker_name, image, read_only, node);
        self.create_container(&name, body).await?;
        Ok(name)
    }

    /// Removes a files helper (a missing one counts as removed).
    pub async fn remove_files_helper(&self, name: &str) -> Result<(), DockerError> {
        self.remove_container(name, Removal::Force).await
    }
}
