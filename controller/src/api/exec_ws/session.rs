//! One upgraded WebSocket exec session: attach the exec, pump output to the client and client
//! frames into stdin until one side ends, then report how it ended (the exit code, a timeout,
//! a bad control message or a failure) and close.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::StreamExt;
use serde_json::json;
use time::OffsetDateTime;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::{debug, instrument, warn};

use super::{Control, Resize, WsQuery, MAX_PENDING_STDIN};
use crate::api::AppState;
use crate::audit::Actor;
use crate::docker::{AttachedExec, OutputChunks};
use crate::sandboxes::exec::ExecTarget;
use crate::sandboxes::{AttachExec, ExecExitCode, ResizeExec, SandboxError, Sandboxes};

/// Close code: normal closure.
const CLOSE_NORMAL: u16 = 1000;
/// Close code: policy violation (a bad control message).
const CLOSE_POLICY: u16 = 1008;
/// Close code: the server failed.
const CLOSE_ERROR: u16 = 1011;

/// How the pump loop ended.
#[derive(Debug)]
enum End {
    /// The output closed: the process ended.
    Exited,
    /// The timeout passed first.
    TimedOut,
    /// The client closed or went away.
    ClientGone,
    /// The credential stopped working (revoked, logged out, user disabled, expired).
    Revoked,
    /// The client sent a bad control message.
    BadControl(String),
    /// Docker failed mid-stream.
    Failed(SandboxError),
}

/// The pump's state between frames.
struct Pump<'a> {
    socket: &'a mut WebSocket,
    sandboxes: &'a Sandboxes,
    actor: &'a Actor,
    sandbox: crate::sandbox::SandboxId,
    exec: String,
    input: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    /// Bytes read from the client and not yet taken by the process.
    pending: Vec<u8>,
    /// Whether the client asked for end-of-file once `pending` drains.
    eof: bool,
}

/// Starts the exec, pumps both ways, reports the end.
#[instrument(skip_all, fields(sandbox.id = %target.sandbox, tty = query.tty))]
pub(super) async fn run(
    mut socket: WebSocket,
    state: AppState,
    actor: Actor,
    target: ExecTarget,
    query: WsQuery,
    revoked: Pin<Box<dyn Future<Output = ()> + Send>>,
) {
    let sandboxes = &state.services.sandboxes;
    let attach = AttachExec {
        target: target.clone(),
        request: query.request.clone(),
        tty: query.tty,
    };
    let attached = match sandboxes.run(&actor, attach).await {
        Ok(attached) => attached,
        Err(error) => return refuse(&mut socket, error).await,
    };
    let AttachedExec { id, output, input } = attached;
    let mut pump = Pump {
        socket: &mut socket,
        sandboxes,
        actor: &actor,
        sandbox: target.sandbox,
        exec: id.clone(),
        input: Some(input),
        pending: Vec::new(),
        eof: false,
    };
    let end = pump.run(output, query.request.timeout, revoked).await;
    sandboxes
        .activity()
        .touch(target.sandbox, OffsetDateTime::now_utc());
    debug!(exec.id = %id, end = ?end, "Interactive exec ended");
    report(&mut socket, sandboxes, &actor, id, end).await;
}

/// The exec did not start: says why and closes.
async fn refuse(socket: &mut WebSocket, error: SandboxError) {
    let (code, message) = match error {
        SandboxError::Conflict(message) => ("not_running", message),
        other => {
            warn!(error = %other, "Interactive exec did not start");
            ("internal", "the exec could not be started".to_owned())
        }
    };
    send_json(socket, json!({"error": code, "message": message})).await;
    close(socket, CLOSE_ERROR, code).await;
}

/// Tells the client how the session ended, then closes.
async fn report(
    socket: &mut WebSocket,
    sandboxes: &Sandboxes,
    actor: &Actor,
    exec: String,
    end: End,
) {
    match end {
        End::Exited => {
            let code = match sandboxes.run(actor, ExecExitCode { exec }).await {
                Ok(code) => code,
                Err(error) => {
                    warn!(%error, "Cannot read the exec's exit code");
                    None
                }
            };
            send_json(socket, json!({"exit_code": code})).await;
            let reason = code.map_or_else(
                || "exit_code=unknown".to_owned(),
                |c| format!("exit_code={c}"),
            );
            close(socket, CLOSE_NORMAL, &reason).await;
        }
        End::TimedOut => {
            send_json(socket, json!({"exit_code": null, "timed_out": true})).await;
            close(socket, CLOSE_NORMAL, "timed_out").await;
        }
        End::ClientGone => {}
        End::Revoked => {
            let body = json!({
                "error": "unauthorized",
                "message": "the credential was revoked or expired; the session ended",
            });
            send_json(socket, body).await;
            close(socket, CLOSE_POLICY, "unauthorized").await;
        }
        End::BadControl(message) => {
            send_json(
                socket,
                json!({"error": "invalid_control", "message": message}),
            )
            .await;
            close(socket, CLOSE_POLICY, "invalid_control").await;
        }
        End::Failed(error) => {
            warn!(%error, "Interactive exec failed");
            let body = json!({"error": "internal", "message": "the exec stream failed"});
            send_json(socket, body).await;
            close(socket, CLOSE_ERROR, "internal").await;
        }
    }
}

// === impl Pump ===

impl Pump<'_> {
    /// Pumps output to the client and client frames to stdin until one side ends.
    async fn run(
        &mut self,
        mut output: OutputChunks,
        timeout: Duration,
        mut revoked: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> End {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            let step = tokio::select! {
                chunk = output.next() => self.output(chunk).await,
                written = write_some(&mut self.input, &self.pending), if !self.pending.is_empty() => {
                    self.written(written).await;
                    None
                }
                message = self.socket.recv(), if self.pending.len() < MAX_PENDING_STDIN => {
                    self.message(message).await
                }
                () = &mut deadline => Some(End::TimedOut),
                () = &mut revoked => Some(End::Revoked),
            };
            if let Some(end) = step {
                return end;
            }
        }
    }

    /// One chunk of output (or its end) from the process.
    async fn output(
        &mut self,
        chunk: Option<Result<crate::docker::OutputChunk, crate::docker::DockerError>>,
    ) -> Option<End> {
        match chunk {
            Some(Ok(chunk)) => {
                self.touch();
                let sent = self.socket.send(Message::Binary(chunk.bytes.into())).await;
                sent.is_err().then_some(End::ClientGone)
            }
            Some(Err(error)) => Some(End::Failed(error.into())),
            None => Some(End::Exited),
        }
    }

    /// The process took `written` bytes of stdin (or closed it).
    async fn written(&mut self, written: std::io::Result<usize>) {
        match written {
            Ok(n) => {
                self.pending.drain(..n);
                if self.pending.is_empty() && self.eof {
                    close_stdin(&mut self.input).await;
                }
            }
            Err(error) => {
                // The process closed its stdin; what the client sends next goes nowhere.
                debug!(%error, "Exec stdin closed");
                self.input = None;
                self.pending.clear();
            }
        }
    }

    /// One frame from the client.
    async fn message(&mut self, message: Option<Result<Message, axum::Error>>) -> Option<End> {
        match message {
            Some(Ok(Message::Binary(bytes))) => {
                self.touch();
                if self.input.is_some() && !self.eof {
                    self.pending.extend_from_slice(&bytes);
                }
                None
            }
            Some(Ok(Message::Text(text))) => self.control(text.as_str()).await,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => None,
            Some(Ok(Message::Close(_)) | Err(_)) | None => Some(End::ClientGone),
        }
    }

    /// A JSON control message: resize the terminal and/or close stdin.
    async fn control(&mut self, text: &str) -> Option<End> {
        let (resize, asked) = match serde_json::from_str::<Control>(text) {
            Ok(Control { resize, eof }) if resize.is_some() || eof.is_some() => (resize, eof),
            Ok(_) => {
                let message = "a control message needs `resize` or `eof`";
                return Some(End::BadControl(message.to_owned()));
            }
            Err(error) => return Some(End::BadControl(error.to_string())),
        };
        if let Some(Resize { cols, rows }) = resize {
            if cols == 0 || rows == 0 {
                let message = "resize: cols and rows must be at least 1";
                return Some(End::BadControl(message.to_owned()));
            }
            let resize = ResizeExec {
                exec: self.exec.clone(),
                cols,
                rows,
            };
            if let Err(error) = self.sandboxes.run(self.actor, resize).await {
                // Without a TTY Docker refuses; the session goes on.
                debug!(%error, "Exec resize refused");
            }
        }
        if asked == Some(true) && !self.eof {
            self.eof = true;
            if self.pending.is_empty() {
                close_stdin(&mut self.input).await;
            }
        }
        None
    }

    /// Output and input are activity for the idle timeout.
    fn touch(&self) {
        let now = OffsetDateTime::now_utc();
        self.sandboxes.activity().touch(self.sandbox, now);
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

/// Sends a JSON text frame; a client that is gone is noticed by the caller's next step.
async fn send_json(socket: &mut WebSocket, body: serde_json::Value) {
    let _sent = socket.send(Message::Text(body.to_string().into())).await;
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _sent = socket.send(Message::Close(Some(frame))).await;
}
