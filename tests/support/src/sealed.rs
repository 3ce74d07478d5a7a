//! The sealed outer network and throwaway containers on it.
//!
//! A `SealedNet` is a host-daemon network created with `--internal` and a fixed `/24` taken from
//! `10.231.0.0/16`: nothing attached to it has a route anywhere else, so whatever the DinD (or a
//! buggy proxy inside it) sends stays on it. The host still reaches every container on it
//! directly by IP through the bridge, which is how tests reach the DinD's 2376.
//!
//! `--internal` alone leaves one way out: the gateway address is the host itself, and Docker adds
//! no INPUT rule for it. Each sealed network therefore also gets a host INPUT rule dropping new
//! connections from its bridge (see `host_firewall`), so a container on it can reach neither
//! the host's services nor anything beyond.
//!
//! Address plan inside a sealed `/24`: `.1` is the bridge (the host), `.2` the DinD
//! ([`SealedNet::DIND_HOST`]), `.53` the conventional fake DNS server ([`SealedNet::DNS_HOST`]);
//! outer helpers may take any other address.
//!
//! Invariant: every object is labelled (see `sweep`) and removed on `Drop`, even on panic. The
//! network's `Drop` first force-removes every container of the same fixture, so an outer
//! container still attached (or a DinD dropped out of order) never keeps the network alive.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use crate::dind::DindError;
use crate::host_docker::{docker, remove_container_blocking, remove_network_blocking};
use crate::host_firewall;
use crate::sweep::{label_args, sweep_once, LABEL_FIXTURE};

/// How many random `/24`s to try before giving up on finding a free subnet.
const SUBNET_TRIES: u32 = 64;

/// An `--internal` host network with a fixed subnet `10.231.<octet>.0/24`, removed on drop.
#[derive(Debug)]
pub struct SealedNet {
    name: String,
    fixture: String,
    octet: u8,
    /// Host interface of the network's bridge (`br-<id prefix>`), once created.
    bridge: Option<String>,
}

/// What to run as a throwaway container on a [`SealedNet`].
#[derive(Debug, Clone)]
pub struct OuterSpec {
    /// Short label for the container name (`e2e-<hint>-<uuid>`).
    pub hint: String,
    /// Image (must exist on the host daemon; never pulled).
    pub image: String,
    /// Overrides the image's entrypoint when set.
    pub entrypoint: Option<String>,
    /// Command (arguments to the entrypoint).
    pub cmd: Vec<String>,
    /// Static address on the sealed network; Docker assigns one when `None`.
    pub ip: Option<Ipv4Addr>,
    /// Read-only bind mounts: (host path, container path).
    pub binds_ro: Vec<(PathBuf, String)>,
    /// The user to run as (`--user`); the image's when `None`.
    pub user: Option<String>,
}

/// A running outer container; force-removed on drop.
#[derive(Debug)]
pub struct OuterContainer {
    name: String,
    ip: Ipv4Addr,
}

// === impl SealedNet ===

impl SealedNet {
    /// Host number of the DinD in the sealed `/24`.
    pub const DIND_HOST: u8 = 2;
    /// Host number conventionally used for a fake DNS server.
    pub const DNS_HOST: u8 = 53;

    /// Sweeps dead runs' leftovers (once per process), then creates a sealed network for `test`
    /// on a free random `/24` of `10.231.0.0/16`.
    pub async fn create(test: &str) -> Result<Self, DindError> {
        sweep_once();
        let fixture = unique_name(test);
        let labels = label_args(&fixture);
        let mut last = None;
        for _ in 0..SUBNET_TRIES {
            let octet = uuid::Uuid::new_v4().as_bytes()[0];
            let subnet = format!("10.231.{octet}.0/24");
            let gateway = format!("10.231.{octet}.1");
            let mut args = vec!["network", "create", "--internal", "--driver", "bridge"];
            args.extend(["--subnet", &subnet, "--gateway", &gateway]);
            args.extend(labels.iter().map(String::as_str));
            args.push(&fixture);
            match docker(&args).await {
                Ok(id) => return Self::sealed(fixture, octet, &id).await,
                Err(error) if is_overlap(&error) => last = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(DindError::NoFreeSubnet {
            tries: SUBNET_TRIES,
            last: last.map(|e| e.to_string()).unwrap_or_default(),
        })
    }

    /// Adds the host INPUT rule for a just-created network (see `host_firewall`).
    async fn sealed(fixture: String, octet: u8, id: &str) -> Result<Self, DindError> {
        let mut net = Self {
            name: fixture.clone(),
            fixture,
            octet,
            bridge: None,
        };
        let bridge = format!("br-{}", id.get(..12).unwrap_or(id));
        host_firewall::seal(&bridge, &net.fixture).await?;
        net.bridge = Some(bridge);
        tracing::debug!(network.name = %net.name, network.subnet = %net.subnet(), "Sealed network created");
        Ok(net)
    }

    /// Network name (also the fixture id carried by every object of this fixture).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fixture id (`airlock.test-fixture` label value).
    pub fn fixture(&self) -> &str {
        &self.fixture
    }

    /// The subnet in CIDR notation.
    pub fn subnet(&self) -> String {
        format!("10.231.{}.0/24", self.octet)
    }

    /// The bridge address, which is the host's own address on this network.
    pub fn gateway(&self) -> Ipv4Addr {
        self.host(1)
    }

    /// Address of host number `n` in the subnet.
    pub fn host(&self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.octet, n)
    }

    /// Runs a detached container on this network (never pulls), labelled with this fixture.
    pub async fn run(&self, spec: OuterSpec) -> Result<OuterContainer, DindError> {
        let name = unique_name(&spec.hint);
        let labels = label_args(&self.fixture);
        let ip = spec.ip.map(|ip| ip.to_string());
        let binds: Vec<String> = spec
            .binds_ro
            .iter()
            .map(|(host, inside)| format!("{}:{inside}:ro", host.display()))
            .collect();
        let mut args = vec!["run", "-d", "--pull=never", "--name", name.as_str()];
        args.extend(["--network", &self.name]);
        if let Some(ip) = &ip {
            args.extend(["--ip", ip]);
        }
        for bind in &binds {
            args.extend(["-v", bind]);
        }
        if let Some(entrypoint) = &spec.entrypoint {
            args.extend(["--entrypoint", entrypoint]);
        }
        if let Some(user) = &spec.user {
            args.extend(["--user", user]);
        }
        args.extend(labels.iter().map(String::as_str));
        args.push(&spec.image);
        args.extend(spec.cmd.iter().map(String::as_str));
        // Own the name before running, so a failed start is still cleaned up on drop.
        let mut container = OuterContainer {
            name: name.clone(),
            ip: spec.ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
        };
        docker(&args).await?;
        if spec.ip.is_none() {
            container.ip = container_ip(&container.name, &self.name).await?;
        }
        Ok(container)
    }

    /// Attaches a container of another fixture (a DinD whose node network is another sealed
    /// network) to this network at `ip`, so it can reach this network's servers directly.
    /// This network's `Drop` detaches it again.
    pub async fn attach(&self, container: &str, ip: Ipv4Addr) -> Result<(), DindError> {
        let ip = ip.to_string();
        docker(&["network", "connect", "--ip", &ip, &self.name, container]).await?;
        Ok(())
    }
}

impl Drop for SealedNet {
    fn drop(&mut self) {
        let filter = format!("label={LABEL_FIXTURE}={}", self.fixture);
        match crate::host_docker::docker_blocking(&["ps", "-aq", "--filter", &filter]) {
            Ok(ids) => ids.lines().for_each(remove_container_blocking),
            Err(error) => tracing::warn!(%error, "Fixture container listing failed"),
        }
        // Containers of other fixtures attached with `attach` would keep the network alive.
        let attached = crate::host_docker::docker_blocking(&[
            "network",
            "inspect",
            "-f",
            "{{range .Containers}}{{.Name}} {{end}}",
            &self.name,
        ]);
        for container in attached.iter().flat_map(|names| names.split_whitespace()) {
            let detached = crate::host_docker::docker_blocking(&[
                "network",
                "disconnect",
                "-f",
                &self.name,
                container,
            ]);
            if let Err(error) = detached {
                tracing::warn!(%error, container, "Detaching from a sealed network failed");
            }
        }
        remove_network_blocking(&self.name);
        if let Some(bridge) = &self.bridge {
            host_firewall::unseal_blocking(bridge, &self.fixture);
        }
    }
}

// === impl OuterSpec ===

impl OuterSpec {
    /// A container from `image` running `cmd`, with a Docker-assigned address.
    pub fn new(hint: &str, image: &str, cmd: &[&str]) -> Self {
        Self {
            hint: hint.to_owned(),
            image: image.to_owned(),
            entrypoint: None,
            cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
            ip: None,
            binds_ro: Vec::new(),
            user: None,
        }
    }

    /// Runs as `user` (`uid[:gid]`), e.g. root to listen on a port below 1024.
    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.to_owned());
        self
    }

    /// Sets a static address on the sealed network.
    pub fn ip(mut self, ip: Ipv4Addr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// Overrides the image's entrypoint.
    pub fn entrypoint(mut self, entrypoint: &str) -> Self {
        self.entrypoint = Some(entrypoint.to_owned());
        self
    }

    /// Adds a read-only bind mount.
    pub fn bind_ro(mut self, host: impl Into<PathBuf>, inside: &str) -> Self {
        self.binds_ro.push((host.into(), inside.to_owned()));
        self
    }
}

// === impl OuterContainer ===

impl OuterContainer {
    /// Container name on the host daemon.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Address on the sealed network.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Waits until the container exits and returns its exit code.
    pub async fn wait(&self) -> Result<i64, DindError> {
        let code = docker(&["wait", &self.name]).await?;
        code.parse().map_err(|error| DindError::Unexpected {
            what: "exit code",
            detail: format!("{code:?}: {error}"),
        })
    }

    /// Everything the container wrote to stdout so far.
    pub async fn stdout(&self) -> Result<String, DindError> {
        let output = crate::host_docker::docker_output(&["logs", &self.name]).await?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Everything the container wrote to stderr so far.
    pub async fn stderr(&self) -> Result<String, DindError> {
        let output = crate::host_docker::docker_output(&["logs", &self.name]).await?;
        Ok(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

impl Drop for OuterContainer {
    fn drop(&mut self) {
        remove_container_blocking(&self.name);
    }
}

/// `e2e-<hint>-<12 hex>`, with the hint reduced to characters Docker accepts in names.
pub(crate) fn unique_name(hint: &str) -> String {
    let hint: String = hint
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .take(32)
        .collect();
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("e2e-{hint}-{}", &id[..12])
}

fn is_overlap(error: &DindError) -> bool {
    matches!(error, DindError::Cli { stderr, .. } if stderr.contains("overlap"))
}

async fn container_ip(container: &str, network: &str) -> Result<Ipv4Addr, DindError> {
    let format = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
    let raw = docker(&["inspect", "-f", &format, container]).await?;
    raw.parse().map_err(|error| DindError::Unexpected {
        what: "outer container address",
        detail: format!("{raw:?}: {error}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_are_docker_safe_and_distinct() {
        let a = unique_name("mtls_cycle Test/é");
        let b = unique_name("mtls_cycle Test/é");
        assert_ne!(a, b);
        assert!(a.starts_with("e2e-mtls-cycle-test--"), "{a}");
        assert!(a
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    }
}
