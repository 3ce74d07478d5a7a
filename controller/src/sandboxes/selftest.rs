//! The isolation self-test: runs `airlock-probe` inside a sandbox's network namespace and
//! records what it found (DESIGN.md invariants 1, 2 and 5, proven from inside).
//!
//! The probe runs as a short-lived container with `network_mode: container:<sandbox>`,
//! hardened like a sandbox ([`crate::docker::spec::probe`]). Its plan is built here from what the
//! controller knows: the sandbox's /29 (gateway and proxy), the DinD's addresses, other
//! sandboxes' addresses from the store, the controller's own address, and the optional test
//! upstream. The sandbox's proxy variables are copied into the probe so the through-proxy
//! check uses the sandbox's own credential.
//!
//! Invariants:
//! - A run always ends in a stored result: `passed`, `failed` (a check found a hole), or
//!   `error` (the probe could not run or printed no report). Only `passed` passes.
//! - In `required` mode a sandbox whose self-test does not pass fails its create (see
//!   [`super::create`]): it is cleaned up like any failed create and ends `failed` with
//!   reason `error` (fail closed).
//! - The probe container is removed after every run, whatever happened.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use airlock_probe::{Plan, Report, Targets};
use tracing::{info, instrument, warn};
use uuid::Uuid;

use super::{SandboxError, Sandboxes};
use crate::audit::{status, Actor, Command, Entry};
use crate::config::{Config, DockerConfig};
use crate::docker::spec::egress::bridge_ip;
use crate::docker::spec::probe::{probe_body, probe_name};
use crate::docker::Removal;
use crate::sandbox::names::container_name;
use crate::sandbox::selftest::Selftest;
use crate::sandbox::{SandboxId, SandboxState};
use crate::store::{now, Sandbox, SelftestRecord};

/// Longest a probe run may take before it is killed.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(30);
/// Most other sandboxes probed.
pub const MAX_OTHER_SANDBOXES: u32 = 4;
/// Docker's default bridge inside the DinD (`docker0`): one of the node's addresses.
pub const DOCKER0: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 1);
/// The sandbox variables copied into the probe (its proxy and credential).
const PROXY_VARS: [&str; 2] = ["HTTP_PROXY", "http_proxy"];
/// The end message of a sandbox that failed a required self-test.
pub const SELFTEST_FAILED: &str = "the isolation self-test did not pass";
/// Largest probe output kept, in bytes.
const OUTPUT_LIMIT: usize = 1024 * 1024;

/// `POST /v1/sandboxes/{id}/selftest`: runs the self-test now on a running sandbox and
/// stores the result (a failing result is still a success of the command).
#[derive(Clone, Copy, Debug)]
pub struct RunSelftest {
    /// The sandbox.
    pub id: SandboxId,
}

/// `GET /v1/sandboxes/{id}/selftest`: the latest result, if one ran.
#[derive(Clone, Copy, Debug)]
pub struct GetSelftest {
    /// The sandbox.
    pub id: SandboxId,
}

/// What the self-test needs from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelftestSettings {
    /// The probe image (never pulled).
    pub probe_image: String,
    /// The node's addresses a sandbox must not reach besides its gateway.
    pub node_addrs: Vec<IpAddr>,
    /// The controller's address as the node sees it.
    pub controller: Option<SocketAddr>,
    /// The test upstream.
    pub upstream: Option<SocketAddr>,
    /// The proxy's admin port.
    pub admin_port: u16,
    /// The proxy's address on its egress bridge, where the admin API listens; `None` when the
    /// network plane is off (then there is no proxy to ask).
    pub proxy_bridge: Option<IpAddr>,
}

// === impl SelftestSettings ===

impl SelftestSettings {
    /// The self-test's part of the configuration. The node's addresses are the IP in
    /// `AIRLOCK_DOCKER_HOST` (unless loopback or a name), Docker's default bridge, and
    /// `AIRLOCK_SELFTEST_NODE_ADDRS`.
    pub fn from_config(config: &Config) -> Self {
        let docker_host = match &config.docker {
            DockerConfig::Tls { host, .. } | DockerConfig::InsecureTcp { host, .. } => {
                host.trim_matches(['[', ']']).parse::<IpAddr>().ok()
            }
            DockerConfig::InsecureUnix { .. } => None,
        };
        let mut node_addrs: Vec<IpAddr> = docker_host
            .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
            .into_iter()
            .chain([IpAddr::V4(DOCKER0)])
            .collect();
        for ip in &config.selftest.node_addrs {
            if !node_addrs.contains(ip) {
                node_addrs.push(*ip);
            }
        }
        Self {
            probe_image: config.selftest.probe_image.clone(),
            node_addrs,
            controller: config.selftest.controller,
            upstream: config.selftest.upstream,
            admin_port: config.selftest.admin_port,
            proxy_bridge: config
                .egress
                .enabled
                .then(|| IpAddr::V4(bridge_ip(config.egress.subnet))),
        }
    }

    /// The probe's targets for a sandbox on `subnet`, next to `others` (their ids and
    /// addresses). The probe reports neighbours by role, never by address or name.
    pub fn targets(&self, sandbox: &Sandbox, others: &[(SandboxId, Ipv4Addr)]) -> Targets {
        Targets {
            gateway: sandbox.subnet.map(|s| IpAddr::V4(s.gateway())),
            proxy: sandbox.subnet.map(|s| IpAddr::V4(s.proxy())),
            admin_port: Some(self.admin_port),
            dind: self.node_addrs.clone(),
            other_sandboxes: others.iter().map(|(_, ip)| IpAddr::V4(*ip)).collect(),
            controller: self.controller,
            upstream: self.upstream,
            proxy_bridge: self.proxy_bridge,
            neighbour_names: others.iter().map(|(id, _)| container_name(*id)).collect(),
            through_proxy: self.proxy_bridge.is_some(),
        }
    }
}

// === impl RunSelftest ===

impl Command<Sandboxes> for RunSelftest {
    type Output = Selftest;
    type Error = SandboxError;

    #[instrument(skip_all, fields(sandbox.id = %self.id))]
    async fn execute(self, sandboxes: &Sandboxes, actor: &Actor) -> Result<Selftest, SandboxError> {
        let sandbox = sandboxes.visible(actor.scope(), self.id).await?;
        if sandbox.state != SandboxState::Running {
            return Err(SandboxError::Conflict(format!(
                "the self-test needs a running sandbox; this one is {}",
                sandbox.state.as_str()
            )));
        }
        let selftest = sandboxes.probe_and_store(&sandbox).await?;
        let entry = Entry::new("POST /v1/sandboxes/{id}/selftest", status::OK).object(self.id);
        sandboxes.peers.audit.record(actor, entry).await;
        Ok(selftest)
    }
}

// === impl GetSelftest ===

impl Command<Sandboxes> for GetSelftest {
    type Output = Option<Selftest>;
    type Error = SandboxError;

    async fn execute(
        self,
        sandboxes: &Sandboxes,
        actor: &Actor,
    ) -> Result<Option<Selftest>, SandboxError> {
        let action = "GET /v1/sandboxes/{id}/selftest";
        sandboxes.read_visible(actor, self.id, action).await?;
        sandboxes.latest_selftest(self.id).await
    }
}

// === impl Sandboxes ===

impl Sandboxes {
    /// The sandbox's latest self-test, if one ran.
    pub(super) async fn latest_selftest(
        &self,
        id: SandboxId,
    ) -> Result<Option<Selftest>, SandboxError> {
        Ok(self.store.get_selftest(id).await?.map(from_record))
    }

    /// Runs the probe on `sandbox` and stores the result, whatever it is.
    pub(super) async fn probe_and_store(
        &self,
        sandbox: &Sandbox,
    ) -> Result<Selftest, SandboxError> {
        let selftest = match self.probe(sandbox).await {
            Ok(selftest) => selftest,
            Err(error) => Selftest::error(sandbox.generation, error.to_string(), now()),
        };
        info!(
            sandbox.id = %sandbox.id,
            selftest.status = selftest.status.as_str(),
            selftest.failed = selftest.report.as_ref().map_or(0, |r| r.fail_count),
            "Self-test finished"
        );
        self.store
            .save_selftest(sandbox.id, &to_record(&selftest))
            .await?;
        Ok(selftest)
    }

    /// Builds the plan, runs the probe container and judges its output.
    async fn probe(&self, sandbox: &Sandbox) -> Result<Selftest, SandboxError> {
        let settings = &self.settings.selftest;
        let Some(container) = sandbox.container_id.as_deref() else {
            let message = "the sandbox has no container".to_owned();
            return Ok(Selftest::error(sandbox.generation, message, now()));
        };
        if !self.docker.image_exists(&settings.probe_image).await? {
            let message = format!(
                "the probe image {} is not on the node",
                settings.probe_image
            );
            return Ok(Selftest::error(sandbox.generation, message, now()));
        }
        let others = self
            .store
            .other_sandbox_addresses(sandbox.id, MAX_OTHER_SANDBOXES)
            .await?;
        let mut targets = settings.targets(sandbox, &others);
        // A service without the network plane has no proxy to ask (its sandboxes have no
        // egress at all), whatever the configuration says.
        targets.through_proxy &= self.egress.is_some();
        let plan = Plan::standard(&targets);
        let mut env = vec![format!("{}={}", airlock_probe::ENV_PLAN, plan.to_json())];
        env.extend(
            self.run_env(container, &sandbox.spec.run_as().to_string())
                .await?
                .into_iter()
                .filter(|entry| {
                    entry
                        .split_once('=')
                        .is_some_and(|(name, _)| PROXY_VARS.contains(&name))
                }),
        );
        let run = Uuid::new_v4().simple().to_string();
        let name = probe_name(sandbox.id, &run[..8]);
        let body = probe_body(sandbox.id, &settings.probe_image, container, env);
        let result = self
            .docker
            .run_to_end(&name, body, PROBE_DEADLINE, OUTPUT_LIMIT)
            .await
            .map(|run| {
                let output = (run.stdout.as_slice(), run.stderr.as_slice());
                Selftest::from_output(sandbox.generation, run.exit_code, output, now())
            })
            .map_err(SandboxError::from);
        if let Err(error) = self.docker.remove_container(&name, Removal::Force).await {
            warn!(%error, sandbox.id = %sandbox.id, "Probe container removal failed");
        }
        result
    }
}
/// A stored result.
fn from_record(record: SelftestRecord) -> Selftest {
    Selftest {
        status: record.status,
        generation: record.generation,
        report: record
            .report
            .as_deref()
            .and_then(|r| Report::from_json(r).ok()),
        message: record.message,
        ran_at: record.ran_at,
    }
}

/// The row of a result.
fn to_record(selftest: &Selftest) -> SelftestRecord {
    SelftestRecord {
        generation: selftest.generation,
        status: selftest.status,
        report: selftest.report.as_ref().map(Report::to_json),
        message: selftest.message.clone(),
        ran_at: selftest.ran_at,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use airlock_probe::report::Attempt;
    use airlock_probe::{Check, Kind, Outcome};

    use super::*;
    use crate::sandbox::selftest::SelftestStatus;

    fn config(vars: &[(&str, &str)]) -> Config {
        let vars: HashMap<&str, &str> = vars.iter().copied().collect();
        Config::from_lookup(|v| vars.get(v).map(|s| (*s).to_owned())).unwrap()
    }

    #[test]
    fn settings_from_config() {
        let settings = SelftestSettings::from_config(&config(&[
            ("AIRLOCK_DOCKER_HOST", "tcp://172.30.5.2:2376"),
            ("AIRLOCK_DATA_DIR", "/tmp/x"),
            ("AIRLOCK_LISTEN", "172.30.5.1:8080"),
            ("AIRLOCK_SELFTEST_NODE_ADDRS", "172.17.0.1, 10.99.0.1"),
            ("AIRLOCK_SELFTEST_UPSTREAM", "172.30.5.9:8081"),
        ]));
        let want: Vec<IpAddr> = ["172.30.5.2", "172.17.0.1", "10.99.0.1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(settings.node_addrs, want);
        assert_eq!(
            settings.controller,
            Some("172.30.5.1:8080".parse().unwrap())
        );
        assert_eq!(settings.upstream, Some("172.30.5.9:8081".parse().unwrap()));
        assert_eq!(settings.admin_port, 3129);
        assert_eq!(settings.probe_image, "airlock/probe:dev");
        // Defaults: a loopback DinD and a loopback listener are not targets.
        let defaults = SelftestSettings::from_config(&config(&[("AIRLOCK_DATA_DIR", "/tmp/x")]));
        assert_eq!(defaults.node_addrs, [IpAddr::V4(DOCKER0)]);
        assert_eq!(defaults.controller, None);
        assert_eq!(defaults.upstream, None);
    }

    #[test]
    fn bad_selftest_variables_are_reported_together() {
        let vars: HashMap<&str, &str> = [
            ("AIRLOCK_SELFTEST_UPSTREAM", "example.com:80"),
            ("AIRLOCK_SELFTEST_NODE_ADDRS", "10.0.0.1,nope"),
            ("AIRLOCK_SELFTEST_ADMIN_PORT", "0"),
        ]
        .into_iter()
        .collect();
        let error = Config::from_lookup(|v| vars.get(v).map(|s| (*s).to_owned())).unwrap_err();
        let vars: Vec<_> = error.issues.iter().map(|i| i.var).collect();
        assert_eq!(
            vars,
            [
                "AIRLOCK_SELFTEST_UPSTREAM",
                "AIRLOCK_SELFTEST_NODE_ADDRS",
                "AIRLOCK_SELFTEST_ADMIN_PORT"
            ]
        );
    }

    fn report(outcome: Outcome) -> String {
        let checks = [Check::blocked("metadata", Kind::Tcp, "169.254.169.254:80")];
        let attempt = Attempt {
            outcome,
            detail: String::new(),
            code: None,
            elapsed_ms: 1,
        };
        Report::new(&checks, vec![attempt]).to_json()
    }

    #[test]
    fn records_round_trip() {
        let stdout = report(Outcome::Reached);
        let selftest =
            Selftest::from_output(1, Some(1), (stdout.as_bytes(), b""), crate::store::now());
        let back = from_record(to_record(&selftest));
        assert_eq!(back, selftest);
        assert_eq!("failed".parse(), Ok(SelftestStatus::Failed));
        assert_eq!("nope".parse::<SelftestStatus>(), Err(()));
    }
}
