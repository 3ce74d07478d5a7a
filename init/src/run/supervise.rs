//! Starts the workload and stays as its init: forwards signals to its process group, reaps
//! every zombie with `waitpid(-1)`, and when the workload exits, ends its group (SIGTERM, at
//! most [`GRACE`] for the group to go, then SIGKILL) and returns its status.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{
    kill_process_group, test_kill_process_group, wait, Pid, Signal, WaitOptions, WaitStatus,
};

use super::signals::{Signals, CHILD};
use super::{Failure, EXEC_FLAG};

/// How long the workload's group gets after the workload exits.
pub(super) const GRACE: Duration = Duration::from_secs(2);

/// Starts `argv` through init's own `--airlock-exec` step (a new session, then `execve` with
/// PATH lookup), with exactly `env`. std resets the signal mask and SIGPIPE in the child.
pub(super) fn spawn(argv: &[String], env: BTreeMap<OsString, OsString>) -> Result<Pid, Failure> {
    let internal = |what| move |error| Failure::Internal { what, error };
    let me = std::env::current_exe().map_err(internal("finding init's own binary"))?;
    let child = Command::new(me)
        .arg(EXEC_FLAG)
        .args(argv)
        .env_clear()
        .envs(env)
        .stdin(Stdio::inherit())
        .spawn()
        .map_err(internal("starting the workload"))?;
    i32::try_from(child.id())
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| Failure::Internal {
            what: "starting the workload",
            error: std::io::Error::other("child pid out of range"),
        })
}

/// Supervises `child` until it exits and returns the exit status to pass on.
pub(super) fn run(child: Pid, signals: &Signals) -> u8 {
    let mut status = None;
    while status.is_none() {
        for signal in signals.take() {
            if signal != CHILD {
                forward(child, signal);
            }
        }
        status = reap(child).0;
        if status.is_none() {
            let _ = signals.wait(None, None);
        }
    }
    end_group(child, signals);
    status.map_or(1, exit_code)
}

fn forward(child: Pid, signal: i32) {
    if let Some(signal) = Signal::from_named_raw(signal) {
        // ESRCH: the group is already gone, which is fine.
        let _ = kill_process_group(child, signal);
    }
}

/// Reaps every zombie; returns `child`'s status if it was among them, and whether any child
/// is left at all.
fn reap(child: Pid) -> (Option<WaitStatus>, bool) {
    let mut main = None;
    loop {
        match wait(WaitOptions::NOHANG) {
            Ok(Some((pid, status))) => {
                if pid == child {
                    main = Some(status);
                }
            }
            Ok(None) => return (main, true),
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return (main, false),
        }
    }
}

/// SIGTERM to the group, up to [`GRACE`] for it to empty (reaping as it goes), then SIGKILL.
fn end_group(child: Pid, signals: &Signals) {
    let _ = kill_process_group(child, Signal::TERM);
    let deadline = Instant::now() + GRACE;
    loop {
        let (_, any_left) = reap(child);
        if !any_left || test_kill_process_group(child).is_err() {
            return;
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        if left.is_zero() {
            break;
        }
        let _ = signals.wait(None, Some(left));
        let _ = signals.take();
    }
    let _ = kill_process_group(child, Signal::KILL);
    let _ = reap(child);
}

/// The exit code, or 128 + the signal that ended it.
fn exit_code(status: WaitStatus) -> u8 {
    if let Some(code) = status.exit_status() {
        return u8::try_from(code & 0xff).unwrap_or(1);
    }
    if let Some(signal) = status.terminating_signal() {
        return u8::try_from(128 + (signal & 0x7f)).unwrap_or(1);
    }
    1
}
