//! `GET /v1/providers`: the providers a create's `credentials: [{provider, secret}]` may bind
//! (the table is [`crate::egress::providers`]). Any signed-in user may read it.

use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::AppState;
use crate::audit::Actor;
use crate::egress::credentials::ListProviders;
use crate::egress::providers::{Provider, ProviderEndpoint, GENERIC_FORMAT, GENERIC_HEADER};

/// A provider.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ProviderDto {
    /// Its name (`credentials[].provider`).
    pub name: &'static str,
    /// What it binds.
    pub description: &'static str,
    /// The hosts the proxy adds the credential for (TLS terminated, port 443); empty for
    /// `generic`, whose `host` the caller gives.
    pub hosts: Vec<&'static str>,
    /// The header of its first endpoint (for `generic`, the default).
    pub header: &'static str,
    /// The format of its first endpoint (for `generic`, the default).
    pub format: &'static str,
    /// The variables a sandbox gets with a placeholder (never the key).
    pub env: Vec<&'static str>,
    /// Every endpoint with its header, format and L7 rules.
    pub endpoints: Vec<ProviderEndpointDto>,
    /// With `credentials[].gateway: true`: the variable that gets the gateway's base URL
    /// (`http://airlock.internal:3128/gw/<name>…`); absent when the provider has no gateway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_env: Option<&'static str>,
}

/// One endpoint of a provider.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ProviderEndpointDto {
    /// The exact host.
    pub host: &'static str,
    /// The header the proxy sets, replacing what the client sent.
    pub header: &'static str,
    /// `{secret}`, `Bearer {secret}`, `token {secret}` or `basic-x-access-token`.
    pub format: &'static str,
    /// The L7 rules; absent: every method and path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<ProviderRuleDto>>,
}

/// One L7 rule: a request passes when its method and canonical path match.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ProviderRuleDto {
    /// Upper-case methods.
    pub methods: Vec<&'static str>,
    /// Path patterns (`*` one segment, `**` many; the query is not matched).
    pub paths: Vec<&'static str>,
}

impl From<&ProviderEndpoint> for ProviderEndpointDto {
    fn from(endpoint: &ProviderEndpoint) -> Self {
        Self {
            host: endpoint.host,
            header: endpoint.header,
            format: endpoint.format,
            rules: endpoint.rules.map(|rules| {
                rules
                    .iter()
                    .map(|(methods, paths)| ProviderRuleDto {
                        methods: methods.to_vec(),
                        paths: paths.to_vec(),
                    })
                    .collect()
            }),
        }
    }
}

impl From<&Provider> for ProviderDto {
    fn from(provider: &Provider) -> Self {
        let first = provider.endpoints.first();
        Self {
            name: provider.name,
            description: provider.description,
            hosts: provider.endpoints.iter().map(|e| e.host).collect(),
            header: first.map_or(GENERIC_HEADER, |e| e.header),
            format: first.map_or(GENERIC_FORMAT, |e| e.format),
            env: provider.env.to_vec(),
            endpoints: provider
                .endpoints
                .iter()
                .map(ProviderEndpointDto::from)
                .collect(),
            gateway_env: provider.gateway.map(|g| g.base_url_env),
        }
    }
}

/// `GET /v1/providers`: every provider a create may bind.
#[utoipa::path(get, path = "/v1/providers", tag = "sandboxes",
    responses((status = 200, body = [ProviderDto])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<Json<Vec<ProviderDto>>, ApiError> {
    let providers = state.services.policy.run(&actor, ListProviders).await?;
    Ok(Json(providers.iter().map(ProviderDto::from).collect()))
}
