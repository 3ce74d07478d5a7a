//! The run file: what a sandbox's workload was started with (its frame `env`, `airlock_env`
//! and `workdir`), written by init as a seed file from the frame, so a later `docker exec`
//! through `airlock-init --airlock-enter` gets the same environment and working directory
//! (Docker gives an exec only the container's `Config.Env`, which holds nothing per-run).
//!
//! It is the sandbox's own data in the sandbox's own filesystem (mode 0400, the sandbox user):
//! the workload already has every value in its environment.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The hidden first argument of an exec's wrapper: `airlock-init --airlock-enter FILE
/// [--env NAME=VALUE]... -- ARGV...`; with no ARGV it prints the environment instead.
pub const ENTER_FLAG: &str = "--airlock-enter";
/// Where the controller has init write the run file (a writable root in every sandbox).
pub const RUN_FILE: &str = "/tmp/.airlock/run.json";
/// The largest run file read.
pub const MAX_RUN_FILE: u64 = 2 << 20;

/// The content of [`RUN_FILE`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunFile {
    /// The frame's `env`.
    pub env: BTreeMap<String, String>,
    /// The frame's `airlock_env`.
    pub airlock_env: BTreeMap<String, String>,
    /// The frame's `workdir`.
    pub workdir: String,
}
