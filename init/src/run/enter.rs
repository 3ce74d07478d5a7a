//! An exec's wrapper, `airlock-init --airlock-enter FILE [--env NAME=VALUE]... -- ARGV...`:
//! the environment and working directory of the sandbox's workload (from the run file init
//! wrote), the exec's own variables over them, then the command (PATH lookup) in a process
//! group of its own. With no ARGV it prints the environment (`NAME=value` lines) and exits 0.
//! Only honoured when not PID 1.
//!
//! What an exec leaves behind: the wrapper stays as the command's parent, forwards the signals
//! it gets to the command's group and, when the command exits, ends that group the way init
//! ends the workload's (SIGTERM, then SIGKILL after 2 s), then exits
//! with the command's status. So a plain background child (`sh -c 'sleep 1000 &'`, `nohup`
//! included: it ignores SIGHUP, not SIGTERM or SIGKILL) dies with its exec. A process that left
//! the group (`setsid`, or an interactive shell's own job groups) is not the exec's any more:
//! it keeps running within the sandbox's limits until it exits or the sandbox ends. Docker
//! itself never kills an exec's processes, so this wrapper is the only place that does.
//!
//! With a terminal on stdin the command's group is made the terminal's foreground group (and
//! continued, in case it read the terminal before), so job control and Ctrl-C reach it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{ErrorKind, IsTerminal, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use rustix::process::{getpid, kill_process_group, set_child_subreaper, Pid, Signal};
use rustix::termios::tcsetpgrp;

use super::env::child_env;
use super::signals::Signals;
use super::supervise;
use super::{report, EXIT_BAD_FRAME, EXIT_INTERNAL, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND};
use crate::frame::{self, Rules};
use crate::runfile::{RunFile, MAX_RUN_FILE};

/// Runs the wrapper on the arguments after the flag.
pub fn main(args: Vec<OsString>) -> ExitCode {
    match prepare(args) {
        Ok((env, argv)) if argv.is_empty() => {
            let mut out = std::io::stdout().lock();
            for (name, value) in &env {
                let line = [
                    name.as_encoded_bytes(),
                    b"=",
                    value.as_encoded_bytes(),
                    b"\n",
                ];
                if line
                    .iter()
                    .try_for_each(|part| out.write_all(part))
                    .is_err()
                {
                    return ExitCode::from(EXIT_BAD_FRAME);
                }
            }
            ExitCode::SUCCESS
        }
        Ok((env, argv)) => exec(env, &argv),
        Err(message) => {
            report("enter", &message);
            ExitCode::from(EXIT_BAD_FRAME)
        }
    }
}

type Prepared = (BTreeMap<OsString, OsString>, Vec<OsString>);

fn prepare(args: Vec<OsString>) -> Result<Prepared, String> {
    let mut args = args.into_iter();
    let file = args.next().ok_or("no run file given")?;
    let mut extra = BTreeMap::new();
    loop {
        match args.next() {
            Some(flag) if flag == "--env" => {
                let pair = args.next().ok_or("--env needs NAME=VALUE")?;
                let pair = pair.into_string().map_err(|_bad| "--env is not UTF-8")?;
                let (name, value) = pair.split_once('=').ok_or("--env needs NAME=VALUE")?;
                if !frame::is_env_name(name) {
                    return Err(format!("--env name {name:?} is not [A-Za-z_][A-Za-z0-9_]*"));
                }
                extra.insert(name.to_owned(), value.to_owned());
            }
            Some(flag) if flag == "--" => break,
            Some(other) => return Err(format!("unexpected argument {other:?}")),
            None => break,
        }
    }
    let argv: Vec<OsString> = args.collect();
    let run = read(&file)?;
    let rules = Rules::airlock(Vec::new());
    if let Some(name) = extra.keys().find(|n| rules.is_reserved(n)) {
        return Err(format!("--env {name} is set by Airlock"));
    }
    let mut env = run.env;
    env.extend(extra);
    let env = child_env(std::env::vars_os(), &env, &run.airlock_env, &rules);
    std::env::set_current_dir(&run.workdir)
        .map_err(|e| format!("workdir {:?}: {e}", run.workdir))?;
    Ok((env, argv))
}

fn read(path: &OsString) -> Result<RunFile, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("run file {path:?}: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_RUN_FILE)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("run file {path:?}: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("run file {path:?}: {e}"))
}

fn exec(env: BTreeMap<OsString, OsString>, argv: &[OsString]) -> ExitCode {
    let Some((program, args)) = argv.split_first() else {
        return ExitCode::from(EXIT_NOT_FOUND);
    };
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(error) => {
            report("internal", &format!("installing signal handlers: {error}"));
            return ExitCode::from(EXIT_INTERNAL);
        }
    };
    // The command's orphans come back to the wrapper (not init), so ending the group can wait
    // for them and reap them.
    let _ = set_child_subreaper(Some(getpid()));
    let spawned = Command::new(program)
        .args(args)
        .env_clear()
        .envs(env)
        .process_group(0)
        .spawn();
    let child = match spawned {
        Ok(child) => Pid::from_child(&child),
        Err(error) => {
            let (code, status) = match error.kind() {
                ErrorKind::NotFound => ("exec_not_found", EXIT_NOT_FOUND),
                ErrorKind::PermissionDenied => ("exec_denied", EXIT_NOT_EXECUTABLE),
                _ => ("exec_failed", EXIT_NOT_EXECUTABLE),
            };
            report(code, &format!("{}: {error}", program.to_string_lossy()));
            return ExitCode::from(status);
        }
    };
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        // Not fatal: without it the command still runs, only in the background of the tty.
        let _ = tcsetpgrp(&stdin, child);
        let _ = kill_process_group(child, Signal::CONT);
    }
    ExitCode::from(supervise::run(child, &signals))
}
