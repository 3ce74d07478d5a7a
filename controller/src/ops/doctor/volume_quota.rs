//! The `volume-quota` check: how the node enforces each volume's size, probed the way the
//! controller does at start ([`DockerClient::probe_volume_quota`]): **hard** when the local
//! volume driver takes the `size` option (an XFS volume root mounted with `prjquota`),
//! otherwise **soft** (usage sampled, and a volume over its size refuses read-write mounts),
//! with the daemon's reason.

use super::{Check, Verdict};
use crate::config::{Config, DEFAULT_NODE};
use crate::docker::client::volumes::QuotaProbe;
use crate::docker::DockerClient;

const NAME: &str = "volume-quota";

/// The check; skipped without a reachable DinD.
pub(super) async fn check(config: &Config, docker: Option<&DockerClient>) -> Check {
    let Some(docker) = docker else {
        return Check::new(NAME, Verdict::Skip, "the DinD is not reachable", "");
    };
    match docker.probe_volume_quota(DEFAULT_NODE).await {
        Ok(QuotaProbe::Hard) => Check::pass(
            NAME,
            format!("{DEFAULT_NODE}: hard (the node's volume root enforces each volume's size)"),
        ),
        Ok(QuotaProbe::Soft(reason)) => Check::pass(
            NAME,
            format!(
                "{DEFAULT_NODE}: soft ({reason}): usage sampled every {}s by {}; a volume over \
                 its size refuses read-write mounts. For hard quotas, give the dind's \
                 /var/lib/docker an XFS filesystem mounted with prjquota",
                config.volumes.sample_interval.as_secs(),
                config.volumes.helper_image
            ),
        ),
        Err(error) => Check::new(
            NAME,
            Verdict::Warn,
            format!("the probe failed: {error}"),
            "see dind-mtls",
        ),
    }
}
