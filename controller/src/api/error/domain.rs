//! How each domain's errors answer over HTTP: the status, the code and what the client is
//! told. One `From` per domain error; a 5xx carries its detail only to the log.

use axum::http::StatusCode;

use super::{ApiError, FieldReason};
use crate::accounts::credential::CredentialError;
use crate::accounts::AccountError;
use crate::audit::AuditError;
use crate::egress::ceilings::PolicyRefusal;
use crate::egress::PolicyError;
use crate::files::FilesError;
use crate::folder::path::PathRefusal;
use crate::folders::FolderError;
use crate::images::allow::ImageRefusal;
use crate::images::ImageError;
use crate::pool_config::PoolConfigError;
use crate::sandbox::user::UserRefusal;
use crate::sandbox::{FieldError, Problem};
use crate::sandboxes::SandboxError;
use crate::secrets::SecretError;
use crate::volumes::VolumeError;

/// The refusal of a token whose scopes go beyond the caller's.
const SCOPES_BEYOND: &str = "a token cannot have scopes beyond the caller's role and token";
/// The 400 of an `egress_only` secret named where only an `env` one may go.
const SECRET_NOT_EXPOSABLE: &str = "secret_not_exposable";
/// The 503 of a create or a secret while no key is configured.
const SECRETS_DISABLED: &str = "secrets are not enabled on this controller";

impl From<SandboxError> for ApiError {
    fn from(error: SandboxError) -> Self {
        match error {
            SandboxError::Invalid(errors) => sandbox_fields(errors, |field| field),
            SandboxError::Image(error) => error.into(),
            SandboxError::ImageUser(refusal @ UserRefusal::RunsAsRoot { .. }) => Self::Refused {
                status: StatusCode::FORBIDDEN,
                code: "image_runs_as_root",
                message: refusal.to_string(),
            },
            error @ SandboxError::ImageDeclaresVolume { .. } => Self::Refused {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "image_declares_volume",
                message: error.to_string(),
            },
            SandboxError::NotFound => Self::NotFound("no such sandbox"),
            SandboxError::NoAccount => Self::Unauthorized,
            SandboxError::IdempotencyMismatch { existing } => Self::Conflict {
                code: "idempotency_mismatch",
                message: format!(
                    "the Idempotency-Key was already used for sandbox {existing} with a \
                     different request"
                ),
            },
            SandboxError::Conflict(message) => Self::Conflict {
                code: "conflict",
                message,
            },
            error @ SandboxError::VolumeNotFound(_) => Self::Refused {
                status: StatusCode::NOT_FOUND,
                code: "volume_not_found",
                message: error.to_string(),
            },
            error @ (SandboxError::VolumeHeld { .. } | SandboxError::VolumeWriting(_)) => {
                Self::Conflict {
                    code: "volume_in_use",
                    message: error.to_string(),
                }
            }
            error @ SandboxError::VolumeOverQuota(_) => Self::Conflict {
                code: "volume_over_quota",
                message: error.to_string(),
            },
            SandboxError::Folder(error) => error.into(),
            SandboxError::NotStarted => Self::Conflict {
                code: "not_started",
                message: SandboxError::NotStarted.to_string(),
            },
            SandboxError::AdminOnly => Self::Forbidden(crate::accounts::ADMIN_REQUIRED),
            other => sandbox_dependency(other),
        }
    }
}

/// A 400 naming every field of `errors`.
fn validation(errors: Vec<FieldError>) -> ApiError {
    ApiError::Validation(
        errors
            .into_iter()
            .map(|e| FieldReason {
                field: e.field,
                reason: e.problem.to_string(),
            })
            .collect(),
    )
}

/// A create's invalid fields, each named by `name` (the API's name of the domain's field):
/// 400 `secret_not_exposable` when one of them names an `egress_only` secret where only an
/// `env` one may go, else 400 `invalid_request`.
pub(crate) fn sandbox_fields(errors: Vec<FieldError>, name: impl Fn(String) -> String) -> ApiError {
    let not_exposable = errors
        .iter()
        .any(|e| matches!(e.problem, Problem::NotExposable { .. }));
    let fields = errors
        .into_iter()
        .map(|e| FieldReason {
            field: name(e.field),
            reason: e.problem.to_string(),
        })
        .collect();
    if not_exposable {
        ApiError::FieldsRefused {
            code: SECRET_NOT_EXPOSABLE,
            fields,
        }
    } else {
        ApiError::Validation(fields)
    }
}

/// The sandbox errors that come from what a command depends on.
fn sandbox_dependency(error: SandboxError) -> ApiError {
    match error {
        error @ SandboxError::SubnetCapReached { .. } => ApiError::Conflict {
            code: "subnet_cap_reached",
            message: error.to_string(),
        },
        SandboxError::SubnetsExhausted => ApiError::Unavailable {
            code: "capacity",
            message: "no sandbox network capacity left",
            detail: "every sandbox subnet in the configured pools is allocated".to_owned(),
        },
        SandboxError::QuotaExceeded(exceeded) => ApiError::QuotaExceeded(exceeded),
        SandboxError::Secrets(error) => error.into(),
        SandboxError::Policy(error) => error.into(),
        SandboxError::EgressOff => ApiError::field("policy", SandboxError::EgressOff.to_string()),
        error @ SandboxError::DiskLimitUnsupported { .. } => ApiError::FieldsRefused {
            code: "disk_limit_unsupported",
            fields: vec![FieldReason {
                field: "limits.disk_mb".to_owned(),
                reason: error.to_string(),
            }],
        },
        SandboxError::InitBinary(error) => ApiError::Unavailable {
            code: "init_unavailable",
            message: "the sandbox runtime (airlock-init) is not available on this controller",
            detail: error.to_string(),
        },
        SandboxError::Egress(error) => ApiError::Unavailable {
            code: "egress_unavailable",
            message: "the egress proxy is not available",
            detail: error.to_string(),
        },
        other => ApiError::Internal(other.to_string()),
    }
}

impl From<VolumeError> for ApiError {
    fn from(error: VolumeError) -> Self {
        match error {
            VolumeError::Invalid(errors) => validation(errors),
            VolumeError::NotFound => Self::NotFound("no such volume"),
            VolumeError::NoAccount => Self::Unauthorized,
            error @ VolumeError::NameTaken(_) => Self::Conflict {
                code: "volume_name_taken",
                message: error.to_string(),
            },
            error @ (VolumeError::InUse(_) | VolumeError::Writing) => Self::Conflict {
                code: "volume_in_use",
                message: error.to_string(),
            },
            VolumeError::QuotaExceeded(exceeded) => Self::QuotaExceeded(exceeded),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<PoolConfigError> for ApiError {
    fn from(error: PoolConfigError) -> Self {
        match error {
            PoolConfigError::Invalid(errors) => validation(errors),
            PoolConfigError::AdminOnly => Self::Forbidden(crate::accounts::ADMIN_REQUIRED),
            PoolConfigError::Store(error) => Self::Internal(error.to_string()),
        }
    }
}

impl From<FolderError> for ApiError {
    fn from(error: FolderError) -> Self {
        let refused = |status: StatusCode, code: &'static str, error: &FolderError| Self::Refused {
            status,
            code,
            message: error.to_string(),
        };
        match error {
            FolderError::Invalid(errors) => validation(errors),
            ref e @ FolderError::Disabled => refused(StatusCode::CONFLICT, "folders_disabled", e),
            FolderError::AdminOnly => Self::Forbidden(crate::accounts::ADMIN_REQUIRED),
            ref e @ FolderError::Path { ref refusal, .. } => {
                let status = match refusal {
                    PathRefusal::Duplicate { .. }
                    | PathRefusal::Overlaps { .. }
                    | PathRefusal::Changed => StatusCode::CONFLICT,
                    _ => StatusCode::BAD_REQUEST,
                };
                refused(status, refusal.code(), e)
            }
            FolderError::NotFound => Self::NotFound("no such folder"),
            ref e @ FolderError::NotGranted { .. } => {
                refused(StatusCode::NOT_FOUND, "folder_not_found", e)
            }
            ref e @ FolderError::ReadOnly { .. } => {
                refused(StatusCode::FORBIDDEN, "folder_read_only", e)
            }
            ref e @ FolderError::NameTaken(_) => {
                refused(StatusCode::CONFLICT, "folder_name_taken", e)
            }
            ref e @ FolderError::UnknownUser(_) => {
                refused(StatusCode::BAD_REQUEST, "unknown_user", e)
            }
            ref e @ (FolderError::InUse(_) | FolderError::GrantInUse(_)) => {
                refused(StatusCode::CONFLICT, "folder_in_use", e)
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<ImageError> for ApiError {
    fn from(error: ImageError) -> Self {
        match error {
            ImageError::NotFound(image) => Self::field(
                "image",
                format!("`{image}` is not on the node (images are never pulled; load it first)"),
            ),
            ImageError::Refused(refusal) => Self::Refused {
                status: StatusCode::FORBIDDEN,
                code: match refusal {
                    ImageRefusal::NotAllowed { .. } => "image_not_allowed",
                    ImageRefusal::Unpinned { .. } => "image_unpinned",
                    ImageRefusal::DigestMismatch { .. } => "image_digest_mismatch",
                },
                message: refusal.to_string(),
            },
            ImageError::Loading { image, waited } => Self::Refused {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "image_loading",
                message: format!(
                    "image `{image}` is still being loaded onto the node (waited {}s); \
                     retry later, progress at GET /v1/images",
                    waited.as_secs()
                ),
            },
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<PolicyError> for ApiError {
    fn from(error: PolicyError) -> Self {
        match error {
            PolicyError::Refused(PolicyRefusal::Exceeds(exceeded)) => {
                Self::PolicyExceedsCeiling(exceeded)
            }
            PolicyError::Refused(PolicyRefusal::NeverEffective(fields)) => Self::Validation(
                fields
                    .into_iter()
                    .map(|(field, reason)| FieldReason { field, reason })
                    .collect(),
            ),
            PolicyError::Ceilings(error) => Self::field(error.field, error.reason),
            PolicyError::Forbidden => Self::Forbidden(crate::accounts::ADMIN_REQUIRED),
            PolicyError::Store(error) => Self::Internal(error.to_string()),
        }
    }
}

impl From<SecretError> for ApiError {
    fn from(error: SecretError) -> Self {
        match error {
            SecretError::Unavailable => Self::Unavailable {
                code: "secrets_disabled",
                message: SECRETS_DISABLED,
                detail: "the service runs without a vault".to_owned(),
            },
            SecretError::Invalid { field, reason } => Self::field(field, reason),
            SecretError::NotFound => Self::NotFound("no such secret"),
            error @ SecretError::NotExposable { .. } => {
                Self::bad_request(SECRET_NOT_EXPOSABLE, error.to_string())
            }
            SecretError::NoAccount => Self::Unauthorized,
            SecretError::QuotaExceeded(exceeded) => Self::QuotaExceeded(exceeded),
            error @ SecretError::InUse { .. } => Self::Conflict {
                code: "secret_in_use",
                message: error.to_string(),
            },
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::Invalid { field, reason } => Self::field(field, reason),
            AccountError::Forbidden(message) => Self::Forbidden(message),
            AccountError::NotFound(message) => Self::NotFound(message),
            AccountError::Exists(_) => Self::Conflict {
                code: "email_taken",
                message: "an account with this email already exists".to_owned(),
            },
            AccountError::NoSuchUser(_) => Self::NotFound("no such user"),
            AccountError::SelfChange => Self::Conflict {
                code: "self_change",
                message: AccountError::SelfChange.to_string(),
            },
            AccountError::ScopesBeyondRole { .. } => Self::Forbidden(SCOPES_BEYOND),
            AccountError::Throttled { retry_after_s } => Self::LoginThrottled { retry_after_s },
            AccountError::InvalidCredentials => Self::InvalidCredentials,
            AccountError::Gone => Self::Unauthorized,
            AccountError::Credential(CredentialError::Busy) => Self::Busy {
                code: "busy",
                message: "too many password checks at once; retry shortly",
                retry_after_s: 1,
            },
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<AuditError> for ApiError {
    fn from(error: AuditError) -> Self {
        match error {
            AuditError::Forbidden => Self::Forbidden(crate::accounts::ADMIN_REQUIRED),
            AuditError::Limit => Self::field("limit", "must be between 1 and 500"),
            AuditError::Cursor => Self::field(
                "cursor",
                "must be a `next` value of a listing in the same order",
            ),
            AuditError::Range => Self::field("until", "must be after since"),
            AuditError::Store(error) => Self::Internal(error.to_string()),
        }
    }
}

impl From<FilesError> for ApiError {
    fn from(error: FilesError) -> Self {
        let code = error.code();
        match error {
            FilesError::NotFound("volume") => Self::NotFound("no such volume"),
            FilesError::NotFound(_) => Self::NotFound("no such sandbox"),
            FilesError::BadPath(reason) => Self::field("path", reason),
            FilesError::Invalid { field, message } => Self::field(field, message),
            error @ (FilesError::NotRunning(_)
            | FilesError::PathNotWritable(_)
            | FilesError::PathOnTmpfs(_)
            | FilesError::NotADirectory(_)
            | FilesError::VolumeBusy(_)) => Self::Conflict {
                code,
                message: error.to_string(),
            },
            error @ (FilesError::PathNotFound(_)
            | FilesError::BadArchive(_)
            | FilesError::TooLarge(_)
            | FilesError::TooManyUploads(_)
            | FilesError::LengthRequired) => Self::Refused {
                status: StatusCode::from_u16(error.status())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                code,
                message: error.to_string(),
            },
            other @ (FilesError::Store(_) | FilesError::Docker(_) | FilesError::Staging(_)) => {
                Self::Internal(other.to_string())
            }
        }
    }
}
