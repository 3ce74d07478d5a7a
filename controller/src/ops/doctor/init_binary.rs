//! The `init-binary` check: the static `airlock-init` every sandbox runs as PID 1
//! (`AIRLOCK_INIT_BINARY`) is readable, and which runtime volume it makes.

use super::{Check, Verdict};
use crate::config::{Config, ENV_INIT_BINARY};
use crate::sandboxes::launch::Runtime;

/// Fails when the binary cannot be read (every create would answer `503 init_unavailable`).
pub(super) async fn check(config: &Config) -> Check {
    let name = "init-binary";
    let path = &config.run.init_binary;
    match Runtime::read(path).await {
        Ok((bytes, sha12)) => Check::pass(
            name,
            format!(
                "{} ({} bytes): runtime volume airlock-runtime-{sha12}",
                path.display(),
                bytes.len()
            ),
        ),
        Err(error) => Check::new(
            name,
            Verdict::Fail,
            error.to_string(),
            format!(
                "point {ENV_INIT_BINARY} at the static airlock-init (the controller image has it \
                 at /airlock-init; images/build.sh builds it)"
            ),
        ),
    }
}
