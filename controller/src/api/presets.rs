//! `GET /v1/presets`: the agent presets a create may name (see [`crate::sandboxes::presets`]).

use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::AppState;
use crate::audit::Actor;
use crate::sandboxes::{ListPresets, PresetView};

/// A preset.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PresetDto {
    /// Its name (`POST /v1/sandboxes {"preset": …}`).
    pub name: &'static str,
    /// What it runs.
    pub description: &'static str,
    /// The image (`AIRLOCK_AGENT_IMAGE`).
    pub image: String,
    /// The default command.
    pub cmd: Vec<&'static str>,
    /// The environment the command expects (values come from `env`; keys from `credentials`).
    pub env: Vec<EnvPlaceholderDto>,
    /// The suggested egress allow-list, used as `policy.allow_domains` when no policy is
    /// given.
    pub allow_domains: Vec<&'static str>,
    /// The provider a `credentials` entry without one binds (`GET /v1/providers`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<&'static str>,
}

/// One expected environment variable.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct EnvPlaceholderDto {
    /// The variable.
    pub name: &'static str,
    /// What it holds.
    pub description: &'static str,
    /// A credential: bind it with `credentials` (the sandbox then holds a placeholder).
    pub secret: bool,
}

impl From<&PresetView> for PresetDto {
    fn from(view: &PresetView) -> Self {
        let preset = view.preset;
        Self {
            name: preset.name,
            description: preset.description,
            image: view.image.clone(),
            cmd: preset.cmd.to_vec(),
            env: preset
                .env
                .iter()
                .map(|e| EnvPlaceholderDto {
                    name: e.name,
                    description: e.description,
                    secret: e.secret,
                })
                .collect(),
            allow_domains: preset.allow_domains.to_vec(),
            provider: preset.provider,
        }
    }
}

/// `GET /v1/presets`: every preset.
#[utoipa::path(get, path = "/v1/presets", tag = "sandboxes",
    responses((status = 200, body = [PresetDto])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<Json<Vec<PresetDto>>, ApiError> {
    let views = state.services.sandboxes.run(&actor, ListPresets).await?;
    Ok(Json(views.iter().map(PresetDto::from).collect()))
}
