//! Host folder rows, their grants and the sandboxes mounting them.
//!
//! - A registration checks the realpath against every registered folder's (duplicate,
//!   overlap: [`crate::folder::path::check_against`]) and inserts the row and its grants in
//!   one transaction (`BEGIN IMMEDIATE` on SQLite, the `folders` table locked on Postgres),
//!   so two parallel registrations cannot overlap. A grant naming no user writes nothing
//!   ([`StoreError::UnknownUser`]).
//! - `path` and `realpath` are written once; no statement here updates them.
//! - A sandbox's folder mounts are written in the transaction that inserts the sandbox
//!   (`hold_folders_on!`, which checks the owner's grant again); a mount is live while its
//!   sandbox has not ended, and a delete, or a grant change that takes the folder from a
//!   live mount's owner, refuses while one is ([`StoreError::FolderInUse`]).

use std::path::PathBuf;

use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    now, with_db, Backend, Created, MountHold, NewAuditRecord, NewSandbox, Store, StoreError,
    VolumeHolder,
};
use crate::accounts::quota::Quota;
use crate::accounts::user::UserId;
use crate::folder::path::{check_against, Registered};
use crate::folder::{FolderId, FolderMode, FolderName};
use crate::sandbox::SandboxId;

const SELECT_FOLDER: &str = "SELECT id, name, path, realpath, mode, created_at FROM folders ";

/// Sandbox states whose mounts are no longer live.
const ENDED: &str = "('exited', 'failed', 'lost')";

/// A registered folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Folder {
    /// Its id.
    pub id: FolderId,
    /// Its name.
    pub name: FolderName,
    /// The path as registered (immutable).
    pub path: String,
    /// Its realpath at registration.
    pub realpath: PathBuf,
    /// What it allows.
    pub mode: FolderMode,
    /// The users who may mount it, sorted.
    pub grants: Vec<UserId>,
    /// When it was registered.
    pub created_at: OffsetDateTime,
}

/// A folder to register; `realpath` already passed the filesystem rules.
#[derive(Clone, Debug)]
pub struct NewFolder {
    /// The name.
    pub name: FolderName,
    /// The path as the admin wrote it.
    pub path: String,
    /// Its realpath.
    pub realpath: PathBuf,
    /// The mode.
    pub mode: FolderMode,
    /// Who may mount it.
    pub grants: Vec<UserId>,
    /// The admin registering it.
    pub created_by: Option<UserId>,
}

/// One folder mount a new sandbox holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderHold {
    /// The folder.
    pub folder: FolderId,
    /// The target in the sandbox.
    pub target: String,
    /// Read-only or not.
    pub read_only: bool,
}

/// Everything a new sandbox holds: volume and folder mounts.
#[derive(Clone, Copy, Debug, Default)]
pub struct Holds<'a> {
    /// Volume mounts.
    pub volumes: &'a [MountHold],
    /// Folder mounts.
    pub folders: &'a [FolderHold],
}

type FolderRow = (Uuid, String, String, String, String, OffsetDateTime);

/// Inserts the folder mounts of sandbox `$id` of user `$owner` through `$tx`; a folder
/// deleted meanwhile, or no longer granted to `$owner`, is [`StoreError::NotFound`] (like no
/// folder at all). `$postgres` share-locks each folder row first, so a delete or a grant
/// change (which lock it for update) either sees the mount or runs before it.
macro_rules! hold_folders_on {
    ($tx:expr, $id:expr, $folders:expr, $postgres:expr, $owner:expr) => {{
        for hold in $folders {
            let lock = if $postgres {
                "SELECT id FROM folders WHERE id = $1 FOR SHARE"
            } else {
                "SELECT id FROM folders WHERE id = $1"
            };
            let found: Option<(Uuid,)> = sqlx::query_as(lock)
                .bind(hold.folder.as_uuid())
                .fetch_optional(&mut *$tx)
                .await?;
            found.ok_or(crate::store::StoreError::NotFound)?;
            let granted: Option<(Uuid,)> = sqlx::query_as(
                "SELECT folder_id FROM folder_grants WHERE folder_id = $1 AND user_id = $2",
            )
            .bind(hold.folder.as_uuid())
            .bind($owner)
            .fetch_optional(&mut *$tx)
            .await?;
            granted.ok_or(crate::store::StoreError::NotFound)?;
            sqlx::query(
                "INSERT INTO folder_mounts (sandbox_id, folder_id, target, read_only) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind($id)
            .bind(hold.folder.as_uuid())
            .bind(hold.target.as_str())
            .bind(hold.read_only)
            .execute(&mut *$tx)
            .await?;
        }
    }};
}
pub(crate) use hold_folders_on;

/// Grants folder `$id` to each of `$users` in transaction `$tx`; a user that does not exist is
/// [`StoreError::UnknownUser`] (the caller's transaction then writes nothing).
macro_rules! grant_on {
    ($tx:expr, $id:expr, $users:expr) => {
        for user in $users {
            let found: Option<(Uuid,)> = sqlx::query_as("SELECT id FROM users WHERE id = $1")
                .bind(user.as_uuid())
                .fetch_optional(&mut *$tx)
                .await?;
            found.ok_or(StoreError::UnknownUser(*user))?;
            sqlx::query(
                "INSERT INTO folder_grants (folder_id, user_id) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind($id.as_uuid())
            .bind(user.as_uuid())
            .execute(&mut *$tx)
            .await?;
        }
    };
}

// === impl Store ===

impl Store {
    /// [`Store::create_sandbox`] that also holds `mounts` in the same transaction: a
    /// read-write mount of a volume another live sandbox holds read-write is
    /// [`StoreError::VolumeHeld`], one of a volume sampled over its size
    /// [`StoreError::VolumeOverQuota`]; either writes nothing.
    pub async fn create_sandbox_holding(
        &self,
        new: NewSandbox,
        mounts: &[MountHold],
    ) -> Result<Created, StoreError> {
        let holds = Holds {
            volumes: mounts,
            folders: &[],
        };
        self.create_sandbox_quota(new, None, holds, None).await
    }

    /// [`Store::create_sandbox_within_quota`] that also holds volume and folder mounts in
    /// the same transaction (see [`Store::create_sandbox_holding`]), and appends `audit` (its
    /// object set to the new sandbox's id) in that transaction too: a reserved sandbox always
    /// has its audit row, a refused one never does, and an idempotent repeat writes none.
    pub async fn create_sandbox_within_quota_holding(
        &self,
        new: NewSandbox,
        defaults: Quota,
        holds: Holds<'_>,
        audit: Option<&NewAuditRecord>,
    ) -> Result<Created, StoreError> {
        self.create_sandbox_quota(new, Some(defaults), holds, audit)
            .await
    }

    /// Registers `new` unless its realpath duplicates or overlaps a registered folder's
    /// ([`StoreError::FolderPath`]) or a grant names no user; a taken name is
    /// [`StoreError::Conflict`].
    pub async fn create_folder(&self, new: NewFolder) -> Result<Folder, StoreError> {
        let id = FolderId::new();
        let postgres = self.backend() == Backend::Postgres;
        let at = now();
        let real = path_text(&new.realpath)?;
        with_db!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            if postgres {
                sqlx::query("LOCK TABLE folders IN SHARE ROW EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await?;
            }
            let rows: Vec<(String, String)> = sqlx::query_as("SELECT name, realpath FROM folders")
                .fetch_all(&mut *tx)
                .await?;
            let registered: Vec<Registered> = rows
                .into_iter()
                .map(|(name, realpath)| Registered {
                    name,
                    realpath: PathBuf::from(realpath),
                })
                .collect();
            check_against(&new.realpath, &registered).map_err(StoreError::FolderPath)?;
            sqlx::query(
                "INSERT INTO folders (id, name, path, realpath, mode, created_by, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(id.as_uuid())
            .bind(new.name.as_str())
            .bind(new.path.as_str())
            .bind(real)
            .bind(new.mode.as_str())
            .bind(new.created_by.map(|u| u.as_uuid()))
            .bind(at)
            .execute(&mut *tx)
            .await?;
            grant_on!(tx, id, &new.grants);
            tx.commit().await?;
        });
        self.get_folder(id).await?.ok_or(StoreError::NotFound)
    }

    /// The folder.
    pub async fn get_folder(&self, id: FolderId) -> Result<Option<Folder>, StoreError> {
        let row: Option<FolderRow> = with_db!(self, |pool, _begin| {
            sqlx::query_as(&format!("{SELECT_FOLDER} WHERE id = $1"))
                .bind(id.as_uuid())
                .fetch_optional(pool)
                .await?
        });
        match row {
            Some(row) => Ok(Some(self.with_grants(row).await?)),
            None => Ok(None),
        }
    }

    /// The folder called `name` if `user` holds a grant on it (else `None`, like a missing
    /// one).
    pub async fn granted_folder(
        &self,
        user: UserId,
        name: &FolderName,
    ) -> Result<Option<Folder>, StoreError> {
        let row: Option<FolderRow> = with_db!(self, |pool, _begin| {
            sqlx::query_as(&format!(
                "{SELECT_FOLDER} WHERE name = $1 AND id IN \
                 (SELECT folder_id FROM folder_grants WHERE user_id = $2)"
            ))
            .bind(name.as_str())
            .bind(user.as_uuid())
            .fetch_optional(pool)
            .await?
        });
        match row {
            Some(row) => Ok(Some(self.with_grants(row).await?)),
            None => Ok(None),
        }
    }

    /// Every folder (`None`), or those granted to one user, by name.
    pub async fn list_folders(
        &self,
        granted_to: Option<UserId>,
    ) -> Result<Vec<Folder>, StoreError> {
        let rows: Vec<FolderRow> = with_db!(self, |pool, _begin| {
            sqlx::query_as(&format!(
                "{SELECT_FOLDER} WHERE $1 IS NULL OR id IN \
                 (SELECT folder_id FROM folder_grants WHERE user_id = $1) ORDER BY name"
            ))
            .bind(granted_to.map(|u| u.as_uuid()))
            .fetch_all(pool)
            .await?
        });
        let mut folders = Vec::with_capacity(rows.len());
        for row in rows {
            folders.push(self.with_grants(row).await?);
        }
        Ok(folders)
    }

    /// Replaces the folder's grants; `None` when there is no such folder. A live sandbox
    /// mounting the folder whose owner would lose the grant refuses the change
    /// ([`StoreError::FolderInUse`] naming those sandboxes; nothing is written). The folder
    /// row is locked for update on Postgres (`BEGIN IMMEDIATE` on SQLite), and a create
    /// checks the grant again under its share lock, so a mount is never inserted for a grant
    /// removed meanwhile.
    pub async fn set_folder_grants(
        &self,
        id: FolderId,
        grants: &[UserId],
    ) -> Result<Option<Folder>, StoreError> {
        let lock = if self.backend() == Backend::Postgres {
            "SELECT id FROM folders WHERE id = $1 FOR UPDATE"
        } else {
            "SELECT id FROM folders WHERE id = $1"
        };
        let exists = with_db!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let found: Option<(Uuid,)> = sqlx::query_as(lock)
                .bind(id.as_uuid())
                .fetch_optional(&mut *tx)
                .await?;
            if found.is_some() {
                let held: Vec<(Uuid, Uuid)> = sqlx::query_as(&format!(
                    "SELECT m.sandbox_id, s.owner_id FROM folder_mounts m \
                     JOIN sandboxes s ON s.id = m.sandbox_id \
                     WHERE m.folder_id = $1 AND s.observed_state NOT IN {ENDED} \
                     ORDER BY m.sandbox_id"
                ))
                .bind(id.as_uuid())
                .fetch_all(&mut *tx)
                .await?;
                let losing: Vec<SandboxId> = held
                    .into_iter()
                    .filter(|(_, owner)| !grants.contains(&UserId::from_uuid(*owner)))
                    .map(|(sandbox, _)| SandboxId::from_uuid(sandbox))
                    .collect();
                if !losing.is_empty() {
                    return Err(StoreError::FolderInUse { holders: losing });
                }
                sqlx::query("DELETE FROM folder_grants WHERE folder_id = $1")
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await?;
                grant_on!(tx, id, grants);
                tx.commit().await?;
            }
            found.is_some()
        });
        if exists {
            self.get_folder(id).await
        } else {
            Ok(None)
        }
    }

    /// The sandboxes whose live mounts hold the folder.
    pub async fn folder_holders(&self, id: FolderId) -> Result<Vec<VolumeHolder>, StoreError> {
        let rows: Vec<(Uuid, String, bool)> = with_db!(self, |pool, _begin| {
            sqlx::query_as(&format!(
                "SELECT m.sandbox_id, m.target, m.read_only FROM folder_mounts m \
                 JOIN sandboxes s ON s.id = m.sandbox_id \
                 WHERE m.folder_id = $1 AND s.observed_state NOT IN {ENDED} \
                 ORDER BY m.sandbox_id"
            ))
            .bind(id.as_uuid())
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(sandbox, target, read_only)| VolumeHolder {
                sandbox: SandboxId::from_uuid(sandbox),
                target,
                read_only,
            })
            .collect())
    }

    /// Deletes the folder unless a live mount holds it ([`StoreError::FolderInUse`]);
    /// `None` when there is no such folder.
    pub async fn delete_folder(&self, id: FolderId) -> Result<Option<Folder>, StoreError> {
        let Some(found) = self.get_folder(id).await? else {
            return Ok(None);
        };
        let postgres = self.backend() == Backend::Postgres;
        with_db!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            if postgres {
                sqlx::query("SELECT id FROM folders WHERE id = $1 FOR UPDATE")
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await?;
            }
            let held: Vec<(Uuid,)> = sqlx::query_as(&format!(
                "SELECT m.sandbox_id FROM folder_mounts m \
                 JOIN sandboxes s ON s.id = m.sandbox_id \
                 WHERE m.folder_id = $1 AND s.observed_state NOT IN {ENDED}"
            ))
            .bind(id.as_uuid())
            .fetch_all(&mut *tx)
            .await?;
            if !held.is_empty() {
                return Err(StoreError::FolderInUse {
                    holders: held
                        .into_iter()
                        .map(|(s,)| SandboxId::from_uuid(s))
                        .collect(),
                });
            }
            sqlx::query("DELETE FROM folders WHERE id = $1")
                .bind(id.as_uuid())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(Some(found))
    }

    async fn with_grants(&self, row: FolderRow) -> Result<Folder, StoreError> {
        let (id, name, path, realpath, mode, created_at) = row;
        let grants: Vec<(Uuid,)> = with_db!(self, |pool, _begin| {
            sqlx::query_as(
                "SELECT user_id FROM folder_grants WHERE folder_id = $1 ORDER BY user_id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
        });
        Ok(Folder {
            id: FolderId::from_uuid(id),
            name: FolderName::parse(&name).map_err(|p| StoreError::corrupt("name", p))?,
            path,
            realpath: PathBuf::from(realpath),
            mode: mode.parse().map_err(|e| StoreError::corrupt("mode", e))?,
            grants: grants
                .into_iter()
                .map(|(u,)| UserId::from_uuid(u))
                .collect(),
            created_at,
        })
    }
}

fn path_text(path: &std::path::Path) -> Result<&str, StoreError> {
    path.to_str()
        .ok_or_else(|| StoreError::corrupt("realpath", "the path is not UTF-8"))
}
