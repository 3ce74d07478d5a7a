//! Exec and log streams: the bollard calls behind `POST /v1/sandboxes/{id}/exec` and the
//! sandbox log follower. Like the rest of [`crate::docker`], this is the only place these
//! bollard calls happen; callers get plain [`OutputChunk`] streams.
//!
//! Invariants: an exec is always created with `privileged: false` and an explicit user (the
//! sandbox's own). [`DockerClient::exec_start`] never asks for a TTY, so stdout and stderr
//! arrive apart; only the interactive form ([`DockerClient::exec_attach`]) may, and then the
//! terminal's output arrives as stdout.

use std::pin::Pin;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::LogsOptions;
use futures_util::{Stream, StreamExt};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::debug;

use super::{DockerClient, DockerError};

/// Largest frame bollard decodes from an exec's output at once.
const EXEC_FRAME_CAPACITY: usize = 64 * 1024;

/// Which output a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One piece of a process's output, as Docker framed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputChunk {
    /// Where it came from.
    pub stream: OutputStream,
    /// The bytes (not necessarily a whole line, nor valid UTF-8).
    pub bytes: Vec<u8>,
}

/// A stream of output chunks; it ends when the process (or container) ends.
pub type OutputChunks = Pin<Box<dyn Stream<Item = Result<OutputChunk, DockerError>> + Send>>;

/// What to run in a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecCommand {
    /// The argv; never empty.
    pub cmd: Vec<String>,
    /// `NAME=value` entries added to the container's environment.
    pub env: Vec<String>,
    /// The `uid:gid` to run as.
    pub user: String,
    /// Bytes written to the process's stdin, which is then closed; `None` leaves stdin
    /// unattached.
    pub stdin: Option<Vec<u8>>,
}

/// A started exec: its id (for [`DockerClient::exec_exit_code`]) and its output.
pub struct ExecSession {
    /// Docker's exec id.
    pub id: String,
    /// stdout and stderr, ending when the process closes them.
    pub output: OutputChunks,
}

/// A started interactive exec: its id (for [`DockerClient::exec_resize`] and
/// [`DockerClient::exec_exit_code`]), its output and its stdin.
pub struct AttachedExec {
    /// Docker's exec id.
    pub id: String,
    /// The output (stdout and stderr, or the terminal's output with a TTY); it ends when the
    /// process closes it.
    pub output: OutputChunks,
    /// The process's stdin; shut it down to send end-of-file.
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
}

// === impl ExecSession ===

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSession")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for AttachedExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachedExec")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

// === impl DockerClient ===

impl DockerClient {
    /// Creates and starts an exec in `container`, unprivileged and as `command.user`. The stdin
    /// bytes, if any, are written by a background task (so a process that writes before it
    /// reads cannot deadlock us), then stdin is closed.
    pub async fn exec_start(
        &self,
        container: &str,
        command: &ExecCommand,
    ) -> Result<ExecSession, DockerError> {
        let attach = command.stdin.is_some();
        let AttachedExec {
            id,
            output,
            mut input,
        } = self
            .exec_create_start(container, command, attach, false)
            .await?;
        let stdin = command.stdin.clone().unwrap_or_default();
        tokio::spawn(async move {
            let written = async {
                input.write_all(&stdin).await?;
                input.shutdown().await
            };
            if let Err(error) = written.await {
                // The process may exit without reading its stdin; that is its business.
                debug!(%error, "Exec stdin not fully written");
            }
        });
        Ok(ExecSession { id, output })
    }

    /// Creates and starts an interactive exec in `container`, unprivileged and as
    /// `command.user`, with stdin attached and, when `tty` is set, a terminal (then stdout and
    /// stderr arrive merged, as stdout). `command.stdin` is ignored: the caller writes to
    /// [`AttachedExec::input`].
    pub async fn exec_attach(
        &self,
        container: &str,
        command: &ExecCommand,
        tty: bool,
    ) -> Result<AttachedExec, DockerError> {
        self.exec_create_start(container, command, true, tty).await
    }

    /// Resizes an exec's terminal to `cols` × `rows` characters.
    pub async fn exec_resize(&self, exec: &str, cols: u16, rows: u16) -> Result<(), DockerError> {
        let options = ResizeExecOptions {
            height: rows,
            width: cols,
        };
        Ok(self.bollard().resize_exec(exec, options).await?)
    }

    async fn exec_create_start(
        &self,
        container: &str,
        command: &ExecCommand,
        attach_stdin: bool,
        tty: bool,
    ) -> Result<AttachedExec, DockerError> {
        let options = CreateExecOptions {
            attach_stdin: Some(attach_stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(tty),
            env: Some(command.env.clone()),
            cmd: Some(command.cmd.clone()),
            privileged: Some(false),
            user: Some(command.user.clone()),
            ..CreateExecOptions::default()
        };
        let created = self.bollard().create_exec(container, options).await?;
        let start = StartExecOptions {
            detach: false,
            tty,
            output_capacity: Some(EXEC_FRAME_CAPACITY),
        };
        let started = self.bollard().start_exec(&created.id, Some(start)).await?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(DockerError::Unexpected("exec started detached"));
        };
        Ok(AttachedExec {
            id: created.id,
            output: chunks(output),
            input,
        })
    }

    /// The exec's exit code, or `None` while it still runs.
    pub async fn exec_exit_code(&self, exec: &str) -> Result<Option<i64>, DockerError> {
        let inspected = self.bollard().inspect_exec(exec).await?;
        if inspected.running.unwrap_or(false) {
            return Ok(None);
        }
        Ok(inspected.exit_code)
    }

    /// The container's stdout and stderr from the start of its log. With
    /// [`LogFollow::Follow`] the stream stays open until the container stops.
    pub fn container_logs(&self, container: &str, follow: LogFollow) -> OutputChunks {
        let options = LogsOptions {
            follow: follow == LogFollow::Follow,
            stdout: true,
            stderr: true,
            ..LogsOptions::default()
        };
        chunks(self.bollard().logs(container, Some(options)))
    }

    /// The timestamp of the container's newest log line logged at or after `since` (whole
    /// seconds, as Docker's `since` takes them), or `None` when there is none. It reads one
    /// line (`tail=1`), so it is cheap however long the log is.
    pub async fn last_log_at(
        &self,
        container: &str,
        since: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, DockerError> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            // Docker reads 0 as "from the start": a time before 1970 cannot have output anyway.
            since: i32::try_from(since.unix_timestamp())
                .unwrap_or(i32::MAX)
                .max(1),
            timestamps: true,
            tail: "1".to_owned(),
            ..LogsOptions::default()
        };
        let mut output = chunks(self.bollard().logs(container, Some(options)));
        let mut newest = None;
        while let Some(chunk) = output.next().await {
            newest = newest.max(log_timestamp(&chunk?.bytes));
        }
        Ok(newest)
    }
}

/// The RFC 3339 timestamp Docker puts before a log line when asked for `timestamps`.
fn log_timestamp(line: &[u8]) -> Option<OffsetDateTime> {
    let text = std::str::from_utf8(line.get(..line.iter().position(|b| *b == b' ')?)?).ok()?;
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// Whether [`DockerClient::container_logs`] keeps following.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFollow {
    /// Return what is logged so far, then end.
    Once,
    /// Keep streaming until the container stops.
    Follow,
}

fn chunks<S>(stream: S) -> OutputChunks
where
    S: Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send + 'static,
{
    Box::pin(stream.filter_map(|item| async move {
        match item {
            Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                Some(Ok(OutputChunk {
                    stream: OutputStream::Stdout,
                    bytes: message.to_vec(),
                }))
            }
            Ok(LogOutput::StdErr { message }) => Some(Ok(OutputChunk {
                stream: OutputStream::Stderr,
                bytes: message.to_vec(),
            })),
            Ok(LogOutput::StdIn { .. }) => None,
            Err(error) => Some(Err(DockerError::from(error))),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_timestamps_parse_with_nanoseconds_and_reject_garbage() {
        let line = b"2026-11-23T18:20:00.123456789Z hello world\n";
        let at = log_timestamp(line).unwrap();
        assert_eq!(at.unix_timestamp(), 1_795_458_000);
        assert_eq!(at.nanosecond(), 123_456_789);
        assert_eq!(log_timestamp(b"hello world\n"), None);
        assert_eq!(log_timestamp(b"no-space"), None);
        assert_eq!(log_timestamp(b""), None);
    }
}
