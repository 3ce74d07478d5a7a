//! The store: the only module with SQL. One [`Store`] over SQLite (the default: a file under
//! the data dir, WAL mode, foreign keys on) or Postgres, chosen by [`DatabaseConfig`].
//!
//! Both backends run the *same* SQL text: `$N` placeholders (SQLite accepts them too), column
//! types that map to the same Rust types (UUID, timestamps, JSON, `i64`, `bool`), and
//! `ON CONFLICT DO NOTHING`. The `with_db!` macro expands each method body once per backend.
//!
//! Invariants:
//! - Every write that matters runs in one transaction. On SQLite, write transactions start with
//!   `BEGIN IMMEDIATE`, so they serialize on the write lock instead of failing on upgrade.
//! - Migrations run at open; a database migrated by a newer binary is refused.
//! - Every sandbox has an owner; owner-scoped reads of another owner's sandbox find nothing.
//! - Observed-state changes go through [`crate::sandbox::SandboxState::transition`] and are
//!   fenced by generation.

// Operator ceilings (the egress policy authority).
mod ceilings;
// The network plane: proxy entries and the egress ledger.
mod egress;
// Rewrites policies stored before `allow_public` existed.
mod egress_upgrade;
mod error;
mod images;
mod inspection;
mod rows;
mod sandboxes;
// Reserving a sandbox inside a transaction (cold create and warm claim).
mod reserve;
// Warm pool members and the claim.
mod pool;
mod pool_claim;
mod pool_config;
// The isolation self-test results.
mod selftests;
mod subnets;
mod users;
// Accounts: tokens, sessions, invites.
mod invites;
mod tokens;
// Quotas, secrets and the audit trail.
mod audit;
pub(crate) mod quotas;
// Bounded tables: the ledger cap, retention, the audit prune, table sizes.
mod ledger_cap;
mod retention;
// Backups: the schema version and `VACUUM INTO`.
mod backup;
mod secrets;
// Volumes and the mounts sandboxes hold.
mod leases;
mod volumes;
// Host folders, their grants and mounts.
mod folders;

pub use ceilings::{CeilingsSource, StoredCeilings};
pub use egress::{
    EgressEntry, EgressEvent, EgressQuery, HostSummary, POSTGRES_EVENT_BATCH, SQLITE_EVENT_BATCH,
};
pub use error::StoreError;
pub use images::ImageRecord;
pub use inspection::{inspection_key_name, StoredInspection};
pub use invites::{InviteAcceptance, NewInvite};
pub use pool::{NewMember, PoolCount, PoolMember};
pub use pool_claim::{Claim, ClaimOutcome, ClaimedMember};
pub use pool_config::{PoolConfigSource, StoredPoolConfig};
pub use selftests::SelftestRecord;
pub use tokens::{ApiToken, Bearer, NewApiToken, TokenId};
pub use users::UserUpdate;
// Quotas, secrets and the audit trail.
pub use audit::{AuditRange, AuditRecord, NewAuditRecord};
pub use folders::{Folder, FolderHold, Holds, NewFolder};
pub use leases::LeaseId;
pub use ledger_cap::{MAX_SUMMARY_ROWS, SUMMARY_BOOT};
pub use retention::{LedgerPrune, TableSize};
pub use secrets::{SealedSecret, SecretMeta};
pub use volumes::{MountHold, NewVolume, Volume, VolumeHolder};

use std::time::Duration;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use time::OffsetDateTime;

use crate::accounts::user::{Role, UserId};
use crate::config::DatabaseConfig;
use crate::sandbox::subnet::SandboxSubnet;
use crate::sandbox::{DesiredState, EndReason, SandboxId, SandboxSpec, SandboxState};

/// Embedded SQLite migrations.
static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("../migrations/sqlite");
/// Embedded Postgres migrations.
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("../migrations/postgres");

/// How long a SQLite writer waits for the write lock before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Most pooled connections.
const MAX_CONNECTIONS: u32 = 16;

/// A handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
}

#[derive(Clone, Debug)]
enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Which backend a [`Store`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite.
    Sqlite,
    /// Postgres.
    Postgres,
}

/// Whose objects a read may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Only this owner's (members and viewers).
    Owner(UserId),
    /// Everybody's (admins, the reconciler).
    All,
}

/// A sandbox as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Sandbox {
    /// Its id.
    pub id: SandboxId,
    /// Its owner.
    pub owner: UserId,
    /// What was asked for, validated.
    pub spec: SandboxSpec,
    /// What should exist.
    pub desired: DesiredState,
    /// What was last observed.
    pub state: SandboxState,
    /// Why it ended, once it has.
    pub end_reason: Option<EndReason>,
    /// The incarnation; operations presenting another generation are refused.
    pub generation: i64,
    /// The node it is placed on.
    pub node: Option<String>,
    /// Its Docker network, once allocated.
    pub network_name: Option<String>,
    /// Its /29, once allocated.
    pub subnet: Option<SandboxSubnet>,
    /// Its container, once created.
    pub container_id: Option<String>,
    /// The create request's `Idempotency-Key`.
    pub idempotency_key: Option<String>,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When the row last changed.
    pub updated_at: OffsetDateTime,
    /// When it ended.
    pub ended_at: Option<OffsetDateTime>,
}

/// A create request for the store.
#[derive(Clone, Debug)]
pub struct NewSandbox {
    /// The owner.
    pub owner: UserId,
    /// The validated spec.
    pub spec: SandboxSpec,
    /// The `Idempotency-Key`, unique per owner.
    pub idempotency_key: Option<String>,
    /// The node to place it on, if known.
    pub node: Option<String>,
}

/// The outcome of [`Store::create_sandbox`].
#[derive(Clone, Debug, PartialEq)]
pub enum Created {
    /// A new sandbox.
    New(Sandbox),
    /// The sandbox an earlier request with the same idempotency key created.
    Existing(Sandbox),
}

/// A user as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Its id.
    pub id: UserId,
    /// Unique email.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// Disabled users cannot act.
    pub disabled: bool,
    /// When it was created.
    pub created_at: OffsetDateTime,
}

/// A user to create.
#[derive(Clone, Debug)]
pub struct NewUser {
    /// Unique email.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// Role.
    pub role: Role,
}

/// A page request for [`Store::list_sandboxes`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ListQuery {
    /// Only sandboxes in this observed state.
    pub state: Option<SandboxState>,
    /// Resume after this id (the previous page's `next`).
    pub after: Option<SandboxId>,
    /// Page size; clamped to 1..=[`ListQuery::MAX_LIMIT`], 0 means the default.
    pub limit: u32,
}

/// One page of sandboxes, oldest first.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// The sandboxes.
    pub items: Vec<Sandbox>,
    /// The cursor for the next page, when there may be one.
    pub next: Option<SandboxId>,
}

/// Expands `$body` once per backend with `$pool` bound to the concrete pool and `$begin` to
/// the statement that opens a write transaction on it.
macro_rules! with_db {
    ($store:expr, |$pool:ident, $begin:ident| $body:expr) => {
        match &$store.db {
            crate::store::Db::Sqlite($pool) => {
                let $begin: &'static str = "BEGIN IMMEDIATE";
                $body
            }
            crate::store::Db::Postgres($pool) => {
                let $begin: &'static str = "BEGIN";
                $body
            }
        }
    };
}
pub(crate) use with_db;

/// Serializes one owner's quota-checked writes: on Postgres, locks the owner's `users` row for
/// the rest of the transaction `$tx`; on SQLite (`$postgres` false) the `BEGIN IMMEDIATE` of
/// [`with_db!`] already holds the database's write lock, so it does nothing.
macro_rules! lock_owner {
    ($tx:expr, $postgres:expr, $owner:expr) => {
        if $postgres {
            sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                .bind($owner)
                .execute(&mut *$tx)
                .await?;
        }
    };
}
pub(crate) use lock_owner;

// === impl Store ===

impl Store {
    /// Opens (creating if needed) the configured database and runs the migrations.
    pub async fn connect(config: &DatabaseConfig) -> Result<Store, StoreError> {
        let store = match config {
            DatabaseConfig::Sqlite { path } => {
                if let Some(dir) = path.parent() {
                    tokio::fs::create_dir_all(dir)
                        .await
                        .map_err(|e| StoreError::Open(sqlx::Error::Io(e)))?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT);
                let pool = SqlitePoolOptions::new()
                    .max_connections(MAX_CONNECTIONS)
                    .connect_with(options)
                    .await
                    .map_err(StoreError::Open)?;
                Store {
                    db: Db::Sqlite(pool),
                }
            }
            DatabaseConfig::Postgres { url } => {
                let pool = PgPoolOptions::new()
                    .max_connections(MAX_CONNECTIONS)
                    .connect(url.expose())
                    .await
                    .map_err(StoreError::Open)?;
                Store {
                    db: Db::Postgres(pool),
                }
            }
        };
        store.migrate().await?;
        Ok(store)
    }

    /// A private in-memory SQLite database with migrations applied, for in-process tests.
    pub async fn sqlite_in_memory() -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::new()
            .in_memory(true)
            .foreign_keys(true);
        // One connection that never expires: the database lives exactly as long as it.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(StoreError::Open)?;
        let store = Store {
            db: Db::Sqlite(pool),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Runs a trivial query: whether the database answers (for readiness checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_db!(self, |pool, _begin| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        with_db!(self, |pool, _begin| pool.close().await)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let (migrator, result) = match &self.db {
            Db::Sqlite(pool) => (&SQLITE_MIGRATOR, SQLITE_MIGRATOR.run(pool).await),
            Db::Postgres(pool) => (&POSTGRES_MIGRATOR, POSTGRES_MIGRATOR.run(pool).await),
        };
        result.map_err(|error| match error {
            MigrateError::VersionMissing(applied) => StoreError::DatabaseNewer {
                applied,
                known: migrator.iter().map(|m| m.version).max().unwrap_or(0),
            },
            other => StoreError::Migrate(other),
        })?;
        // Data the SQL cannot rewrite: policies stored before `allow_public` existed.
        self.upgrade_stored_policies().await.map(drop)
    }
}

/// Now, truncated to microseconds so both backends store and return the same value.
pub(crate) fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1000 * 1000)
        .unwrap_or(now)
}

// === impl ListQuery ===

impl ListQuery {
    /// The page size when none is asked for.
    pub const DEFAULT_LIMIT: u32 = 50;
    /// The largest page.
    pub const MAX_LIMIT: u32 = 500;

    fn effective_limit(&self) -> u32 {
        match self.limit {
            0 => Self::DEFAULT_LIMIT,
            n => n.min(Self::MAX_LIMIT),
        }
    }
}
