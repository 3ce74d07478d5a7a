//! The `airlock-init` binary: see the library's `run` module. Two hidden modes:
//! `airlock-init --airlock-exec ARGV...`, is the workload's first step (a new session, then
//! `execve` with PATH lookup); `airlock-init --airlock-enter FILE ... -- ARGV...` is an exec's
//! wrapper (see `run::enter`). Both are only honoured when the process is not PID 1.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let first = args.next();
    if rustix::process::getpid().as_raw_nonzero().get() != 1 {
        if first.as_deref() == Some(airlock_init::run::EXEC_FLAG.as_ref()) {
            return airlock_init::run::exec::main(args.collect());
        }
        if first.as_deref() == Some(airlock_init::runfile::ENTER_FLAG.as_ref()) {
            return airlock_init::run::enter::main(args.collect());
        }
    }
    airlock_init::run::main()
}
