//! Self-test rows: the latest isolation self-test of each sandbox (one row per sandbox,
//! replaced by every run), and the addresses of the other sandboxes the probe must not reach.

use std::net::Ipv4Addr;

use time::OffsetDateTime;
use uuid::Uuid;

use super::{with_db, Store, StoreError};
use crate::sandbox::selftest::SelftestStatus;
use crate::sandbox::subnet::SandboxSubnet;
use crate::sandbox::SandboxId;

/// Replaces the sandbox's previous result (same SQL text on both backends).
const UPSERT_SELFTEST: &str = "INSERT INTO sandbox_selftests \
    (sandbox_id, generation, status, report, message, ran_at) VALUES ($1, $2, $3, $4, $5, $6) \
    ON CONFLICT (sandbox_id) DO UPDATE SET generation = excluded.generation, \
    status = excluded.status, report = excluded.report, message = excluded.message, \
    ran_at = excluded.ran_at";

/// One self-test result as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelftestRecord {
    /// The sandbox generation it ran against.
    pub generation: i64,
    /// How it ended.
    pub status: SelftestStatus,
    /// The probe's JSON report, when it printed one.
    pub report: Option<String>,
    /// Why it could not run, for [`SelftestStatus::Error`].
    pub message: Option<String>,
    /// When it ran.
    pub ran_at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct SelftestRow {
    generation: i64,
    status: String,
    report: Option<String>,
    message: Option<String>,
    ran_at: OffsetDateTime,
}

// === impl Store ===

impl Store {
    /// Stores `record` as the sandbox's latest self-test.
    pub async fn save_selftest(
        &self,
        id: SandboxId,
        record: &SelftestRecord,
    ) -> Result<(), StoreError> {
        with_db!(self, |pool, _begin| {
            sqlx::query(UPSERT_SELFTEST)
                .bind(id.as_uuid())
                .bind(record.generation)
                .bind(record.status.as_str())
                .bind(record.report.as_deref())
                .bind(record.message.as_deref())
                .bind(record.ran_at)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The sandbox's latest self-test, if one ran.
    pub async fn get_selftest(&self, id: SandboxId) -> Result<Option<SelftestRecord>, StoreError> {
        let row = with_db!(self, |pool, _begin| {
            sqlx::query_as::<_, SelftestRow>(
                "SELECT generation, status, report, message, ran_at FROM sandbox_selftests \
                 WHERE sandbox_id = $1",
            )
            .bind(id.as_uuid())
            .fetch_optional(pool)
            .await?
        });
        row.map(|row| {
            let status = row
                .status
                .parse()
                .map_err(|_unknown| StoreError::corrupt("sandbox_selftests.status", &row.status))?;
            Ok(SelftestRecord {
                generation: row.generation,
                status,
                report: row.report,
                message: row.message,
                ran_at: row.ran_at,
            })
        })
        .transpose()
    }

    /// Up to `limit` other sandboxes with their addresses (`.3` of each allocated /29).
    pub async fn other_sandbox_addresses(
        &self,
        id: SandboxId,
        limit: u32,
    ) -> Result<Vec<(SandboxId, Ipv4Addr)>, StoreError> {
        let rows: Vec<(Uuid, String)> = with_db!(self, |pool, _begin| {
            sqlx::query_as(
                "SELECT sandbox_id, subnet FROM subnet_allocations WHERE sandbox_id <> $1 \
                 ORDER BY allocated_at DESC LIMIT $2",
            )
            .bind(id.as_uuid())
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .iter()
            .filter_map(|(other, subnet)| {
                let subnet = subnet.parse().ok().and_then(SandboxSubnet::new)?;
                Some((SandboxId::from_uuid(*other), subnet.sandbox()))
            })
            .collect())
    }
}
