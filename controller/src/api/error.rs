//! The API's one error type. Every failure leaves as `{"error":"<code>","message":".."}`;
//! validation failures add `fields: [{field, reason}]`. A 5xx says nothing about its cause:
//! the detail is logged here, once, and never sent to the client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tracing::error;

use crate::egress::ceilings::{CeilingExceeded, PolicyRefusal};
use crate::images::allow::ImageRefusal;
use crate::sandboxes::ServiceError;

/// An API failure, ready to become a response.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// Field-level validation failures.
    #[error("invalid request")]
    Validation(Vec<FieldReason>),
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
    // Accounts (issue 5).
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
    /// Too many failed logins; retry after this many seconds.
    #[error("too many failed logins; retry later")]
    LoginThrottled {
        /// Seconds until the next attempt is accepted.
        retry_after_s: u64,
    },
    // Quotas and secrets (issue 5).
    /// A create past the owner's quota: 429 for the create rate, 403 for a limit.
    #[error(
        "quota {} exceeded: limit {}, in use {}, requested {}",
        .0.kind, .0.limit, .0.used, .0.requested
    )]
    QuotaExceeded(crate::accounts::quota::QuotaExceeded),
    /// A policy beyond the caller's ceiling: 403 `policy_exceeds_ceiling` with the field,
    /// the value and the ceiling's label.
    #[error("{0}")]
    PolicyExceedsCeiling(CeilingExceeded),
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
            Self::QuotaExceeded(exceeded) if exceeded.retry_after.is_some() => {
                (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded")
            }
            Self::QuotaExceeded(_) => (StatusCode::FORBIDDEN, "quota_exceeded"),
            Self::PolicyExceedsCeiling(_) => (StatusCode::FORBIDDEN, "policy_exceeds_ceiling"),
            Self::Refused { status, code, .. } => (*status, code),
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
        if let Self::QuotaExceeded(exceeded) = &self {
            let body = serde_json::json!({
                "error": code,
                "quota": exceeded.kind.as_str(),
                "limit": exceeded.limit.to_json(),
                "used": exceeded.used.to_json(),
                "requested": exceeded.requested.to_json(),
                "message": self.to_string(),
            });
            if let Some(retry) = exceeded.retry_after {
                let retry = [(axum::http::header::RETRY_AFTER, retry.as_secs().to_string())];
                return (status, retry, Json(body)).into_response();
            }
            return (status, Json(body)).into_response();
        }
        if let Self::PolicyExceedsCeiling(exceeded) = &self {
            let body = CeilingBody {
                error: code,
                message: self.to_string(),
                field: &exceeded.field,
                value: &exceeded.value,
                ceiling: &exceeded.ceiling,
            };
            return (status, Json(body)).into_response();
        }
        let fields = match &self {
            Self::Validation(fields) => Some(fields.as_slice()),
            Self::InvalidJson(field) => Some(std::slice::from_ref(field)),
            _ => None,
        };
        let message = match &self {
            Self::Validation(fields) => fields
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
        if let Self::LoginThrottled { retry_after_s } = &self {
            let retry = [(axum::http::header::RETRY_AFTER, retry_after_s.to_string())];
            return (status, retry, Json(body)).into_response();
        }
        (status, Json(body)).into_response()
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Invalid(errors) => Self::Validation(
                errors
                    .into_iter()
                    .map(|e| FieldReason {
                        field: e.field,
                        reason: e.problem.to_string(),
                    })
                    .collect(),
            ),
            ServiceError::ImageNotFound(image) => Self::field(
                "image",
                format!("`{image}` is not on the node (images are never pulled; load it first)"),
            ),
            ServiceError::ImageRefused(refusal) => Self::Refused {
                status: StatusCode::FORBIDDEN,
                code: match refusal {
                    ImageRefusal::NotAllowed { .. } => "image_not_allowed",
                    ImageRefusal::Unpinned { .. } => "image_unpinned",
                    ImageRefusal::DigestMismatch { .. } => "image_digest_mismatch",
                },
                message: refusal.to_string(),
            },
            ServiceError::ImageLoading { image, waited } => Self::Refused {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "image_loading",
                message: format!(
                    "image `{image}` is still being loaded onto the node (waited {}s); \
                     retry later, progress at GET /v1/images",
                    waited.as_secs()
                ),
            },
            ServiceError::NotFound => Self::NotFound("no such sandbox"),
            ServiceError::IdempotencyMismatch { existing } => Self::Conflict {
                code: "idempotency_mismatch",
                message: format!(
                    "the Idempotency-Key was already used for sandbox {existing} with a \
                     different request"
                ),
            },
            ServiceError::SubnetsExhausted => Self::Unavailable {
                code: "capacity",
                message: "no sandbox network capacity left",
                detail: "every sandbox subnet in the configured pools is allocated".to_owned(),
            },
            ServiceError::Conflict(message) => Self::Conflict {
                code: "conflict",
                message,
            },
            ServiceError::QuotaExceeded(exceeded) => Self::QuotaExceeded(exceeded),
            ServiceError::SecretsUnavailable => Self::Unavailable {
                code: "secrets_disabled",
                message: "secrets are not enabled on this controller",
                detail: "the service runs without a vault".to_owned(),
            },
            ServiceError::EgressOff => Self::field("policy", ServiceError::EgressOff.to_string()),
            ServiceError::PolicyRefused(PolicyRefusal::Exceeds(exceeded)) => {
                Self::PolicyExceedsCeiling(exceeded)
            }
            ServiceError::PolicyRefused(PolicyRefusal::NeverEffective(fields)) => Self::Validation(
                fields
                    .into_iter()
                    .map(|(field, reason)| FieldReason { field, reason })
                    .collect(),
            ),
            ServiceError::Ceilings(error) => Self::field(error.field, error.reason),
            ServiceError::Egress(error) => Self::Unavailable {
                code: "egress_unavailable",
                message: "the egress proxy is not available",
                detail: error.to_string(),
            },
            other => Self::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn render(error: ApiError) -> (StatusCode, String) {
        let response = error.into_response();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn error_bodies() {
        let validation = ApiError::Validation(vec![
            FieldReason {
                field: "limits.cpus".to_owned(),
                reason: "must be at most 2 (operator maximum)".to_owned(),
            },
            FieldReason {
                field: "env.HTTP_PROXY".to_owned(),
                reason: "is reserved for the controller".to_owned(),
            },
        ]);
        let (status, body) = render(validation).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        expect_test::expect![[r#"{"error":"invalid_request","message":"limits.cpus: must be at most 2 (operator maximum); env.HTTP_PROXY: is reserved for the controller","fields":[{"field":"limits.cpus","reason":"must be at most 2 (operator maximum)"},{"field":"env.HTTP_PROXY","reason":"is reserved for the controller"}]}"#]].assert_eq(&body);

        let (status, body) = render(ApiError::Internal("secret detail".to_owned())).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        expect_test::expect![[r#"{"error":"internal","message":"internal error"}"#]]
            .assert_eq(&body);

        let (status, body) = render(ApiError::Unauthorized).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        expect_test::expect![[
            r#"{"error":"unauthorized","message":"missing or invalid bearer token"}"#
        ]]
        .assert_eq(&body);

        let loading = ApiError::from(ServiceError::ImageLoading {
            image: "a/b:1".to_owned(),
            waited: std::time::Duration::from_secs(60),
        });
        let (status, body) = render(loading).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        expect_test::expect![[r#"{"error":"image_loading","message":"image `a/b:1` is still being loaded onto the node (waited 60s); retry later, progress at GET /v1/images"}"#]].assert_eq(&body);
        let refused = ImageRefusal::DigestMismatch {
            image: "a/b:1".to_owned(),
            expected: "sha256:aa".to_owned(),
            actual: "sha256:bb".to_owned(),
        };
        let (status, body) = render(ApiError::from(ServiceError::from(refused))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        expect_test::expect![[r#"{"error":"image_digest_mismatch","message":"image `a/b:1` on the node is sha256:bb, but the allowed digest is sha256:aa"}"#]].assert_eq(&body);

        let exceeded = CeilingExceeded {
            field: "policy.allow_cidrs[0]".to_owned(),
            value: serde_json::json!("10.0.0.0/8"),
            ceiling: "role:member@3f2a9c1e".to_owned(),
            reason: "a non-global CIDR must lie inside one of the ceiling's allow_cidrs".to_owned(),
        };
        let refused = ServiceError::PolicyRefused(PolicyRefusal::Exceeds(exceeded));
        let (status, body) = render(ApiError::from(refused)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        expect_test::expect![[r#"{"error":"policy_exceeds_ceiling","message":"policy.allow_cidrs[0] = 10.0.0.0/8 exceeds the ceiling role:member@3f2a9c1e: a non-global CIDR must lie inside one of the ceiling's allow_cidrs","field":"policy.allow_cidrs[0]","value":"10.0.0.0/8","ceiling":"role:member@3f2a9c1e"}"#]].assert_eq(&body);
        let never = PolicyRefusal::NeverEffective(vec![(
            "policy.allow_cidrs[0]".to_owned(),
            "169.254.169.254/32 is metadata address space, which no policy can admit".to_owned(),
        )]);
        let (status, body) = render(ApiError::from(ServiceError::PolicyRefused(never))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        expect_test::expect![[r#"{"error":"invalid_request","message":"policy.allow_cidrs[0]: 169.254.169.254/32 is metadata address space, which no policy can admit","fields":[{"field":"policy.allow_cidrs[0]","reason":"169.254.169.254/32 is metadata address space, which no policy can admit"}]}"#]].assert_eq(&body);

        let unavailable = ApiError::from(ServiceError::SubnetsExhausted);
        let (status, body) = render(unavailable).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        expect_test::expect![[
            r#"{"error":"capacity","message":"no sandbox network capacity left"}"#
        ]]
        .assert_eq(&body);
    }
}
