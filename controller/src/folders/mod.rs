//! Host folders: directories under `AIRLOCK_FOLDERS_ROOT` that admins register and grant to
//! users. Commands: `CreateFolder`, `ListFolders`, `GetFolder`, `DeleteFolder`,
//! `SetFolderGrants`, `ListAvailable` (the API), and [`Folders::bind_mounts`] (a create's
//! folder mounts).
//!
//! Invariants:
//! - without `AIRLOCK_FOLDERS_ROOT` every command is [`FolderError::Disabled`];
//! - only admins register, read one, change grants, delete and list candidates; a user lists
//!   the folders granted to them, without host paths;
//! - a registration passes every rule of [`crate::folder::path`] (the filesystem ones here,
//!   duplicate and overlap in the store's transaction); the path is never updated;
//! - a mount needs a grant (no grant answers like no folder), resolves the path again and
//!   refuses a changed realpath, and is read-only for an `ro` folder (asking for read-write
//!   is refused, never quietly changed);
//! - a delete refuses while a live sandbox mounts the folder, and so does a grant change that
//!   would take the folder from the owner of one (`409 folder_in_use` naming the sandboxes:
//!   a live mount is never left without its grant, and a sandbox is never stopped by it);
//! - every action, and every refused registration, is audited;
//! - the host filesystem is read only on Tokio's blocking pool (`off_executor`), never on
//!   the executor.

mod commands;

pub use commands::{
    CreateFolder, DeleteFolder, FolderRequest, GetFolder, ListAvailable, ListFolders,
    SetFolderGrants,
};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::accounts::user::UserId;
use crate::audit::AuditLog;
use crate::folder::path::{self, PathRefusal};
use crate::folder::{FolderName, ReadOnlyFolder};
use crate::sandbox::mounts::BoundFolder;
use crate::sandbox::{FieldError, SandboxId, SandboxSpec};
use crate::store::{Folder, Store, StoreError, VolumeHolder};

/// The folders service; cheap to clone.
#[derive(Clone, Debug)]
pub struct Folders {
    store: Store,
    audit: AuditLog,
    /// `AIRLOCK_FOLDERS_ROOT` as configured; `None`: the feature is off.
    root: Option<PathBuf>,
}

/// A folder with the sandboxes mounting it now.
#[derive(Clone, Debug, PartialEq)]
pub struct FolderView {
    /// The folder.
    pub folder: Folder,
    /// Who mounts it now.
    pub in_use_by: Vec<VolumeHolder>,
}

/// Why a folder command failed.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    /// No `AIRLOCK_FOLDERS_ROOT`.
    #[error("host folders are off: the operator has not set AIRLOCK_FOLDERS_ROOT")]
    Disabled,
    /// The folders root cannot be resolved.
    #[error("the folders root cannot be read: {0}")]
    RootUnusable(String),
    /// Admins only.
    #[error("host folders are managed by admins")]
    AdminOnly,
    /// The request has invalid fields.
    #[error("invalid request ({} field error(s))", .0.len())]
    Invalid(Vec<FieldError>),
    /// The path breaks a rule (the field, and which rule).
    #[error("{field}: {refusal}")]
    Path {
        /// The request field (`path`, or `mounts[i].folder` at a mount).
        field: String,
        /// The rule.
        refusal: PathRefusal,
    },
    /// No such folder.
    #[error("no such folder")]
    NotFound,
    /// At a mount: no folder of that name is granted to the owner.
    #[error("no folder called `{name}` is granted to you")]
    NotGranted {
        /// The request field.
        field: String,
        /// The name asked for.
        name: String,
    },
    /// At a mount: read-write asked of an `ro` folder.
    #[error("folder `{name}` is read-only; mount it with `read_only: true` (or leave it out)")]
    ReadOnly {
        /// The request field.
        field: String,
        /// The folder.
        name: String,
    },
    /// The name is taken.
    #[error("a folder called `{0}` already exists")]
    NameTaken(String),
    /// A grant names no user.
    #[error("grants: no user {0}")]
    UnknownUser(UserId),
    /// Live sandboxes mount the folder.
    #[error("the folder is mounted by sandbox(es) {}", list(.0))]
    InUse(Vec<SandboxId>),
    /// A grant change would take the folder from the owners of live sandboxes mounting it.
    #[error(
        "sandbox(es) {} mount the folder and their owners would lose the grant; stop them \
         first, or keep the grant",
        list(.0)
    )]
    GrantInUse(Vec<SandboxId>),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[source] StoreError),
}

fn list(ids: &[SandboxId]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<StoreError> for FolderError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::FolderPath(refusal) => Self::Path {
                field: "path".to_owned(),
                refusal,
            },
            StoreError::FolderInUse { holders } => Self::InUse(holders),
            StoreError::UnknownUser(user) => Self::UnknownUser(user),
            StoreError::NotFound => Self::NotFound,
            other => Self::Store(other),
        }
    }
}

// === impl FolderError ===

impl FolderError {
    /// The status an audit row records for this refusal.
    pub fn status(&self) -> u16 {
        match self {
            Self::Invalid(_) | Self::UnknownUser(_) => 400,
            Self::Path { refusal, .. } => match refusal {
                PathRefusal::Duplicate { .. } | PathRefusal::Overlaps { .. } => 409,
                PathRefusal::Changed => 409,
                _ => 400,
            },
            Self::AdminOnly | Self::ReadOnly { .. } => 403,
            Self::NotFound | Self::NotGranted { .. } => 404,
            Self::Disabled | Self::NameTaken(_) | Self::InUse(_) | Self::GrantInUse(_) => 409,
            Self::RootUnusable(_) | Self::Store(_) => 500,
        }
    }
}

// === impl Folders ===

impl Folders {
    /// The service over `store`, filing rows to `audit`; `root` is `AIRLOCK_FOLDERS_ROOT`.
    pub fn new(store: Store, audit: AuditLog, root: Option<PathBuf>) -> Self {
        Self { store, audit, root }
    }

    /// Runs `command` for `actor`.
    pub async fn run<C: crate::audit::Command<Self>>(
        &self,
        actor: &crate::audit::Actor,
        command: C,
    ) -> Result<C::Output, C::Error> {
        command.execute(self, actor).await
    }

    /// The configured root, if folders are on.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// The realpath of the root.
    async fn root_real(&self) -> Result<PathBuf, FolderError> {
        let root = self.root.clone().ok_or(FolderError::Disabled)?;
        off_executor(move || path::resolve_root(&root))
            .await?
            .map_err(|e| FolderError::RootUnusable(e.kind().to_string()))
    }

    async fn view(&self, folder: Folder) -> Result<FolderView, FolderError> {
        let in_use_by = self.store.folder_holders(folder.id).await?;
        Ok(FolderView { folder, in_use_by })
    }

    /// Binds every folder mount of `spec` for `owner`: the folder must be granted to them,
    /// its path must still resolve to its registered realpath, and an `ro` folder is only
    /// mounted read-only.
    pub async fn bind_mounts(
        &self,
        owner: UserId,
        spec: SandboxSpec,
    ) -> Result<SandboxSpec, FolderError> {
        if spec.folders().is_empty() {
            return Ok(spec);
        }
        let root_real = self.root_real().await?;
        let mut bound: BTreeMap<FolderName, Result<BoundFolder, FolderError>> = BTreeMap::new();
        let mut granted = Vec::new();
        for mount in spec.folders() {
            let field = format!("mounts (folder `{}`)", mount.folder);
            match self.store.granted_folder(owner, &mount.folder).await? {
                None => {
                    let refused = Err(FolderError::NotGranted {
                        field,
                        name: mount.folder.to_string(),
                    });
                    bound.insert(mount.folder.clone(), refused);
                }
                Some(folder) => {
                    granted.push((mount.folder.clone(), folder, mount.read_only, field))
                }
            }
        }
        // Every path is resolved again on the host, off the executor.
        let checked = off_executor(move || {
            granted
                .into_iter()
                .map(|(name, folder, read_only, field)| {
                    (name, bind_one(&folder, read_only, &root_real, field))
                })
                .collect::<Vec<_>>()
        })
        .await?;
        bound.extend(checked);
        spec.bind_folders(|mount| {
            bound
                .remove(&mount.folder)
                .unwrap_or(Err(FolderError::NotFound))
        })
    }
}

/// Runs `work`, which reads the host filesystem (realpath, metadata, a directory listing), on
/// Tokio's blocking pool, so a slow or hung filesystem never stalls the executor. A panic in
/// `work` goes on unwinding here; a runtime shutting down is [`FolderError::RootUnusable`].
async fn off_executor<T, F>(work: F) -> Result<T, FolderError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => Ok(done),
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(FolderError::RootUnusable(format!(
            "the filesystem check was cancelled: {error}"
        ))),
    }
}

/// One folder's bind: the realpath checked again, read-only per the mode.
fn bind_one(
    folder: &Folder,
    read_only: Option<bool>,
    root_real: &Path,
    field: String,
) -> Result<BoundFolder, FolderError> {
    let read_only = folder
        .mode
        .mount_read_only(read_only)
        .map_err(|ReadOnlyFolder| FolderError::ReadOnly {
            field: field.clone(),
            name: folder.name.to_string(),
        })?;
    let real = path::recheck(&folder.path, &folder.realpath, root_real)
        .map_err(|refusal| FolderError::Path { field, refusal })?;
    let realpath = real
        .to_str()
        .ok_or(FolderError::Path {
            field: "path".to_owned(),
            refusal: PathRefusal::Invalid,
        })?
        .to_owned();
    Ok(BoundFolder {
        id: folder.id,
        realpath,
        read_only,
    })
}
