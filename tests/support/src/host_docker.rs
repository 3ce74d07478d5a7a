//! The host ("outer") Docker daemon, driven through the `docker` CLI.
//!
//! The outer side of every fixture (the sealed network, the DinD container, its volume and the
//! throwaway outer containers) is managed with the CLI rather than bollard: cleanup runs in
//! `Drop`, which cannot be async, and a blocking `std::process::Command` works there whatever
//! runtime (or none) the test is on. The nested daemon is only ever reached with bollard over
//! mTLS (see `dind`).

use std::process::Output;
use std::time::{Duration, Instant};

use crate::dind::DindError;

/// Runs `docker <args>` and returns its trimmed stdout, or a `DindError::Cli` with stderr.
pub(crate) async fn docker(args: &[&str]) -> Result<String, DindError> {
    let output = tokio::process::Command::new("docker")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(DindError::Spawn)?;
    check(args, &output)
}

/// Blocking twin of [`docker`], for `Drop` and the once-per-process sweep.
pub(crate) fn docker_blocking(args: &[&str]) -> Result<String, DindError> {
    let output = std::process::Command::new("docker")
        .args(args)
        .output()
        .map_err(DindError::Spawn)?;
    check(args, &output)
}

/// Runs `docker <args>` and returns the raw output whatever the exit status.
pub(crate) async fn docker_output(args: &[&str]) -> Result<Output, DindError> {
    tokio::process::Command::new("docker")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(DindError::Spawn)
}

/// Force-removes a container; a missing container is fine. Never fails: used from `Drop`.
pub(crate) fn remove_container_blocking(name: &str) {
    if let Err(error) = docker_blocking(&["rm", "-f", "-v", name]) {
        if !is_missing(&error) {
            tracing::warn!(%error, container.name = name, "Test container removal failed");
        }
    }
}

/// Removes a volume, retrying for a few seconds while a just-killed container still holds it.
pub(crate) fn remove_volume_blocking(name: &str) {
    retry_blocking(&["volume", "rm", "-f", name]);
}

/// Removes a network, retrying for a few seconds while endpoints are being torn down.
pub(crate) fn remove_network_blocking(name: &str) {
    retry_blocking(&["network", "rm", name]);
}

/// Whether a CLI error says the object does not exist (already removed).
pub(crate) fn is_missing(error: &DindError) -> bool {
    match error {
        DindError::Cli { stderr, .. } => {
            let stderr = stderr.to_ascii_lowercase();
            stderr.contains("no such") || stderr.contains("not found")
        }
        _ => false,
    }
}

fn retry_blocking(args: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match docker_blocking(args) {
            Ok(_) => return,
            Err(error) if is_missing(&error) => return,
            Err(error) if Instant::now() >= deadline => {
                tracing::warn!(%error, docker.args = %args.join(" "), "Test resource removal failed");
                return;
            }
            // Polling interval while the daemon releases the object, bounded by the deadline.
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn check(args: &[&str], output: &Output) -> Result<String, DindError> {
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned());
    }
    Err(DindError::Cli {
        args: args.join(" "),
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}
