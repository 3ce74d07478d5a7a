//! `airlock-init`: PID 1 of a sandbox. It starts blocked on fd 0 until the controller writes one
//! binding frame ([`frame`]), then runs the workload it names and stays as a minimal init
//! ([`run`]): signals forwarded to the workload's process group, every zombie reaped, the
//! workload's exit status passed on. See `init/README.md` for the frame and the exit codes.
//!
//! The `runner` feature (on by default) is the process; without it the crate is only the frame
//! (its type, encoder and validator), which the controller uses to write what init parses.

pub mod exit;
pub mod frame;
#[cfg(feature = "runner")]
pub mod run;
pub mod runfile;
pub mod settings;
pub mod trust;
