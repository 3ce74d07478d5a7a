//! The bollard calls of the start path through `airlock-init`: filling the node's runtime
//! volume once (bodies in [`crate::docker::spec::runtime`]) and removing older ones, the stdin
//! attach a sandbox's binding frame is written on, the limits update of a claimed pool
//! member, and reading how init itself failed.

use std::pin::Pin;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::query_parameters::{AttachContainerOptions, LogsOptions};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{DockerClient, DockerError, Removal};
use crate::docker::spec::runtime::{
    runtime_archive, runtime_helper_body, runtime_helper_name, runtime_volume_body,
    COMPLETE_MARKER, FILL_MOUNT, LABEL_RUNTIME,
};
use crate::sandbox::end::{EndReason, InitExit};

/// Docker watches an attached stdin for a detach sequence and swallows it. Five control bytes
/// never occur in a frame: its JSON body has no byte below 0x20 and only the four length bytes
/// of its header can be control bytes.
const DETACH_KEYS: &str = "ctrl-a,ctrl-b,ctrl-c,ctrl-d,ctrl-e";
/// How long the daemon gets to close the attach once the frame is written and half-closed.
const ATTACH_CLOSE: Duration = Duration::from_secs(5);

/// A created container's stdin, attached before its start; [`Stdin::send`] writes one frame.
pub struct Stdin {
    input: Pin<Box<dyn AsyncWrite + Send>>,
    output: Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>,
}

impl std::fmt::Debug for Stdin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stdin").finish_non_exhaustive()
    }
}

// === impl Stdin ===

impl Stdin {
    /// Writes `frame`, flushes, half-closes, and waits (bounded) for the daemon to end the
    /// attach, so every byte reached the container's stdin before the connection is dropped.
    pub async fn send(mut self, frame: &[u8]) -> Result<(), DockerError> {
        let io = |_e: std::io::Error| DockerError::Unexpected("writing the frame on stdin");
        self.input.write_all(frame).await.map_err(io)?;
        self.input.flush().await.map_err(io)?;
        self.input.shutdown().await.map_err(io)?;
        let drained = tokio::time::timeout(ATTACH_CLOSE, async {
            while let Some(item) = self.output.next().await {
                if item.is_err() {
                    break;
                }
            }
        });
        if drained.await.is_err() {
            tracing::debug!("The stdin attach stayed open after the frame; dropped");
        }
        Ok(())
    }
}

// === impl DockerClient ===

impl DockerClient {
    /// Attaches to `container`'s stdin only (a stream, no logs); call before the start.
    pub async fn attach_stdin(&self, container: &str) -> Result<Stdin, DockerError> {
        let options = AttachContainerOptions {
            stdin: true,
            stream: true,
            stdout: false,
            stderr: false,
            logs: false,
            detach_keys: Some(DETACH_KEYS.to_owned()),
        };
        let attached = self
            .bollard()
            .attach_container(container, Some(options))
            .await?;
        Ok(Stdin {
            input: attached.input,
            output: attached.output,
        })
    }

    /// `POST /containers/{id}/update`: a running container's limits (a claim whose shape
    /// differs from its pool's), body from [`crate::docker::spec::pool::limits_update`].
    pub async fn update_limits(
        &self,
        container: &str,
        body: bollard::models::ContainerUpdateBody,
    ) -> Result<(), DockerError> {
        Ok(self.bollard().update_container(container, body).await?)
    }

    /// Makes sure runtime volume `sha12` exists on the node and holds `init`: creates it
    /// (an existing one is kept), then, through a never-started helper made from `image`
    /// (already on the node), uploads the archive unless its marker is there. The helper is
    /// removed again. Returns whether it uploaded.
    pub async fn ensure_runtime_volume(
        &self,
        sha12: &str,
        node: &str,
        image: &str,
        init: &[u8],
    ) -> Result<bool, DockerError> {
        self.create_volume(runtime_volume_body(sha12, node)).await?;
        let run = uuid::Uuid::new_v4().simple().to_string();
        let helper = runtime_helper_name(sha12, &run[..8]);
        self.create_container(&helper, runtime_helper_body(sha12, node, image))
            .await?;
        let filled = self.fill_runtime(&helper, init).await;
        let removed = self.remove_container(&helper, Removal::Force).await;
        let uploaded = filled?;
        removed?;
        Ok(uploaded)
    }

    /// Removes `node`'s runtime volumes of any binary but `current` that no container uses
    /// (Docker refuses to remove a mounted volume: a sandbox still running on an older init
    /// keeps its volume until a later start). Returns the names removed.
    pub async fn prune_runtime_volumes(
        &self,
        node: &str,
        current: &str,
    ) -> Result<Vec<String>, DockerError> {
        let mut removed = Vec::new();
        for (name, sha) in self.node_volumes_with(node, LABEL_RUNTIME).await? {
            if sha == current {
                continue;
            }
            match self.remove_volume(&name).await {
                Ok(()) => removed.push(name),
                Err(DockerError::DockerStatus { status: 409, .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(removed)
    }

    /// The last line of `container`'s log, when it was written on stderr (`None` when the log
    /// is empty or ends with a stdout line): where `airlock-init` reports a failure before the
    /// workload runs.
    pub async fn last_stderr_line(&self, container: &str) -> Result<Option<String>, DockerError> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: "5".to_owned(),
            ..LogsOptions::default()
        };
        let mut output = self.bollard().logs(container, Some(options));
        let mut last: Option<(bool, String)> = None;
        while let Some(chunk) = output.next().await {
            let chunk = chunk?;
            let stderr = matches!(chunk, LogOutput::StdErr { .. });
            let bytes = chunk.into_bytes();
            let text = String::from_utf8_lossy(&bytes);
            if let Some(line) = text.lines().rev().find(|line| !line.trim().is_empty()) {
                last = Some((stderr, line.to_owned()));
            }
        }
        Ok(last.and_then(|(stderr, line)| stderr.then_some(line)))
    }

    /// How `container` ended when its exit status is one of `airlock-init`'s own and init's
    /// line is the log's last on stderr: `failed` with an `init_*` message. `None` otherwise,
    /// or when the log cannot be read (logged): the exit then speaks for itself.
    pub async fn init_end(
        &self,
        container: &str,
        exit_code: Option<i64>,
        oom_killed: bool,
    ) -> Option<EndReason> {
        let init = InitExit::of(exit_code, oom_killed)?;
        match self.last_stderr_line(container).await {
            Ok(line) => init.reason(line.as_deref()),
            Err(error) => {
                tracing::warn!(%error, container, "Could not read the init failure line");
                None
            }
        }
    }

    async fn fill_runtime(&self, helper: &str, init: &[u8]) -> Result<bool, DockerError> {
        let marker = format!("{FILL_MOUNT}/{COMPLETE_MARKER}");
        if self.stat_path(helper, &marker).await?.is_some() {
            return Ok(false);
        }
        let archive =
            runtime_archive(init).map_err(|_io| DockerError::Unexpected("runtime archive"))?;
        self.upload_tar(helper, FILL_MOUNT, archive).await?;
        Ok(true)
    }
}
