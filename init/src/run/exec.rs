//! The workload's first step, `airlock-init --airlock-exec ARGV...`: a new session (so the
//! workload and everything it starts form one process group init can signal), then `execve`
//! with PATH lookup. Init cannot do this between fork and exec itself without `unsafe`.

use std::ffi::OsString;
use std::io::ErrorKind;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use super::{report, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND};

/// Becomes the workload; returns only when `execve` failed: 127 not found, 126 otherwise.
pub fn main(argv: Vec<OsString>) -> ExitCode {
    // Fails only when already a group leader, which a freshly forked child never is.
    let _ = rustix::process::setsid();
    let Some((program, args)) = argv.split_first() else {
        report("exec_not_found", "no program given");
        return ExitCode::from(EXIT_NOT_FOUND);
    };
    let error = Command::new(program).args(args).exec();
    let (code, status) = match error.kind() {
        ErrorKind::NotFound => ("exec_not_found", EXIT_NOT_FOUND),
        ErrorKind::PermissionDenied => ("exec_denied", EXIT_NOT_EXECUTABLE),
        _ => ("exec_failed", EXIT_NOT_EXECUTABLE),
    };
    report(code, &format!("{}: {error}", program.to_string_lossy()));
    ExitCode::from(status)
}
