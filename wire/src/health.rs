//! `GET /healthz` on the proxy's admin API: liveness, the boot id the controller re-pushes
//! entries on, and counts for `airlock doctor`.
//!
//! The fields are in alphabetical order because that is the order the proxy has always
//! written them in.

use serde::{Deserialize, Serialize};

/// The proxy's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Random per proxy process; a new one means the proxy lost its entries and ledger cursor.
    pub boot_id: String,
    /// Whether the proxy runs in controlled mode (entries pushed by the controller).
    #[serde(default)]
    pub controlled: bool,
    /// Where the proxy's resolvers came from (not sent by proxies built before it was added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsStatus>,
    /// Ledger events the proxy could not spool at all since it started.
    #[serde(default)]
    pub events_overflowed: u64,
    /// CIDRs in the infrastructure set the proxy enforces.
    #[serde(default)]
    pub infrastructure: u64,
    /// Sandbox entries registered.
    pub sandboxes: u64,
    /// Always `ok` when the proxy answers.
    #[serde(default)]
    pub status: HealthStatus,
}

/// The `status` of a [`Health`]: a proxy that answers is `ok`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// The proxy answers.
    #[default]
    Ok,
}

/// Where the proxy's resolvers came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DnsStatus {
    /// `--dns` / `AIRLOCK_EGRESS_DNS`.
    Configured,
    /// The nameservers of `/etc/resolv.conf` (Docker's embedded resolver left out).
    System,
    /// None: every name is refused.
    None,
}

// === impl DnsStatus ===

impl DnsStatus {
    /// `configured`, `system` or `none`, as in the JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Configured => "configured",
            Self::System => "system",
            Self::None => "none",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_round_trips_through_its_pinned_json() {
        let health = Health {
            boot_id: "0a1b".to_owned(),
            controlled: true,
            dns: Some(DnsStatus::System),
            events_overflowed: 3,
            infrastructure: 5,
            sandboxes: 2,
            status: HealthStatus::Ok,
        };
        let json = r#"{"boot_id":"0a1b","controlled":true,"dns":"system","events_overflowed":3,"infrastructure":5,"sandboxes":2,"status":"ok"}"#;
        assert_eq!(serde_json::to_string(&health).unwrap(), json);
        assert_eq!(serde_json::from_str::<Health>(json).unwrap(), health);
    }

    #[test]
    fn an_earlier_proxys_health_still_reads() {
        let health: Health = serde_json::from_str(r#"{"boot_id":"b","sandboxes":0}"#).unwrap();
        assert_eq!((health.boot_id.as_str(), health.sandboxes), ("b", 0));
        assert_eq!((health.events_overflowed, health.dns), (0, None));
    }

    #[test]
    fn dns_statuses_are_their_json_strings() {
        for status in [DnsStatus::Configured, DnsStatus::System, DnsStatus::None] {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
    }
}
