//! The provider catalogue: what a create's `credentials: [{provider, secret}]` binds. A
//! provider expands to inspected endpoints (TLS terminated on 443, the credential added by the
//! proxy, optional L7 rules) and to placeholder environment variables, so an agent finds a
//! key-shaped value where it looks for one while the real key stays at the proxy.
//!
//! Pure: no I/O and no store. [`catalogue`] is the table (`GET /v1/providers`); [`bind`] checks
//! a request's entries and returns the endpoints and env, or every problem found, each named
//! `credentials[i].<field>`. The endpoint rules are the policy crate's: each entry's
//! endpoints are compiled with [`Endpoints::compile`] (a CA assumed, every public name
//! admitted), so a binding the proxy would refuse is refused here with the field named. The
//! caller's effective policy must still admit the hosts.
//!
//! Invariants: a credential only ever goes to an exact host named by this table or by the
//! caller for `generic`; no two entries bind the same host; a placeholder never shows in
//! `Debug`.

use std::collections::BTreeSet;
use std::fmt;

use airlock_egress_policy::endpoint::CredentialSpec;
use airlock_egress_policy::{
    Endpoint, EndpointError, EndpointSpec, Endpoints, Policy, RuleSpec, TlsMode,
};

use crate::sandbox::{FieldError, Problem};

/// Most `credentials[]` entries per create.
pub const MAX_CREDENTIALS: usize = 8;
/// The port every provider endpoint is bound on.
pub const PORT: u16 = 443;
/// The header of a `generic` binding that names none.
pub const GENERIC_HEADER: &str = "authorization";
/// The format of a `generic` binding that names none.
pub const GENERIC_FORMAT: &str = "Bearer {secret}";
/// The name of the provider whose host, header and format the caller writes.
pub const GENERIC: &str = "generic";
/// What an unknown provider should have been.
const KNOWN: &str = "one of `anthropic`, `openai`, `github`, `generic` (GET /v1/providers)";

/// One `credentials[]` entry of a create, as the caller wrote it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialRequest {
    /// A provider of [`catalogue`].
    pub provider: String,
    /// The name of one of the caller's secrets.
    pub secret: String,
    /// `generic` only (required there): the exact DNS name the credential goes to.
    #[serde(default)]
    pub host: Option<String>,
    /// `generic` only; default [`GENERIC_HEADER`].
    #[serde(default)]
    pub header: Option<String>,
    /// `generic` only; default [`GENERIC_FORMAT`].
    #[serde(default)]
    pub format: Option<String>,
    /// Also serve the provider through the proxy's origin-form gateway (no CA needed) and
    /// point the provider's base-URL variable at it; only for providers that have one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gateway: bool,
}

/// What the requests bind: the endpoints to add to the effective policy and the placeholder
/// env.
#[derive(Clone, PartialEq, Eq)]
pub struct Binding {
    /// One endpoint per bound host, in request order.
    pub endpoints: Vec<EndpointSpec>,
    /// `NAME`, value: the placeholder of each provider's variables.
    pub env: Vec<(String, String)>,
    /// The distinct secret names, sorted.
    pub secrets: Vec<String>,
}

/// A provider of the catalogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Provider {
    /// Its name (`credentials[].provider`).
    pub name: &'static str,
    /// What it binds.
    pub description: &'static str,
    /// Its endpoints; empty for `generic`, whose host the caller names.
    pub endpoints: &'static [ProviderEndpoint],
    /// The environment variables that get the placeholder.
    pub env: &'static [&'static str],
    /// Its gateway, if its clients take a base URL: `credentials[].gateway` serves it.
    pub gateway: Option<Gateway>,
}

/// How a provider is served through the proxy's origin-form gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gateway {
    /// The variable its clients read their base URL from.
    pub base_url_env: &'static str,
    /// What its clients expect after the host in that URL (OpenAI's: `/v1`).
    pub suffix: &'static str,
}

/// One endpoint of a provider, on port [`PORT`] with TLS terminated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProviderEndpoint {
    /// The exact host.
    pub host: &'static str,
    /// The header the proxy sets.
    pub header: &'static str,
    /// The credential format (see [`airlock_egress_policy::CredentialFormat`]).
    pub format: &'static str,
    /// L7 rules as `(methods, paths)`; `None` allows every method and path.
    pub rules: Option<&'static [Rule]>,
}

/// One L7 rule: methods and path patterns (`*` one segment, `**` many).
pub type Rule = (&'static [&'static str], &'static [&'static str]);

/// Git's smart HTTP and nothing else: ref discovery, fetch and push, with or without `.git`
/// (a `*` segment matches both).
const GIT_SMART_HTTP: &[Rule] = &[
    (&["GET"], &["/*/*/info/refs"]),
    (
        &["POST"],
        &["/*/*/git-upload-pack", "/*/*/git-receive-pack"],
    ),
];

static CATALOGUE: [Provider; 4] = [
    Provider {
        name: "anthropic",
        description: "The Anthropic API: the key goes in `x-api-key`",
        endpoints: &[ProviderEndpoint {
            host: "api.anthropic.com",
            header: "x-api-key",
            format: "{secret}",
            rules: None,
        }],
        env: &["ANTHROPIC_API_KEY"],
        gateway: Some(Gateway {
            base_url_env: "ANTHROPIC_BASE_URL",
            suffix: "",
        }),
    },
    Provider {
        name: "openai",
        description: "The OpenAI API: the key goes in `Authorization: Bearer`",
        endpoints: &[ProviderEndpoint {
            host: "api.openai.com",
            header: "authorization",
            format: "Bearer {secret}",
            rules: None,
        }],
        env: &["OPENAI_API_KEY"],
        gateway: Some(Gateway {
            base_url_env: "OPENAI_BASE_URL",
            suffix: "/v1",
        }),
    },
    Provider {
        name: "github",
        description: "GitHub: git clone, fetch and push over HTTPS (smart HTTP paths only, \
                      `Basic x-access-token:`) and the REST API (`Bearer`)",
        endpoints: &[
            ProviderEndpoint {
                host: "github.com",
                header: "authorization",
                format: "basic-x-access-token",
                rules: Some(GIT_SMART_HTTP),
            },
            ProviderEndpoint {
                host: "api.github.com",
                header: "authorization",
                format: "Bearer {secret}",
                rules: None,
            },
        ],
        env: &["GH_TOKEN", "GITHUB_TOKEN"],
        gateway: None,
    },
    Provider {
        name: GENERIC,
        description: "Any HTTPS API: the caller names `host` (an exact DNS name) and \
                      optionally `header` (default `authorization`) and `format` (default \
                      `Bearer {secret}`); no environment variable",
        endpoints: &[],
        env: &[],
        gateway: None,
    },
];

/// Every provider, for `GET /v1/providers`.
pub fn catalogue() -> &'static [Provider] {
    &CATALOGUE
}

/// The provider called `name`.
pub fn find(name: &str) -> Option<&'static Provider> {
    CATALOGUE.iter().find(|p| p.name == name)
}

/// The env value of `provider`'s variables in a sandbox whose per-sandbox random token is
/// `placeholder`.
pub fn placeholder_value(provider: &str, placeholder: &str) -> String {
    airlock_wire::placeholder_value(provider, placeholder)
}

/// Checks `requests` and expands them. `placeholder` is a per-sandbox random token; the env
/// value of each provider's variable is `airlock-placeholder-<provider>-<placeholder>`.
pub fn bind(requests: &[CredentialRequest], placeholder: &str) -> Result<Binding, Vec<FieldError>> {
    if requests.len() > MAX_CREDENTIALS {
        let problem = Problem::TooMany {
            max: MAX_CREDENTIALS,
        };
        return Err(vec![problem_at("credentials", problem)]);
    }
    let mut errors = Vec::new();
    let mut binding = Binding {
        endpoints: Vec::new(),
        env: Vec::new(),
        secrets: Vec::new(),
    };
    let mut providers = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    for (i, request) in requests.iter().enumerate() {
        let at = |field: &str| format!("credentials[{i}].{field}");
        let Some(provider) = find(&request.provider) else {
            let problem = Problem::Malformed { expected: KNOWN };
            errors.push(problem_at(at("provider"), problem));
            continue;
        };
        let before = errors.len();
        let specs = entry_specs(provider, request, &at, &mut errors);
        if errors.len() > before {
            continue;
        }
        let endpoints = match compile(&specs) {
            Ok(endpoints) => endpoints,
            Err(error) => {
                errors.push(endpoint_problem(&error, provider, &at));
                continue;
            }
        };
        if !providers.insert(provider.name) && provider.name != GENERIC {
            errors.push(problem_at(at("provider"), Problem::Duplicate));
            continue;
        }
        let fresh = endpoints.iter().all(|e| !hosts.contains(&e.host));
        if !fresh {
            let field = if provider.name == GENERIC {
                at("host")
            } else {
                at("provider")
            };
            let expected = "a host that no other entry of `credentials` binds";
            errors.push(problem_at(field, Problem::Malformed { expected }));
            continue;
        }
        hosts.extend(endpoints.iter().map(|e| e.host.clone()));
        // The compiled host is the normalised one the proxy looks up.
        for (mut spec, endpoint) in specs.into_iter().zip(endpoints.iter()) {
            spec.host.clone_from(&endpoint.host);
            binding.endpoints.push(spec);
        }
        let value = placeholder_value(provider.name, placeholder);
        for name in provider.env {
            binding.env.push(((*name).to_owned(), value.clone()));
        }
        if let (true, Some(gateway)) = (request.gateway, provider.gateway) {
            let url =
                airlock_wire::gateway_url(airlock_wire::PROXY_PORT, provider.name, gateway.suffix);
            binding.env.push((gateway.base_url_env.to_owned(), url));
        }
        binding.secrets.push(request.secret.clone());
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    binding.secrets.sort();
    binding.secrets.dedup();
    Ok(binding)
}

/// The endpoint specs of one entry, or the problems of its provider-specific fields.
fn entry_specs(
    provider: &Provider,
    request: &CredentialRequest,
    at: &dyn Fn(&str) -> String,
    errors: &mut Vec<FieldError>,
) -> Vec<EndpointSpec> {
    let given = [
        ("host", &request.host),
        ("header", &request.header),
        ("format", &request.format),
    ];
    if request.gateway && provider.gateway.is_none() {
        let what = "is only for providers with a base URL (`anthropic`, `openai`)";
        errors.push(problem_at(at("gateway"), Problem::Unsupported { what }));
    }
    if provider.name != GENERIC {
        for (field, value) in given {
            if value.is_some() {
                let what = "is only for provider `generic`";
                errors.push(problem_at(at(field), Problem::Unsupported { what }));
            }
        }
        let gateway = request.gateway.then_some(provider.name);
        return provider
            .endpoints
            .iter()
            .map(|e| {
                let mut spec = endpoint_spec(e.host, &request.secret, e.header, e.format, e.rules);
                spec.gateway = gateway.map(str::to_owned);
                spec
            })
            .collect();
    }
    let Some(host) = &request.host else {
        errors.push(problem_at(at("host"), Problem::Required));
        return Vec::new();
    };
    let header = request.header.as_deref().unwrap_or(GENERIC_HEADER);
    let format = request.format.as_deref().unwrap_or(GENERIC_FORMAT);
    vec![endpoint_spec(host, &request.secret, header, format, None)]
}

fn endpoint_spec(
    host: &str,
    secret: &str,
    header: &str,
    format: &str,
    rules: Option<&[Rule]>,
) -> EndpointSpec {
    EndpointSpec {
        host: host.to_owned(),
        port: PORT,
        tls: TlsMode::Terminate,
        gateway: None,
        alpn: None,
        credential: Some(CredentialSpec {
            secret: secret.to_owned(),
            header: header.to_owned(),
            format: format.to_owned(),
        }),
        rules: rules.map(|rules| {
            rules
                .iter()
                .map(|(methods, paths)| RuleSpec {
                    methods: methods.iter().map(|m| (*m).to_owned()).collect(),
                    paths: paths.iter().map(|p| (*p).to_owned()).collect(),
                })
                .collect()
        }),
    }
}

/// The policy crate's load rules over one entry's endpoints, with a CA and every public name
/// admitted (the caller's own policy is checked where the endpoints join it).
fn compile(specs: &[EndpointSpec]) -> Result<Vec<Endpoint>, EndpointError> {
    let compiled = Endpoints::compile(specs, &Policy::default(), true)?;
    Ok(compiled.iter().cloned().collect())
}

/// The field a policy-crate refusal of entry `at` is about, and why.
fn endpoint_problem(
    error: &EndpointError,
    provider: &Provider,
    at: &dyn Fn(&str) -> String,
) -> FieldError {
    let (field, problem) = match error {
        EndpointError::BadHost { .. } | EndpointError::HostNotAllowed { .. } => {
            let expected = "an exact DNS name (no wildcard, no IP address)";
            ("host", Problem::Malformed { expected })
        }
        EndpointError::BadHeaderName { .. } => {
            let expected = "an HTTP header name";
            ("header", Problem::Malformed { expected })
        }
        EndpointError::ReservedHeader { .. } => ("header", Problem::Reserved),
        EndpointError::UnknownFormat { .. } => {
            let expected =
                "one of `{secret}`, `Bearer {secret}`, `token {secret}`, `basic-x-access-token`";
            ("format", Problem::Malformed { expected })
        }
        EndpointError::BadSecretName { .. } => {
            let expected = "the name of one of your secrets";
            ("secret", Problem::Malformed { expected })
        }
        _ => {
            // The catalogue's own endpoints always compile (tested); anything else is about
            // what the caller wrote for `generic`.
            let expected = "a binding the egress proxy accepts";
            let field = if provider.name == GENERIC {
                "host"
            } else {
                "provider"
            };
            (field, Problem::Malformed { expected })
        }
    };
    problem_at(at(field), problem)
}

fn problem_at(field: impl Into<String>, problem: Problem) -> FieldError {
    FieldError {
        field: field.into(),
        problem,
    }
}

// === impl Binding ===

impl fmt::Debug for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Binding")
            .field("endpoints", &self.endpoints)
            .field("env", &env)
            .field("secrets", &self.secrets)
            .finish()
    }
}

#[cfg(test)]
mod tests;
