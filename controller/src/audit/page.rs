//! Reading the trail: [`ListAudit`] pages rows in a stable (time, id) order, within an optional
//! time range, continuing from an opaque [`AuditCursor`].
//!
//! Invariants: a cursor names the last row of a page and the order it was read in, so the next
//! page starts strictly after it (rows written meanwhile with a later time appear on a newest-
//! first listing's first page, and at the end of an oldest-first export); a cursor from one
//! order is refused by the other.

use time::OffsetDateTime;

use super::{Actor, AuditError, AuditLog, Command, MAX_PAGE};
use crate::store::{AuditRange, AuditRecord};

/// `GET /v1/audit` and `airlock admin audit export`: a page of the trail (admins).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListAudit {
    /// Rows written at or after this instant.
    pub since: Option<OffsetDateTime>,
    /// Rows written strictly before this instant.
    pub until: Option<OffsetDateTime>,
    /// Continue after the previous page (its `next`).
    pub cursor: Option<AuditCursor>,
    /// Oldest first (an export); newest first otherwise.
    pub oldest_first: bool,
    /// Page size, 1..=[`MAX_PAGE`].
    pub limit: u32,
}

/// A page of the trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditPage {
    /// The rows, in the order asked for.
    pub items: Vec<AuditRecord>,
    /// Where the next page starts; `None` on the last one.
    pub next: Option<AuditCursor>,
}

/// A position in the trail: the last row of a page, and the order it was read in. Its text
/// form is opaque to clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditCursor {
    at: OffsetDateTime,
    id: i64,
    oldest_first: bool,
}

// === impl AuditCursor ===

impl AuditCursor {
    /// The cursor's text: `o` or `n` (the order), the row's time in Unix nanoseconds, `.`,
    /// its id.
    pub fn encode(&self) -> String {
        let order = if self.oldest_first { 'o' } else { 'n' };
        format!("{order}{}.{}", self.at.unix_timestamp_nanos(), self.id)
    }

    /// Reads a cursor [`Self::encode`] wrote.
    pub fn parse(text: &str) -> Result<Self, AuditError> {
        let oldest_first = match text.as_bytes().first() {
            Some(b'o') => true,
            Some(b'n') => false,
            _ => return Err(AuditError::Cursor),
        };
        let (nanos, id) = text[1..].split_once('.').ok_or(AuditError::Cursor)?;
        let nanos: i128 = nanos.parse().map_err(|_malformed| AuditError::Cursor)?;
        let id: i64 = id.parse().map_err(|_malformed| AuditError::Cursor)?;
        let at = OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .map_err(|_malformed| AuditError::Cursor)?;
        Ok(Self {
            at,
            id,
            oldest_first,
        })
    }
}

// === impl ListAudit ===

impl Command<AuditLog> for ListAudit {
    type Output = AuditPage;
    type Error = AuditError;

    async fn execute(self, log: &AuditLog, actor: &Actor) -> Result<AuditPage, AuditError> {
        if !actor.is_admin() {
            return Err(AuditError::Forbidden);
        }
        if !(1..=MAX_PAGE).contains(&self.limit) {
            return Err(AuditError::Limit);
        }
        if let (Some(since), Some(until)) = (self.since, self.until) {
            if until <= since {
                return Err(AuditError::Range);
            }
        }
        if self
            .cursor
            .is_some_and(|c| c.oldest_first != self.oldest_first)
        {
            return Err(AuditError::Cursor);
        }
        let range = AuditRange {
            since: self.since,
            until: self.until,
            after: self.cursor.map(|c| (c.at, c.id)),
            oldest_first: self.oldest_first,
        };
        let mut items = log.store.page_audit(&range, self.limit + 1).await?;
        let more = items.len() > self.limit as usize;
        items.truncate(self.limit as usize);
        let next = items.last().filter(|_| more).map(|r| AuditCursor {
            at: r.at,
            id: r.id,
            oldest_first: self.oldest_first,
        });
        Ok(AuditPage { items, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let cursor = AuditCursor {
            at: OffsetDateTime::from_unix_timestamp_nanos(1_780_000_000_123_456_000).unwrap(),
            id: 42,
            oldest_first: true,
        };
        assert_eq!(AuditCursor::parse(&cursor.encode()).unwrap(), cursor);
        for bad in [
            "", "x1.2", "o", "o1", "o1.", "n.3", "nabc.1", "n1.2.3", "é1.2",
        ] {
            assert!(
                matches!(AuditCursor::parse(bad), Err(AuditError::Cursor)),
                "{bad:?}"
            );
        }
    }
}
