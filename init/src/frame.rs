//! The binding frame the controller writes on a member's stdin, and its validation. Pure: no
//! I/O, no panics on any input (the fuzz target in `init/fuzz` holds it to that).
//!
//! Wire form: the magic `ALK1`, a big-endian `u32` body length (at most [`MAX_BODY`]), then a
//! JSON body `{v, sandbox_id, argv[], env{}, airlock_env{}?, workdir, ca_pem?, files[]?}`.
//! `env` is the workload's (no reserved name); `airlock_env` is Airlock's own per-run variables
//! (only reserved names), applied last. Unknown or duplicate
//! fields and duplicate env names are rejected, never silently dropped. Every refusal is one
//! [`FrameError`] variant with a stable [`FrameError::code`].

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// The four bytes every frame starts with.
pub const MAGIC: [u8; 4] = *b"ALK1";
/// Magic plus the length.
pub const HEADER_LEN: usize = 8;
/// The largest body accepted: 1 MiB.
pub const MAX_BODY: usize = 1 << 20;
/// The one frame version this init speaks.
pub const VERSION: u32 = 1;
/// At most this many seed files per frame.
pub const MAX_FILES: usize = 64;
/// At most this many content bytes over all seed files.
pub const MAX_FILES_BYTES: usize = 1 << 20;
/// The longest sandbox id accepted.
pub const MAX_SANDBOX_ID: usize = 64;
/// The mode of a seed file that names none.
pub const DEFAULT_MODE: u32 = 0o644;

mod reserved;
pub use reserved::{PROXY_ENV, RESERVED_NAMES, RESERVED_PREFIXES, TRUST_BUNDLE_ENV, TRUST_CA_ENV};

/// One seed file: written before the workload starts, under a writable root.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeedFile {
    /// Absolute, normalised path (no `.`, `..` or empty component).
    pub path: String,
    /// The file's content, UTF-8.
    pub content: String,
    /// Permission bits, at most `0o777` (no set-id or sticky bits).
    #[serde(default = "default_mode")]
    pub mode: u32,
}

fn default_mode() -> u32 {
    DEFAULT_MODE
}

/// A frame: decoded and validated by init, built and [`Frame::encode`]d by the controller.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Frame {
    /// Frame version; only [`VERSION`].
    pub v: u32,
    /// The sandbox this member now is.
    pub sandbox_id: String,
    /// The workload's argv; `argv[0]` is looked up in `PATH` when it has no `/`.
    pub argv: Vec<String>,
    /// Variables added to the image's environment.
    #[serde(deserialize_with = "unique_env")]
    pub env: BTreeMap<String, String>,
    /// Airlock's per-run variables (the proxy with its credential, the CA trust variables,
    /// `AIRLOCK_*`): only reserved names, applied after everything else.
    #[serde(
        default,
        deserialize_with = "unique_env",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub airlock_env: BTreeMap<String, String>,
    /// Absolute working directory; it must exist (checked by the runner).
    pub workdir: String,
    /// The sandbox's CA certificate in PEM, written where the trust variables point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Seed files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<SeedFile>,
}

/// What a frame is checked against, passed in by the runner.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Absolute roots a seed file may be written under (the member's writable mounts).
    pub writable_roots: Vec<String>,
    /// Exact environment names the frame may not set.
    pub reserved_names: Vec<String>,
    /// Name prefixes the frame may not set.
    pub reserved_prefixes: Vec<String>,
}

impl Rules {
    /// Airlock's reserved variables ([`RESERVED_NAMES`], [`RESERVED_PREFIXES`]) and `roots`.
    pub fn airlock(writable_roots: Vec<String>) -> Self {
        Self {
            writable_roots,
            reserved_names: RESERVED_NAMES.iter().map(|s| (*s).to_owned()).collect(),
            reserved_prefixes: RESERVED_PREFIXES.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// Whether `name` is Airlock's.
    pub fn is_reserved(&self, name: &str) -> bool {
        self.reserved_names.iter().any(|n| n == name)
            || self
                .reserved_prefixes
                .iter()
                .any(|p| name.starts_with(p.as_str()))
    }
}

/// Why a frame was refused. [`FrameError::code`] is the stable reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The first four bytes are not `ALK1`.
    BadMagic,
    /// The declared body length is over [`MAX_BODY`].
    TooLarge { len: u64 },
    /// Fewer bytes than the header declares.
    Truncated,
    /// Bytes after the declared body.
    Trailing,
    /// The body is not JSON of the frame's shape.
    Json { message: String },
    /// A field the frame does not have.
    UnknownField { message: String },
    /// A required field is absent.
    MissingField { message: String },
    /// A field, or an env name, given twice.
    Duplicate { message: String },
    /// `v` is not [`VERSION`].
    Version { v: u32 },
    /// `sandbox_id` is empty, too long, or not `[A-Za-z0-9_-]`.
    SandboxId,
    /// `argv` is empty or `argv[0]` is empty.
    ArgvEmpty,
    /// An argument holds a NUL byte.
    ArgvNul { index: usize },
    /// An env name or value holds a NUL byte.
    EnvNul { name: String },
    /// An env name is not `[A-Za-z_][A-Za-z0-9_]*`.
    EnvName { name: String },
    /// An env name Airlock owns.
    EnvReserved { name: String },
    /// An `airlock_env` name that is not Airlock's.
    AirlockEnvName { name: String },
    /// `workdir` is not absolute or holds a NUL byte.
    Workdir,
    /// More than [`MAX_FILES`] seed files.
    FilesTooMany { count: usize },
    /// More than [`MAX_FILES_BYTES`] of seed content.
    FilesTooLarge { bytes: usize },
    /// A seed path that is not absolute and normalised.
    FilePath { path: String },
    /// A seed path outside every writable root.
    FileNotWritable { path: String },
    /// The same seed path twice.
    FileDuplicate { path: String },
    /// A seed mode above `0o777`.
    FileMode { path: String, mode: u32 },
    /// `ca_pem` is not a PEM certificate.
    CaPem,
}

impl FrameError {
    /// The stable reason, as written in the stderr line.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadMagic => "bad_magic",
            Self::TooLarge { .. } => "frame_too_large",
            Self::Truncated => "frame_truncated",
            Self::Trailing => "frame_trailing",
            Self::Json { .. } => "bad_json",
            Self::UnknownField { .. } => "unknown_field",
            Self::MissingField { .. } => "missing_field",
            Self::Duplicate { .. } => "duplicate_field",
            Self::Version { .. } => "unsupported_version",
            Self::SandboxId => "bad_sandbox_id",
            Self::ArgvEmpty => "argv_empty",
            Self::ArgvNul { .. } => "argv_nul",
            Self::EnvNul { .. } => "env_nul",
            Self::EnvName { .. } => "env_name",
            Self::EnvReserved { .. } => "env_reserved",
            Self::AirlockEnvName { .. } => "airlock_env_name",
            Self::Workdir => "workdir_not_absolute",
            Self::FilesTooMany { .. } => "files_too_many",
            Self::FilesTooLarge { .. } => "files_too_large",
            Self::FilePath { .. } => "file_path",
            Self::FileNotWritable { .. } => "file_not_writable",
            Self::FileDuplicate { .. } => "file_duplicate",
            Self::FileMode { .. } => "file_mode",
            Self::CaPem => "ca_pem",
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic => write!(f, "the frame does not start with ALK1"),
            Self::TooLarge { len } => {
                write!(f, "the frame body is {len} bytes; at most {MAX_BODY}")
            }
            Self::Truncated => write!(f, "the frame is shorter than its header declares"),
            Self::Trailing => write!(f, "bytes follow the frame body"),
            Self::Json { message }
            | Self::UnknownField { message }
            | Self::MissingField { message }
            | Self::Duplicate { message } => write!(f, "frame body: {message}"),
            Self::Version { v } => write!(f, "frame version {v}; this init speaks {VERSION}"),
            Self::SandboxId => write!(
                f,
                "sandbox_id must be 1..={MAX_SANDBOX_ID} characters of [A-Za-z0-9_-]"
            ),
            Self::ArgvEmpty => write!(f, "argv must be non-empty with a non-empty argv[0]"),
            Self::ArgvNul { index } => write!(f, "argv[{index}] holds a NUL byte"),
            Self::EnvNul { name } => write!(f, "env {name:?} holds a NUL byte"),
            Self::EnvName { name } => {
                write!(f, "env name {name:?} is not [A-Za-z_][A-Za-z0-9_]*")
            }
            Self::EnvReserved { name } => write!(f, "env {name} is set by Airlock"),
            Self::AirlockEnvName { name } => {
                write!(f, "airlock_env {name:?} is not one of Airlock's variables")
            }
            Self::Workdir => write!(f, "workdir must be an absolute path without NUL"),
            Self::FilesTooMany { count } => {
                write!(f, "{count} seed files; at most {MAX_FILES}")
            }
            Self::FilesTooLarge { bytes } => {
                write!(f, "{bytes} bytes of seed files; at most {MAX_FILES_BYTES}")
            }
            Self::FilePath { path } => write!(
                f,
                "files: {path:?} must be absolute with no '.', '..' or empty component"
            ),
            Self::FileNotWritable { path } => {
                write!(f, "files: {path:?} is not under a writable mount")
            }
            Self::FileDuplicate { path } => write!(f, "files: {path:?} is given twice"),
            Self::FileMode { path, mode } => {
                write!(f, "files: {path:?} mode {mode:o}; at most 777")
            }
            Self::CaPem => write!(f, "ca_pem must be a PEM certificate without NUL"),
        }
    }
}

impl std::error::Error for FrameError {}

/// The body length from a header, checked against [`MAX_BODY`].
pub fn body_len(header: &[u8; HEADER_LEN]) -> Result<usize, FrameError> {
    let [m0, m1, m2, m3, l0, l1, l2, l3] = *header;
    if [m0, m1, m2, m3] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    let len = u32::from_be_bytes([l0, l1, l2, l3]);
    match usize::try_from(len) {
        Ok(len) if len <= MAX_BODY => Ok(len),
        _ => Err(FrameError::TooLarge { len: len.into() }),
    }
}

/// Decodes a whole frame (header and body, nothing after) and validates it.
pub fn decode(bytes: &[u8], rules: &Rules) -> Result<Frame, FrameError> {
    let Some((header, rest)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        let seen = bytes.len().min(MAGIC.len());
        return match (bytes.get(..seen), MAGIC.get(..seen)) {
            (Some(got), Some(want)) if got == want => Err(FrameError::Truncated),
            _ => Err(FrameError::BadMagic),
        };
    };
    let len = body_len(header)?;
    match rest.len().cmp(&len) {
        std::cmp::Ordering::Less => Err(FrameError::Truncated),
        std::cmp::Ordering::Greater => Err(FrameError::Trailing),
        std::cmp::Ordering::Equal => parse_body(rest, rules),
    }
}

/// Parses and validates a body (the bytes after the header).
pub fn parse_body(body: &[u8], rules: &Rules) -> Result<Frame, FrameError> {
    if body.len() > MAX_BODY {
        return Err(FrameError::TooLarge {
            len: u64::try_from(body.len()).unwrap_or(u64::MAX),
        });
    }
    let frame: Frame = serde_json::from_slice(body).map_err(json_error)?;
    validate(&frame, rules)?;
    Ok(frame)
}

fn json_error(error: serde_json::Error) -> FrameError {
    let message = error.to_string();
    if message.starts_with("unknown field") {
        FrameError::UnknownField { message }
    } else if message.starts_with("missing field") {
        FrameError::MissingField { message }
    } else if message.starts_with("duplicate") {
        FrameError::Duplicate { message }
    } else {
        FrameError::Json { message }
    }
}

/// Every rule a decoded frame must meet, in the order the fields appear.
pub fn validate(frame: &Frame, rules: &Rules) -> Result<(), FrameError> {
    if frame.v != VERSION {
        return Err(FrameError::Version { v: frame.v });
    }
    let id = &frame.sandbox_id;
    if id.is_empty()
        || id.len() > MAX_SANDBOX_ID
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(FrameError::SandboxId);
    }
    match frame.argv.first() {
        Some(program) if !program.is_empty() => {}
        _ => return Err(FrameError::ArgvEmpty),
    }
    if let Some(index) = frame.argv.iter().position(|a| a.contains('\0')) {
        return Err(FrameError::ArgvNul { index });
    }
    for (name, value) in &frame.env {
        if name.contains('\0') || value.contains('\0') {
            return Err(FrameError::EnvNul { name: name.clone() });
        }
        if !is_env_name(name) {
            return Err(FrameError::EnvName { name: name.clone() });
        }
        if rules.is_reserved(name) {
            return Err(FrameError::EnvReserved { name: name.clone() });
        }
    }
    for (name, value) in &frame.airlock_env {
        if name.contains('\0') || value.contains('\0') {
            return Err(FrameError::EnvNul { name: name.clone() });
        }
        if !is_env_name(name) || !rules.is_reserved(name) {
            return Err(FrameError::AirlockEnvName { name: name.clone() });
        }
    }
    if !frame.workdir.starts_with('/') || frame.workdir.contains('\0') {
        return Err(FrameError::Workdir);
    }
    if let Some(pem) = &frame.ca_pem {
        if pem.contains('\0') || !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(FrameError::CaPem);
        }
    }
    validate_files(&frame.files, rules)
}

fn validate_files(files: &[SeedFile], rules: &Rules) -> Result<(), FrameError> {
    if files.len() > MAX_FILES {
        return Err(FrameError::FilesTooMany { count: files.len() });
    }
    let bytes = files.iter().map(|f| f.content.len()).sum::<usize>();
    if bytes > MAX_FILES_BYTES {
        return Err(FrameError::FilesTooLarge { bytes });
    }
    let mut seen = std::collections::BTreeSet::new();
    for file in files {
        let path = &file.path;
        if !is_normal_absolute(path) || path == "/" {
            return Err(FrameError::FilePath { path: path.clone() });
        }
        if !rules
            .writable_roots
            .iter()
            .any(|root| is_strictly_under(path, root))
        {
            return Err(FrameError::FileNotWritable { path: path.clone() });
        }
        if file.mode > 0o777 {
            return Err(FrameError::FileMode {
                path: path.clone(),
                mode: file.mode,
            });
        }
        if !seen.insert(path.as_str()) {
            return Err(FrameError::FileDuplicate { path: path.clone() });
        }
    }
    Ok(())
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Absolute, no NUL, and no empty, `.` or `..` component (so `/` itself is normal too).
pub fn is_normal_absolute(path: &str) -> bool {
    if path == "/" {
        return true;
    }
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    !path.contains('\0')
        && rest
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// `path` is below `root` (not `root` itself); both must be normal absolute paths (`root` may
/// end in `/`).
pub fn is_strictly_under(path: &str, root: &str) -> bool {
    let root = match root.trim_end_matches('/') {
        "" if root.starts_with('/') => "/",
        trimmed => trimmed,
    };
    if !is_normal_absolute(root) || !is_normal_absolute(path) {
        return false;
    }
    let root = root.trim_end_matches('/');
    path.strip_prefix(root)
        .is_some_and(|rest| rest.len() > 1 && rest.starts_with('/'))
}

/// The env map, refusing a name given twice (serde_json alone keeps the last one).
fn unique_env<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    struct Unique;
    impl<'de> Visitor<'de> for Unique {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object of string values")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((name, value)) = map.next_entry::<String, String>()? {
                if out.contains_key(&name) {
                    return Err(serde::de::Error::custom(format_args!(
                        "duplicate env name {name:?}"
                    )));
                }
                out.insert(name, value);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Unique)
}

impl Frame {
    /// The wire form: [`MAGIC`], the body length, the JSON body. Refused (as init would
    /// refuse it) when the body is over [`MAX_BODY`].
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let body = serde_json::to_vec(self).map_err(|e| FrameError::Json {
            message: e.to_string(),
        })?;
        if body.len() > MAX_BODY {
            return Err(FrameError::TooLarge {
                len: u64::try_from(body.len()).unwrap_or(u64::MAX),
            });
        }
        encode(&body).ok_or(FrameError::TooLarge { len: u64::MAX })
    }
}

/// Encodes a body as a frame (for the controller and tests).
pub fn encode(body: &[u8]) -> Option<Vec<u8>> {
    let len = u32::try_from(body.len()).ok()?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    Some(out)
}

#[cfg(test)]
mod tests;
