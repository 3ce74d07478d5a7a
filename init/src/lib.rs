//! `airlock-init`: PID 1 of a sandbox. It starts blocked on fd 0 until the controller writes one
//! binding frame ([`frame`]), then runs the workload it names and stays as a minimal init
//! ([`run`]): signals forwarded to the workload's process group, every zombie reaped, the
//! workload's exit status passed on. See `init/README.md` for the frame and the exit codes.

pub mod frame;
pub mod run;
