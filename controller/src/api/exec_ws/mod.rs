//! `GET /v1/sandboxes/{id}/exec/ws?cmd=..&cmd=..&tty=true`: interactive exec over a
//! WebSocket.
//!
//! The query names the command: `cmd` once per argv element (required), `env=NAME=value`
//! (repeatable), `tty` (`true`/`false`, default `false`) and `timeout_s` (1..=3600, default
//! 3600). Bad input, an unknown sandbox and a sandbox that is not running are answered before
//! the upgrade, as plain HTTP errors (400 with field reasons, 404, 409 `not_running`). It
//! executes, so the route guard treats it as a write although it is a `GET`.
//!
//! Once upgraded:
//! - client → server: a **binary** frame is written to the process's stdin as is; a **text**
//!   frame is a JSON control message: `{"resize":{"cols":C,"rows":R}}` resizes the terminal
//!   (ignored without a TTY) and `{"eof":true}` closes stdin. Anything else closes the
//!   session with 1008 (policy violation).
//! - server → client: **binary** frames carry the output (with a TTY the terminal's output;
//!   without, stdout and stderr merged in arrival order, as a terminal shows them; use
//!   `POST /exec` to get them apart). When the process ends, a text frame
//!   `{"exit_code":N}` follows, then a close frame 1000 with the reason `exit_code=N`. When
//!   `timeout_s` passes first, the text frame is `{"exit_code":null,"timed_out":true}`. A
//!   failure after the upgrade sends `{"error":"<code>","message":".."}` and closes with 1011.
//!
//! Docker has no call that kills an exec: a timed-out exec, and one whose client went away
//! (its stdin closes, which ends a shell), keep running inside the sandbox, bounded by its
//! pids, memory and lifetime limits, until they exit or the sandbox ends.

mod session;

use axum::extract::rejection::PathRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::Extension;
use serde::Deserialize;

use super::error::{ApiError, FieldReason};
use super::exec::{not_running, validate, ExecBody, MAX_EXEC_TIMEOUT_S};
use super::sandboxes::sandbox_id;
use super::AppState;
use crate::audit::Actor;
use crate::sandboxes::exec::ExecRequest;
use crate::sandboxes::OpenExec;

/// Largest WebSocket message accepted from the client.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Most stdin bytes held while the process does not read them; the client is not read
/// further until they drain.
pub(super) const MAX_PENDING_STDIN: usize = 64 * 1024;

/// The query, as parsed.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct WsQuery {
    pub(super) request: ExecRequest,
    pub(super) tty: bool,
}

/// A control message from the client (a text frame).
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(super) struct Control {
    #[serde(default)]
    pub(super) resize: Option<Resize>,
    #[serde(default)]
    pub(super) eof: Option<bool>,
}

/// A terminal size, in characters.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(super) struct Resize {
    pub(super) cols: u16,
    pub(super) rows: u16,
}

/// `GET /v1/sandboxes/{id}/exec/ws`.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/exec/ws", tag = "sandboxes",
    description = "Interactive exec over a WebSocket (needs `sandboxes:write`: it executes). \
        Binary frames carry stdin and output; text frames carry JSON control messages \
        (`{\"resize\":{\"cols\":C,\"rows\":R}}`, `{\"eof\":true}`). The end is a text frame \
        `{\"exit_code\":N}` then a close frame. A timed-out exec is left running: Docker has \
        no exec kill.",
    params(
        ("id" = String, Path, description = "Sandbox id"),
        ("cmd" = Vec<String>, Query, description = "One argv element per occurrence (required)"),
        ("env" = Option<Vec<String>>, Query, description = "`NAME=value`, repeatable"),
        ("tty" = Option<bool>, Query, description = "Allocate a terminal (default false)"),
        ("timeout_s" = Option<u64>, Query, description = "Seconds before the session ends (1..=3600, default 3600)"),
    ),
    responses(
        (status = 101, description = "Switching Protocols: the WebSocket session"),
        (status = 400, description = "Bad query, or not a WebSocket upgrade"),
        (status = 403, description = "The caller may not execute (viewer or read-only token)"),
        (status = 404, description = "No such sandbox"),
        (status = 409, description = "The sandbox is not running"),
    ))]
pub(crate) async fn exec_ws(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: axum::http::HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let id = sandbox_id(id)?;
    let query = parse_query(query.as_deref().unwrap_or_default())?;
    let target = state
        .services
        .sandboxes
        .run(&actor, OpenExec { id })
        .await
        .map_err(not_running)?;
    let upgrade = upgrade.map_err(|rejection| ApiError::BadRequest {
        code: "websocket_required",
        message: format!("this endpoint needs a WebSocket upgrade: {rejection}"),
    })?;
    let response = upgrade
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| {
            // The session ends with its credential (revoked, logged out, user disabled).
            let revoked = Box::pin(super::revoked::ended(&state, &headers));
            session::run(socket, state, actor, target, query, revoked)
        });
    Ok(response)
}

/// Parses the query into a validated request; every problem is reported by field.
fn parse_query(query: &str) -> Result<WsQuery, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|error| ApiError::bad_request("invalid_query", error.to_string()))?;
    let mut fields = QueryFields::default();
    for (key, value) in pairs {
        fields.take(&key, value);
    }
    let QueryFields {
        cmd,
        env,
        tty,
        timeout_s,
        mut errors,
    } = fields;
    let body = ExecBody {
        cmd,
        env: Some(env),
        timeout_s: Some(timeout_s.unwrap_or(MAX_EXEC_TIMEOUT_S)),
        stdin: None,
    };
    let request = match validate(body) {
        Ok(request) if errors.is_empty() => request,
        Ok(_) => return Err(ApiError::Validation(errors)),
        Err(more) => {
            errors.extend(more);
            return Err(ApiError::Validation(errors));
        }
    };
    Ok(WsQuery {
        request,
        tty: tty.unwrap_or(false),
    })
}

/// The query's parameters as they are read, and what is wrong with them.
#[derive(Default)]
struct QueryFields {
    cmd: Vec<String>,
    env: std::collections::BTreeMap<String, String>,
    tty: Option<bool>,
    timeout_s: Option<u64>,
    errors: Vec<FieldReason>,
}

// === impl QueryFields ===

impl QueryFields {
    /// Takes one `key=value` pair.
    fn take(&mut self, key: &str, value: String) {
        match key {
            "cmd" => self.cmd.push(value),
            "env" => match value.split_once('=') {
                Some((name, value)) => {
                    if self.env.insert(name.to_owned(), value.to_owned()).is_some() {
                        self.fail(&format!("env.{name}"), "is given twice");
                    }
                }
                None => self.fail("env", "must be NAME=value"),
            },
            "tty" if self.tty.is_none() => match value.as_str() {
                "true" | "1" => self.tty = Some(true),
                "false" | "0" => self.tty = Some(false),
                _ => self.fail("tty", "must be true or false"),
            },
            "timeout_s" if self.timeout_s.is_none() => match value.parse::<u64>() {
                Ok(seconds) => self.timeout_s = Some(seconds),
                Err(_not_a_number) => {
                    let reason = format!("must be between 1 and {MAX_EXEC_TIMEOUT_S}");
                    self.fail("timeout_s", &reason);
                }
            },
            "tty" | "timeout_s" => self.fail(key, "is given twice"),
            other => self.fail(other, "is not a known parameter (cmd, env, tty, timeout_s)"),
        }
    }

    fn fail(&mut self, field: &str, reason: &str) {
        self.errors.push(FieldReason {
            field: field.to_owned(),
            reason: reason.to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn fields(query: &str) -> Vec<String> {
        match parse_query(query).unwrap_err() {
            ApiError::Validation(fields) => fields
                .into_iter()
                .map(|f| format!("{}: {}", f.field, f.reason))
                .collect(),
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn the_query_gives_argv_env_tty_and_timeout() {
        let parsed =
            parse_query("cmd=sh&cmd=-c&cmd=echo%20%22%24A%22&env=A%3Dx%3Dy&tty=true&timeout_s=5")
                .unwrap();
        assert_eq!(parsed.request.cmd, ["sh", "-c", "echo \"$A\""]);
        assert_eq!(parsed.request.env, [("A".to_owned(), "x=y".to_owned())]);
        assert_eq!(parsed.request.timeout, Duration::from_secs(5));
        assert!(parsed.tty);
        let parsed = parse_query("cmd=cat").unwrap();
        assert!(!parsed.tty);
        assert_eq!(
            parsed.request.timeout,
            Duration::from_secs(MAX_EXEC_TIMEOUT_S)
        );
    }

    #[test]
    fn every_bad_parameter_is_named() {
        assert_eq!(
            fields("tty=maybe&timeout_s=0&env=NOEQUALS&env=HTTP_PROXY%3Dx&shell=1"),
            [
                "tty: must be true or false",
                "env: must be NAME=value",
                "shell: is not a known parameter (cmd, env, tty, timeout_s)",
                "cmd: must name a program (a non-empty first element)",
                "env.HTTP_PROXY: is reserved for the controller",
                "timeout_s: must be between 1 and 3600",
            ]
        );
        assert_eq!(
            fields("cmd=x&timeout_s=-1&tty=true&tty=false"),
            [
                "timeout_s: must be between 1 and 3600",
                "tty: is given twice"
            ]
        );
    }

    #[test]
    fn control_messages_parse_strictly() {
        let resize: Control = serde_json::from_str(r#"{"resize":{"cols":80,"rows":24}}"#).unwrap();
        assert_eq!(resize.resize, Some(Resize { cols: 80, rows: 24 }));
        let eof: Control = serde_json::from_str(r#"{"eof":true}"#).unwrap();
        assert_eq!(eof.eof, Some(true));
        assert!(serde_json::from_str::<Control>(r#"{"resize":{"cols":80}}"#).is_err());
        assert!(serde_json::from_str::<Control>(r#"{"kill":true}"#).is_err());
        assert!(serde_json::from_str::<Control>(r#"{"resize":{"cols":-1,"rows":2}}"#).is_err());
    }
}
