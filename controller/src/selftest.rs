//! The isolation self-test: runs `airlock-probe` inside a sandbox's network namespace and
//! records what it found (DESIGN.md invariants 1, 2 and 5, proven from inside).
//!
//! The probe runs as a short-lived container with `network_mode: container:<sandbox>`,
//! hardened like a sandbox ([`crate::docker::probe`]). Its plan is built here from what the
//! controller knows: the sandbox's /29 (gateway and proxy), the DinD's addresses, other
//! sandboxes' addresses from the store, the controller's own address, and the optional test
//! upstream. The sandbox's proxy variables are copied into the probe so the through-proxy
//! check uses the sandbox's own credential.
//!
//! Invariants:
//! - A run always ends in a stored result: `passed`, `failed` (a check found a hole), or
//!   `error` (the probe could not run or printed no report). Only `passed` passes.
//! - In `required` mode a sandbox whose self-test does not pass fails its create: it is
//!   cleaned up like any failed create and ends `failed` with reason `error` (fail closed).
//! - The probe container is removed after every run, whatever happened.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use airlock_probe::{Plan, Report, Targets};
use futures_util::StreamExt;
use time::OffsetDateTime;
use tracing::{info, instrument, warn};
use uuid::Uuid;

use crate::config::{Config, DockerConfig};
use crate::docker::egress::bridge_ip;
use crate::docker::probe::{probe_body, probe_name};
use crate::docker::spec::container_name;
use crate::docker::{LogFollow, OutputStream, Removal};
use crate::sandbox::{SandboxId, SandboxState};
use crate::service::{SandboxService, ServiceError};
use crate::store::{Sandbox, Scope, SelftestRecord};

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

/// When the self-test runs at create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelftestMode {
    /// Run it and record the result; the sandbox keeps running whatever it says.
    Record,
    /// Run it; a result other than `passed` fails the create.
    Required,
}

/// How a self-test ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelftestStatus {
    /// Every check passed.
    Passed,
    /// At least one check failed: a hole.
    Failed,
    /// The probe could not run or printed no report.
    Error,
}

/// A self-test result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selftest {
    /// How it ended.
    pub status: SelftestStatus,
    /// The sandbox generation it ran against.
    pub generation: i64,
    /// The probe's report, when it printed one.
    pub report: Option<Report>,
    /// Why it could not run, for [`SelftestStatus::Error`].
    pub message: Option<String>,
    /// When it ran.
    pub ran_at: OffsetDateTime,
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

// === impl SelftestStatus ===

impl SelftestStatus {
    /// The stored and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Failed => "failed",
            Self::Error => "error",
        }
    }
}

impl FromStr for SelftestStatus {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "passed" => Ok(Self::Passed),
            "failed" => Ok(Self::Failed),
            "error" => Ok(Self::Error),
            _ => Err(()),
        }
    }
}

// === impl Selftest ===

impl Selftest {
    fn from_record(record: SelftestRecord) -> Self {
        Self {
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

    fn to_record(&self) -> SelftestRecord {
        SelftestRecord {
            generation: self.generation,
            status: self.status,
            report: self.report.as_ref().map(Report::to_json),
            message: self.message.clone(),
            ran_at: self.ran_at,
        }
    }

    /// Judges what the probe printed and how it exited.
    pub fn from_output(
        generation: i64,
        exit_code: Option<i64>,
        stdout: &[u8],
        stderr: &[u8],
    ) -> Self {
        let report = String::from_utf8_lossy(stdout)
            .lines()
            .rev()
            .find_map(|line| Report::from_json(line.trim()).ok());
        let (status, message) = match (&report, exit_code) {
            (Some(report), Some(0 | 1)) if report.passed => (SelftestStatus::Passed, None),
            (Some(_), Some(0 | 1)) => (SelftestStatus::Failed, None),
            (_, code) => {
                let stderr = String::from_utf8_lossy(stderr);
                let tail: String = stderr.chars().take(300).collect();
                let code = code.map_or_else(|| "none (killed)".to_owned(), |c| c.to_string());
                let message = format!("the probe printed no report (exit code {code}): {tail}");
                (SelftestStatus::Error, Some(message))
            }
        };
        Self {
            status,
            generation,
            report,
            message,
            ran_at: crate::store::now(),
        }
    }

    fn error(generation: i64, message: String) -> Self {
        Self {
            status: SelftestStatus::Error,
            generation,
            report: None,
            message: Some(message),
            ran_at: crate::store::now(),
        }
    }
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

// === impl SandboxService ===

impl SandboxService {
    /// The sandbox's latest self-test, if one ran.
    pub async fn selftest(
        &self,
        scope: Scope,
        id: SandboxId,
    ) -> Result<Option<Selftest>, ServiceError> {
        self.get(scope, id).await?;
        let record = self.store().get_selftest(id).await?;
        Ok(record.map(Selftest::from_record))
    }

    /// Runs the self-test now on a running sandbox and stores the result.
    #[instrument(skip_all, fields(sandbox.id = %id))]
    pub async fn run_selftest(
        &self,
        scope: Scope,
        id: SandboxId,
    ) -> Result<Selftest, ServiceError> {
        let sandbox = self.get(scope, id).await?;
        if sandbox.state != SandboxState::Running {
            return Err(ServiceError::Conflict(format!(
                "the self-test needs a running sandbox; this one is {}",
                sandbox.state.as_str()
            )));
        }
        self.probe_and_store(&sandbox).await
    }

    /// Runs the self-test on a sandbox that was just created. In
    /// [`SelftestMode::Required`], a result other than `passed` fails the sandbox (its objects
    /// removed, its subnet released) and the failed sandbox is returned.
    #[instrument(skip_all, fields(sandbox.id = %sandbox.id))]
    pub async fn selftest_after_create(
        &self,
        sandbox: Sandbox,
        mode: SelftestMode,
    ) -> Result<(Sandbox, Selftest), ServiceError> {
        let selftest = self.probe_and_store(&sandbox).await?;
        if mode == SelftestMode::Required && selftest.status != SelftestStatus::Passed {
            warn!(
                sandbox.id = %sandbox.id,
                selftest.status = selftest.status.as_str(),
                "Required self-test did not pass; failing the sandbox"
            );
            let failed = self.fail_created(&sandbox, SELFTEST_FAILED).await?;
            return Ok((failed, selftest));
        }
        Ok((sandbox, selftest))
    }

    async fn probe_and_store(&self, sandbox: &Sandbox) -> Result<Selftest, ServiceError> {
        let selftest = match self.probe(sandbox).await {
            Ok(selftest) => selftest,
            Err(error) => Selftest::error(sandbox.generation, error.to_string()),
        };
        info!(
            sandbox.id = %sandbox.id,
            selftest.status = selftest.status.as_str(),
            selftest.failed = selftest.report.as_ref().map_or(0, |r| r.fail_count),
            "Self-test finished"
        );
        self.store()
            .save_selftest(sandbox.id, &selftest.to_record())
            .await?;
        Ok(selftest)
    }

    /// Builds the plan, runs the probe container and judges its output.
    async fn probe(&self, sandbox: &Sandbox) -> Result<Selftest, ServiceError> {
        let settings = &self.settings().selftest;
        let Some(container) = sandbox.container_id.as_deref() else {
            return Ok(Selftest::error(
                sandbox.generation,
                "the sandbox has no container".to_owned(),
            ));
        };
        if !self.docker().image_exists(&settings.probe_image).await? {
            let message = format!(
                "the probe image {} is not on the node",
                settings.probe_image
            );
            return Ok(Selftest::error(sandbox.generation, message));
        }
        let others = self
            .store()
            .other_sandbox_addresses(sandbox.id, MAX_OTHER_SANDBOXES)
            .await?;
        let mut targets = settings.targets(sandbox, &others);
        // A service without the network plane has no proxy to ask (its sandboxes have no
        // egress at all), whatever the configuration says.
        targets.through_proxy &= self.egress().is_some();
        let plan = Plan::standard(&targets);
        let mut env = vec![format!("{}={}", airlock_probe::ENV_PLAN, plan.to_json())];
        env.extend(self.docker().container_env(container, &PROXY_VARS).await?);
        let run = Uuid::new_v4().simple().to_string();
        let name = probe_name(sandbox.id, &run[..8]);
        let body = probe_body(sandbox.id, &settings.probe_image, container, env);
        let result = self
            .run_probe_container(&name, body, sandbox.generation)
            .await;
        if let Err(error) = self.docker().remove_container(&name, Removal::Force).await {
            warn!(%error, sandbox.id = %sandbox.id, "Probe container removal failed");
        }
        result
    }

    async fn run_probe_container(
        &self,
        name: &str,
        body: bollard::models::ContainerCreateBody,
        generation: i64,
    ) -> Result<Selftest, ServiceError> {
        let docker = self.docker();
        let id = docker.create_container(name, body).await?;
        docker.start(&id).await?;
        let exit_code = match docker.wait(&id, PROBE_DEADLINE).await? {
            Some(code) => Some(code),
            None => {
                docker.kill(&id, "SIGKILL").await?;
                None
            }
        };
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let mut output = docker.container_logs(&id, LogFollow::Once);
        while let Some(chunk) = output.next().await {
            let chunk = chunk?;
            let sink = match chunk.stream {
                OutputStream::Stdout => &mut stdout,
                OutputStream::Stderr => &mut stderr,
            };
            if sink.len() < OUTPUT_LIMIT {
                sink.extend_from_slice(&chunk.bytes);
            }
        }
        Ok(Selftest::from_output(
            generation, exit_code, &stdout, &stderr,
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use airlock_probe::report::Attempt;
    use airlock_probe::{Check, Kind, Outcome};

    use super::*;

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
    fn probe_output_is_judged() {
        let passed = format!("{}\n", report(Outcome::TimedOut));
        let failed = format!("{}\n", report(Outcome::Reached));
        let table: [(Option<i64>, &str, SelftestStatus); 6] = [
            (Some(0), &passed, SelftestStatus::Passed),
            (Some(1), &failed, SelftestStatus::Failed),
            // A report that says it passed with a failing exit, or no exit at all, is not
            // trusted.
            (Some(137), &passed, SelftestStatus::Error),
            (None, &passed, SelftestStatus::Error),
            (Some(2), "", SelftestStatus::Error),
            (Some(0), "garbage\n", SelftestStatus::Error),
        ];
        for (code, stdout, want) in table {
            let got = Selftest::from_output(3, code, stdout.as_bytes(), b"usage");
            assert_eq!(got.status, want, "{code:?} {stdout}");
            assert_eq!(got.generation, 3);
            assert_eq!(got.message.is_some(), want == SelftestStatus::Error);
        }
    }

    #[test]
    fn records_round_trip() {
        let selftest = Selftest::from_output(1, Some(1), report(Outcome::Reached).as_bytes(), b"");
        let back = Selftest::from_record(selftest.to_record());
        assert_eq!(back, selftest);
        assert_eq!("failed".parse(), Ok(SelftestStatus::Failed));
        assert_eq!("nope".parse::<SelftestStatus>(), Err(()));
    }
}
