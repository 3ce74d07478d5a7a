//! The folder commands of the API. Each checks the caller's role first (admins, except a
//! user's own listing), and each change files an audit row; a refused registration is
//! audited with its status and code.

use std::path::PathBuf;

use super::{off_executor, FolderError, FolderView, Folders};
use crate::accounts::user::UserId;
use crate::audit::{status, Actor, Command, Entry};
use crate::folder::path::{self, Candidate, PathRefusal};
use crate::folder::{FolderId, FolderMode, FolderName};
use crate::sandbox::{FieldError, Problem};
use crate::store::{NewFolder, StoreError};

/// An unvalidated `POST /v1/folders`.
#[derive(Clone, Debug, Default)]
pub struct FolderRequest {
    /// The name.
    pub name: String,
    /// The host path.
    pub path: String,
    /// `ro` or `rw`.
    pub mode: String,
    /// The users who may mount it.
    pub grants: Vec<UserId>,
}

/// `POST /v1/folders`.
#[derive(Clone, Debug)]
pub struct CreateFolder {
    /// The request.
    pub request: FolderRequest,
}

/// `GET /v1/folders`: an admin's: every folder; a user's: those granted to them.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListFolders;

/// `GET /v1/folders/{id}` (admins).
#[derive(Clone, Copy, Debug)]
pub struct GetFolder {
    /// The folder.
    pub id: FolderId,
}

/// `DELETE /v1/folders/{id}` (admins).
#[derive(Clone, Copy, Debug)]
pub struct DeleteFolder {
    /// The folder.
    pub id: FolderId,
}

/// `PUT /v1/folders/{id}/grants` (admins): the new grant list, replacing the old.
#[derive(Clone, Debug)]
pub struct SetFolderGrants {
    /// The folder.
    pub id: FolderId,
    /// Who may mount it.
    pub grants: Vec<UserId>,
}

/// `GET /v1/folders/available` (admins): one level of candidates under the root.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListAvailable;

const CREATE: &str = "POST /v1/folders";

fn admin(actor: &Actor) -> Result<(), FolderError> {
    if actor.is_admin() {
        Ok(())
    } else {
        Err(FolderError::AdminOnly)
    }
}

// === impl CreateFolder ===

impl CreateFolder {
    fn validate(&self) -> Result<(FolderName, FolderMode), FolderError> {
        let mut errors = Vec::new();
        let name = FolderName::parse(&self.request.name)
            .map_err(|problem| errors.push(field("name", problem)))
            .ok();
        let mode = self
            .request
            .mode
            .parse::<FolderMode>()
            .map_err(|_bad| {
                errors.push(field(
                    "mode",
                    Problem::Malformed {
                        expected: "`ro` or `rw`",
                    },
                ));
            })
            .ok();
        match (name, mode) {
            (Some(name), Some(mode)) if errors.is_empty() => Ok((name, mode)),
            _ => Err(FolderError::Invalid(errors)),
        }
    }

    async fn register(self, folders: &Folders, actor: &Actor) -> Result<FolderView, FolderError> {
        admin(actor)?;
        let (name, mode) = self.validate()?;
        let root_real = folders.root_real().await?;
        let refusal = |refusal| FolderError::Path {
            field: "path".to_owned(),
            refusal,
        };
        // Rules 1 to 6 here; 7 and 8 again in the store's transaction.
        let asked = self.request.path.clone();
        let realpath: PathBuf = off_executor(move || path::register(&asked, &root_real, &[]))
            .await?
            .map_err(refusal)?;
        let new = NewFolder {
            name: name.clone(),
            path: self.request.path,
            realpath,
            mode,
            grants: self.request.grants,
            created_by: actor.user(),
        };
        let folder = folders
            .store
            .create_folder(new)
            .await
            .map_err(|error| match error {
                StoreError::Conflict { constraint } if constraint.contains("realpath") => {
                    refusal(PathRefusal::Duplicate {
                        folder: "(another folder)".to_owned(),
                    })
                }
                StoreError::Conflict { .. } => FolderError::NameTaken(name.to_string()),
                other => other.into(),
            })?;
        folders.view(folder).await
    }
}

impl Command<Folders> for CreateFolder {
    type Output = FolderView;
    type Error = FolderError;

    async fn execute(self, folders: &Folders, actor: &Actor) -> Result<FolderView, FolderError> {
        let name = self.request.name.clone();
        match self.register(folders, actor).await {
            Ok(view) => {
                let entry = Entry::new(CREATE, status::CREATED)
                    .object(view.folder.id)
                    .detail(format!("name={name} mode={}", view.folder.mode));
                folders.audit.record(actor, entry).await;
                Ok(view)
            }
            Err(error) => {
                if !matches!(error, FolderError::AdminOnly | FolderError::Disabled) {
                    let code = match &error {
                        FolderError::Path { refusal, .. } => refusal.code(),
                        _ => "refused",
                    };
                    let entry =
                        Entry::new(CREATE, error.status()).detail(format!("name={name} {code}"));
                    folders.audit.record(actor, entry).await;
                }
                Err(error)
            }
        }
    }
}

// === impl ListFolders ===

impl Command<Folders> for ListFolders {
    type Output = Vec<FolderView>;
    type Error = FolderError;

    async fn execute(
        self,
        folders: &Folders,
        actor: &Actor,
    ) -> Result<Vec<FolderView>, FolderError> {
        let granted_to = if actor.is_admin() {
            None
        } else {
            Some(actor.user().ok_or(FolderError::AdminOnly)?)
        };
        let listed = folders.store.list_folders(granted_to).await?;
        let mut views = Vec::with_capacity(listed.len());
        for folder in listed {
            views.push(folders.view(folder).await?);
        }
        Ok(views)
    }
}

// === impl GetFolder ===

impl Command<Folders> for GetFolder {
    type Output = FolderView;
    type Error = FolderError;

    async fn execute(self, folders: &Folders, actor: &Actor) -> Result<FolderView, FolderError> {
        admin(actor)?;
        let folder = folders.store.get_folder(self.id).await?;
        folders.view(folder.ok_or(FolderError::NotFound)?).await
    }
}

// === impl DeleteFolder ===

impl Command<Folders> for DeleteFolder {
    type Output = ();
    type Error = FolderError;

    async fn execute(self, folders: &Folders, actor: &Actor) -> Result<(), FolderError> {
        admin(actor)?;
        let deleted = folders.store.delete_folder(self.id).await;
        let action = "DELETE /v1/folders/{id}";
        let code = match &deleted {
            Ok(Some(_)) => status::NO_CONTENT,
            Ok(None) => 404,
            Err(StoreError::FolderInUse { .. }) => 409,
            Err(_) => 500,
        };
        folders
            .audit
            .record(actor, Entry::new(action, code).object(self.id))
            .await;
        deleted?.ok_or(FolderError::NotFound)?;
        Ok(())
    }
}

// === impl SetFolderGrants ===

impl Command<Folders> for SetFolderGrants {
    type Output = FolderView;
    type Error = FolderError;

    async fn execute(self, folders: &Folders, actor: &Actor) -> Result<FolderView, FolderError> {
        admin(actor)?;
        let set = folders.store.set_folder_grants(self.id, &self.grants).await;
        let set = match set {
            Ok(Some(folder)) => Ok(folder),
            Ok(None) => Err(FolderError::NotFound),
            Err(StoreError::FolderInUse { holders }) => Err(FolderError::GrantInUse(holders)),
            Err(other) => Err(other.into()),
        };
        let grants: Vec<String> = self.grants.iter().map(ToString::to_string).collect();
        let (code, detail) = match &set {
            Ok(_) => (status::OK, format!("grants={}", grants.join(","))),
            Err(error) => (
                error.status(),
                format!("grants={} refused: {error}", grants.join(",")),
            ),
        };
        let entry = Entry::new("PUT /v1/folders/{id}/grants", code)
            .object(self.id)
            .detail(detail);
        folders.audit.record(actor, entry).await;
        folders.view(set?).await
    }
}

// === impl ListAvailable ===

impl Command<Folders> for ListAvailable {
    type Output = (Vec<Candidate>, bool);
    type Error = FolderError;

    async fn execute(
        self,
        folders: &Folders,
        actor: &Actor,
    ) -> Result<(Vec<Candidate>, bool), FolderError> {
        admin(actor)?;
        let root = folders.root.clone().ok_or(FolderError::Disabled)?;
        off_executor(move || path::available(&root))
            .await?
            .map_err(|e| FolderError::RootUnusable(e.kind().to_string()))
    }
}

fn field(name: &str, problem: Problem) -> FieldError {
    FieldError {
        field: name.to_owned(),
        problem,
    }
}
