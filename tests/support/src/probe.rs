//! TCP reachability probes run with busybox `nc` inside a container, and their verdicts.
//!
//! [`tcp_probe_cmd`] builds a command for the testbox image that tries every target in
//! parallel (so dropped SYNs cost one connect timeout, not one per target) and prints one
//! `PROBE <ip>:<port> rc=<code> out=<text>` line per target. [`parse`] turns those lines into
//! [`ProbeOutcome`]s. The classification is conservative: a target only counts as blocked when
//! `nc` itself reported a connect failure; anything unexplained is `Unknown`, which callers treat
//! as "not proven blocked".

use std::net::SocketAddr;

/// Seconds `nc` waits for a TCP connect before giving up.
pub const CONNECT_TIMEOUT_S: u32 = 3;

/// What happened when a container tried to connect to a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The TCP connection was established (with any reply text received).
    Connected(String),
    /// A RST came back.
    Refused,
    /// No answer before the connect timeout (e.g. dropped by a firewall rule).
    TimedOut,
    /// No route, or an ICMP unreachable came back.
    Unreachable,
    /// Anything else: exit code and output.
    Unknown(String),
}

/// One target's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// The target as printed by the probe (`ip:port`).
    pub target: String,
    /// The verdict.
    pub outcome: ProbeOutcome,
}

// === impl ProbeOutcome ===

impl ProbeOutcome {
    /// True when the connect failed in a way `nc` reported (refused, timed out, unreachable).
    pub fn is_blocked(&self) -> bool {
        matches!(self, Self::Refused | Self::TimedOut | Self::Unreachable)
    }

    /// True when the TCP connection was established.
    pub fn is_connected(&self) -> bool {
        matches!(self, Self::Connected(_))
    }
}

/// The container command (`busybox sh -c <script>`) probing every target in parallel.
pub fn tcp_probe_cmd(targets: &[SocketAddr]) -> Vec<String> {
    let mut script = format!(
        "probe() {{ out=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox timeout {} busybox nc -w {CONNECT_TIMEOUT_S} \"$1\" \"$2\" 2>&1); rc=$?; \
         echo \"PROBE $1:$2 rc=$rc out=$(echo \"$out\" | busybox tr '\\r\\n' '  ' | busybox head -c 200)\"; }}\n",
        CONNECT_TIMEOUT_S + 5
    );
    for target in targets {
        script.push_str(&format!("probe {} {} &\n", target.ip(), target.port()));
    }
    script.push_str("wait\n");
    vec!["/bin/busybox".into(), "sh".into(), "-c".into(), script]
}

/// Parses the `PROBE` lines of a probe container's output.
pub fn parse(output: &str) -> Vec<ProbeResult> {
    output.lines().filter_map(parse_line).collect()
}

/// The outcome for `target`, if the output has a line for it.
pub fn outcome_for(results: &[ProbeResult], target: SocketAddr) -> Option<&ProbeOutcome> {
    let key = target.to_string();
    results.iter().find(|r| r.target == key).map(|r| &r.outcome)
}

fn parse_line(line: &str) -> Option<ProbeResult> {
    let rest = line.trim().strip_prefix("PROBE ")?;
    let (target, rest) = rest.split_once(" rc=")?;
    let (rc, out) = rest.split_once(" out=").unwrap_or((rest, ""));
    let out = out.trim();
    let outcome = if rc == "0" {
        ProbeOutcome::Connected(out.to_owned())
    } else if out.contains("Connection refused") {
        ProbeOutcome::Refused
    } else if out.contains("timed out") {
        ProbeOutcome::TimedOut
    } else if out.contains("No route to host") || out.contains("unreachable") {
        ProbeOutcome::Unreachable
    } else {
        ProbeOutcome::Unknown(format!("rc={rc} out={out}"))
    };
    Some(ProbeResult {
        target: target.to_owned(),
        outcome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_each_nc_result() {
        let output = "\
PROBE 10.213.1.1:2376 rc=1 out=nc: timed out nc: can't connect to remote host (10.213.1.1): Connection timed out
PROBE 10.213.1.3:8080 rc=0 out=pong
PROBE 10.213.2.3:8080 rc=1 out=nc: can't connect to remote host (10.213.2.3): No route to host
PROBE 127.0.0.1:9 rc=1 out=nc: can't connect to remote host (127.0.0.1): Connection refused
PROBE 10.0.0.1:1 rc=143 out=
noise line
";
        let results = parse(output);
        let outcomes: Vec<_> = results.iter().map(|r| r.outcome.clone()).collect();
        assert_eq!(
            outcomes,
            vec![
                ProbeOutcome::TimedOut,
                ProbeOutcome::Connected("pong".into()),
                ProbeOutcome::Unreachable,
                ProbeOutcome::Refused,
                ProbeOutcome::Unknown("rc=143 out=".into()),
            ]
        );
        assert!(outcomes[0].is_blocked() && !outcomes[4].is_blocked());
        let target: SocketAddr = "10.213.1.3:8080".parse().unwrap();
        assert!(outcome_for(&results, target).unwrap().is_connected());
    }

    #[test]
    fn command_probes_every_target_in_parallel() {
        let targets: Vec<SocketAddr> =
            vec!["10.0.0.1:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap()];
        let cmd = tcp_probe_cmd(&targets);
        assert_eq!(cmd[..3], ["/bin/busybox", "sh", "-c"]);
        assert!(cmd[3].contains("probe 10.0.0.1 1 &\nprobe 10.0.0.2 2 &\nwait\n"));
    }
}
