//! The `egress-proxy` line: the proxy is healthy over its mTLS admin API, and holds every
//! live sandbox's entry at the generation the store has. The controller re-pushes entries
//! within seconds after a proxy restart, so a lasting gap means it cannot.

use std::net::SocketAddr;

use super::{Check, Verdict, CHECK_TIMEOUT};
use crate::config::Config;
use crate::docker::spec::egress::ADMIN_PORT;
use crate::egress::admin::AdminClient;
use crate::egress::EGRESS_CERTS_SUBDIR;
use crate::store::{EgressEntry, Store};
use airlock_wire::{Health, SandboxList};

const NAME: &str = "egress-proxy";

/// Checks the proxy; compares generations when the store is reachable.
pub(super) async fn check(config: &Config, store: Option<&Store>) -> Check {
    let (client, addr) = match admin_client(config) {
        Ok(found) => found,
        Err(check) => return check,
    };
    let health = match health(&client, addr).await {
        Ok(health) => health,
        Err(check) => return check,
    };
    let Some(store) = store else {
        let detail = format!(
            "healthy (boot {}); store unavailable, generations not compared",
            health.boot_id
        );
        return Check::pass(NAME, detail);
    };
    let (live, listed) = match (
        store.live_egress_entries().await,
        client.list_sandboxes().await,
    ) {
        (Ok(live), Ok(listed)) => (live, listed),
        (Err(error), _) => {
            return Check::new(NAME, Verdict::Fail, format!("store: {error}"), "see store")
        }
        (_, Err(error)) => return Check::new(NAME, Verdict::Fail, format!("{addr}: {error}"), ""),
    };
    verdict(&health, &live, &stale(&live, &listed))
}

/// The admin client from the data dir's certificates, or the line saying why there is none.
fn admin_client(config: &Config) -> Result<(AdminClient, SocketAddr), Check> {
    let egress = &config.egress;
    if !egress.enabled {
        let detail = "the network plane is off (AIRLOCK_EGRESS=false): sandboxes have no egress";
        return Err(Check::new(NAME, Verdict::Skip, detail, ""));
    }
    let Some(admin_ip) = egress.admin_ip else {
        return Err(Check::new(
            NAME,
            Verdict::Fail,
            "no admin address: AIRLOCK_DOCKER_HOST is a name",
            "set AIRLOCK_EGRESS_ADMIN_ADDR to the DinD's IP address",
        ));
    };
    let dir = config.data_dir.join(EGRESS_CERTS_SUBDIR).join("client");
    let addr = SocketAddr::new(admin_ip, ADMIN_PORT);
    match AdminClient::new(addr, &dir) {
        Ok(client) => Ok((client, addr)),
        Err(error) => Err(Check::new(
            NAME,
            Verdict::Fail,
            format!("no admin client certificate in {}: {error}", dir.display()),
            "start `airlock serve` once with this data dir: it issues the proxy's certificates",
        )),
    }
}

/// The proxy's health, within [`CHECK_TIMEOUT`].
async fn health(client: &AdminClient, addr: SocketAddr) -> Result<Health, Check> {
    match tokio::time::timeout(CHECK_TIMEOUT, client.health()).await {
        Ok(Ok(health)) => Ok(health),
        Ok(Err(error)) => Err(Check::new(
            NAME,
            Verdict::Fail,
            format!("{addr}: {error}"),
            "is `airlock serve` running? it starts the airlock-egress container on the node; see its log",
        )),
        Err(_elapsed) => Err(Check::new(
            NAME,
            Verdict::Fail,
            format!("{addr}: no answer within {CHECK_TIMEOUT:?}"),
            "check that the DinD publishes 3129 on AIRLOCK_EGRESS_ADMIN_ADDR",
        )),
    }
}

/// The live sandboxes the proxy lacks, or holds at another generation.
fn stale(live: &[EgressEntry], listed: &SandboxList) -> Vec<String> {
    live.iter()
        .filter(|entry| {
            let id = entry.sandbox_id.to_string();
            !listed.sandboxes.iter().any(|listed| {
                listed.sandbox_id == id
                    && i64::try_from(listed.generation).is_ok_and(|g| g == entry.generation)
            })
        })
        .map(|entry| entry.sandbox_id.to_string())
        .collect()
}

fn verdict(health: &Health, live: &[EgressEntry], stale: &[String]) -> Check {
    if !stale.is_empty() {
        return Check::new(
            NAME,
            Verdict::Fail,
            format!(
                "{} of {} live sandboxes missing or stale on the proxy (they are denied meanwhile): {}",
                stale.len(),
                live.len(),
                stale.join(", ")
            ),
            "the controller re-pushes entries every second; if this lasts, see its log for egress errors",
        );
    }
    if health.events_overflowed > 0 {
        return Check::new(
            NAME,
            Verdict::Warn,
            format!(
                "healthy (boot {}), {} live sandboxes current, but {} ledger events were lost \
                 to a full spool since the proxy started",
                health.boot_id,
                live.len(),
                health.events_overflowed
            ),
            "the controller was not pulling the ledger while sandboxes made requests (down or \
             failing: see its log); the lost events are only in the airlock-egress container log",
        );
    }
    let detail = format!(
        "healthy (boot {}), {} live sandboxes all on their current generation",
        health.boot_id,
        live.len()
    );
    Check::pass(NAME, detail)
}
