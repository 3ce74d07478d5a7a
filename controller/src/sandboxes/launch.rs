//! What a sandbox's `airlock-init` is told to run: the binding frame written on its stdin
//! right after the start, and the node's runtime volume that holds init itself.
//!
//! The frame carries everything per-run: the argv (the request's `cmd`, else the image's
//! `ENTRYPOINT` + `CMD`), the working directory (the spec's, else the image's `WORKDIR`, else
//! `/`), the user's and secret variables and `HOME` (`env`), and Airlock's own per-run
//! variables, the proxy URLs with their credential and the trust variables (`airlock_env`,
//! applied last). The image's `Env` is not repeated: Docker puts it in the container's
//! environment, which init passes on underneath. A seed file, the run file, keeps `env`,
//! `airlock_env` and `workdir` inside the sandbox for execs (`airlock-init --airlock-enter`).
//!
//! The runtime volume is filled once per node and binary ([`Runtime::volume`]): the binary is
//! read from `AIRLOCK_INIT_BINARY`, hashed, and uploaded through a never-started helper unless
//! the volume already holds it. `airlock serve` does this at start ([`Runtime::prepare`], which
//! also removes the node's unused volumes of older binaries), so no create pays for it; a
//! start that could not (the node was down) leaves it to the first create.

use std::collections::BTreeMap;
use std::path::PathBuf;

use airlock_init::frame::{Frame, FrameError, SeedFile, MAX_BODY, VERSION};
use airlock_init::runfile::{RunFile, RUN_FILE};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::SandboxError;
use crate::docker::spec::{proxy_env, trust::trust_env, Placement};
use crate::docker::{DockerClient, ImageRun};
use crate::sandbox::{FieldError, Problem, SandboxSpec, HOME_DIR};

/// The mode of the run file (the sandbox user's, read-only).
const RUN_FILE_MODE: u32 = 0o400;

/// The image's defaults a frame falls back on, from the create's one image inspect.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageDefaults {
    /// `ENTRYPOINT` + `CMD`.
    pub argv: Vec<String>,
    /// `WORKDIR` (empty when unset).
    pub working_dir: String,
}

impl From<&ImageRun> for ImageDefaults {
    fn from(image: &ImageRun) -> Self {
        Self {
            argv: image.argv.clone(),
            working_dir: image.working_dir.clone(),
        }
    }
}

/// The image's defaults; refuses a spec whose image gives no program and whose request names
/// none (`cmd`).
pub(super) fn check_argv(
    spec: &SandboxSpec,
    image: &ImageRun,
) -> Result<ImageDefaults, SandboxError> {
    if spec.cmd().is_empty() && image.argv.is_empty() {
        return Err(SandboxError::Invalid(vec![FieldError {
            field: "cmd".to_owned(),
            problem: Problem::Required,
        }]));
    }
    Ok(ImageDefaults::from(image))
}

/// Splits `NAME=value` entries.
fn pairs(entries: Vec<String>) -> impl Iterator<Item = (String, String)> {
    entries.into_iter().filter_map(|entry| {
        let (name, value) = entry.split_once('=')?;
        Some((name.to_owned(), value.to_owned()))
    })
}

/// The binding frame of one incarnation. `secret_env` are `NAME=value` entries; `ca_pem`, the
/// sandbox's inspection CA when it has one, travels with the trust variables.
pub(super) fn frame(
    spec: &SandboxSpec,
    placement: &Placement<'_>,
    image: &ImageDefaults,
    secret_env: Vec<String>,
    ca_pem: Option<&str>,
) -> Result<Frame, SandboxError> {
    let argv = if spec.cmd().is_empty() {
        image.argv.clone()
    } else {
        spec.cmd().to_vec()
    };
    let workdir = match spec.workdir() {
        Some(dir) => dir.as_str().to_owned(),
        None if image.working_dir.starts_with('/') => image.working_dir.clone(),
        None => "/".to_owned(),
    };
    let mut env: BTreeMap<String, String> = spec
        .env()
        .iter()
        .map(|var| (var.name().to_owned(), var.value().to_owned()))
        .collect();
    env.extend(pairs(secret_env));
    if spec.home().is_some() {
        env.insert("HOME".to_owned(), HOME_DIR.to_owned());
    }
    let mut airlock_env: BTreeMap<String, String> = pairs(proxy_env(placement)).collect();
    if ca_pem.is_some() {
        airlock_env.extend(pairs(trust_env()));
    }
    let run = RunFile {
        env: env.clone(),
        airlock_env: airlock_env.clone(),
        workdir: workdir.clone(),
    };
    let run = serde_json::to_string(&run)
        .map_err(|_json| SandboxError::Internal("the run file does not encode"))?;
    Ok(Frame {
        v: VERSION,
        sandbox_id: placement.id.to_string(),
        argv,
        env,
        airlock_env,
        workdir,
        ca_pem: ca_pem.map(str::to_owned),
        files: vec![SeedFile {
            path: RUN_FILE.to_owned(),
            content: run,
            mode: RUN_FILE_MODE,
        }],
    })
}

/// [`frame`], encoded for init's stdin; one over init's limit is the request's fault (`env`).
pub(super) fn encoded_frame(
    spec: &SandboxSpec,
    placement: &Placement<'_>,
    image: &ImageDefaults,
    secret_env: Vec<String>,
    ca_pem: Option<&str>,
) -> Result<Vec<u8>, SandboxError> {
    frame(spec, placement, image, secret_env, ca_pem)?
        .encode()
        .map_err(|error| match error {
            FrameError::TooLarge { .. } => SandboxError::Invalid(vec![FieldError {
                field: "env".to_owned(),
                problem: Problem::Refused(format!(
                    "cmd, env and secret_env together are over the {MAX_BODY}-byte binding frame"
                )),
            }]),
            _ => SandboxError::Internal("the binding frame does not encode"),
        })
}

/// The node's runtime volume: the `airlock-init` binary at `path`, uploaded once.
#[derive(Debug)]
pub struct Runtime {
    path: PathBuf,
    volume: OnceCell<String>,
}

/// The binary is missing or unreadable (`AIRLOCK_INIT_BINARY`).
#[derive(Debug, thiserror::Error)]
#[error("AIRLOCK_INIT_BINARY {}: {source}", path.display())]
pub struct InitBinaryError {
    /// The configured path.
    pub path: PathBuf,
    /// Why it cannot be read.
    #[source]
    pub source: std::io::Error,
}

impl Runtime {
    /// The runtime of the binary at `path` (nothing is read yet).
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            volume: OnceCell::new(),
        }
    }

    /// Reads the binary: its bytes and the first 12 hex digits of their SHA-256.
    pub async fn read(path: &std::path::Path) -> Result<(Vec<u8>, String), InitBinaryError> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| InitBinaryError {
                path: path.to_owned(),
                source,
            })?;
        if bytes.is_empty() {
            return Err(InitBinaryError {
                path: path.to_owned(),
                source: std::io::Error::other("the file is empty"),
            });
        }
        let sha = hex::encode(Sha256::digest(&bytes));
        Ok((bytes, sha[..12].to_owned()))
    }

    /// The runtime volume's hash, once it was filled by this process.
    pub fn current(&self) -> Option<String> {
        self.volume.get().cloned()
    }

    /// At the controller's start: fills this node's runtime volume through a helper made from
    /// `image` (already on the node), then removes the node's runtime volumes of other binaries
    /// that no container mounts. Returns the current hash and the volumes removed.
    pub async fn prepare(
        &self,
        docker: &DockerClient,
        node: &str,
        image: &str,
    ) -> Result<(String, Vec<String>), SandboxError> {
        let sha = self.volume(docker, node, image).await?.to_owned();
        let removed = docker.prune_runtime_volumes(node, &sha).await?;
        Ok((sha, removed))
    }

    /// The runtime volume's hash on this node, filled on first use through a helper made from
    /// `image` (already on the node).
    pub async fn volume(
        &self,
        docker: &DockerClient,
        node: &str,
        image: &str,
    ) -> Result<&str, SandboxError> {
        let sha = self
            .volume
            .get_or_try_init(|| async {
                let (bytes, sha) = Self::read(&self.path).await?;
                let uploaded = docker
                    .ensure_runtime_volume(&sha, node, image, &bytes)
                    .await?;
                tracing::info!(runtime.sha = %sha, uploaded, "Runtime volume ready");
                Ok::<_, SandboxError>(sha)
            })
            .await?;
        Ok(sha)
    }
}

// === impl Sandboxes ===

impl super::Sandboxes {
    /// At the controller's start: the node's runtime volume, filled through a helper made from
    /// `image` (the proxy's, on the node once the egress plane is up), and older runtime volumes
    /// removed; see [`Runtime::prepare`]. A failure is logged: the first create fills it then.
    pub async fn prepare_runtime(&self, image: &str) {
        match self
            .runtime
            .prepare(&self.docker, &self.settings.node, image)
            .await
        {
            Ok((sha, removed)) => {
                tracing::info!(runtime.sha = %sha, removed = ?removed, "Runtime volume prepared");
            }
            Err(error) => {
                tracing::warn!(%error, "Runtime volume not prepared at start; the first create fills it");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use airlock_init::frame::{decode, Rules};

    use super::*;
    use crate::sandbox::subnet::SandboxSubnet;
    use crate::sandbox::{Cpus, Limits, Maximums, SandboxRequest};

    fn placement() -> Placement<'static> {
        Placement {
            id: "0192f0c4-7a4e-7cde-8b1a-3c5d7e9f0a1b".parse().unwrap(),
            generation: 1,
            node: "node-a",
            subnet: SandboxSubnet::new("10.213.0.8/29".parse().unwrap()).unwrap(),
            proxy_token: "tok3n",
        }
    }

    fn spec(req: SandboxRequest) -> SandboxSpec {
        let maximums = Maximums {
            limits: Limits {
                cpus: Cpus::from_millis(1000),
                memory_mb: 1024,
                pids: 256,
                disk_mb: None,
            },
            timeout: Duration::from_secs(3600),
            default_timeout: Duration::from_secs(600),
        };
        req.validate(&maximums).unwrap()
    }

    fn image() -> ImageDefaults {
        ImageDefaults {
            argv: vec!["/entry".into(), "--flag".into()],
            working_dir: "/app".into(),
        }
    }

    #[test]
    fn the_frame_carries_everything_per_run_and_init_accepts_it() {
        let spec = spec(SandboxRequest {
            image: "img".into(),
            cmd: vec!["python".into(), "main.py".into()],
            env: vec![("MODE".into(), "fast".into())],
            workdir: Some("/srv".into()),
            ..SandboxRequest::default()
        });
        let secret = vec!["DB_PASSWORD=s3cret".to_owned()];
        let ca = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n";
        let frame = frame(&spec, &placement(), &image(), secret, Some(ca)).unwrap();
        assert_eq!(frame.argv, ["python", "main.py"]);
        assert_eq!(frame.workdir, "/srv");
        assert_eq!(frame.env["MODE"], "fast");
        assert_eq!(frame.env["DB_PASSWORD"], "s3cret");
        assert!(frame.airlock_env["HTTPS_PROXY"].contains(":tok3n@10.213.0.10:3128"));
        assert_eq!(frame.airlock_env["NO_PROXY"], "airlock.internal");
        assert!(frame.airlock_env["SSL_CERT_FILE"].starts_with("/run/airlock/tls/"));
        assert_eq!(frame.ca_pem.as_deref(), Some(ca));
        let run: RunFile = serde_json::from_str(&frame.files[0].content).unwrap();
        assert_eq!(
            (run.env, run.workdir),
            (frame.env.clone(), frame.workdir.clone())
        );
        // What init would accept with the roots the container body gives it.
        let rules = Rules::airlock(vec!["/tmp".into(), HOME_DIR.into()]);
        assert_eq!(decode(&frame.encode().unwrap(), &rules).unwrap(), frame);
    }

    #[test]
    fn the_image_fills_what_the_request_leaves_out() {
        let bare = spec(SandboxRequest {
            image: "img".into(),
            ..SandboxRequest::default()
        });
        let frame = frame(&bare, &placement(), &image(), Vec::new(), None).unwrap();
        assert_eq!(frame.argv, ["/entry", "--flag"]);
        assert_eq!(frame.workdir, "/app");
        assert!(!frame.airlock_env.contains_key("SSL_CERT_FILE"));
        assert_eq!(frame.ca_pem, None);
        assert_eq!(frame_workdir(&bare, &ImageDefaults::default()), "/");
        let mut run = ImageRun::default();
        assert!(check_argv(&bare, &run).is_err());
        run.argv = image().argv;
        assert_eq!(check_argv(&bare, &run).unwrap().argv, image().argv);
    }

    fn frame_workdir(spec: &SandboxSpec, image: &ImageDefaults) -> String {
        frame(spec, &placement(), image, Vec::new(), None)
            .unwrap()
            .workdir
    }
}
