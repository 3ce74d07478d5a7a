//! Where a files command acts: the container (the running sandbox, or a fresh helper mounting
//! the volume), the container path, and who owns what is written. A helper is removed when
//! its [`Access`] is dropped (for a download: when the stream ends or the client goes).

use std::time::Duration;

use tracing::warn;

use super::{bad_path, Files, FilesError, Place};
use crate::audit::Actor;
use crate::docker::spec::files::FILES_MOUNT;
use crate::docker::spec::trust::TRUST_DIR;
use crate::docker::DockerClient;
use crate::files::tar::Owner;
use crate::sandbox::path::ContainerPath;
use crate::sandbox::{Home, RootFs, SandboxState, HOME_DIR};
use crate::store::{LeaseId, Store, StoreError};
use crate::volume::VolumeId;

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
    /// A helper, removed when this is dropped.
    _helper: Option<Helper>,
}

/// The longest a volume write holds its lease when its release is lost.
const WRITE_LEASE_TTL: Duration = Duration::from_secs(3600);

/// A held volume write lease, released when dropped.
#[derive(Debug)]
struct Lease {
    store: Store,
    id: LeaseId,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let (store, id) = (self.store.clone(), self.id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = store.release_volume_write_lease(id).await {
                    warn!(%error, "Could not release a volume write lease");
                }
            });
        }
    }
}

#[derive(Debug)]
struct Helper {
    docker: DockerClient,
    name: String,
    /// A write's lease, released once the helper is gone.
    lease: Option<Lease>,
}

impl Drop for Helper {
    fn drop(&mut self) {
        let (docker, name) = (self.docker.clone(), std::mem::take(&mut self.name));
        let lease = self.lease.take();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = docker.remove_files_helper(&name).await {
                    warn!(container = %name, %error, "Could not remove a files helper");
                }
                drop(lease);
            });
        }
    }
}

/// A place resolved against the store (who may act, where, as whom) before any Docker call:
/// [`Resolved::open`] makes the volume's helper, so a caller can overlap that with other work.
#[derive(Debug)]
pub(super) struct Resolved {
    /// The running sandbox's container, or the volume to mount in a helper.
    target: Target,
    path: String,
    shown: String,
    /// Who owns written entries.
    pub owner: Owner,
    read_only: bool,
    lease: Option<Lease>,
}

#[derive(Debug)]
enum Target {
    Container(String),
    Volume { id: VolumeId, docker_name: String },
}

// === impl Files ===

impl Files {
    /// Resolves `place` and `path` for `actor` and opens it.
    pub(super) async fn access(
        &self,
        actor: &Actor,
        place: Place,
        path: &str,
        intent: Intent,
    ) -> Result<Access, FilesError> {
        self.resolve(actor, place, path, intent)
            .await?
            .open(self)
            .await
    }

    /// Checks `place` and `path` for `actor` in the store; no Docker call.
    pub(super) async fn resolve(
        &self,
        actor: &Actor,
        place: Place,
        path: &str,
        intent: Intent,
    ) -> Result<Resolved, FilesError> {
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
                let trust = ContainerPath::parse(TRUST_DIR).ok();
                let on_tmpfs = on_volume.is_none()
                    && ((spec.rootfs() == RootFs::ReadOnly
                        && tmp.as_ref().is_some_and(|t| parsed.is_within(t)))
                        || (home_tmpfs && home.as_ref().is_some_and(|h| parsed.is_within(h)))
                        || trust.as_ref().is_some_and(|t| parsed.is_within(t)));
                if on_tmpfs {
                    return Err(FilesError::PathOnTmpfs(path.to_owned()));
                }
                if intent == Intent::Write && on_volume.is_some_and(|m| m.read_only) {
                    return Err(FilesError::PathNotWritable(path.to_owned()));
                }
                let run_as = spec.run_as();
                Ok(Resolved {
                    target: Target::Container(container),
                    path: path.to_owned(),
                    shown: path.to_owned(),
                    owner: Owner {
                        uid: run_as.uid,
                        gid: run_as.gid,
                    },
                    read_only: intent == Intent::Read,
                    lease: None,
                })
            }
            Place::Volume(id) => {
                let volume = self.store.get_volume(actor.scope(), id).await?;
                let volume = volume.ok_or(FilesError::NotFound("volume"))?;
                // A write holds a lease until its `Access` goes: no sandbox mounts the volume
                // read-write meanwhile, and none may hold it now.
                let lease = match intent {
                    Intent::Read => None,
                    Intent::Write => {
                        let lease = self
                            .store
                            .take_volume_write_lease(id, WRITE_LEASE_TTL)
                            .await
                            .map_err(|error| match error {
                                StoreError::VolumeHeld { holder, .. } => {
                                    FilesError::VolumeBusy(holder)
                                }
                                StoreError::NotFound => FilesError::NotFound("volume"),
                                other => FilesError::Store(other),
                            })?;
                        Some(Lease {
                            store: self.store.clone(),
                            id: lease,
                        })
                    }
                };
                let inner = if parsed.is_root() {
                    FILES_MOUNT.to_owned()
                } else {
                    format!("{FILES_MOUNT}{}", parsed.as_str())
                };
                let owner = self.settings.volume_owner;
                Ok(Resolved {
                    target: Target::Volume {
                        id,
                        docker_name: volume.docker_name,
                    },
                    path: inner,
                    shown: path.to_owned(),
                    owner: Owner {
                        uid: owner.uid,
                        gid: owner.gid,
                    },
                    read_only: intent == Intent::Read,
                    lease,
                })
            }
        }
    }
}

// === impl Resolved ===

impl Resolved {
    /// The container to act on: the sandbox's, or a fresh helper mounting the volume.
    pub(super) async fn open(self, files: &Files) -> Result<Access, FilesError> {
        let (container, helper) = match self.target {
            Target::Container(container) => (container, None),
            Target::Volume { id, docker_name } => {
                let name = files
                    .docker
                    .create_files_helper(
                        id,
                        &docker_name,
                        &files.settings.helper_image,
                        self.read_only,
                        &files.settings.node,
                    )
                    .await?;
                let helper = Helper {
                    docker: files.docker.clone(),
                    name: name.clone(),
                    lease: self.lease,
                };
                (name, Some(helper))
            }
        };
        Ok(Access {
            container,
            path: self.path,
            shown: self.shown,
            _helper: helper,
        })
    }
}
