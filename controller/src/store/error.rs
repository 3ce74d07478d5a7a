//! The store's error type. Callers branch on the variants: `NotFound` → 404, `Conflict` → 409,
//! `StaleGeneration` and `Transition` → 409 for the API and "drop the work" for workers.

use crate::sandbox::{SandboxId, TransitionError};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or reached.
    #[error("cannot open the database: {0}")]
    Open(#[source] sqlx::Error),
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The database holds migrations this binary does not know: it was written by a newer
    /// Airlock. Running would risk corrupting it, so the binary refuses.
    #[error(
        "the database was migrated by a newer Airlock (migration {applied} is applied, this \
         binary knows up to {known}); upgrade Airlock or restore a matching backup"
    )]
    DatabaseNewer {
        /// A version the database has applied but this binary lacks.
        applied: i64,
        /// The newest version this binary knows.
        known: i64,
    },
    /// A unique constraint refused the write.
    #[error("conflict on {constraint}")]
    Conflict {
        /// The constraint (Postgres) or the columns (SQLite) involved.
        constraint: String,
    },
    /// The same idempotency key was used before with a different request.
    #[error("idempotency key was already used for a different request")]
    IdempotencyMismatch {
        /// The sandbox the key belongs to.
        existing: SandboxId,
    },
    /// No such object.
    #[error("not found")]
    NotFound,
    /// The caller holds an older (or newer) generation than the store: another incarnation
    /// owns the sandbox now, so the operation is refused.
    #[error("stale generation {given} for sandbox {id} (current: {current})")]
    StaleGeneration {
        /// The sandbox.
        id: SandboxId,
        /// The generation the caller presented.
        given: i64,
        /// The generation in the store.
        current: i64,
    },
    /// The state machine refused the event.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// The pool member's state does not accept the change (a fence).
    #[error(transparent)]
    MemberTransition(#[from] crate::pool::MemberTransitionError),
    /// Every subnet in the configured pools is allocated.
    #[error("no free sandbox subnet left in the configured pools")]
    SubnetsExhausted,
    /// The owner's sandboxes already hold as many subnets as one owner may.
    #[error("the owner's sandboxes already hold {cap} subnets, the most one user may")]
    SubnetCapReached {
        /// `AIRLOCK_MAX_SUBNETS_PER_USER`.
        cap: u64,
    },
    /// A concurrent writer kept winning; the operation may be retried.
    #[error("too much contention; retry")]
    Contended,
    /// A stored value does not decode into a domain type.
    #[error("corrupt stored value in {column}: {message}")]
    Corrupt {
        /// Which column.
        column: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The create would pass the owner's quota (nothing was written).
    #[error(transparent)]
    QuotaExceeded(crate::accounts::quota::QuotaExceeded),
    /// The volume is mounted by these sandboxes.
    #[error("the volume is mounted by {} sandbox(es)", holders.len())]
    VolumeInUse {
        /// The sandboxes holding it.
        holders: Vec<SandboxId>,
    },
    /// Another running sandbox holds the volume read-write.
    #[error("volume {volume} is held read-write by sandbox {holder}")]
    VolumeHeld {
        /// The volume.
        volume: crate::volume::VolumeId,
        /// The sandbox holding it.
        holder: SandboxId,
    },
    /// A files write holds the volume (a live write lease): no read-write mount until it ends.
    #[error("a files write into volume {volume} is in progress")]
    VolumeWriting {
        /// The volume.
        volume: crate::volume::VolumeId,
    },
    /// The volume's sampled usage is over its size (soft quota): no new read-write mounts.
    #[error("volume {volume} is over its size")]
    VolumeOverQuota {
        /// The volume.
        volume: crate::volume::VolumeId,
    },
    /// A folder's realpath duplicates or overlaps a registered folder's.
    #[error("folder path {0}")]
    FolderPath(crate::folder::path::PathRefusal),
    /// The folder is mounted by these live sandboxes.
    #[error("the folder is mounted by {} sandbox(es)", holders.len())]
    FolderInUse {
        /// The sandboxes holding it.
        holders: Vec<SandboxId>,
    },
    /// A grant names no user.
    #[error("no user {0}")]
    UnknownUser(crate::accounts::user::UserId),
    /// Key rotation: the current key does not open the stored key check value.
    #[error("the current secret key does not match the stored key check value")]
    KeyMismatch,
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

// === impl StoreError ===

impl StoreError {
    pub(crate) fn corrupt(column: &'static str, message: impl ToString) -> Self {
        Self::Corrupt {
            column,
            message: message.to_string(),
        }
    }

    /// Whether the error is a unique-constraint conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }
}

impl From<sqlx::Error> for StoreError {
    /// Unique violations become [`StoreError::Conflict`]; everything else is
    /// [`StoreError::Database`].
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict {
                constraint: db
                    .constraint()
                    .map_or_else(|| db.message().to_owned(), str::to_owned),
            },
            _ => Self::Database(error),
        }
    }
}
