//! The API's one error type. Every failure leaves as `{"error":"<code>","message":".."}`;
//! validation failures add `fields: [{field, reason}]`. A 5xx says nothing about its cause:
//! the detail is logged here, once, and never sent to the client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tracing::error;

use super::dto::SandboxDto;
use super::selftest::SelftestDto;
use crate::accounts::quota::QuotaExceeded;
use crate::egress::ceilings::CeilingExceeded;
use crate::sandbox::selftest::Selftest;
use crate::store::Sandbox;

mod domain;

pub(crate) use domain::sandbox_fields;

/// An API failure, ready to become a response.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// Field-level validation failures.
    #[error("invalid request")]
    Validation(Vec<FieldReason>),
    /// Field-level failures with a code of their own (`secret_not_exposable`): 400 with
    /// `fields` like [`ApiError::Validation`].
    #[error("invalid request")]
    FieldsRefused {
        /// The error code.
        code: &'static str,
        /// The fields.
        fields: Vec<FieldReason>,
    },
    /// A JSON body whose value does not fit one field (wrong type, out of the type's range,
    /// unknown or missing): 400 `invalid_json`, naming the field.
    #[error("{}: {}", .0.field, .0.reason)]
    InvalidJson(FieldReason),
    /// A malformed request (JSON, query, header).
    #[error("{message}")]
    BadRequest {
        /// The error code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// No such object (or the caller may not see it).
    #[error("{0}")]
    NotFound(&'static str),
    /// The request conflicts with the current state.
    #[error("{message}")]
    Conflict {
        /// The error code.
        code: &'static str,
        /// What conflicts.
        message: String,
    },
    /// A wait gave up before the sandbox ended.
    #[error("the sandbox did not end within the wait timeout")]
    WaitTimeout,
    /// A dependency (store, Docker, address pool) is unavailable.
    #[error("{message}")]
    Unavailable {
        /// The error code.
        code: &'static str,
        /// What is unavailable.
        message: &'static str,
        /// The logged cause.
        detail: String,
    },
    /// Anything else; the detail is logged, the client gets a generic message.
    #[error("internal error")]
    Internal(String),
    /// No account can log in yet and no admin token is configured.
    #[error(
        "this Airlock has no users yet: set AIRLOCK_BOOTSTRAP_ADMIN_EMAIL and \
         AIRLOCK_BOOTSTRAP_ADMIN_PASSWORD (or AIRLOCK_ADMIN_TOKEN) and restart, or run \
         `airlock admin create-user --email E --role admin --password-stdin`"
    )]
    NotBootstrapped,
    /// A login with a wrong email or password (the same answer either way).
    #[error("wrong email or password")]
    InvalidCredentials,
    /// The caller may see the object but their role or token scope does not allow the action.
    #[error("{0}")]
    Forbidden(&'static str),
    /// A typed refusal with its own status (image policy, image loading).
    #[error("{message}")]
    Refused {
        /// The status.
        status: StatusCode,
        /// The error code.
        code: &'static str,
        /// Why.
        message: String,
    },
    /// The server is saturated (every argon2 slot taken): 503 with `Retry-After`.
    #[error("{message}")]
    Busy {
        /// The error code.
        code: &'static str,
        /// What is saturated.
        message: &'static str,
        /// Seconds to wait.
        retry_after_s: u64,
    },
    /// Too many failed logins; retry after this many seconds.
    #[error("too many failed logins; retry later")]
    LoginThrottled {
        /// Seconds until the next attempt is accepted.
        retry_after_s: u64,
    },
    /// A create past the owner's quota: 429 for the create rate, 403 for a limit.
    #[error(
        "quota {} exceeded: limit {}, in use {}, requested {}",
        .0.kind, .0.limit, .0.used, .0.requested
    )]
    QuotaExceeded(QuotaExceeded),
    /// A policy beyond the caller's ceiling: 403 `policy_exceeds_ceiling` with the field,
    /// the value and the ceiling's label.
    #[error("{0}")]
    PolicyExceedsCeiling(CeilingExceeded),
    /// A create whose required self-test did not pass: 422 `selftest_failed` with the failed
    /// sandbox and the self-test's result.
    #[error("{message}")]
    SelftestFailed {
        /// What happened.
        message: String,
        /// The failed sandbox.
        sandbox: Box<SandboxDto>,
        /// The self-test's result.
        selftest: Box<SelftestDto>,
    },
}

/// One invalid field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldReason {
    /// The field's path in the request, e.g. `limits.cpus` or `env.FOO`.
    pub field: String,
    /// Why it is invalid.
    pub reason: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<&'a [FieldReason]>,
}

/// The body of a 422 `selftest_failed`.
#[derive(Serialize)]
struct SelftestFailedBody<'a> {
    error: &'a str,
    message: &'a str,
    sandbox: &'a SandboxDto,
    selftest: &'a SelftestDto,
}

/// The body of a 403 `policy_exceeds_ceiling`.
#[derive(Serialize)]
struct CeilingBody<'a> {
    error: &'a str,
    message: String,
    field: &'a str,
    value: &'a serde_json::Value,
    ceiling: &'a str,
}

// === impl ApiError ===

impl ApiError {
    /// The status and the `error` code.
    pub fn status_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Validation(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::FieldsRefused { code, .. } => (StatusCode::BAD_REQUEST, code),
            Self::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            Self::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            Self::WaitTimeout => (StatusCode::REQUEST_TIMEOUT, "wait_timeout"),
            Self::Unavailable { code, .. } => (StatusCode::SERVICE_UNAVAILABLE, code),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            Self::NotBootstrapped => (StatusCode::UNAUTHORIZED, "not_bootstrapped"),
            Self::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::LoginThrottled { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"),
            Self::Busy { code, .. } => (StatusCode::SERVICE_UNAVAILABLE, code),
            Self::QuotaExceeded(exceeded) if exceeded.retry_after.is_some() => {
                (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded")
            }
            Self::QuotaExceeded(_) => (StatusCode::FORBIDDEN, "quota_exceeded"),
            Self::PolicyExceedsCeiling(_) => (StatusCode::FORBIDDEN, "policy_exceeds_ceiling"),
            Self::Refused { status, code, .. } => (*status, code),
            Self::SelftestFailed { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "selftest_failed"),
        }
    }

    /// The 422 of a create whose required self-test did not pass.
    pub fn selftest_failed(sandbox: &Sandbox, selftest: &Selftest) -> Self {
        let failed = selftest.report.as_ref().map_or(0, |r| r.fail_count);
        Self::SelftestFailed {
            message: format!(
                "the isolation self-test {} ({failed} check(s) failed); the sandbox was removed",
                selftest.status.as_str()
            ),
            sandbox: Box::new(SandboxDto::from(sandbox)),
            selftest: Box::new(SelftestDto::from(selftest)),
        }
    }

    /// A 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// A 400 for one field.
    pub fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Validation(vec![FieldReason {
            field: field.into(),
            reason: reason.into(),
        }])
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_code();
        match &self {
            Self::Internal(detail) => error!(error = %detail, "Request failed"),
            Self::Unavailable { detail, .. } => error!(error = %detail, "Dependency unavailable"),
            _ => {}
        }
        match &self {
            Self::QuotaExceeded(exceeded) => quota_response(status, code, exceeded),
            Self::PolicyExceedsCeiling(exceeded) => {
                let body = CeilingBody {
                    error: code,
                    message: self.to_string(),
                    field: &exceeded.field,
                    value: &exceeded.value,
                    ceiling: &exceeded.ceiling,
                };
                (status, Json(body)).into_response()
            }
            Self::SelftestFailed {
                message,
                sandbox,
                selftest,
            } => {
                let body = SelftestFailedBody {
                    error: code,
                    message,
                    sandbox,
                    selftest,
                };
                (status, Json(body)).into_response()
            }
            _ => self.plain_response(status, code),
        }
    }
}

impl ApiError {
    /// `{"error","message"}`, plus `fields` for validation failures.
    fn plain_response(&self, status: StatusCode, code: &str) -> Response {
        let fields = match self {
            Self::Validation(fields) | Self::FieldsRefused { fields, .. } => {
                Some(fields.as_slice())
            }
            Self::InvalidJson(field) => Some(std::slice::from_ref(field)),
            _ => None,
        };
        let message = match self {
            Self::Validation(fields) | Self::FieldsRefused { fields, .. } => fields
                .iter()
                .map(|f| format!("{}: {}", f.field, f.reason))
                .collect::<Vec<_>>()
                .join("; "),
            Self::Unavailable { message, .. } => (*message).to_owned(),
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: code,
            message,
            fields,
        };
        if let Self::LoginThrottled { retry_after_s } | Self::Busy { retry_after_s, .. } = self {
            let retry = [(axum::http::header::RETRY_AFTER, retry_after_s.to_string())];
            return (status, retry, Json(body)).into_response();
        }
        (status, Json(body)).into_response()
    }
}

/// A quota refusal names the quota, its limit, the use and the request; the create rate's
/// also says when to retry.
fn quota_response(status: StatusCode, code: &str, exceeded: &QuotaExceeded) -> Response {
    let body = serde_json::json!({
        "error": code,
        "quota": exceeded.kind.as_str(),
        "limit": exceeded.limit.to_json(),
        "used": exceeded.used.to_json(),
        "requested": exceeded.requested.to_json(),
        "message": ApiError::QuotaExceeded(*exceeded).to_string(),
    });
    if let Some(retry) = exceeded.retry_after {
        let retry = [(axum::http::header::RETRY_AFTER, retry.as_secs().to_string())];
        return (status, retry, Json(body)).into_response();
    }
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests;
