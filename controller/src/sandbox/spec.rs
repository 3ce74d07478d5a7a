//! The create request and the validated [`SandboxSpec`] it becomes.
//!
//! A [`SandboxSpec`] can only be obtained from [`SandboxRequest::validate`] (or read back from
//! the store), so holding one proves: the image reference is well formed, `cmd` and `env` are
//! bounded, env names are valid and not reserved, limits lie within the operator maximums,
//! labels stay out of `airlock.*`, timeouts are positive and bounded, the workdir is an
//! absolute normalised path, and the sandbox does not run as root.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

use super::image::ImageRef;
use super::limits::{Cpus, Limits, Maximums};
use super::mounts::{bind, check_mounts, BoundVolume, FolderMount, Mount, MountRequest};
use super::path::{ContainerPath, PathProblem, EXPECTED_PATH, MAX_PATH};
use crate::volume::VolumeName;
use checks::{
    check_cmd, check_duration, check_env, check_labels, check_limits, check_path, collect, err,
};

mod checks;
mod reserved;

pub use checks::is_env_name;
use reserved::is_airlock_dir;
pub use reserved::{is_reserved_env, AIRLOCK_DIRS, TRUST_BUNDLE_ENV, TRUST_CA_ENV};

/// Most arguments in `cmd`.
pub const MAX_CMD_ARGS: usize = 256;
/// Most bytes across all of `cmd`.
pub const MAX_CMD_BYTES: usize = 64 * 1024;
/// Most environment variables.
pub const MAX_ENV_VARS: usize = 256;
/// Most bytes across all env names and values.
pub const MAX_ENV_BYTES: usize = 64 * 1024;
/// Most user labels.
pub const MAX_LABELS: usize = 64;
/// Longest label key.
pub const MAX_LABEL_KEY: usize = 128;
/// Longest label value.
pub const MAX_LABEL_VALUE: usize = 1024;
/// Smallest memory limit Docker accepts, in MiB.
pub const MIN_MEMORY_MB: u64 = 6;
/// Fewest processes a sandbox may be limited to.
pub const MIN_PIDS: u64 = 8;
/// The label prefix reserved for the controller (DESIGN.md invariant 7).
pub const RESERVED_LABEL_PREFIX: &str = "airlock.";
/// Where every sandbox's writable home is mounted; `HOME` points at it.
pub const HOME_DIR: &str = "/home/agent";

/// An unvalidated create request, already decoded from the API's JSON.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SandboxRequest {
    /// Image reference (`name[:tag][@sha256:…]` or an image id).
    pub image: String,
    /// Command; empty means the image's default.
    pub cmd: Vec<String>,
    /// Environment, in order.
    pub env: Vec<(String, String)>,
    /// Requested limits; each missing one takes the default, capped at the maximum.
    pub limits: LimitsRequest,
    /// Absolute lifetime; `None` takes the operator default.
    pub timeout: Option<Duration>,
    /// End after this long without output or exec; `None` disables it.
    pub idle_timeout: Option<Duration>,
    /// User labels.
    pub labels: BTreeMap<String, String>,
    /// Root filesystem mode; read-only unless opted out.
    pub rootfs: RootFs,
    /// User to run as; `None` takes [`RunAs::NOBODY`].
    pub run_as: Option<RunAs>,
    /// Working directory; `None` takes the first mount's target, else the image's.
    pub workdir: Option<String>,
    /// Volume mounts.
    pub mounts: Vec<MountRequest>,
    /// A volume (by name) for the home instead of the tmpfs.
    pub home_volume: Option<String>,
}

/// Requested limits, each optional.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LimitsRequest {
    /// CPUs, fractional (`0.5`).
    pub cpus: Option<f64>,
    /// Memory in MiB; swap is not granted on top.
    pub memory_mb: Option<u64>,
    /// Most processes.
    pub pids: Option<u64>,
    /// Writable-layer size in MiB (needs a storage driver with quota support).
    pub disk_mb: Option<u64>,
}

/// Root filesystem mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RootFs {
    /// Read-only, with a tmpfs `/tmp` (the default; DESIGN.md invariant 6).
    #[default]
    ReadOnly,
    /// Writable (per-sandbox opt-out).
    Writable,
}

/// The numeric user and group a sandbox runs as. Never uid 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RunAs {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// One environment variable with a valid, unreserved name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EnvVar {
    name: String,
    value: String,
}

/// A validated sandbox specification.
#[derive(Clone, Debug, PartialEq)]
pub struct SandboxSpec {
    image: ImageRef,
    cmd: Vec<String>,
    env: Vec<EnvVar>,
    limits: Limits,
    timeout: Duration,
    idle_timeout: Option<Duration>,
    labels: BTreeMap<String, String>,
    rootfs: RootFs,
    run_as: RunAs,
    workdir: Option<ContainerPath>,
    home: Option<Home>,
    mounts: Vec<Mount>,
    pub(super) folders: Vec<FolderMount>,
}

/// The sandbox's writable home at [`HOME_DIR`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Home {
    /// A tmpfs of this many MiB, owned by the sandbox user.
    Tmpfs {
        /// Its size cap.
        size_mb: u64,
    },
    /// A volume (the last of [`SandboxSpec::mounts`], read-write at [`HOME_DIR`]).
    Volume,
}

/// Why one field of a request is invalid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path in the API request, e.g. `env[2].name` or `limits.cpus`.
    pub field: String,
    /// What is wrong with it.
    pub problem: Problem,
}

/// What is wrong with a field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The field must be given.
    Required,
    /// Longer than this many bytes.
    TooLong {
        /// The limit.
        max: usize,
    },
    /// More than this many items.
    TooMany {
        /// The limit.
        max: usize,
    },
    /// Not of the expected form.
    Malformed {
        /// The expected form.
        expected: &'static str,
    },
    /// Contains a NUL byte.
    ContainsNul,
    /// The name is reserved for the controller.
    Reserved,
    /// The name appears twice.
    Duplicate,
    /// Below the smallest allowed value.
    BelowMinimum {
        /// The minimum, formatted.
        min: String,
    },
    /// Above the operator maximum.
    AboveMaximum {
        /// The maximum, formatted.
        max: String,
    },
    /// Running as root needs an image policy that allows it (not yet supported).
    Root,
    /// Not available on this controller.
    Unsupported {
        /// What, and what to use instead.
        what: &'static str,
    },
    /// Equal to, inside, or containing another mount's target.
    Overlaps,
    /// Refused by a rule that explains itself (the proxy's own endpoint checks).
    Refused(String),
    /// Not the JSON the document needs (the parser's words).
    Json(String),
    /// Names a secret that is `egress_only`, where only an `env` secret may go (the API's
    /// `secret_not_exposable`).
    NotExposable {
        /// The secret's name.
        secret: String,
    },
}

// === impl SandboxRequest ===

impl SandboxRequest {
    /// Checks every field and returns the spec, or every problem found (not just the first).
    pub fn validate(self, max: &Maximums) -> Result<SandboxSpec, Vec<FieldError>> {
        let mut errors = Vec::new();
        let image = ImageRef::parse(&self.image).map_err(|problem| err("image", problem));
        let image = collect(image, &mut errors);
        check_cmd(&self.cmd, &mut errors);
        let env = check_env(self.env, &mut errors);
        let limits = check_limits(&self.limits, &max.limits, &mut errors);
        if self.rootfs == RootFs::Writable && limits.disk_mb.is_none() {
            // An unbounded writable root could fill the node's disk.
            let expected = "true, unless limits.disk_mb bounds the writable root (which needs \
                            AIRLOCK_MAX_DISK_MB, a node that enforces disk limits)";
            errors.push(err("read_only_rootfs", Problem::Malformed { expected }));
        }
        let timeout = self.timeout.unwrap_or(max.default_timeout);
        check_duration("timeout_s", timeout, max.timeout, &mut errors);
        if let Some(idle) = self.idle_timeout {
            check_duration("idle_timeout_s", idle, timeout, &mut errors);
        }
        check_labels(&self.labels, &mut errors);
        let run_as = self.run_as.unwrap_or(RunAs::NOBODY);
        if run_as.uid == 0 {
            errors.push(err("run_as", Problem::Root));
        }
        let workdir = self.workdir.as_deref().map(check_path("workdir"));
        let workdir = workdir.and_then(|w| collect(w, &mut errors));
        if workdir.as_ref().is_some_and(is_airlock_dir) {
            errors.push(err("workdir", Problem::Reserved));
        }
        let home = self.home_volume.as_ref().map(|_| Home::Volume);
        let checked = check_mounts(self.mounts, self.home_volume.as_deref())
            .map_err(|found| errors.extend(found))
            .unwrap_or_default();
        let (mounts, folders) = (checked.volumes, checked.folders);
        let first_mount = mounts
            .iter()
            .find(|m| m.target.as_str() != HOME_DIR)
            .map(|m| m.target.clone())
            .or_else(|| folders.first().map(|f| f.target.clone()));
        let workdir = workdir.or(first_mount);
        match (image, errors.is_empty()) {
            (Some(image), true) => Ok(SandboxSpec {
                image,
                cmd: self.cmd,
                env,
                limits,
                timeout,
                idle_timeout: self.idle_timeout,
                labels: self.labels,
                rootfs: self.rootfs,
                run_as,
                workdir,
                home,
                mounts,
                folders,
            }),
            _ => Err(errors),
        }
    }
}

/// The problems of user labels (size, charset, the reserved `airlock.` prefix), as checked on
/// a sandbox; other objects carrying user labels (volumes) check them the same way.
pub fn label_problems(labels: &BTreeMap<String, String>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    check_labels(labels, &mut errors);
    errors
}

// === impl RunAs ===

impl RunAs {
    /// The default user: `nobody:nogroup` (65534:65534).
    pub const NOBODY: RunAs = RunAs {
        uid: 65534,
        gid: 65534,
    };
}

impl fmt::Display for RunAs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

// === impl EnvVar ===

impl EnvVar {
    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value.
    pub fn value(&self) -> &str {
        &self.value
    }
}

// === impl SandboxSpec ===

impl SandboxSpec {
    /// Rebuilds a spec that was validated when it was stored. The store is trusted: the
    /// operator maximums may have changed since, and a stored sandbox stays as it was made.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_stored(
        image: ImageRef,
        cmd: Vec<String>,
        env: Vec<(String, String)>,
        limits: Limits,
        timeout: Duration,
        idle_timeout: Option<Duration>,
        labels: BTreeMap<String, String>,
        rootfs: RootFs,
        run_as: RunAs,
    ) -> SandboxSpec {
        let env = env
            .into_iter()
            .map(|(name, value)| EnvVar { name, value })
            .collect();
        SandboxSpec {
            image,
            cmd,
            env,
            limits,
            timeout,
            idle_timeout,
            labels,
            rootfs,
            run_as,
            workdir: None,
            home: None,
            mounts: Vec::new(),
            folders: Vec::new(),
        }
    }

    /// Adds the stored workdir, home and mounts to a spec rebuilt by [`Self::from_stored`].
    pub(crate) fn with_stored_run(
        mut self,
        workdir: Option<ContainerPath>,
        home: Option<Home>,
        mounts: Vec<Mount>,
    ) -> SandboxSpec {
        self.workdir = workdir;
        self.home = home;
        self.mounts = mounts;
        self
    }

    /// Binds every mount to the owner's volume of its name; the first name missing from
    /// `found` is returned.
    pub(crate) fn bind_volumes(
        mut self,
        found: &BTreeMap<VolumeName, BoundVolume>,
    ) -> Result<SandboxSpec, VolumeName> {
        bind(&mut self.mounts, found)?;
        Ok(self)
    }

    /// Settles what the node decides at create: the user (from the image's `USER`, see
    /// [`super::user::resolve`]) and the home (`home` unless a home volume was asked for).
    /// Root is refused here too, so no path through the create can run as uid 0.
    pub(crate) fn run_with(mut self, run_as: RunAs, home: Home) -> Result<SandboxSpec, FieldError> {
        if run_as.uid == 0 {
            return Err(err("run_as", Problem::Root));
        }
        self.run_as = run_as;
        self.home = Some(self.home.unwrap_or(home));
        Ok(self)
    }

    /// The image reference.
    pub fn image(&self) -> &ImageRef {
        &self.image
    }

    /// The command; empty means the image's default.
    pub fn cmd(&self) -> &[String] {
        &self.cmd
    }

    /// The user's environment, in request order.
    pub fn env(&self) -> &[EnvVar] {
        &self.env
    }

    /// The effective limits (defaults filled in).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The absolute lifetime.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The idle timeout, if any.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// The user labels (never under `airlock.*`).
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// The root filesystem mode.
    pub fn rootfs(&self) -> RootFs {
        self.rootfs
    }

    /// The user to run as.
    pub fn run_as(&self) -> RunAs {
        self.run_as
    }

    /// The working directory; `None`: the image's.
    pub fn workdir(&self) -> Option<&ContainerPath> {
        self.workdir.as_ref()
    }

    /// The writable home; `None` only for sandboxes stored before homes existed.
    pub fn home(&self) -> Option<Home> {
        self.home
    }

    /// The volume mounts (a home volume last).
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }
}

// === impl FieldError ===

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Required => f.write_str("is required"),
            Self::TooLong { max } => write!(f, "is longer than {max} bytes"),
            Self::TooMany { max } => write!(f, "has more than {max} items"),
            Self::Malformed { expected } => write!(f, "expected {expected}"),
            Self::ContainsNul => f.write_str("contains a NUL byte"),
            Self::Reserved => f.write_str("is reserved for the controller"),
            Self::Duplicate => f.write_str("appears more than once"),
            Self::BelowMinimum { min } => write!(f, "must be at least {min}"),
            Self::AboveMaximum { max } => write!(f, "must be at most {max} (operator maximum)"),
            Self::Root => f.write_str("running as root is not allowed by the image policy"),
            Self::Unsupported { what } => f.write_str(what),
            Self::Overlaps => f.write_str("is equal to, inside or around another mount's target"),
            Self::Refused(reason) => write!(f, "is refused: {reason}"),
            Self::Json(reason) => f.write_str(reason),
            Self::NotExposable { secret } => write!(
                f,
                "names secret `{secret}`, which is egress_only: bind it with `credentials`, or \
                 store it again with \"expose\": \"env\""
            ),
        }
    }
}

#[cfg(test)]
mod rootfs_tests;
#[cfg(test)]
mod run_tests;
#[cfg(test)]
mod tests;
