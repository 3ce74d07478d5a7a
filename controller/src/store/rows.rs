//! Store rows: what the tables hold, and their conversion to and from domain types. Rows
//! derive sqlx and serde traits; domain types do not.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Sandbox, StoreError, User};
use crate::accounts::user::UserId;
use crate::folder::{FolderId, FolderName};
use crate::sandbox::mounts::{BoundFolder, BoundVolume, FolderMount, Mount};
use crate::sandbox::path::ContainerPath;
use crate::sandbox::subnet::SandboxSubnet;
use crate::sandbox::{
    Cpus, EndKind, EndReason, Home, ImageRef, Limits, RootFs, RunAs, SandboxId, SandboxSpec,
};
use crate::volume::{VolumeId, VolumeName};

/// The `spec` column: a [`SandboxSpec`] as JSON. Version 1; new fields must be optional.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct SpecDoc {
    image: String,
    cmd: Vec<String>,
    env: Vec<(String, String)>,
    cpus_milli: u32,
    memory_mb: u64,
    pids: u64,
    disk_mb: Option<u64>,
    timeout_ms: u64,
    idle_timeout_ms: Option<u64>,
    labels: BTreeMap<String, String>,
    read_only_rootfs: bool,
    uid: u32,
    gid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    workdir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    home_tmpfs_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    home_volume: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    mounts: Vec<MountDoc>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    folders: Vec<FolderMountDoc>,
}

/// One host folder mount in the `spec` column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct FolderMountDoc {
    folder: String,
    target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    read_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bound: Option<BoundFolderDoc>,
}

/// The bound folder of a [`FolderMountDoc`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct BoundFolderDoc {
    folder_id: String,
    realpath: String,
    read_only: bool,
}

/// One mount in the `spec` column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct MountDoc {
    volume: String,
    target: String,
    read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    volume_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    docker_name: Option<String>,
}

/// One `sandboxes` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SandboxRow {
    id: Uuid,
    owner_id: Uuid,
    spec: Json<SpecDoc>,
    desired_state: String,
    observed_state: String,
    end_reason: Option<String>,
    exit_code: Option<i64>,
    end_message: Option<String>,
    generation: i64,
    node: Option<String>,
    network_name: Option<String>,
    subnet: Option<String>,
    container_id: Option<String>,
    idempotency_key: Option<String>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    ended_at: Option<OffsetDateTime>,
}

/// One `users` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UserRow {
    id: Uuid,
    email: String,
    display_name: String,
    role: String,
    disabled: bool,
    created_at: OffsetDateTime,
}

// === impl SpecDoc ===

impl SpecDoc {
    pub(crate) fn from_spec(spec: &SandboxSpec) -> Self {
        let limits = spec.limits();
        Self {
            image: spec.image().as_str().to_owned(),
            cmd: spec.cmd().to_vec(),
            env: spec
                .env()
                .iter()
                .map(|v| (v.name().to_owned(), v.value().to_owned()))
                .collect(),
            cpus_milli: limits.cpus.millis(),
            memory_mb: limits.memory_mb,
            pids: limits.pids,
            disk_mb: limits.disk_mb,
            timeout_ms: millis(spec.timeout()),
            idle_timeout_ms: spec.idle_timeout().map(millis),
            labels: spec.labels().clone(),
            read_only_rootfs: spec.rootfs() == RootFs::ReadOnly,
            uid: spec.run_as().uid,
            gid: spec.run_as().gid,
            workdir: spec.workdir().map(|w| w.as_str().to_owned()),
            home_tmpfs_mb: match spec.home() {
                Some(Home::Tmpfs { size_mb }) => Some(size_mb),
                _ => None,
            },
            home_volume: spec.home() == Some(Home::Volume),
            mounts: spec.mounts().iter().map(MountDoc::from_mount).collect(),
            folders: spec
                .folders()
                .iter()
                .map(FolderMountDoc::from_mount)
                .collect(),
        }
    }

    fn into_spec(self) -> Result<SandboxSpec, StoreError> {
        let image = ImageRef::parse(&self.image).map_err(|p| StoreError::corrupt("spec", p))?;
        let limits = Limits {
            cpus: Cpus::from_millis(self.cpus_milli),
            memory_mb: self.memory_mb,
            pids: self.pids,
            disk_mb: self.disk_mb,
        };
        let rootfs = if self.read_only_rootfs {
            RootFs::ReadOnly
        } else {
            RootFs::Writable
        };
        let workdir = self
            .workdir
            .as_deref()
            .map(ContainerPath::parse)
            .transpose()
            .map_err(|p| StoreError::corrupt("spec", format!("workdir: {p:?}")))?;
        let home = match (self.home_volume, self.home_tmpfs_mb) {
            (true, _) => Some(Home::Volume),
            (false, size) => size.map(|size_mb| Home::Tmpfs { size_mb }),
        };
        let mounts = self
            .mounts
            .into_iter()
            .map(MountDoc::into_mount)
            .collect::<Result<Vec<_>, _>>()?;
        let folders = self
            .folders
            .into_iter()
            .map(FolderMountDoc::into_mount)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SandboxSpec::from_stored(
            image,
            self.cmd,
            self.env,
            limits,
            Duration::from_millis(self.timeout_ms),
            self.idle_timeout_ms.map(Duration::from_millis),
            self.labels,
            rootfs,
            RunAs {
                uid: self.uid,
                gid: self.gid,
            },
        )
        .with_stored_run(workdir, home, mounts)
        .with_stored_folders(folders))
    }
}

// === impl MountDoc ===

impl MountDoc {
    fn from_mount(mount: &Mount) -> Self {
        Self {
            volume: mount.volume.to_string(),
            target: mount.target.to_string(),
            read_only: mount.read_only,
            volume_id: mount.bound.as_ref().map(|b| b.id.to_string()),
            docker_name: mount.bound.as_ref().map(|b| b.docker_name.clone()),
        }
    }

    fn into_mount(self) -> Result<Mount, StoreError> {
        let corrupt = |what: &str| StoreError::corrupt("spec", format!("mounts: bad {what}"));
        let bound = match (self.volume_id, self.docker_name) {
            (Some(id), Some(docker_name)) => Some(BoundVolume {
                id: id
                    .parse::<VolumeId>()
                    .map_err(|_bad| corrupt("volume_id"))?,
                docker_name,
            }),
            _ => None,
        };
        Ok(Mount {
            volume: VolumeName::parse(&self.volume).map_err(|_bad| corrupt("volume"))?,
            target: ContainerPath::parse(&self.target).map_err(|_bad| corrupt("target"))?,
            read_only: self.read_only,
            bound,
        })
    }
}

// === impl FolderMountDoc ===

impl FolderMountDoc {
    fn from_mount(mount: &FolderMount) -> Self {
        Self {
            folder: mount.folder.to_string(),
            target: mount.target.to_string(),
            read_only: mount.read_only,
            bound: mount.bound.as_ref().map(|b| BoundFolderDoc {
                folder_id: b.id.to_string(),
                realpath: b.realpath.clone(),
                read_only: b.read_only,
            }),
        }
    }

    fn into_mount(self) -> Result<FolderMount, StoreError> {
        let corrupt = |what: &str| StoreError::corrupt("spec", format!("folders: bad {what}"));
        let bound = match self.bound {
            Some(b) => Some(BoundFolder {
                id: b
                    .folder_id
                    .parse::<FolderId>()
                    .map_err(|_bad| corrupt("folder_id"))?,
                realpath: b.realpath,
                read_only: b.read_only,
            }),
            None => None,
        };
        Ok(FolderMount {
            folder: FolderName::parse(&self.folder).map_err(|_bad| corrupt("folder"))?,
            target: ContainerPath::parse(&self.target).map_err(|_bad| corrupt("target"))?,
            read_only: self.read_only,
            bound,
        })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn parse<T: FromStr>(column: &'static str, value: &str) -> Result<T, StoreError>
where
    T::Err: ToString,
{
    value.parse().map_err(|e| StoreError::corrupt(column, e))
}

// === impl SpecDoc (quotas) ===

impl SpecDoc {
    /// Memory limit in MiB (what the memory quota counts).
    pub(crate) fn memory_mb(&self) -> u64 {
        self.memory_mb
    }

    /// CPU limit in thousandths (what the CPU quota counts).
    pub(crate) fn cpus_milli(&self) -> u64 {
        u64::from(self.cpus_milli)
    }
}

// === impl SandboxRow ===

impl SandboxRow {
    pub(crate) fn spec_doc(&self) -> &SpecDoc {
        &self.spec.0
    }

    pub(crate) fn into_sandbox(self) -> Result<Sandbox, StoreError> {
        let end_reason = match self.end_reason.as_deref() {
            None => None,
            Some(kind) => {
                let kind: EndKind = parse("end_reason", kind)?;
                let reason = EndReason::from_parts(kind, self.exit_code, self.end_message)
                    .map_err(|e| StoreError::corrupt("end_reason", e))?;
                Some(reason)
            }
        };
        let subnet = match self.subnet.as_deref() {
            None => None,
            Some(text) => {
                let net: Ipv4Net = parse("subnet", text)?;
                let subnet = SandboxSubnet::new(net)
                    .ok_or_else(|| StoreError::corrupt("subnet", "not a /29"))?;
                Some(subnet)
            }
        };
        Ok(Sandbox {
            id: SandboxId::from_uuid(self.id),
            owner: UserId::from_uuid(self.owner_id),
            spec: self.spec.0.into_spec()?,
            desired: parse("desired_state", &self.desired_state)?,
            state: parse("observed_state", &self.observed_state)?,
            end_reason,
            generation: self.generation,
            node: self.node,
            network_name: self.network_name,
            subnet,
            container_id: self.container_id,
            idempotency_key: self.idempotency_key,
            created_at: self.created_at,
            updated_at: self.updated_at,
            ended_at: self.ended_at,
        })
    }
}

// === impl UserRow ===

impl UserRow {
    pub(crate) fn into_user(self) -> Result<User, StoreError> {
        Ok(User {
            id: UserId::from_uuid(self.id),
            email: self.email,
            display_name: self.display_name,
            role: parse("role", &self.role)?,
            disabled: self.disabled,
            created_at: self.created_at,
        })
    }
}
