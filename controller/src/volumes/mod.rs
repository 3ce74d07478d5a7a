//! Volumes: a user's named workspaces, each one Docker volume `airlock-vol-<uuid>` on the node.
//! Commands: `CreateVolume`, `ListVolumes`, `GetVolume`, `DeleteVolume` (the API) and
//! [`Volumes::sample`] (the usage sampler, run periodically and at a sandbox's end).
//!
//! Invariants:
//! - the row is reserved under the owner's volume quota in one transaction before Docker is
//!   asked; a Docker failure removes the row again;
//! - a delete refuses while any sandbox holds the volume (`volume_in_use`), removes the row
//!   first and then the Docker volume (a leftover is swept by the reconciler);
//! - every user reaches only their own volumes; another user's is missing like an unknown
//!   one; every change is audited.

mod sample;

pub use sample::run_sampler;

use tracing::warn;

use crate::accounts::quota::QuotaExceeded;
use crate::accounts::user::UserId;
use crate::audit::{status, Actor, AuditLog, Command, Entry};
use crate::config::VolumesConfig;
use crate::docker::spec::volume::volume_body;
use crate::docker::{DockerClient, DockerError};
use crate::sandbox::{FieldError, SandboxId};
use crate::store::{NewVolume, Store, StoreError, Volume, VolumeHolder};
use crate::volume::{QuotaMode, VolumeId, VolumeRequest};

/// The volumes service; cheap to clone.
#[derive(Clone, Debug)]
pub struct Volumes {
    store: Store,
    docker: DockerClient,
    audit: AuditLog,
    settings: VolumeSettings,
}

/// What the volumes service needs from the configuration.
#[derive(Clone, Debug)]
pub struct VolumeSettings {
    /// Sizes, quotas, the sampler.
    pub config: VolumesConfig,
    /// This node's name.
    pub node: String,
    /// How sizes are enforced on this node.
    pub quota_mode: QuotaMode,
}

/// `POST /v1/volumes`.
#[derive(Clone, Debug)]
pub struct CreateVolume {
    /// Name, size and labels.
    pub request: VolumeRequest,
}

/// `GET /v1/volumes`: the caller's volumes (an admin's: everybody's).
#[derive(Clone, Copy, Debug, Default)]
pub struct ListVolumes;

/// `GET /v1/volumes/{id}`.
#[derive(Clone, Copy, Debug)]
pub struct GetVolume {
    /// The volume.
    pub id: VolumeId,
}

/// `DELETE /v1/volumes/{id}`.
#[derive(Clone, Copy, Debug)]
pub struct DeleteVolume {
    /// The volume.
    pub id: VolumeId,
}

/// A volume with the sandboxes holding it now.
#[derive(Clone, Debug, PartialEq)]
pub struct VolumeView {
    /// The volume.
    pub volume: Volume,
    /// Who mounts it now.
    pub in_use_by: Vec<VolumeHolder>,
}

/// Why a volume command failed.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The request has invalid fields.
    #[error("invalid request ({} field error(s))", .0.len())]
    Invalid(Vec<FieldError>),
    /// No such volume, or the caller may not see it.
    #[error("no such volume")]
    NotFound,
    /// Volumes belong to an account.
    #[error("volumes belong to an account")]
    NoAccount,
    /// The owner already has a volume of that name.
    #[error("you already have a volume called `{0}`")]
    NameTaken(String),
    /// Sandboxes hold the volume.
    #[error("the volume is mounted by sandbox(es) {}", list(.0))]
    InUse(Vec<SandboxId>),
    /// A files write into the volume is in progress.
    #[error("a files write into the volume is in progress; retry when it ends")]
    Writing,
    /// The create would pass the owner's volume quota.
    #[error(transparent)]
    QuotaExceeded(QuotaExceeded),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[source] StoreError),
    /// Docker failed.
    #[error("docker: {0}")]
    Docker(#[from] DockerError),
}

fn list(ids: &[SandboxId]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<StoreError> for VolumeError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::QuotaExceeded(exceeded) => Self::QuotaExceeded(exceeded),
            StoreError::VolumeInUse { holders } => Self::InUse(holders),
            StoreError::VolumeWriting { .. } => Self::Writing,
            StoreError::NotFound => Self::NotFound,
            other => Self::Store(other),
        }
    }
}

// === impl Volumes ===

impl Volumes {
    /// The service over `store` and `docker`, filing rows to `audit`.
    pub fn new(
        store: Store,
        docker: DockerClient,
        audit: AuditLog,
        settings: VolumeSettings,
    ) -> Self {
        Self {
            store,
            docker,
            audit,
            settings,
        }
    }

    /// Runs `command` for `actor`.
    pub async fn run<C: Command<Self>>(
        &self,
        actor: &Actor,
        command: C,
    ) -> Result<C::Output, C::Error> {
        command.execute(self, actor).await
    }

    /// The settings.
    pub fn settings(&self) -> &VolumeSettings {
        &self.settings
    }

    async fn view(&self, volume: Volume) -> Result<VolumeView, VolumeError> {
        let in_use_by = self.store.volume_holders(volume.id).await?;
        Ok(VolumeView { volume, in_use_by })
    }
}

fn owner(actor: &Actor) -> Result<UserId, VolumeError> {
    actor.user().ok_or(VolumeError::NoAccount)
}

// === impl CreateVolume ===

impl Command<Volumes> for CreateVolume {
    type Output = VolumeView;
    type Error = VolumeError;

    async fn execute(self, volumes: &Volumes, actor: &Actor) -> Result<VolumeView, VolumeError> {
        let owner = owner(actor)?;
        let settings = &volumes.settings;
        let spec = self
            .request
            .validate(settings.config.max_volume_mb)
            .map_err(VolumeError::Invalid)?;
        let name = spec.name.to_string();
        let new = NewVolume {
            id: VolumeId::new(),
            owner,
            spec,
            node: settings.node.clone(),
            quota_mode: settings.quota_mode,
        };
        let created = volumes
            .store
            .create_volume_within_quota(new, settings.config.quota)
            .await
            .map_err(|error| match error {
                StoreError::Conflict { .. } => VolumeError::NameTaken(name),
                other => other.into(),
            })?;
        let body = volume_body(
            created.id,
            &created.docker_name,
            &created.node,
            created.spec.size_mb,
            created.quota_mode,
        );
        if let Err(error) = volumes.docker.create_volume(body).await {
            if let Err(undo) = volumes.store.delete_volume(actor.scope(), created.id).await {
                warn!(volume.id = %created.id, error = %undo, "Could not undo a volume row");
            }
            return Err(error.into());
        }
        let entry = Entry::new("POST /v1/volumes", status::CREATED).object(created.id);
        volumes.audit.record(actor, entry).await;
        Ok(VolumeView {
            volume: created,
            in_use_by: Vec::new(),
        })
    }
}

// === impl ListVolumes ===

impl Command<Volumes> for ListVolumes {
    type Output = Vec<VolumeView>;
    type Error = VolumeError;

    async fn execute(
        self,
        volumes: &Volumes,
        actor: &Actor,
    ) -> Result<Vec<VolumeView>, VolumeError> {
        let listed = volumes.store.list_volumes(actor.scope()).await?;
        let mut views = Vec::with_capacity(listed.len());
        for volume in listed {
            views.push(volumes.view(volume).await?);
        }
        Ok(views)
    }
}

// === impl GetVolume ===

impl Command<Volumes> for GetVolume {
    type Output = VolumeView;
    type Error = VolumeError;

    async fn execute(self, volumes: &Volumes, actor: &Actor) -> Result<VolumeView, VolumeError> {
        let volume = volumes.store.get_volume(actor.scope(), self.id).await?;
        volumes.view(volume.ok_or(VolumeError::NotFound)?).await
    }
}

// === impl DeleteVolume ===

impl Command<Volumes> for DeleteVolume {
    type Output = ();
    type Error = VolumeError;

    async fn execute(self, volumes: &Volumes, actor: &Actor) -> Result<(), VolumeError> {
        let deleted = volumes.store.delete_volume(actor.scope(), self.id).await?;
        let deleted = deleted.ok_or(VolumeError::NotFound)?;
        if let Err(error) = volumes.docker.remove_volume(&deleted.docker_name).await {
            warn!(volume.id = %deleted.id, %error, "Docker volume left for the sweep");
        }
        let entry = Entry::new("DELETE /v1/volumes/{id}", status::NO_CONTENT).object(self.id);
        volumes.audit.record(actor, entry).await;
        Ok(())
    }
}
