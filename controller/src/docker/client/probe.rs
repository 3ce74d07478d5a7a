//! The isolation self-test's bollard call: running the probe container to its end (the
//! sandbox's proxy variables come from its workload's environment, through an exec).

use std::time::Duration;

use bollard::models::ContainerCreateBody;
use futures_util::StreamExt;

use super::exec::{LogFollow, OutputStream};
use super::{DockerClient, DockerError};

/// What a container run to its end left: its exit code (`None`: killed at the deadline) and
/// its output, each stream capped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunOutput {
    /// The exit code; `None` when the deadline passed and it was killed.
    pub exit_code: Option<i64>,
    /// stdout, at most the limit asked for.
    pub stdout: Vec<u8>,
    /// stderr, at most the limit asked for.
    pub stderr: Vec<u8>,
}

// === impl DockerClient ===

impl DockerClient {
    /// Creates container `name` from `body`, starts it, waits up to `deadline` (then kills
    /// it) and reads its output, keeping at most `limit` bytes of each stream. The caller
    /// removes the container.
    pub async fn run_to_end(
        &self,
        name: &str,
        body: ContainerCreateBody,
        deadline: Duration,
        limit: usize,
    ) -> Result<RunOutput, DockerError> {
        let id = self.create_container(name, body).await?;
        self.start(&id).await?;
        let exit_code = match self.wait(&id, deadline).await? {
            Some(code) => Some(code),
            None => {
                self.kill(&id, "SIGKILL").await?;
                None
            }
        };
        let mut run = RunOutput {
            exit_code,
            ..RunOutput::default()
        };
        let mut output = self.container_logs(&id, LogFollow::Once);
        while let Some(chunk) = output.next().await {
            let chunk = chunk?;
            let sink = match chunk.stream {
                OutputStream::Stdout => &mut run.stdout,
                OutputStream::Stderr => &mut run.stderr,
            };
            if sink.len() < limit {
                sink.extend_from_slice(&chunk.bytes);
            }
        }
        Ok(run)
    }
}
