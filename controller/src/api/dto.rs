//! API request and response bodies: serde types kept apart from the domain types, with
//! `deny_unknown_fields` on everything a client sends. Conversions go DTO → domain request
//! (validated later by the service) and domain → DTO.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::egress::providers::CredentialRequest;
use crate::sandbox::mounts::{MountRequest, MountSource};
use crate::sandbox::{EndReason, LimitsRequest, RootFs, SandboxRequest, HOME_DIR};
use crate::store::{Page, Sandbox};

/// `POST /v1/sandboxes`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSandbox {
    /// Image reference; the node must have it. May be left out with a `preset`.
    #[serde(default)]
    pub image: String,
    /// `claude-code`, `codex` or `shell` (`GET /v1/presets`): fills the image, `cmd` and
    /// `policy` left out.
    #[serde(default)]
    pub preset: Option<String>,
    /// Command; the image's default when absent.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// Environment variables.
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    /// Environment variables from the caller's secrets: `{"ENV_NAME": "secret-name"}`. The
    /// values go into the container only; they are never stored with the sandbox or shown.
    #[serde(default)]
    pub secret_env: Option<BTreeMap<String, String>>,
    /// Provider credentials the egress proxy adds on the way out, from the caller's secrets
    /// (`[{"provider": "anthropic", "secret": "anthropic-key"}]`, `GET /v1/providers`). The
    /// sandbox gets a placeholder in the provider's variable and trusts its own CA; the key
    /// never enters it.
    #[serde(default)]
    pub credentials: Option<Vec<CredentialDto>>,
    /// Egress policy (the proxy's policy object); absent or null: the default policy of the
    /// caller's ceiling, which also fills every field left absent. Checked against the
    /// ceiling: 403 `policy_exceeds_ceiling` names the field and value.
    #[serde(default)]
    pub policy: Option<serde_json::Value>,
    /// Resource limits.
    #[serde(default)]
    pub limits: Option<LimitsDto>,
    /// Absolute lifetime in seconds.
    #[serde(default)]
    pub timeout_s: Option<u64>,
    /// Idle timeout in seconds.
    #[serde(default)]
    pub idle_timeout_s: Option<u64>,
    /// User labels (never under `airlock.`).
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Read-only root filesystem with a tmpfs `/tmp` (the default); `false` opts out.
    #[serde(default)]
    pub read_only_rootfs: Option<bool>,
    /// Working directory: an absolute, normalised path; when absent the first mount's
    /// target, else the image's.
    #[serde(default)]
    pub workdir: Option<String>,
    /// Up to 8 mounts of the caller's volumes (`{"volume": "repo", "target": "/workspace",
    /// "read_only": false}`; one live sandbox holds a volume read-write at a time) and of
    /// host folders granted to the caller (`{"folder": "datasets", "target": "/data"}`).
    #[serde(default)]
    pub mounts: Option<Vec<MountDto>>,
    /// `{"volume": "name"}`: one of the caller's volumes as `HOME` (read-write) instead of
    /// the tmpfs.
    #[serde(default)]
    pub home: Option<HomeDto>,
    /// Run the isolation self-test at create: `true` records it, `"required"` also fails
    /// the create when it does not pass.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub selftest: Option<super::selftest::SelftestField>,
}

/// One requested mount: exactly one of `volume` or `folder`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MountDto {
    /// One of the caller's volumes, by name.
    #[serde(default)]
    pub volume: Option<String>,
    /// A registered host folder granted to the caller, by name.
    #[serde(default)]
    pub folder: Option<String>,
    /// Absolute, normalised; never `/` or under `/proc`, `/sys`, `/dev`, `/etc`,
    /// `/run/airlock`, `/tmp` or `/home/agent`; no two nested.
    pub target: String,
    /// Mount read-only. Default: `false` for a volume; for a folder its mode (an `ro`
    /// folder refuses `false`).
    #[serde(default)]
    pub read_only: Option<bool>,
}

/// The home volume.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HomeDto {
    /// One of the caller's volumes, by name.
    pub volume: String,
}

/// A mount as shown on a sandbox.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MountView {
    /// The volume's name.
    pub volume: String,
    /// The volume's id.
    pub volume_id: Option<String>,
    /// Where it is mounted.
    pub target: String,
    /// Whether read-only.
    pub read_only: bool,
}

/// One host folder mount of a sandbox (no host path: that is the operator's).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct FolderMountView {
    /// The folder's name.
    pub folder: String,
    /// The folder's id.
    pub folder_id: Option<String>,
    /// Where it is mounted.
    pub target: String,
    /// Whether read-only.
    pub read_only: bool,
}

/// Requested limits.
#[derive(Clone, Copy, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsDto {
    /// CPUs, fractional.
    pub cpus: Option<f64>,
    /// Memory in MiB (no swap on top).
    pub memory_mb: Option<u64>,
    /// Most processes.
    pub pids: Option<u64>,
    /// Writable-layer size in MiB.
    pub disk_mb: Option<u64>,
}

/// `GET /v1/sandboxes` query.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only sandboxes in this state.
    pub state: Option<String>,
    /// The previous page's `next`.
    pub cursor: Option<String>,
    /// Page size (1..=500; default 50).
    pub limit: Option<u32>,
}

/// `GET /v1/sandboxes/{id}/wait` query.
#[derive(Clone, Copy, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WaitParams {
    /// Give up after this many seconds (default and maximum: one day).
    pub timeout_s: Option<u64>,
}

/// A sandbox as the API shows it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SandboxDto {
    /// Its id.
    pub id: String,
    /// Observed state.
    pub state: &'static str,
    /// Desired state.
    pub desired_state: &'static str,
    /// Why it ended, once it has.
    pub end_reason: Option<EndReasonDto>,
    /// The exit code, for `exited`.
    pub exit_code: Option<i64>,
    /// Image reference.
    pub image: String,
    /// Command (empty: the image's default).
    pub cmd: Vec<String>,
    /// Names of the user's environment variables (values are not echoed).
    pub env: Vec<String>,
    /// Effective limits.
    pub limits: EffectiveLimits,
    /// Absolute lifetime in seconds.
    pub timeout_s: u64,
    /// Idle timeout in seconds.
    pub idle_timeout_s: Option<u64>,
    /// User labels.
    pub labels: BTreeMap<String, String>,
    /// Whether the root filesystem is read-only.
    pub read_only_rootfs: bool,
    /// The user it runs as, `uid:gid` (from the image's `USER` when allowed, else nobody).
    pub user: String,
    /// The working directory; `null`: the image's.
    pub workdir: Option<String>,
    /// `HOME`: a writable tmpfs owned by the user, or a volume (`null` for sandboxes made
    /// before homes).
    pub home: Option<String>,
    /// The volume mounts (a home volume is listed with target `/home/agent`).
    pub mounts: Vec<MountView>,
    /// The host folder mounts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub folders: Vec<FolderMountView>,
    /// The sandbox's address on its network, once allocated.
    pub address: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// RFC 3339, once ended.
    pub ended_at: Option<String>,
    /// The latest isolation self-test, when one ran (single-sandbox answers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selftest: Option<super::selftest::SelftestDto>,
}

/// Why a sandbox ended.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct EndReasonDto {
    /// `exited`, `stopped`, `timeout`, `idle`, `oom`, `killed`, `lost` or `error`.
    pub kind: &'static str,
    /// For `error`, a short description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Effective limits.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
pub struct EffectiveLimits {
    /// CPUs.
    pub cpus: f64,
    /// Memory in MiB.
    pub memory_mb: u64,
    /// Most processes.
    pub pids: u64,
    /// Writable-layer size in MiB.
    pub disk_mb: Option<u64>,
}

/// One page of sandboxes.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PageDto {
    /// The sandboxes, oldest first.
    pub items: Vec<SandboxDto>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next: Option<String>,
}

/// One `credentials[]` entry of a create.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialDto {
    /// `anthropic`, `openai`, `github` or `generic` (`GET /v1/providers`); may be left out
    /// with a `preset` that names one (`claude-code`: anthropic, `codex`: openai).
    #[serde(default)]
    pub provider: Option<String>,
    /// The name of one of the caller's secrets.
    pub secret: String,
    /// `generic` only: the exact host the credential goes to.
    #[serde(default)]
    pub host: Option<String>,
    /// `generic` only: the header (default `authorization`).
    #[serde(default)]
    pub header: Option<String>,
    /// `generic` only: the format (default `Bearer {secret}`).
    #[serde(default)]
    pub format: Option<String>,
    /// Also serve the provider through the proxy's gateway (no CA needed): its base-URL
    /// variable (`ANTHROPIC_BASE_URL`, `OPENAI_BASE_URL`) points at
    /// `http://airlock.internal:3128/gw/<provider>`.
    #[serde(default)]
    pub gateway: bool,
}

impl From<CredentialDto> for CredentialRequest {
    fn from(dto: CredentialDto) -> Self {
        CredentialRequest {
            provider: dto.provider.unwrap_or_default(),
            secret: dto.secret,
            host: dto.host,
            header: dto.header,
            format: dto.format,
            gateway: dto.gateway,
        }
    }
}

// === impl CreateSandbox ===

impl CreateSandbox {
    /// The domain request. `env` keeps its (sorted) key order; see [`env_field`].
    pub fn into_request(self) -> SandboxRequest {
        let limits = self.limits.unwrap_or_default();
        SandboxRequest {
            image: self.image,
            cmd: self.cmd.unwrap_or_default(),
            env: self.env.unwrap_or_default().into_iter().collect(),
            limits: LimitsRequest {
                cpus: limits.cpus,
                memory_mb: limits.memory_mb,
                pids: limits.pids,
                disk_mb: limits.disk_mb,
            },
            timeout: self.timeout_s.map(Duration::from_secs),
            idle_timeout: self.idle_timeout_s.map(Duration::from_secs),
            labels: self.labels.unwrap_or_default(),
            rootfs: match self.read_only_rootfs {
                Some(false) => RootFs::Writable,
                _ => RootFs::ReadOnly,
            },
            run_as: None,
            workdir: self.workdir,
            mounts: self
                .mounts
                .unwrap_or_default()
                .into_iter()
                .map(MountDto::into_request)
                .collect(),
            home_volume: self.home.map(|home| home.volume),
        }
    }
}

// === impl MountDto ===

impl MountDto {
    /// The domain request; both or neither of `volume` and `folder` is refused by the check.
    fn into_request(self) -> MountRequest {
        let source = match (self.volume, self.folder) {
            (Some(volume), None) => MountSource::Volume(volume),
            (None, Some(folder)) => MountSource::Folder(folder),
            (Some(_), Some(_)) | (None, None) => MountSource::Ambiguous,
        };
        MountRequest {
            source,
            target: self.target,
            read_only: self.read_only,
        }
    }
}

/// Rewrites the domain's `env[i].name` / `env[i].value` paths to the API's `env.NAME`, since
/// the API takes `env` as an object.
pub fn env_field(field: &str, env: &[(String, String)]) -> String {
    let Some(rest) = field.strip_prefix("env[") else {
        return field.to_owned();
    };
    let parsed = rest
        .split_once(']')
        .and_then(|(index, tail)| Some((index.parse::<usize>().ok()?, tail)));
    match parsed.and_then(|(index, tail)| Some((env.get(index)?, tail))) {
        Some(((name, _), ".value")) => format!("env.{name}.value"),
        Some(((name, _), _)) => format!("env.{name}"),
        None => field.to_owned(),
    }
}

// === impl SandboxDto ===

impl From<&Sandbox> for SandboxDto {
    fn from(sandbox: &Sandbox) -> Self {
        let spec = &sandbox.spec;
        let limits = spec.limits();
        Self {
            id: sandbox.id.to_string(),
            state: sandbox.state.as_str(),
            desired_state: sandbox.desired.as_str(),
            end_reason: sandbox.end_reason.as_ref().map(EndReasonDto::from),
            exit_code: sandbox.end_reason.as_ref().and_then(EndReason::exit_code),
            image: spec.image().to_string(),
            cmd: spec.cmd().to_vec(),
            env: spec.env().iter().map(|v| v.name().to_owned()).collect(),
            limits: EffectiveLimits {
                cpus: limits.cpus.as_f64(),
                memory_mb: limits.memory_mb,
                pids: limits.pids,
                disk_mb: limits.disk_mb,
            },
            timeout_s: spec.timeout().as_secs(),
            idle_timeout_s: spec.idle_timeout().map(|d| d.as_secs()),
            labels: spec.labels().clone(),
            read_only_rootfs: spec.rootfs() == RootFs::ReadOnly,
            user: spec.run_as().to_string(),
            workdir: spec.workdir().map(ToString::to_string),
            home: spec.home().map(|_| HOME_DIR.to_owned()),
            mounts: spec
                .mounts()
                .iter()
                .map(|m| MountView {
                    volume: m.volume.to_string(),
                    volume_id: m.bound.as_ref().map(|b| b.id.to_string()),
                    target: m.target.to_string(),
                    read_only: m.read_only,
                })
                .collect(),
            folders: spec
                .folders()
                .iter()
                .map(|m| FolderMountView {
                    folder: m.folder.to_string(),
                    folder_id: m.bound.as_ref().map(|b| b.id.to_string()),
                    target: m.target.to_string(),
                    read_only: m
                        .bound
                        .as_ref()
                        .map_or(m.read_only == Some(true), |b| b.read_only),
                })
                .collect(),
            address: sandbox.subnet.map(|s| s.sandbox().to_string()),
            created_at: rfc3339(sandbox.created_at),
            updated_at: rfc3339(sandbox.updated_at),
            ended_at: sandbox.ended_at.map(rfc3339),
            selftest: None,
        }
    }
}

impl From<&EndReason> for EndReasonDto {
    fn from(reason: &EndReason) -> Self {
        Self {
            kind: reason.kind().as_str(),
            message: reason.message().map(str::to_owned),
        }
    }
}

impl From<&Page> for PageDto {
    fn from(page: &Page) -> Self {
        Self {
            items: page.items.iter().map(SandboxDto::from).collect(),
            next: page.next.map(|id| id.to_string()),
        }
    }
}

pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339)
        .unwrap_or_else(|_unformattable| at.to_string())
}
