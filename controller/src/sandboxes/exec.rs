//! Exec: runs a command in a running sandbox and returns its exit code and output.
//!
//! Behaviour:
//! - The command runs as the sandbox's own user, unprivileged, without a TTY.
//! - stdout and stderr are each kept up to [`MAX_OUTPUT_BYTES`]; the rest is read and
//!   dropped (so the process is never blocked on a full pipe) and `truncated` is set.
//! - When the timeout passes first, the controller stops reading and answers with
//!   `timed_out: true`, no exit code and the output read so far. Docker has no call that
//!   kills an exec, so the process is abandoned: it keeps running inside the sandbox, bounded
//!   by the sandbox's pids, memory and lifetime limits, until it exits or the sandbox ends.
//! - Every exec runs through `airlock-init --airlock-enter`, which puts the command in a
//!   process group of its own and ends that group (SIGTERM, then SIGKILL) once the command
//!   exits: its background children end with it; only what left the group (`setsid`) stays.
//! - The interactive form (the WebSocket, [`AttachExec`]) attaches stdin and
//!   may ask for a TTY; the caller pumps its input and output. The same holds for its timeout,
//!   and for a client that goes away: its stdin closes, but a process that ignores that keeps
//!   running within the sandbox's limits.

use std::time::Duration;

use airlock_init::runfile::{ENTER_FLAG, RUN_FILE};
use futures_util::StreamExt;
use time::OffsetDateTime;
use tokio::time::Instant;
use tracing::instrument;

use super::{SandboxError, Sandboxes};
use crate::audit::{status, Actor, Command, Entry};
use crate::docker::spec::runtime::INIT_PATH;
use crate::docker::{AttachedExec, ExecCommand, OutputChunks, OutputStream};
use crate::sandbox::{SandboxId, SandboxState};

/// Most bytes of stdout, and of stderr, returned by one exec.
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// How long to wait for Docker to mark an exec finished after its output closed.
const EXIT_CODE_WAIT: Duration = Duration::from_secs(5);
/// Poll interval for the exit code.
const EXIT_CODE_POLL: Duration = Duration::from_millis(20);

/// A validated exec request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecRequest {
    /// The argv; never empty.
    pub cmd: Vec<String>,
    /// Extra environment, as `(name, value)` with valid, unreserved names.
    pub env: Vec<(String, String)>,
    /// How long to wait for the command.
    pub timeout: Duration,
    /// Bytes for stdin.
    pub stdin: Option<Vec<u8>>,
}

/// `POST /v1/sandboxes/{id}/exec`: runs a command to its end (or its timeout) and returns
/// its exit code and output.
#[derive(Clone, Debug)]
pub struct Exec {
    /// The sandbox.
    pub id: SandboxId,
    /// What to run.
    pub request: ExecRequest,
}

/// The interactive exec's first step, before the WebSocket upgrade: the running sandbox to
/// exec in (not found, or a conflict when it is not running).
#[derive(Clone, Copy, Debug)]
pub struct OpenExec {
    /// The sandbox.
    pub id: SandboxId,
}

/// Starts an interactive exec in `target`: stdin attached and, with `tty`, a terminal. The
/// caller pumps the returned streams; `request.timeout` and `request.stdin` are its business.
#[derive(Clone, Debug)]
pub struct AttachExec {
    /// Where it runs (from [`OpenExec`]).
    pub target: ExecTarget,
    /// What to run.
    pub request: ExecRequest,
    /// Whether to allocate a terminal.
    pub tty: bool,
}

/// Resizes an interactive exec's terminal.
#[derive(Clone, Debug)]
pub struct ResizeExec {
    /// The exec's id.
    pub exec: String,
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

/// An interactive exec's exit code, once Docker marks it finished (briefly after its output
/// closes); `None` when it does not within a few seconds.
#[derive(Clone, Debug)]
pub struct ExecExitCode {
    /// The exec's id.
    pub exec: String,
}

/// How an exec went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutcome {
    /// The exit code; `None` when it timed out.
    pub exit_code: Option<i64>,
    /// Captured stdout (at most [`MAX_OUTPUT_BYTES`]).
    pub stdout: Vec<u8>,
    /// Captured stderr (at most [`MAX_OUTPUT_BYTES`]).
    pub stderr: Vec<u8>,
    /// Whether either output was cut at [`MAX_OUTPUT_BYTES`].
    pub truncated: bool,
    /// Whether the timeout passed before the command ended.
    pub timed_out: bool,
    /// Wall time.
    pub duration: Duration,
}

/// Where an exec runs: a sandbox that was running when it was looked up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecTarget {
    /// The sandbox.
    pub sandbox: SandboxId,
    /// Its container.
    container: String,
    /// The `uid:gid` its processes run as.
    user: String,
}

/// Output captured so far, each stream capped.
#[derive(Debug, Default)]
struct Capture {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    truncated: bool,
}

// === impl Exec ===

impl Command<Sandboxes> for Exec {
    type Output = ExecOutcome;
    type Error = SandboxError;

    #[instrument(skip_all, fields(sandbox.id = %self.id))]
    async fn execute(
        self,
        sandboxes: &Sandboxes,
        actor: &Actor,
    ) -> Result<ExecOutcome, SandboxError> {
        let (id, request) = (self.id, self.request);
        let target = sandboxes.exec_target(actor, id).await?;
        let command = target.command(request.cmd, request.env, request.stdin);
        // The row comes before the process starts: no exec runs unrecorded.
        let entry = Entry::new("POST /v1/sandboxes/{id}/exec", status::OK).object(id);
        sandboxes.peers.audit.record(actor, entry).await;
        let started = Instant::now();
        // An exec is activity for the idle timeout, when it starts and when it ends.
        sandboxes.activity.touch(id, OffsetDateTime::now_utc());
        let session = match sandboxes
            .docker
            .exec_start(&target.container, &command)
            .await
        {
            Ok(session) => session,
            // The container stopped between the store read and the exec.
            Err(error) if error.is_conflict() => return Err(not_running("stopped")),
            Err(error) => return Err(error.into()),
        };
        let mut capture = Capture::default();
        let read = tokio::time::timeout(request.timeout, capture.read(session.output)).await;
        sandboxes.activity.touch(id, OffsetDateTime::now_utc());
        let exit_code = match read {
            Err(_elapsed) => None,
            Ok(result) => {
                result?;
                sandboxes.exit_code(&session.id).await?
            }
        };
        Ok(capture.outcome(exit_code, started.elapsed()))
    }
}

// === impl OpenExec ===

impl Command<Sandboxes> for OpenExec {
    type Output = ExecTarget;
    type Error = SandboxError;

    async fn execute(
        self,
        sandboxes: &Sandboxes,
        actor: &Actor,
    ) -> Result<ExecTarget, SandboxError> {
        sandboxes.exec_target(actor, self.id).await
    }
}

// === impl AttachExec ===

impl Command<Sandboxes> for AttachExec {
    type Output = AttachedExec;
    type Error = SandboxError;

    async fn execute(
        self,
        sandboxes: &Sandboxes,
        actor: &Actor,
    ) -> Result<AttachedExec, SandboxError> {
        let (target, request) = (self.target, self.request);
        // The row comes before the process starts: no interactive exec runs unrecorded.
        let detail = if self.tty {
            "interactive, tty"
        } else {
            "interactive"
        };
        let entry = Entry::new("GET /v1/sandboxes/{id}/exec/ws", status::SWITCHING)
            .object(target.sandbox)
            .detail(detail);
        sandboxes.peers.audit.record(actor, entry).await;
        let command = target.command(request.cmd, request.env, None);
        sandboxes
            .activity
            .touch(target.sandbox, OffsetDateTime::now_utc());
        match sandboxes
            .docker
            .exec_attach(&target.container, &command, self.tty)
            .await
        {
            Ok(attached) => Ok(attached),
            Err(error) if error.is_conflict() => Err(not_running("stopped")),
            Err(error) => Err(error.into()),
        }
    }
}

// === impl ResizeExec ===

impl Command<Sandboxes> for ResizeExec {
    type Output = ();
    type Error = SandboxError;

    async fn execute(self, sandboxes: &Sandboxes, _actor: &Actor) -> Result<(), SandboxError> {
        let docker = &sandboxes.docker;
        Ok(docker.exec_resize(&self.exec, self.cols, self.rows).await?)
    }
}

// === impl ExecExitCode ===

impl Command<Sandboxes> for ExecExitCode {
    type Output = Option<i64>;
    type Error = SandboxError;

    async fn execute(
        self,
        sandboxes: &Sandboxes,
        _actor: &Actor,
    ) -> Result<Option<i64>, SandboxError> {
        sandboxes.exit_code(&self.exec).await
    }
}

// === impl Sandboxes ===

impl Sandboxes {
    /// The running sandbox `actor` may exec in: not found when it cannot see it, a conflict
    /// when it is not running.
    async fn exec_target(&self, actor: &Actor, id: SandboxId) -> Result<ExecTarget, SandboxError> {
        let sandbox = self.visible(actor.scope(), id).await?;
        match (&sandbox.container_id, sandbox.state) {
            (Some(container), SandboxState::Running) => Ok(ExecTarget {
                sandbox: id,
                container: container.clone(),
                user: sandbox.spec.run_as().to_string(),
            }),
            (_, state) => Err(not_running(state.as_str())),
        }
    }

    /// The exit code once Docker marks the exec finished (briefly after its output closes);
    /// `None` when it does not within a few seconds.
    async fn exit_code(&self, exec: &str) -> Result<Option<i64>, SandboxError> {
        let deadline = Instant::now() + EXIT_CODE_WAIT;
        loop {
            if let Some(code) = self.docker.exec_exit_code(exec).await? {
                return Ok(Some(code));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(EXIT_CODE_POLL).await;
        }
    }
}

impl Sandboxes {
    /// The workload's environment (`NAME=value`), as `airlock-init --airlock-enter` prints it
    /// inside running `container` as `user`.
    pub(super) async fn run_env(
        &self,
        container: &str,
        user: &str,
    ) -> Result<Vec<String>, SandboxError> {
        let command = ExecCommand {
            cmd: enter_argv(Vec::new(), Vec::new()),
            env: Vec::new(),
            user: user.to_owned(),
            stdin: None,
        };
        let session = self.docker.exec_start(container, &command).await?;
        let mut capture = Capture::default();
        capture.read(session.output).await?;
        Ok(String::from_utf8_lossy(&capture.stdout)
            .lines()
            .map(str::to_owned)
            .collect())
    }
}

// === impl ExecTarget ===

impl ExecTarget {
    /// The exec runs through `airlock-init --airlock-enter`, which gives it the workload's
    /// environment and working directory (from the run file in the sandbox) with `env` over
    /// them: Docker would give it only the container's, which holds nothing per-run.
    fn command(
        &self,
        cmd: Vec<String>,
        env: Vec<(String, String)>,
        stdin: Option<Vec<u8>>,
    ) -> ExecCommand {
        ExecCommand {
            cmd: enter_argv(cmd, env),
            env: Vec::new(),
            user: self.user.clone(),
            stdin,
        }
    }
}

/// `[init, --airlock-enter, run file, --env NAME=value..., --, cmd...]`; with an empty `cmd`
/// init prints the environment instead.
pub(super) fn enter_argv(cmd: Vec<String>, env: Vec<(String, String)>) -> Vec<String> {
    let mut argv = vec![
        INIT_PATH.to_owned(),
        ENTER_FLAG.to_owned(),
        RUN_FILE.to_owned(),
    ];
    for (name, value) in env {
        argv.push("--env".to_owned());
        argv.push(format!("{name}={value}"));
    }
    argv.push("--".to_owned());
    argv.extend(cmd);
    argv
}

fn not_running(state: &str) -> SandboxError {
    SandboxError::Conflict(format!("the sandbox is not running (state: {state})"))
}

// === impl Capture ===

impl Capture {
    /// Reads `output` to its end, keeping up to [`MAX_OUTPUT_BYTES`] of each stream.
    async fn read(&mut self, mut output: OutputChunks) -> Result<(), SandboxError> {
        while let Some(chunk) = output.next().await {
            let chunk = chunk?;
            self.push(chunk.stream, &chunk.bytes);
        }
        Ok(())
    }

    /// How the exec went, given how it ended.
    fn outcome(self, exit_code: Option<i64>, duration: Duration) -> ExecOutcome {
        ExecOutcome {
            timed_out: exit_code.is_none(),
            exit_code,
            stdout: self.stdout,
            stderr: self.stderr,
            truncated: self.truncated,
            duration,
        }
    }

    fn push(&mut self, stream: OutputStream, bytes: &[u8]) {
        let buffer = match stream {
            OutputStream::Stdout => &mut self.stdout,
            OutputStream::Stderr => &mut self.stderr,
        };
        let room = MAX_OUTPUT_BYTES.saturating_sub(buffer.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        buffer.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_caps_each_stream_apart() {
        let mut capture = Capture::default();
        capture.push(OutputStream::Stdout, b"hi\n");
        capture.push(OutputStream::Stderr, b"oops\n");
        assert_eq!(capture.stdout, b"hi\n");
        assert_eq!(capture.stderr, b"oops\n");
        assert!(!capture.truncated);

        let big = vec![b'x'; MAX_OUTPUT_BYTES - 3];
        capture.push(OutputStream::Stdout, &big);
        assert_eq!(capture.stdout.len(), MAX_OUTPUT_BYTES);
        assert!(!capture.truncated, "exactly full is not truncated");
        capture.push(OutputStream::Stdout, b"y");
        assert_eq!(capture.stdout.len(), MAX_OUTPUT_BYTES);
        assert!(capture.truncated);
        assert_eq!(capture.stderr, b"oops\n", "stderr has its own budget");
    }
}
