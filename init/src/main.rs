//! The `airlock-init` binary: see the library's `run` module. One hidden mode,
//! `airlock-init --airlock-exec ARGV...`, is the workload's first step (a new session, then
//! `execve` with PATH lookup); it is only honoured when the process is not PID 1.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() == Some(airlock_init::run::EXEC_FLAG.as_ref())
        && rustix::process::getpid().as_raw_nonzero().get() != 1
    {
        return airlock_init::run::exec::main(args.collect());
    }
    airlock_init::run::main()
}
