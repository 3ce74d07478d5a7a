//! The audit trail, and the vocabulary every domain command shares.
//!
//! - [`Actor`]: who issues a command (account, effective role, credential, address).
//! - [`Command`]: one action of one domain, a plain struct run by that domain's service
//!   (`service.run(&actor, command)`).
//! - [`AuditLog`]: the trail. A command that changes state files its own row through it once
//!   its outcome is known: the row names the action, the object (ids, names), the status the
//!   API answers that outcome with (0 for the offline CLI) and a detail. A request refused
//!   before any command filed a row is recorded by the API's refusal recorder
//!   (`api::audit::record`), from its route.
//!
//! Invariants: rows are only ever appended (the store's triggers refuse updates and deletes),
//! but for [`PruneAudit`], which deletes the rows older than a cutoff and files its own row in
//! the same transaction;
//! no secret value ever reaches a row; a row that cannot be written is logged, and the action
//! it describes stands.

mod actor;
mod page;
pub mod tally;

use std::future::Future;
use std::sync::Arc;

use tracing::error;

pub use actor::{Actor, Receipt, Via};
pub use page::{AuditCursor, AuditPage, ListAudit};
pub use tally::{Noise, Tally};

use crate::accounts::user::UserId;
use crate::store::{NewAuditRecord, Store, StoreError};

/// The statuses the API answers with, as rows store them.
pub mod status {
    /// 101: a WebSocket upgrade (an interactive exec).
    pub const SWITCHING: u16 = 101;
    /// 200: done.
    pub const OK: u16 = 200;
    /// 201: created.
    pub const CREATED: u16 = 201;
    /// 204: done, nothing to return.
    pub const NO_CONTENT: u16 = 204;
    /// 400: the request failed a check.
    pub const BAD_REQUEST: u16 = 400;
    /// 401: wrong credentials.
    pub const UNAUTHORIZED: u16 = 401;
    /// 422: the request was understood and refused by a check (a required self-test).
    pub const UNPROCESSABLE: u16 = 422;
    /// 429: too many attempts.
    pub const TOO_MANY: u16 = 429;
}

/// The largest page of [`ListAudit`].
pub const MAX_PAGE: u32 = 500;

/// One action of one domain, executed by that domain's service `S`.
pub trait Command<S>: Send + Sized {
    /// What a successful run returns.
    type Output;
    /// Why a run failed.
    type Error;

    /// Runs the command on `service` for `actor`.
    fn execute(
        self,
        service: &S,
        actor: &Actor,
    ) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send;
}

/// Appends to and reads the audit trail; cheap to clone.
#[derive(Clone, Debug)]
pub struct AuditLog {
    store: Store,
    /// Failed logins and refused tokens, counted until their minute ends.
    tally: Arc<Tally>,
}

/// One row a command files: what it did, to what, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    action: &'static str,
    object: Option<String>,
    status: u16,
    detail: Option<String>,
    user: Option<UserId>,
}

/// `airlock admin audit prune --before`: deletes the rows written before `before` and files
/// a row of its own (action `admin.audit.prune`, the cutoff and the count in its detail), in
/// one transaction. Admins only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PruneAudit {
    /// Rows written strictly before this instant go.
    pub before: time::OffsetDateTime,
}

/// Why reading the trail failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Only admins read the trail.
    #[error("this needs the admin role and a token with the `admin` scope")]
    Forbidden,
    /// The page size is out of range.
    #[error("limit must be between 1 and {MAX_PAGE}")]
    Limit,
    /// The cursor is not one this trail handed out (or was for the other order).
    #[error("cursor is not a `next` value of this listing")]
    Cursor,
    /// `until` is not after `since`.
    #[error("until must be after since")]
    Range,
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

// === impl AuditLog ===

impl AuditLog {
    /// The trail in `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            tally: Arc::default(),
        }
    }

    /// Counts one failed or throttled login or refused token into its (source, account,
    /// minute) row; see [`tally`].
    pub fn noise(&self, noise: &Noise<'_>) {
        self.tally.count(noise, crate::store::now());
    }

    /// Writes the rows of every finished minute (every few seconds, beside the API).
    pub async fn flush_noise(&self) {
        for row in self.tally.due(crate::store::now()) {
            self.append(&row).await;
        }
    }

    /// Writes every counted row, the current minute's too (at shutdown, and in tests).
    pub async fn flush_all_noise(&self) {
        for row in self.tally.drain() {
            self.append(&row).await;
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

    /// Files `entry` for `actor` and marks the actor's receipt. Boot-time steps file nothing;
    /// CLI rows carry status 0 (there is no answer).
    pub async fn record(&self, actor: &Actor, entry: Entry) {
        if let Some(row) = Self::row(actor, entry) {
            self.append(&row).await;
            actor.receipt().file();
        }
    }

    /// The row [`AuditLog::record`] would file for `actor` and `entry` (none for a boot-time
    /// step), for a command whose store transaction appends it together with the action.
    /// The command marks the receipt ([`AuditLog::filed`]) once that transaction committed.
    pub fn row(actor: &Actor, entry: Entry) -> Option<NewAuditRecord> {
        if actor.via() == Via::Boot {
            return None;
        }
        let status = match actor.via() {
            Via::Cli => 0,
            _ => entry.status,
        };
        Some(NewAuditRecord {
            user: entry.user.or(actor.user()),
            token: actor.credential().map(str::to_owned),
            action: entry.action.to_owned(),
            object: entry.object,
            source_ip: actor.source_ip().map(|ip| ip.to_string()),
            status,
            detail: entry.detail,
            count: 1,
        })
    }

    /// Marks `actor`'s receipt: a store transaction already appended the row of
    /// [`AuditLog::row`], so the API's refusal recorder adds none.
    pub fn filed(actor: &Actor) {
        actor.receipt().file();
    }

    /// Appends `row` as given: for the API's refusal recorder, which names requests no
    /// command answered.
    pub(crate) async fn append(&self, row: &NewAuditRecord) {
        if let Err(error) = self.store.append_audit(row).await {
            error!(%error, audit.action = %row.action, "Audit record could not be written");
        }
    }
}

// === impl Entry ===

impl Entry {
    /// A row for `action` that ended with `status` (see [`status`]).
    pub fn new(action: &'static str, status: u16) -> Self {
        Self {
            action,
            object: None,
            status,
            detail: None,
            user: None,
        }
    }

    /// The object acted on: an id, a name, an email.
    pub fn object(mut self, object: impl ToString) -> Self {
        self.object = Some(object.to_string());
        self
    }

    /// More about it (never a secret value).
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The account the row is about, when the actor has none (a login attempt).
    pub fn user(mut self, user: Option<UserId>) -> Self {
        self.user = user;
        self
    }
}

// === impl PruneAudit ===

impl Command<AuditLog> for PruneAudit {
    type Output = u64;
    type Error = AuditError;

    async fn execute(self, log: &AuditLog, actor: &Actor) -> Result<u64, AuditError> {
        if !actor.is_admin() {
            return Err(AuditError::Forbidden);
        }
        let cutoff = self
            .before
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let row = NewAuditRecord {
            user: actor.user(),
            token: actor.credential().map(str::to_owned),
            action: "admin.audit.prune".to_owned(),
            object: None,
            source_ip: actor.source_ip().map(|ip| ip.to_string()),
            status: if actor.via() == Via::Cli {
                0
            } else {
                status::OK
            },
            detail: Some(format!("before {cutoff}")),
            count: 1,
        };
        let deleted = log.store.prune_audit(self.before, &row).await?;
        actor.receipt().file();
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::user::Role;

    async fn log_and_rows() -> (AuditLog, Store) {
        let store = Store::sqlite_in_memory().await.unwrap();
        (AuditLog::new(store.clone()), store)
    }

    #[tokio::test]
    async fn rows_carry_the_actor_and_the_commands_entry() {
        let (log, store) = log_and_rows().await;
        let user = UserId::new();
        let api = Actor::new(user, Role::Member, Via::Session)
            .with_credential("session:1".to_owned(), Some([10, 0, 0, 1].into()));
        log.record(&api, Entry::new("POST /v1/x", status::CREATED).object("o1"))
            .await;
        assert!(api.receipt().filed());
        log.record(&Actor::cli(), Entry::new("admin.x", status::OK).detail("d"))
            .await;
        log.record(&Actor::boot(), Entry::new("boot.x", status::OK))
            .await;
        let rows = store.list_audit(None, 10).await.unwrap();
        let rows: Vec<_> = rows.into_iter().map(|r| r.record).collect();
        assert_eq!(rows.len(), 2, "boot steps file nothing");
        assert_eq!(rows[0].action, "admin.x");
        assert_eq!(rows[0].token.as_deref(), Some("cli"));
        assert_eq!(rows[0].status, 0);
        assert_eq!(rows[0].detail.as_deref(), Some("d"));
        assert_eq!(rows[1].user, Some(user));
        assert_eq!(rows[1].token.as_deref(), Some("session:1"));
        assert_eq!(rows[1].object.as_deref(), Some("o1"));
        assert_eq!(rows[1].source_ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(rows[1].status, 201);
    }

    #[tokio::test]
    async fn only_admins_page_the_trail() {
        let (log, _store) = log_and_rows().await;
        for n in 0..3 {
            let entry = Entry::new("admin.x", status::OK).object(n);
            log.record(&Actor::cli(), entry).await;
        }
        let member = Actor::new(UserId::new(), Role::Member, Via::Session);
        let list = ListAudit {
            limit: 2,
            ..ListAudit::default()
        };
        assert!(matches!(
            log.run(&member, list).await,
            Err(AuditError::Forbidden)
        ));
        let page = log.run(&Actor::cli(), list).await.unwrap();
        assert_eq!(page.items.len(), 2);
        let rest = ListAudit {
            cursor: page.next,
            limit: 2,
            ..ListAudit::default()
        };
        let rest = log.run(&Actor::cli(), rest).await.unwrap();
        assert_eq!((rest.items.len(), rest.next), (1, None));
    }
}
