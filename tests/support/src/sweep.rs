//! Run identity, resource labels and the leftover sweep on the host daemon.
//!
//! Every outer object a fixture creates carries `airlock.test-run=<run id>` plus the owning
//! process id and that process's start time. Several test binaries (and several engineers) share
//! one host daemon and run at the same time, so the sweep must never touch a live run: it removes
//! only objects whose owner process is gone (pid absent, or reused by a process that started at a
//! different time). Objects without the owner labels are left alone. Fixture tempdirs carry the
//! same owner in their names and are swept the same way. The sweep runs once per process, before
//! the first fixture is created.

use std::sync::{Once, OnceLock};

use crate::host_docker::{
    docker_blocking, remove_container_blocking, remove_network_blocking, remove_volume_blocking,
};

/// Label carrying the run id on every outer object the harness creates.
pub const LABEL_RUN: &str = "airlock.test-run";
/// Label carrying the owning process id.
pub const LABEL_PID: &str = "airlock.test-pid";
/// Label carrying the owning process's start time (clock ticks since boot, `/proc/<pid>/stat`).
pub const LABEL_PID_START: &str = "airlock.test-pid-start";
/// Label carrying the fixture id, shared by every object one fixture creates.
pub const LABEL_FIXTURE: &str = "airlock.test-fixture";
/// Name prefix of fixture tempdirs under the system temp dir.
const TEMPDIR_PREFIX: &str = "airlock-e2e-";

/// Identity of this test process, written into labels.
#[derive(Debug)]
pub(crate) struct RunId {
    pub(crate) id: String,
    pid: u32,
    start: String,
}

/// The run id of this process (generated once).
pub(crate) fn run() -> &'static RunId {
    static RUN: OnceLock<RunId> = OnceLock::new();
    RUN.get_or_init(|| {
        let pid = std::process::id();
        let start = process_start(pid).unwrap_or_default();
        let short = uuid::Uuid::new_v4().simple().to_string();
        RunId {
            id: format!("{pid}-{}", &short[..8]),
            pid,
            start,
        }
    })
}

/// `--label` arguments for an object of this process owned by `fixture`.
pub fn label_args(fixture: &str) -> Vec<String> {
    let run = run();
    [
        (LABEL_RUN, run.id.as_str()),
        (LABEL_PID, &run.pid.to_string()),
        (LABEL_PID_START, run.start.as_str()),
        (LABEL_FIXTURE, fixture),
    ]
    .iter()
    .flat_map(|(key, value)| ["--label".to_owned(), format!("{key}={value}")])
    .collect()
}

/// Removes leftovers of dead runs, once per process.
pub(crate) fn sweep_once() {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(sweep_dead_runs);
}

/// Removes every labelled container, volume and network (in that order) whose owner process is
/// gone, then the host seal rules of bridges that no longer exist. Blocking; safe to run while
/// other runs are live.
pub fn sweep_dead_runs() {
    let format = format!(
        "{{{{.ID}}}}\t{{{{.Label \"{LABEL_PID}\"}}}}\t{{{{.Label \"{LABEL_PID_START}\"}}}}"
    );
    let volume_format = format!(
        "{{{{.Name}}}}\t{{{{.Label \"{LABEL_PID}\"}}}}\t{{{{.Label \"{LABEL_PID_START}\"}}}}"
    );
    let filter = format!("label={LABEL_RUN}");
    for id in stale(&["ps", "-a", "--filter", &filter, "--format", &format]) {
        remove_container_blocking(&id);
    }
    for name in stale(&[
        "volume",
        "ls",
        "--filter",
        &filter,
        "--format",
        &volume_format,
    ]) {
        remove_volume_blocking(&name);
    }
    for id in stale(&["network", "ls", "--filter", &filter, "--format", &format]) {
        remove_network_blocking(&id);
    }
    crate::host_firewall::sweep_blocking();
    sweep_tempdirs();
}

/// Prefix of this process's fixture tempdirs: `airlock-e2e-<pid>-<start>-`, so the sweep can
/// tell a dead run's certificates from a live one's.
pub(crate) fn tempdir_prefix() -> String {
    let run = run();
    format!("{TEMPDIR_PREFIX}{}-{}-", run.pid, run.start)
}

/// Removes fixture tempdirs (they hold test CA keys) whose owner process is gone.
fn sweep_tempdirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(owner) = name.strip_prefix(TEMPDIR_PREFIX) else {
            continue;
        };
        let mut fields = owner.splitn(3, '-');
        let (Some(pid), Some(start)) = (fields.next(), fields.next()) else {
            continue;
        };
        let alive = pid
            .parse()
            .ok()
            .and_then(process_start)
            .is_some_and(|now| now == start);
        if !alive {
            if let Err(error) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!(%error, path = %entry.path().display(), "Stale tempdir removal failed");
            }
        }
    }
}

/// Lists objects (`<id>\t<pid>\t<start>` lines) whose owner process is gone.
fn stale(args: &[&str]) -> Vec<String> {
    let listing = match docker_blocking(args) {
        Ok(listing) => listing,
        Err(error) => {
            tracing::warn!(%error, "Leftover sweep listing failed");
            return Vec::new();
        }
    };
    listing
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let id = fields.next()?.trim();
            let pid: u32 = fields.next()?.trim().parse().ok()?;
            let start = fields.next().unwrap_or("").trim();
            let alive = process_start(pid).is_some_and(|now| now == start);
            (!id.is_empty() && !alive).then(|| id.to_owned())
        })
        .collect()
}

/// Start time of `pid` (field 22 of `/proc/<pid>/stat`), or `None` when it does not exist.
fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Fields after the name start at field 3 (state); field 22 is the 20th of them.
    after_comm.split_whitespace().nth(19).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_start_is_readable_and_stable() {
        let pid = std::process::id();
        let first = process_start(pid).expect("own /proc entry");
        assert!(
            first.parse::<u64>().is_ok(),
            "start time {first:?} is a number"
        );
        assert_eq!(process_start(pid), Some(first));
    }

    #[test]
    fn labels_carry_run_pid_start_and_fixture() {
        let args = label_args("fx1");
        let joined = args.join(" ");
        assert!(joined.contains(&format!("--label {LABEL_RUN}={}", run().id)));
        assert!(joined.contains(&format!("--label {LABEL_PID}={}", std::process::id())));
        assert!(joined.contains(&format!("--label {LABEL_FIXTURE}=fx1")));
        assert_eq!(args.len(), 8);
    }
}
