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

use std::pin::Pin;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::Extension;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::{debug, instrument, warn};

use super::error::{ApiError, FieldReason};
use super::exec::{not_running, validate, ExecBody, MAX_EXEC_TIMEOUT_S};
use super::sandboxes::sandbox_id;
use super::AppState;
use crate::audit::Actor;
use crate::docker::AttachedExec;
use crate::sandboxes::exec::{ExecRequest, ExecTarget};
use crate::sandboxes::{AttachExec, ExecExitCode, OpenExec, ResizeExec, SandboxError};

/// Largest WebSocket message accepted from the client.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Most stdin bytes held while the process does not read them; the client is not read
/// further until they drain.
const MAX_PENDING_STDIN: usize = 64 * 1024;
/// Close code: normal closure.
const CLOSE_NORMAL: u16 = 1000;
/// Close code: policy violation (a bad control message).
const CLOSE_POLICY: u16 = 1008;
/// Close code: the server failed.
const CLOSE_ERROR: u16 = 1011;

/// The query, as parsed.
#[derive(Debug, PartialEq, Eq)]
struct WsQuery {
    request: ExecRequest,
    tty: bool,
}

/// A control message from the client (a text frame).
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Control {
    #[serde(default)]
    resize: Option<Resize>,
    #[serde(default)]
    eof: Option<bool>,
}

/// A terminal size, in characters.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Resize {
    cols: u16,
    rows: u16,
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
        .on_upgrade(move |socket| session(socket, state, actor, target, query));
    Ok(response)
}

/// Parses the query into a validated request; every problem is reported by field.
fn parse_query(query: &str) -> Result<WsQuery, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|error| ApiError::bad_request("invalid_query", error.to_string()))?;
    let mut errors = Vec::new();
    let mut fail = |field: &str, reason: &str| {
        errors.push(FieldReason {
            field: field.to_owned(),
            reason: reason.to_owned(),
        });
    };
    let mut cmd = Vec::new();
    let mut env = std::collections::BTreeMap::new();
    let mut tty = None;
    let mut timeout_s = None;
    for (key, value) in pairs {
        match key.as_str() {
            "cmd" => cmd.push(value),
            "env" => match value.split_once('=') {
                Some((name, value)) => {
                    if env.insert(name.to_owned(), value.to_owned()).is_some() {
                        fail(&format!("env.{name}"), "is given twice");
                    }
                }
                None => fail("env", "must be NAME=value"),
            },
            "tty" if tty.is_none() => match value.as_str() {
                "true" | "1" => tty = Some(true),
                "false" | "0" => tty = Some(false),
                _ => fail("tty", "must be true or false"),
            },
            "timeout_s" if timeout_s.is_none() => match value.parse::<u64>() {
                Ok(seconds) => timeout_s = Some(seconds),
                Err(_not_a_number) => {
                    fail(
                        "timeout_s",
                        &format!("must be between 1 and {MAX_EXEC_TIMEOUT_S}"),
                    );
                }
            },
            "tty" | "timeout_s" => fail(&key, "is given twice"),
            other => fail(other, "is not a known parameter (cmd, env, tty, timeout_s)"),
        }
    }
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

/// How the pump loop ended.
#[derive(Debug)]
enum End {
    /// The output closed: the process ended.
    Exited,
    /// The timeout passed first.
    TimedOut,
    /// The client closed or went away.
    ClientGone,
    /// The client sent a bad control message.
    BadControl(String),
    /// Docker failed mid-stream.
    Failed(SandboxError),
}

/// One upgraded session: start the exec, pump both ways, report the end.
#[instrument(skip_all, fields(sandbox.id = %target.sandbox, tty = query.tty))]
async fn session(
    mut socket: WebSocket,
    state: AppState,
    actor: Actor,
    target: ExecTarget,
    query: WsQuery,
) {
    let sandboxes = &state.services.sandboxes;
    let attach = AttachExec {
        target: target.clone(),
        request: query.request.clone(),
        tty: query.tty,
    };
    let attached = match sandboxes.run(&actor, attach).await {
        Ok(attached) => attached,
        Err(error) => {
            let (code, message) = match error {
                SandboxError::Conflict(message) => ("not_running", message),
                other => {
                    warn!(error = %other, "Interactive exec did not start");
                    ("internal", "the exec could not be started".to_owned())
                }
            };
            let body = json!({"error": code, "message": message});
            let _sent = socket.send(Message::Text(body.to_string().into())).await;
            close(&mut socket, CLOSE_ERROR, code).await;
            return;
        }
    };
    let exec_id = attached.id.clone();
    let end = pump(
        &mut socket,
        &state,
        &actor,
        &target,
        attached,
        query.request.timeout,
    )
    .await;
    sandboxes
        .activity()
        .touch(target.sandbox, OffsetDateTime::now_utc());
    debug!(exec.id = %exec_id, end = ?end, "Interactive exec ended");
    match end {
        End::Exited => {
            let exit = ExecExitCode {
                exec: exec_id.clone(),
            };
            let code = match sandboxes.run(&actor, exit).await {
                Ok(code) => code,
                Err(error) => {
                    warn!(%error, "Cannot read the exec's exit code");
                    None
                }
            };
            let body = json!({"exit_code": code});
            let _sent = socket.send(Message::Text(body.to_string().into())).await;
            let reason = code.map_or_else(
                || "exit_code=unknown".to_owned(),
                |c| format!("exit_code={c}"),
            );
            close(&mut socket, CLOSE_NORMAL, &reason).await;
        }
        End::TimedOut => {
            let body = json!({"exit_code": null, "timed_out": true});
            let _sent = socket.send(Message::Text(body.to_string().into())).await;
            close(&mut socket, CLOSE_NORMAL, "timed_out").await;
        }
        End::ClientGone => {}
        End::BadControl(message) => {
            let body = json!({"error": "invalid_control", "message": message});
            let _sent = socket.send(Message::Text(body.to_string().into())).await;
            close(&mut socket, CLOSE_POLICY, "invalid_control").await;
        }
        End::Failed(error) => {
            warn!(%error, "Interactive exec failed");
            let body = json!({"error": "internal", "message": "the exec stream failed"});
            let _sent = socket.send(Message::Text(body.to_string().into())).await;
            close(&mut socket, CLOSE_ERROR, "internal").await;
        }
    }
}

/// Pumps output to the client and client frames to stdin until one side ends.
async fn pump(
    socket: &mut WebSocket,
    state: &AppState,
    actor: &Actor,
    target: &ExecTarget,
    attached: AttachedExec,
    timeout: Duration,
) -> End {
    let AttachedExec {
        id: exec_id,
        mut output,
        input,
    } = attached;
    let mut input = Some(input);
    // Bytes read from the client and not yet taken by the process.
    let mut pending: Vec<u8> = Vec::new();
    // Whether the client asked for end-of-file once `pending` drains.
    let mut eof = false;
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            chunk = output.next() => match chunk {
                Some(Ok(chunk)) => {
                    state.services.sandboxes.activity().touch(target.sandbox, OffsetDateTime::now_utc());
                    if socket.send(Message::Binary(chunk.bytes.into())).await.is_err() {
                        return End::ClientGone;
                    }
                }
                Some(Err(error)) => return End::Failed(error.into()),
                None => return End::Exited,
            },
            written = write_some(&mut input, &pending), if !pending.is_empty() => match written {
                Ok(n) => {
                    pending.drain(..n);
                    if pending.is_empty() && eof {
                        close_stdin(&mut input).await;
                    }
                }
                Err(error) => {
                    // The process closed its stdin; what the client sends next goes nowhere.
                    debug!(%error, "Exec stdin closed");
                    input = None;
                    pending.clear();
                }
            },
            message = socket.recv(), if pending.len() < MAX_PENDING_STDIN => match message {
                Some(Ok(Message::Binary(bytes))) => {
                    state.services.sandboxes.activity().touch(target.sandbox, OffsetDateTime::now_utc());
                    if input.is_some() && !eof {
                        pending.extend_from_slice(&bytes);
                    }
                }
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<Control>(text.as_str()) {
                    Ok(Control { resize, eof: asked }) if resize.is_some() || asked.is_some() => {
                        if let Some(Resize { cols, rows }) = resize {
                            if cols == 0 || rows == 0 {
                                return End::BadControl("resize: cols and rows must be at least 1".to_owned());
                            }
                            let resize = ResizeExec { exec: exec_id.clone(), cols, rows };
                            if let Err(error) = state.services.sandboxes.run(actor, resize).await {
                                // Without a TTY Docker refuses; the session goes on.
                                debug!(%error, "Exec resize refused");
                            }
                        }
                        if asked == Some(true) && !eof {
                            eof = true;
                            if pending.is_empty() {
                                close_stdin(&mut input).await;
                            }
                        }
                    }
                    Ok(_) => return End::BadControl("a control message needs `resize` or `eof`".to_owned()),
                    Err(error) => return End::BadControl(error.to_string()),
                },
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => return End::ClientGone,
            },
            () = &mut deadline => return End::TimedOut,
        }
    }
}

/// Writes some of `bytes` to `input`; never completes when stdin is already closed.
async fn write_some(
    input: &mut Option<Pin<Box<dyn AsyncWrite + Send>>>,
    bytes: &[u8],
) -> std::io::Result<usize> {
    match input {
        Some(writer) => writer.write(bytes).await,
        None => std::future::pending().await,
    }
}

/// Sends end-of-file to the process.
async fn close_stdin(input: &mut Option<Pin<Box<dyn AsyncWrite + Send>>>) {
    if let Some(mut writer) = input.take() {
        if let Err(error) = writer.shutdown().await {
            debug!(%error, "Exec stdin not closed cleanly");
        }
    }
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _sent = socket.send(Message::Close(Some(frame))).await;
}

#[cfg(test)]
mod tests {
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
