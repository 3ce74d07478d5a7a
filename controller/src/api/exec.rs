//! `POST /v1/sandboxes/{id}/exec`: `{cmd, env?, timeout_s?, stdin?}` →
//! `200 {exit_code, stdout, stderr, truncated, timed_out, duration_ms}`.
//!
//! A command that outlives `timeout_s` still answers 200, with `timed_out: true` and
//! `exit_code: null` (see [`crate::sandboxes::exec`] for what happens to the process). Bad input is a 400
//! with field reasons, an unknown sandbox 404, a sandbox that is not running 409
//! `not_running`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, FieldReason};
use super::sandboxes::sandbox_id;
use super::{json, AppState};
use crate::audit::Actor;
use crate::sandbox::spec::{is_env_name, MAX_CMD_ARGS, MAX_CMD_BYTES, MAX_ENV_BYTES};
use crate::sandbox::spec::{is_reserved_env, MAX_ENV_VARS};
use crate::sandboxes::exec::{ExecOutcome, ExecRequest};
use crate::sandboxes::{Exec, SandboxError};

/// Default exec timeout.
pub(crate) const DEFAULT_EXEC_TIMEOUT_S: u64 = 60;
/// Longest exec timeout.
pub(crate) const MAX_EXEC_TIMEOUT_S: u64 = 3600;
/// Most stdin bytes.
pub(crate) const MAX_STDIN_BYTES: usize = 1024 * 1024;

/// The exec request body.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExecBody {
    /// The argv.
    pub cmd: Vec<String>,
    /// Extra environment.
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    /// Seconds to wait (1..=3600, default 60).
    #[serde(default)]
    pub timeout_s: Option<u64>,
    /// Text written to stdin, which is then closed.
    #[serde(default)]
    pub stdin: Option<String>,
}

/// The exec response body.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct ExecReply {
    /// The exit code; `null` when timed out.
    pub exit_code: Option<i64>,
    /// stdout (invalid UTF-8 replaced).
    pub stdout: String,
    /// stderr (invalid UTF-8 replaced).
    pub stderr: String,
    /// Whether stdout or stderr was cut at 1 MiB.
    pub truncated: bool,
    /// Whether the timeout passed first.
    pub timed_out: bool,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
}

/// `POST /v1/sandboxes/{id}/exec`.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/exec", tag = "sandboxes", request_body = ExecBody,
    params(("id" = String, Path, description = "Sandbox id")),
    responses((status = 200, body = ExecReply), (status = 404), (status = 409)))]
pub(crate) async fn exec(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ExecReply>, ApiError> {
    let id = sandbox_id(id)?;
    let dto: ExecBody = json::body(body)?;
    let request = validate(dto).map_err(ApiError::Validation)?;
    let command = Exec { id, request };
    let outcome = state
        .services
        .sandboxes
        .run(&actor, command)
        .await
        .map_err(not_running)?;
    Ok(Json(ExecReply::from(outcome)))
}

/// A sandbox that cannot run an exec answers 409 `not_running`.
pub(crate) fn not_running(error: SandboxError) -> ApiError {
    match error {
        SandboxError::Conflict(message) => ApiError::Conflict {
            code: "not_running",
            message,
        },
        other => other.into(),
    }
}

/// Checks every field, reporting each problem.
pub(crate) fn validate(body: ExecBody) -> Result<ExecRequest, Vec<FieldReason>> {
    let mut errors = Vec::new();
    check_cmd(&body.cmd, &mut errors);
    let env = body.env.unwrap_or_default();
    check_env(&env, &mut errors);
    let timeout_s = body.timeout_s.unwrap_or(DEFAULT_EXEC_TIMEOUT_S);
    if !(1..=MAX_EXEC_TIMEOUT_S).contains(&timeout_s) {
        let reason = format!("must be between 1 and {MAX_EXEC_TIMEOUT_S}");
        fail(&mut errors, "timeout_s", &reason);
    }
    if body
        .stdin
        .as_ref()
        .is_some_and(|s| s.len() > MAX_STDIN_BYTES)
    {
        let reason = format!("must be at most {MAX_STDIN_BYTES} bytes");
        fail(&mut errors, "stdin", &reason);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ExecRequest {
        cmd: body.cmd,
        env: env.into_iter().collect(),
        timeout: Duration::from_secs(timeout_s),
        stdin: body.stdin.map(String::into_bytes),
    })
}

fn check_cmd(cmd: &[String], errors: &mut Vec<FieldReason>) {
    if cmd.first().is_none_or(String::is_empty) {
        fail(
            errors,
            "cmd",
            "must name a program (a non-empty first element)",
        );
    }
    if cmd.len() > MAX_CMD_ARGS {
        fail(
            errors,
            "cmd",
            &format!("must have at most {MAX_CMD_ARGS} items"),
        );
    }
    if cmd.iter().map(String::len).sum::<usize>() > MAX_CMD_BYTES {
        fail(
            errors,
            "cmd",
            &format!("must be at most {MAX_CMD_BYTES} bytes"),
        );
    }
    for (i, arg) in cmd.iter().enumerate() {
        if arg.contains('\0') {
            fail(errors, &format!("cmd[{i}]"), "must not contain NUL");
        }
    }
}

fn check_env(env: &BTreeMap<String, String>, errors: &mut Vec<FieldReason>) {
    if env.len() > MAX_ENV_VARS {
        fail(
            errors,
            "env",
            &format!("must have at most {MAX_ENV_VARS} items"),
        );
    }
    if env.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>() > MAX_ENV_BYTES {
        fail(
            errors,
            "env",
            &format!("must be at most {MAX_ENV_BYTES} bytes"),
        );
    }
    for (name, value) in env {
        if !is_env_name(name) {
            let reason = "must be letters, digits and `_`, not starting with a digit";
            fail(errors, &format!("env.{name}"), reason);
        } else if is_reserved_env(name) {
            fail(
                errors,
                &format!("env.{name}"),
                "is reserved for the controller",
            );
        }
        if value.contains('\0') {
            fail(errors, &format!("env.{name}.value"), "must not contain NUL");
        }
    }
}

fn fail(errors: &mut Vec<FieldReason>, field: &str, reason: &str) {
    errors.push(FieldReason {
        field: field.to_owned(),
        reason: reason.to_owned(),
    });
}

// === impl ExecReply ===

impl From<ExecOutcome> for ExecReply {
    fn from(outcome: ExecOutcome) -> Self {
        Self {
            exit_code: outcome.exit_code,
            stdout: String::from_utf8_lossy(&outcome.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&outcome.stderr).into_owned(),
            truncated: outcome.truncated,
            timed_out: outcome.timed_out,
            duration_ms: u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: serde_json::Value) -> ExecBody {
        serde_json::from_value(value).unwrap()
    }

    fn fields(value: serde_json::Value) -> Vec<String> {
        validate(body(value))
            .unwrap_err()
            .into_iter()
            .map(|f| format!("{}: {}", f.field, f.reason))
            .collect()
    }

    #[test]
    fn a_valid_request_gets_defaults() {
        let request = validate(body(serde_json::json!({"cmd": ["echo", "hi"]}))).unwrap();
        assert_eq!(request.cmd, ["echo", "hi"]);
        assert_eq!(request.timeout, Duration::from_secs(DEFAULT_EXEC_TIMEOUT_S));
        assert_eq!(request.stdin, None);
        let request = validate(body(serde_json::json!({
            "cmd": ["cat"], "env": {"A_1": "x"}, "timeout_s": 5, "stdin": "in"
        })))
        .unwrap();
        assert_eq!(request.env, [("A_1".to_owned(), "x".to_owned())]);
        assert_eq!(request.stdin.as_deref(), Some(&b"in"[..]));
    }

    #[test]
    fn every_bad_field_is_reported() {
        let got = fields(serde_json::json!({
            "cmd": [],
            "env": {"1BAD": "x", "HTTP_PROXY": "y", "AIRLOCK_X": "z", "OK": "nul\u{0}",
                "GIT_SSL_CAINFO": "w"},
            "timeout_s": 0,
        }));
        expect_test::expect![[r#"
            [
                "cmd: must name a program (a non-empty first element)",
                "env.1BAD: must be letters, digits and `_`, not starting with a digit",
                "env.AIRLOCK_X: is reserved for the controller",
                "env.GIT_SSL_CAINFO: is reserved for the controller",
                "env.HTTP_PROXY: is reserved for the controller",
                "env.OK.value: must not contain NUL",
                "timeout_s: must be between 1 and 3600",
            ]
        "#]]
        .assert_debug_eq(&got);
        let got = fields(serde_json::json!({
            "cmd": ["a\u{0}"], "timeout_s": 3601, "stdin": "x".repeat(MAX_STDIN_BYTES + 1)
        }));
        assert_eq!(
            got,
            [
                "cmd[0]: must not contain NUL",
                "timeout_s: must be between 1 and 3600",
                "stdin: must be at most 1048576 bytes",
            ]
        );
        let too_many = vec!["x".to_owned(); MAX_CMD_ARGS + 1];
        let got = fields(serde_json::json!({ "cmd": too_many }));
        assert_eq!(got, ["cmd: must have at most 256 items"]);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let parsed =
            serde_json::from_value::<ExecBody>(serde_json::json!({"cmd": ["x"], "tty": true}));
        assert!(parsed.is_err());
    }
}
