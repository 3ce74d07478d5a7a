//! Presets at create and `GET /v1/presets` (the table is [`crate::sandbox::presets`]). A
//! preset fills only what the caller left out: the image (`AIRLOCK_AGENT_IMAGE`), the
//! command, the provider of a `credentials` entry that names none, and, when the egress
//! plane is on, the policy `{"allow_domains": […]}`; the
//! result is validated and checked against the caller's ceiling like any create.

use serde_json::json;

use super::create::CreateSandbox;
use super::{SandboxError, Sandboxes};
use crate::audit::{Actor, Command};
use crate::egress::TenantPolicy;
use crate::sandbox::presets::{self, Preset, PRESETS};
use crate::sandbox::{FieldError, Problem};

/// `GET /v1/presets`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListPresets;

/// A preset with the image it runs on this controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresetView {
    /// The preset.
    pub preset: &'static Preset,
    /// Its image.
    pub image: String,
}

impl Command<Sandboxes> for ListPresets {
    type Output = Vec<PresetView>;
    type Error = SandboxError;

    async fn execute(
        self,
        sandboxes: &Sandboxes,
        _actor: &Actor,
    ) -> Result<Vec<PresetView>, SandboxError> {
        let image = &sandboxes.settings.run.agent_image;
        Ok(PRESETS
            .iter()
            .map(|preset| PresetView {
                preset,
                image: image.clone(),
            })
            .collect())
    }
}

// === impl CreateSandbox ===

impl CreateSandbox {
    /// Fills what the named preset provides and the caller left out.
    pub(super) fn apply_preset(&mut self, sandboxes: &Sandboxes) -> Result<(), SandboxError> {
        let Some(name) = self.preset.as_deref() else {
            return Ok(());
        };
        let preset = presets::find(name).ok_or_else(|| {
            SandboxError::Invalid(vec![FieldError {
                field: "preset".to_owned(),
                problem: Problem::Malformed {
                    expected: "one of `claude-code`, `codex`, `shell` (GET /v1/presets)",
                },
            }])
        })?;
        let request = &mut self.request;
        if request.image.is_empty() {
            request
                .image
                .clone_from(&sandboxes.settings.run.agent_image);
        }
        if request.cmd.is_empty() {
            request.cmd = preset.cmd.iter().map(|&arg| arg.to_owned()).collect();
        }
        if let Some(provider) = preset.provider {
            for credential in &mut self.credentials {
                if credential.provider.is_empty() {
                    credential.provider = provider.to_owned();
                }
            }
        }
        if self.policy.is_none() && sandboxes.egress.is_some() {
            let policy = json!({ "allow_domains": preset.allow_domains });
            let policy = TenantPolicy::parse(policy).map_err(|reason| {
                // A built-in table that does not parse is a bug: say so in the log.
                tracing::error!(%reason, preset = name, "A preset's policy does not parse");
                SandboxError::Invalid(vec![FieldError {
                    field: "preset".to_owned(),
                    problem: Problem::Malformed {
                        expected: "a preset whose allow-list the proxy accepts",
                    },
                }])
            })?;
            self.policy = Some(policy);
        }
        Ok(())
    }
}
