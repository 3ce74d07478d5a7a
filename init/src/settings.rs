//! The names of init's own settings: variables the controller sets in the container's
//! environment (never the frame), which init reads and does not pass on to the workload.

/// Seconds to wait for a frame (unset or `0`: forever); then exit 75.
pub const IDLE_VAR: &str = "AIRLOCK_POOL_MAX_IDLE";
/// Colon-separated roots seed files may be written under.
pub const WRITABLE_VAR: &str = "AIRLOCK_INIT_WRITABLE";
/// Where `ca_pem` is written (default [`crate::trust::CA_FILE`]; the bundle goes beside it).
pub const CA_FILE_VAR: &str = "AIRLOCK_INIT_CA_FILE";
