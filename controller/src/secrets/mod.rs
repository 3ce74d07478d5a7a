//! Secrets: a user's named values, sealed at rest with the controller's key ([`vault`]) and
//! opened only for a sandbox at create: into its container's environment when the secret's
//! [`Exposure`] is `env`, or for the egress proxy's credential binding (any exposure).
//! Commands: `PutSecret`, `DeleteSecret`, `ListSecrets` (the API) and `RotateKey` (the
//! offline CLI).
//!
//! Invariants: a value goes in once and never comes out of the API (listings carry names,
//! exposures and timestamps); every user reaches only their own secrets, so another user's
//! secret is missing like an unknown one; no value reaches a log line or an audit row; an
//! `egress_only` secret never reaches a container's environment (`Secrets::open_for_env`).

mod bound;
pub mod exposure;
pub mod vault;

use tracing::info;

pub use self::exposure::Exposure;
use self::vault::{KeySource, SecretKey, Vault, VaultError};
use crate::accounts::user::UserId;
use crate::audit::{status, Actor, AuditLog, Command, Entry};
use crate::sandbox::SandboxId;
use crate::store::{inspection_key_name, SecretMeta, Store, StoreError};

/// Longest secret name.
pub const MAX_NAME_BYTES: usize = 128;
/// Most secrets per user when the operator sets none.
pub const DEFAULT_MAX_SECRETS: u64 = 100;
/// Largest secret value.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// The secrets service; cheap to clone.
#[derive(Clone, Debug)]
pub struct Secrets {
    store: Store,
    audit: AuditLog,
    /// `None`: secrets are disabled (no key).
    vault: Option<Vault>,
    /// Most secrets per user (`AIRLOCK_QUOTA_MAX_SECRETS`).
    max_secrets: u64,
    /// The plane whose sandboxes may bind secrets as credentials at egress ([`bound`]).
    egress: Option<crate::egress::WeakEgressPlane>,
}

/// `PUT /v1/secrets/{name}`: stores or replaces one of the caller's secrets.
#[derive(Clone)]
pub struct PutSecret {
    /// The name (see [`name`]).
    pub name: String,
    /// The value: UTF-8, no NUL, at most [`MAX_VALUE_BYTES`].
    pub value: String,
    /// Where it may go; `None`: a new secret is [`Exposure::NEW_DEFAULT`], a replaced one
    /// keeps its exposure.
    pub expose: Option<Exposure>,
}

/// What [`PutSecret`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The secret as listed.
    pub meta: SecretMeta,
    /// Whether it is new (otherwise its value was replaced).
    pub created: bool,
}

/// `DELETE /v1/secrets/{name}`: removes one of the caller's secrets.
#[derive(Clone, Debug)]
pub struct DeleteSecret {
    /// The name.
    pub name: String,
}

/// `GET /v1/secrets`: the caller's secrets, names and timestamps only.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListSecrets;

/// `airlock admin rotate-key`: re-seals every secret and the key check value under `new` in
/// one transaction; `old` must be the current key.
#[derive(Debug)]
pub struct RotateKey {
    /// The current key.
    pub old: SecretKey,
    /// Where the current key came from (for the error when it does not match).
    pub source: KeySource,
    /// The new key.
    pub new: SecretKey,
}

/// Why a secrets command failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// No key is configured.
    #[error("secrets are not enabled on this controller")]
    Unavailable,
    /// A field is unacceptable.
    #[error("{field} {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// The caller has no such secret.
    #[error("no such secret")]
    NotFound,
    /// The secret is `egress_only`: it may be bound at egress but never put into an
    /// environment.
    #[error(
        "secret `{name}` is egress_only: bind it with `credentials`, or store it again \
         with \"expose\": \"env\""
    )]
    NotExposable {
        /// The secret's name.
        name: String,
    },
    /// Only someone with an account has secrets.
    #[error("secrets belong to an account")]
    NoAccount,
    /// The new key is the current key.
    #[error("the new key is the current key")]
    SameKey,
    /// A new secret would pass the owner's `max_secrets` (nothing was written).
    #[error(transparent)]
    QuotaExceeded(crate::accounts::quota::QuotaExceeded),
    /// Live sandboxes bind the secret as a credential at egress (delete refused).
    #[error("{sandboxes} live sandbox(es) bind this secret as a credential; delete them first")]
    InUse {
        /// How many.
        sandboxes: usize,
    },
    /// The egress plane could not tell which sandboxes bind the secret.
    #[error("egress: {0}")]
    Egress(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Sealing or opening failed, or the key does not match.
    #[error(transparent)]
    Vault(#[from] VaultError),
}

/// A secret name: 1 to [`MAX_NAME_BYTES`] of `A-Z a-z 0-9 _ . -`.
pub fn name(text: &str) -> Result<String, SecretError> {
    let valid = (1..=MAX_NAME_BYTES).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !valid {
        return Err(SecretError::Invalid {
            field: "name",
            reason: "must be 1 to 128 of the characters A-Z a-z 0-9 _ . -",
        });
    }
    Ok(text.to_owned())
}

// === impl Secrets ===

impl Secrets {
    /// Secrets in `store`, filing rows to `audit`; `vault` opens them (`None`: disabled).
    pub fn new(store: Store, audit: AuditLog, vault: Option<Vault>) -> Self {
        Self {
            store,
            audit,
            vault,
            max_secrets: DEFAULT_MAX_SECRETS,
            egress: None,
        }
    }

    /// The same service with at most `max` secrets per user.
    #[must_use]
    pub fn with_max_secrets(mut self, max: u64) -> Self {
        self.max_secrets = max;
        self
    }

    /// Runs `command` for `actor`.
    pub async fn run<C: Command<Self>>(
        &self,
        actor: &Actor,
        command: C,
    ) -> Result<C::Output, C::Error> {
        command.execute(self, actor).await
    }

    /// Whether secrets are enabled.
    pub fn enabled(&self) -> bool {
        self.vault.is_some()
    }

    /// Opens `owner`'s secret `name` whatever its exposure, for the egress proxy's credential
    /// binding; `None` when there is no such secret.
    pub(crate) async fn open(
        &self,
        owner: UserId,
        name: &str,
    ) -> Result<Option<Vec<u8>>, SecretError> {
        let vault = self.vault.as_ref().ok_or(SecretError::Unavailable)?;
        match self.store.sealed_secret(owner, name).await? {
            Some(sealed) => Ok(Some(vault.open_secret(owner, name, &sealed)?)),
            None => Ok(None),
        }
    }

    /// Seals sandbox `id`'s inspection CA key (PKCS#8 PEM) for the store, bound to its owner
    /// and [`inspection_key_name`].
    pub(crate) fn seal_inspection_key(
        &self,
        owner: UserId,
        id: SandboxId,
        key_pem: &str,
    ) -> Result<Vec<u8>, SecretError> {
        let name = inspection_key_name(id);
        Ok(self.vault()?.seal(owner, &name, key_pem.as_bytes()))
    }

    /// Opens a key sealed by [`Secrets::seal_inspection_key`].
    pub(crate) fn open_inspection_key(
        &self,
        owner: UserId,
        id: SandboxId,
        sealed: &[u8],
    ) -> Result<String, SecretError> {
        let name = inspection_key_name(id);
        let key = self.vault()?.open_secret(owner, &name, sealed)?;
        String::from_utf8(key).map_err(|_utf8| VaultError::Corrupt { name }.into())
    }

    /// Opens `owner`'s secret `name` for a container's environment: `None` when there is no
    /// such secret, [`SecretError::NotExposable`] when it is `egress_only`.
    pub(crate) async fn open_for_env(
        &self,
        owner: UserId,
        name: &str,
    ) -> Result<Option<Vec<u8>>, SecretError> {
        let vault = self.vault.as_ref().ok_or(SecretError::Unavailable)?;
        match self.store.sealed_secret_exposed(owner, name).await? {
            Some((_, expose)) if !expose.allows_env() => Err(SecretError::NotExposable {
                name: name.to_owned(),
            }),
            Some((sealed, _)) => Ok(Some(vault.open_secret(owner, name, &sealed)?)),
            None => Ok(None),
        }
    }

    fn vault(&self) -> Result<&Vault, SecretError> {
        self.vault.as_ref().ok_or(SecretError::Unavailable)
    }
}

fn owner(actor: &Actor) -> Result<UserId, SecretError> {
    actor.user().ok_or(SecretError::NoAccount)
}

// === impl PutSecret ===

impl std::fmt::Debug for PutSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutSecret")
            .field("name", &self.name)
            .field("value", &"***")
            .field("expose", &self.expose)
            .finish()
    }
}

impl Command<Secrets> for PutSecret {
    type Output = Stored;
    type Error = SecretError;

    async fn execute(self, secrets: &Secrets, actor: &Actor) -> Result<Stored, SecretError> {
        let owner = owner(actor)?;
        let name = name(&self.name)?;
        if self.value.len() > MAX_VALUE_BYTES {
            let reason = "must be at most 65536 bytes";
            return Err(SecretError::Invalid {
                field: "value",
                reason,
            });
        }
        if self.value.contains('\0') {
            let reason = "must not contain a NUL byte";
            return Err(SecretError::Invalid {
                field: "value",
                reason,
            });
        }
        let sealed = secrets.vault()?.seal(owner, &name, self.value.as_bytes());
        let created = secrets
            .store
            .put_secret_within(owner, &name, &sealed, self.expose, secrets.max_secrets)
            .await
            .map_err(|error| match error {
                StoreError::QuotaExceeded(exceeded) => SecretError::QuotaExceeded(exceeded),
                other => SecretError::Store(other),
            })?;
        let meta = secrets
            .store
            .list_secrets(owner)
            .await?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or(StoreError::corrupt(
                "secrets",
                "the secret vanished after its write",
            ))?;
        if !created {
            secrets.refresh_bound(owner, &name).await;
        }
        let code = if created { status::CREATED } else { status::OK };
        let entry = Entry::new("PUT /v1/secrets/{name}", code)
            .object(&name)
            .detail(format!("expose {}", meta.expose));
        secrets.audit.record(actor, entry).await;
        Ok(Stored { meta, created })
    }
}

// === impl DeleteSecret ===

impl Command<Secrets> for DeleteSecret {
    type Output = ();
    type Error = SecretError;

    async fn execute(self, secrets: &Secrets, actor: &Actor) -> Result<(), SecretError> {
        let owner = owner(actor)?;
        // A name that cannot exist names no secret.
        let name = name(&self.name).map_err(|_invalid| SecretError::NotFound)?;
        secrets.refuse_if_bound(owner, &name).await?;
        if !secrets.store.delete_secret(owner, &name).await? {
            return Err(SecretError::NotFound);
        }
        let entry = Entry::new("DELETE /v1/secrets/{name}", status::NO_CONTENT).object(&name);
        secrets.audit.record(actor, entry).await;
        Ok(())
    }
}

// === impl ListSecrets ===

impl Command<Secrets> for ListSecrets {
    type Output = Vec<SecretMeta>;
    type Error = SecretError;

    async fn execute(
        self,
        secrets: &Secrets,
        actor: &Actor,
    ) -> Result<Vec<SecretMeta>, SecretError> {
        Ok(secrets.store.list_secrets(owner(actor)?).await?)
    }
}

// === impl RotateKey ===

impl Command<Secrets> for RotateKey {
    type Output = usize;
    type Error = SecretError;

    async fn execute(self, secrets: &Secrets, actor: &Actor) -> Result<usize, SecretError> {
        if self.old == self.new {
            return Err(SecretError::SameKey);
        }
        let (old, new) = (Vault::new(&self.old), Vault::new(&self.new));
        let rotated = secrets
            .store
            .rotate_secrets(
                |check| old.matches(check),
                |secret| {
                    let value = old.open_secret(secret.owner, &secret.name, &secret.sealed)?;
                    Ok::<_, VaultError>(new.seal(secret.owner, &secret.name, &value))
                },
                new.check_value(),
            )
            .await;
        let resealed = match rotated {
            Ok(result) => result?,
            Err(StoreError::KeyMismatch) => {
                let source_name = self.source.to_string();
                return Err(VaultError::KeyMismatch { source_name }.into());
            }
            Err(error) => return Err(error.into()),
        };
        info!(secrets.resealed = resealed, "Secret key rotated");
        let entry = Entry::new("admin.rotate-key", status::OK)
            .object("secrets")
            .detail(format!("{resealed} re-encrypted"));
        secrets.audit.record(actor, entry).await;
        Ok(resealed)
    }
}
