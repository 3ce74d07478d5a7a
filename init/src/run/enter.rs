//! An exec's wrapper, `airlock-init --airlock-enter FILE [--env NAME=VALUE]... -- ARGV...`:
//! the environment and working directory of the sandbox's workload (from the run file init
//! wrote), the exec's own variables over them, then `execve` with PATH lookup. With no ARGV it
//! prints the environment (`NAME=value` lines) and exits 0. Only honoured when not PID 1.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use super::env::child_env;
use super::{report, EXIT_BAD_FRAME, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND};
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
    let error = Command::new(program)
        .args(args)
        .env_clear()
        .envs(env)
        .exec();
    let (code, status) = match error.kind() {
        ErrorKind::NotFound => ("exec_not_found", EXIT_NOT_FOUND),
        ErrorKind::PermissionDenied => ("exec_denied", EXIT_NOT_EXECUTABLE),
        _ => ("exec_failed", EXIT_NOT_EXECUTABLE),
    };
    report(code, &format!("{}: {error}", program.to_string_lossy()));
    ExitCode::from(status)
}
