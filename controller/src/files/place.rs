//! Where a files command acts: the container (the running sandbox, or a fresh helper mounting
//! the volume), the container path, and who owns what is written. A helper is removed when
//! its [`Access`] is dropped (for a download: when the stream ends or the client goes).

use tracing::warn;

use super::{bad_path, Files, FilesError, Place};
use crate::audit::Actor;
use crate::docker::spec::files::FILES_MOUNT;
use crate::docker::DockerClient;
use crate::files::tar::Owner;
use crate::sandbox::path::ContainerPath;
use crate::sandbox::{Home, RootFs, SandboxState, HOME_DIR};

/// Read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Intent {
    Read,
    Write,
}

/// A resolved place.
#[derive(Debug)]
pub(super) struct Access {
    /// The container to call.
    pub container: String,
    /// The container path.
    pub path: String,
    /// The path as the caller gave it (for messages).
    pub shown: String,
    /// Who owns written entries.
    pub owner: Owner,
    /// A helper, removed when this is dropped.
    _helper: Option<Helper>,
}

#[derive(Debug)]
struct Helper {
    docker: DockerClient,
    name: String,
}

impl Drop for Helper {
    fn drop(&mut self) {
        let (docker, name) = (self.docker.clone(), std::mem::take(&mut self.name));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = docker.remove_files_helper(&name).await {
                    warn!(container = %name, %error, "Could not remove a files helper");
                }
            });
        }
    }
}

// === impl Files ===

impl Files {
    /// Resolves `place` and `path` for `actor`.
    pub(super) async fn access(
        &self,
        actor: &Actor,
        place: Place,
        path: &str,
        intent: Intent,
    ) -> Result<Access, FilesError> {
        let parsed = ContainerPath::parse(path).map_err(bad_path)?;
        match place {
            Place::Sandbox(id) => {
                let sandbox = self.store.get_sandbox(actor.scope(), id).await?;
                let sandbox = sandbox.ok_or(FilesError::NotFound("sandbox"))?;
                let container = match (&sandbox.container_id, sandbox.state) {
                    (Some(container), SandboxState::Running) => container.clone(),
                    (_, state) => return Err(FilesError::NotRunning(state.as_str().to_owned())),
                };
                let spec = &sandbox.spec;
                let mounts = spec.mounts();
                let on_volume = mounts.iter().find(|m| parsed.is_within(&m.target));
                let home_tmpfs = matches!(spec.home(), Some(Home::Tmpfs { .. }));
                let tmp = ContainerPath::parse("/tmp").ok();
                let home = ContainerPath::parse(HOME_DIR).ok();
                let on_tmpfs = on_volume.is_none()
                    && ((spec.rootfs() == RootFs::ReadOnly
                        && tmp.as_ref().is_some_and(|t| parsed.is_within(t)))
                        || (home_tmpfs && home.as_ref().is_some_and(|h| parsed.is_within(h))));
                if on_tmpfs {
                    return Err(FilesError::PathOnTmpfs(path.to_owned()));
                }
                if intent == Intent::Write && on_volume.is_some_and(|m| m.read_only) {
                    return Err(FilesError::PathNotWritable(path.to_owned()));
                }
                let run_as = spec.run_as();
                Ok(Access {
                    container,
                    path: path.to_owned(),
                    shown: path.to_owned(),
                    owner: Owner {
                        uid: run_as.uid,
                        gid: run_as.gid,
                    },
                    _helper: None,
                })
            }
            Place::Volume(id) => {
                let volume = self.store.get_volume(actor.scope(), id).await?;
                let volume = volume.ok_or(FilesError::NotFound("volume"))?;
                if intent == Intent::Write {
                    let holders = self.store.volume_holders(id).await?;
                    if let Some(writer) = holders.iter().find(|h| !h.read_only) {
                        return Err(FilesError::VolumeBusy(writer.sandbox));
                    }
                }
                let name = self
                    .docker
                    .create_files_helper(
                        id,
                        &volume.docker_name,
                        &self.settings.helper_image,
                        intent == Intent::Read,
                        &self.settings.node,
                    )
                    .await?;
                let inner = if parsed.is_root() {
                    FILES_MOUNT.to_owned()
                } else {
                    format!("{FILES_MOUNT}{}", parsed.as_str())
                };
                let owner = self.settings.volume_owner;
                Ok(Access {
                    container: name.clone(),
                    path: inner,
                    shown: path.to_owned(),
                    owner: Owner {
                        uid: owner.uid,
                        gid: owner.gid,
                    },
                    _helper: Some(Helper {
                        docker: self.docker.clone(),
                        name,
                    }),
                })
            }
        }
    }
}
