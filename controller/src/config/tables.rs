//! Table bounds: ledger retention and the per-sandbox ledger cap, and the per-user secret
//! count, parsed with the rest of the configuration so their mistakes are reported together.

use std::time::Duration;

use super::{parse_duration, positive, Reader};

/// How long ledger rows of a gone sandbox (deleted or ended) are kept.
pub const ENV_LEDGER_RETENTION: &str = "AIRLOCK_LEDGER_RETENTION";
/// Default of [`ENV_LEDGER_RETENTION`].
pub const DEFAULT_LEDGER_RETENTION: &str = "30d";
/// Most individual ledger rows per sandbox; past it events fold into exact summary rows.
pub const ENV_LEDGER_MAX_ROWS_PER_SANDBOX: &str = "AIRLOCK_LEDGER_MAX_ROWS_PER_SANDBOX";
/// Default of [`ENV_LEDGER_MAX_ROWS_PER_SANDBOX`].
pub const DEFAULT_LEDGER_MAX_ROWS_PER_SANDBOX: &str = "100000";
/// Most secrets per user (`max_secrets`).
pub const ENV_QUOTA_MAX_SECRETS: &str = "AIRLOCK_QUOTA_MAX_SECRETS";
/// Default of [`ENV_QUOTA_MAX_SECRETS`].
pub const DEFAULT_QUOTA_MAX_SECRETS: &str = "100";

/// The bounds on the tables that grow with use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TablesConfig {
    /// Ledger rows of a gone sandbox older than this are removed.
    pub ledger_retention: Duration,
    /// Most individual ledger rows per sandbox.
    pub ledger_max_rows: u64,
    /// Most secrets per user.
    pub max_secrets: u64,
}

// === impl Reader ===

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    /// Parses the table bounds.
    pub(super) fn tables(&mut self) -> Option<TablesConfig> {
        let ledger_retention =
            self.parse_with(ENV_LEDGER_RETENTION, DEFAULT_LEDGER_RETENTION, |v| {
                parse_duration(v)
                    .ok()
                    .filter(|d| *d >= Duration::from_secs(60))
                    .ok_or("a duration of at least 1m, like 30d or 12h")
            });
        let ledger_max_rows = self.parse_with(
            ENV_LEDGER_MAX_ROWS_PER_SANDBOX,
            DEFAULT_LEDGER_MAX_ROWS_PER_SANDBOX,
            |v| positive(v, "a whole number of rows, at least 1"),
        );
        let max_secrets = self.parse_with(ENV_QUOTA_MAX_SECRETS, DEFAULT_QUOTA_MAX_SECRETS, |v| {
            super::positive_or_zero(v, "a whole number of secrets (0 refuses every new one)")
        });
        Some(TablesConfig {
            ledger_retention: ledger_retention?,
            ledger_max_rows: ledger_max_rows?,
            max_secrets: max_secrets?,
        })
    }
}

impl Default for TablesConfig {
    fn default() -> Self {
        Self {
            ledger_retention: Duration::from_secs(30 * 86_400),
            ledger_max_rows: 100_000,
            max_secrets: 100,
        }
    }
}
