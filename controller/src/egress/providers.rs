//! TEMPORARY stand-in for the provider catalogue (replaced by the full module at merge).

use airlock_egress_policy::{CredentialSpec, EndpointSpec, TlsMode};

use crate::sandbox::{FieldError, Problem};

/// One `credentials[]` entry of a create, as the caller wrote it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialRequest {
    /// The provider.
    pub provider: String,
    /// The owner's secret.
    pub secret: String,
    /// Generic only.
    #[serde(default)]
    pub host: Option<String>,
    /// Generic only.
    #[serde(default)]
    pub header: Option<String>,
    /// Generic only.
    #[serde(default)]
    pub format: Option<String>,
}

/// What the requests bind.
#[derive(Clone, Debug, Default)]
pub struct Binding {
    /// Endpoints to add to the effective policy.
    pub endpoints: Vec<EndpointSpec>,
    /// Placeholder env.
    pub env: Vec<(String, String)>,
    /// Distinct secret names, sorted.
    pub secrets: Vec<String>,
}

/// Binds `requests`.
pub fn bind(requests: &[CredentialRequest], placeholder: &str) -> Result<Binding, Vec<FieldError>> {
    let mut out = Binding::default();
    for (i, r) in requests.iter().enumerate() {
        let (host, header, format, env) = match r.provider.as_str() {
            "anthropic" => (
                "api.anthropic.com",
                "x-api-key",
                "{secret}",
                Some("ANTHROPIC_API_KEY"),
            ),
            "openai" => (
                "api.openai.com",
                "authorization",
                "Bearer {secret}",
                Some("OPENAI_API_KEY"),
            ),
            "github" => (
                "github.com",
                "authorization",
                "basic-x-access-token",
                Some("GH_TOKEN"),
            ),
            "generic" => (
                r.host.as_deref().unwrap_or_default(),
                r.header.as_deref().unwrap_or("authorization"),
                r.format.as_deref().unwrap_or("Bearer {secret}"),
                None,
            ),
            _ => {
                return Err(vec![FieldError {
                    field: format!("credentials[{i}].provider"),
                    problem: Problem::Malformed {
                        expected: "anthropic, openai or generic",
                    },
                }])
            }
        };
        out.endpoints.push(EndpointSpec {
            host: host.to_owned(),
            port: 443,
            tls: TlsMode::Terminate,
            gateway: None,
            alpn: None,
            credential: Some(CredentialSpec {
                secret: r.secret.clone(),
                header: header.to_owned(),
                format: format.to_owned(),
            }),
            rules: None,
        });
        if let Some(env) = env {
            out.env.push((
                env.to_owned(),
                format!("airlock-placeholder-{}-{placeholder}", r.provider),
            ));
        }
        out.secrets.push(r.secret.clone());
    }
    out.secrets.sort();
    out.secrets.dedup();
    Ok(out)
}
