//! Host INPUT rules that finish sealing a [`SealedNet`](crate::sealed::SealedNet).
//!
//! `--internal` stops forwarding off the network, but the bridge address (the gateway) is the
//! host itself, and Docker adds no INPUT rule for it: a container on the network (the DinD, a
//! proxy inside it, anything NAT'ed through it) could reach every host service bound to
//! `0.0.0.0` through the gateway. Each sealed network therefore gets one host rule dropping new
//! connections that arrive from its bridge, over every protocol. Connections the host opens
//! (the tests' mTLS client to 2376) still get their replies, which are ESTABLISHED.
//!
//! Rules carry the comment `airlock-e2e:<fixture>` and are deleted with the network. A killed
//! test process can leave one behind; the sweep deletes rules whose bridge no longer exists.

use std::path::Path;

use crate::dind::DindError;

/// Comment prefix marking the harness's host rules.
const COMMENT_PREFIX: &str = "airlock-e2e:";

/// Inserts the drop rule for `bridge`.
pub(crate) async fn seal(bridge: &str, fixture: &str) -> Result<(), DindError> {
    let args = rule_args("-I", bridge, fixture);
    let output = tokio::process::Command::new("iptables")
        .args(&args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(DindError::Spawn)?;
    if output.status.success() {
        return Ok(());
    }
    Err(DindError::Cli {
        args: format!("iptables {}", args.join(" ")),
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

/// Deletes the drop rule for `bridge`. Never fails: used from `Drop` and the sweep.
pub(crate) fn unseal_blocking(bridge: &str, fixture: &str) {
    let args = rule_args("-D", bridge, fixture);
    match std::process::Command::new("iptables").args(&args).output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => tracing::warn!(
            iptables.stderr = %String::from_utf8_lossy(&output.stderr).trim(),
            network.bridge = bridge,
            "Host seal rule removal failed"
        ),
        Err(error) => {
            tracing::warn!(%error, network.bridge = bridge, "Host seal rule removal failed")
        }
    }
}

/// Deletes harness rules whose bridge interface is gone.
pub(crate) fn sweep_blocking() {
    let listing = match std::process::Command::new("iptables")
        .args(["-w", "-S", "INPUT"])
        .output()
    {
        Ok(output) => String::from_utf8_lossy(&output.stdout).into_owned(),
        Err(error) => {
            tracing::warn!(%error, "Host seal rule listing failed");
            return;
        }
    };
    for (bridge, fixture) in listing.lines().filter_map(parse_rule) {
        if !Path::new("/sys/class/net").join(&bridge).exists() {
            unseal_blocking(&bridge, &fixture);
        }
    }
}

fn rule_args(op: &str, bridge: &str, fixture: &str) -> Vec<String> {
    let comment = format!("{COMMENT_PREFIX}{fixture}");
    [
        "-w",
        op,
        "INPUT",
        "-i",
        bridge,
        "-m",
        "conntrack",
        "!",
        "--ctstate",
        "ESTABLISHED,RELATED",
        "-m",
        "comment",
        "--comment",
        &comment,
        "-j",
        "DROP",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// `(bridge, fixture)` of a harness rule in `iptables -S` output.
fn parse_rule(line: &str) -> Option<(String, String)> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let after = |flag: &str| {
        let at = tokens.iter().position(|t| *t == flag)?;
        tokens.get(at + 1).map(|t| t.trim_matches('"'))
    };
    let fixture = after("--comment")?.strip_prefix(COMMENT_PREFIX)?;
    Some((after("-i")?.to_owned(), fixture.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_harness_rules() {
        let listing = "\
-P INPUT ACCEPT
-A INPUT -i br-0123456789ab -m conntrack ! --ctstate RELATED,ESTABLISHED -m comment --comment \"airlock-e2e:e2e-dns-abc\" -j DROP
-A INPUT -i br-ffffffffffff -m comment --comment other -j DROP
-A INPUT -i br-aaaaaaaaaaaa -m conntrack ! --ctstate RELATED,ESTABLISHED -m comment --comment airlock-e2e:e2e-x-1 -j DROP";
        let rules: Vec<_> = listing.lines().filter_map(parse_rule).collect();
        assert_eq!(
            rules,
            vec![
                ("br-0123456789ab".to_owned(), "e2e-dns-abc".to_owned()),
                ("br-aaaaaaaaaaaa".to_owned(), "e2e-x-1".to_owned()),
            ]
        );
    }

    #[test]
    fn insert_and_delete_specs_match() {
        let insert = rule_args("-I", "br-1", "fx");
        let delete = rule_args("-D", "br-1", "fx");
        assert_eq!(insert[2..], delete[2..]);
        assert_eq!(insert.join(" ").matches("airlock-e2e:fx").count(), 1);
    }
}
