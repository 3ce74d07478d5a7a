//! `bind` over every provider and every refusal, and the catalogue against the policy crate.

use airlock_egress_policy::{CredentialFormat, Endpoints, Policy, PolicySpec};

use super::*;

const TOKEN: &str = "tok3n";

fn entry(provider: &str, secret: &str) -> CredentialRequest {
    CredentialRequest {
        provider: provider.to_owned(),
        secret: secret.to_owned(),
        host: None,
        header: None,
        format: None,
        gateway: false,
    }
}

fn generic(host: &str) -> CredentialRequest {
    CredentialRequest {
        host: Some(host.to_owned()),
        ..entry("generic", "custom")
    }
}

/// `(field, reason)` of every refusal.
fn refused(requests: &[CredentialRequest]) -> Vec<(String, String)> {
    bind(requests, TOKEN)
        .unwrap_err()
        .into_iter()
        .map(|e| (e.field, e.problem.to_string()))
        .collect()
}

fn fields(requests: &[CredentialRequest]) -> Vec<String> {
    refused(requests).into_iter().map(|(f, _)| f).collect()
}

/// A policy that admits exactly `hosts`.
fn allowing(hosts: &[&str]) -> Policy {
    let spec = PolicySpec {
        allow_domains: Some(hosts.iter().map(|h| (*h).to_owned()).collect()),
        ..PolicySpec::default()
    };
    Policy::compile(&spec).unwrap()
}

#[test]
fn every_provider_compiles_against_a_policy_admitting_only_its_hosts() {
    for provider in catalogue().iter().filter(|p| p.name != GENERIC) {
        let binding = bind(&[entry(provider.name, "s")], TOKEN).unwrap();
        let hosts: Vec<&str> = provider.endpoints.iter().map(|e| e.host).collect();
        let compiled = Endpoints::compile(&binding.endpoints, &allowing(&hosts), true);
        let compiled = compiled.unwrap_or_else(|e| panic!("{}: {e}", provider.name));
        assert_eq!(compiled.iter().count(), hosts.len(), "{}", provider.name);
        for (endpoint, written) in compiled.iter().zip(provider.endpoints) {
            assert_eq!(endpoint.host, written.host);
            assert_eq!(endpoint.port, 443);
            assert_eq!(endpoint.tls, TlsMode::Terminate);
            let credential = endpoint.credential.as_ref().unwrap();
            assert_eq!(credential.secret, "s");
            assert_eq!(credential.header, written.header);
            assert_eq!(credential.format.as_str(), written.format);
        }
        // Without a CA the proxy could not terminate: the policy crate refuses.
        let no_ca = Endpoints::compile(&binding.endpoints, &allowing(&hosts), false);
        assert!(no_ca.is_err(), "{}", provider.name);
    }
    let binding = bind(&[generic("api.example.com")], TOKEN).unwrap();
    let policy = allowing(&["api.example.com"]);
    Endpoints::compile(&binding.endpoints, &policy, true).unwrap();
}

#[test]
fn the_unknown_provider_message_names_every_provider() {
    for provider in catalogue() {
        assert!(
            KNOWN.contains(&format!("`{}`", provider.name)),
            "{}",
            provider.name
        );
    }
    let names: Vec<&str> = catalogue().iter().map(|p| p.name).collect();
    assert_eq!(names, ["anthropic", "openai", "github", "generic"]);
}

#[test]
fn anthropic_and_openai_bind_one_host_and_one_placeholder_each() {
    let binding = bind(&[entry("anthropic", "ak"), entry("openai", "ok")], TOKEN).unwrap();
    let summary: Vec<(&str, &str, &str)> = binding
        .endpoints
        .iter()
        .map(|e| {
            let c = e.credential.as_ref().unwrap();
            (e.host.as_str(), c.header.as_str(), c.format.as_str())
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("api.anthropic.com", "x-api-key", "{secret}"),
            ("api.openai.com", "authorization", "Bearer {secret}"),
        ]
    );
    assert!(binding.endpoints.iter().all(|e| e.rules.is_none()));
    assert_eq!(
        binding.env,
        [
            (
                "ANTHROPIC_API_KEY".to_owned(),
                "airlock-placeholder-anthropic-tok3n".to_owned()
            ),
            (
                "OPENAI_API_KEY".to_owned(),
                "airlock-placeholder-openai-tok3n".to_owned()
            ),
        ]
    );
    assert_eq!(binding.secrets, ["ak", "ok"]);
}

#[test]
fn github_allows_only_smart_http_on_github_com_and_bearer_on_the_api() {
    let binding = bind(&[entry("github", "gh")], TOKEN).unwrap();
    let compiled = Endpoints::compile(&binding.endpoints, &Policy::default(), true).unwrap();
    let git = compiled.find("github.com", 443).unwrap();
    let credential = git.credential.as_ref().unwrap();
    assert_eq!(credential.format, CredentialFormat::BasicXAccessToken);
    assert_eq!(credential.header, "authorization");
    for (method, path) in [
        ("GET", "/octo/repo/info/refs"),
        ("GET", "/octo/repo.git/info/refs"),
        ("POST", "/octo/repo/git-upload-pack"),
        ("POST", "/octo/repo.git/git-upload-pack"),
        ("POST", "/octo/repo/git-receive-pack"),
        ("POST", "/octo/repo.git/git-receive-pack"),
    ] {
        assert!(git.rules.check(method, path).is_some(), "{method} {path}");
    }
    for (method, path) in [
        ("POST", "/octo/repo/info/refs"),
        ("GET", "/octo/repo/git-upload-pack"),
        ("GET", "/octo/repo"),
        ("GET", "/login"),
        ("POST", "/session"),
        ("GET", "/octo/repo/raw/main/file"),
        ("GET", "/octo/info/refs"),
        ("GET", "/a/b/c/info/refs"),
        ("DELETE", "/octo/repo/git-receive-pack"),
    ] {
        assert!(git.rules.check(method, path).is_none(), "{method} {path}");
    }
    let api = compiled.find("api.github.com", 443).unwrap();
    let credential = api.credential.as_ref().unwrap();
    assert_eq!(credential.format, CredentialFormat::Bearer);
    assert!(api.rules.check("DELETE", "/repos/o/r").is_some());
    let names: Vec<&str> = binding.env.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["GH_TOKEN", "GITHUB_TOKEN"]);
    assert!(binding
        .env
        .iter()
        .all(|(_, v)| v == "airlock-placeholder-github-tok3n"));
}

#[test]
fn generic_takes_the_callers_host_header_and_format() {
    let binding = bind(&[generic("API.Example.COM")], TOKEN).unwrap();
    let endpoint = &binding.endpoints[0];
    assert_eq!(endpoint.host, "api.example.com", "the normalised host");
    let credential = endpoint.credential.as_ref().unwrap();
    assert_eq!(credential.header, GENERIC_HEADER);
    assert_eq!(credential.format, GENERIC_FORMAT);
    assert!(binding.env.is_empty(), "generic sets no variable");

    let custom = CredentialRequest {
        header: Some("X-Token".to_owned()),
        format: Some("token {secret}".to_owned()),
        ..generic("a.example.com")
    };
    let binding = bind(&[custom, generic("b.example.com")], TOKEN).unwrap();
    let credential = binding.endpoints[0].credential.as_ref().unwrap();
    assert_eq!(credential.header, "X-Token");
    assert_eq!(credential.format, "token {secret}");
    assert_eq!(binding.endpoints.len(), 2, "generic may be bound per host");
    assert_eq!(binding.secrets, ["custom"], "distinct secrets");
}

#[test]
fn unknown_provider_is_refused_naming_the_known_ones() {
    let refusals = refused(&[entry("anthropic", "a"), entry("gitlab", "g")]);
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0].0, "credentials[1].provider");
    assert!(refusals[0].1.contains("`anthropic`"), "{refusals:?}");
    assert!(refusals[0].1.contains("`generic`"), "{refusals:?}");
}

#[test]
fn generic_fields_on_a_catalogue_provider_are_refused() {
    let request = CredentialRequest {
        host: Some("evil.example".to_owned()),
        header: Some("x-api-key".to_owned()),
        format: Some("{secret}".to_owned()),
        ..entry("anthropic", "a")
    };
    assert_eq!(
        fields(&[request]),
        [
            "credentials[0].host",
            "credentials[0].header",
            "credentials[0].format"
        ]
    );
}

#[test]
fn generic_needs_an_exact_dns_name() {
    let missing = CredentialRequest {
        host: None,
        ..generic("x")
    };
    let refusals = refused(&[missing]);
    assert_eq!(
        refusals,
        [("credentials[0].host".to_owned(), "is required".to_owned())]
    );
    for host in [
        "*.example.com",
        "192.0.2.1",
        "[2001:db8::1]",
        "a b",
        "",
        "x.com:443",
    ] {
        assert_eq!(fields(&[generic(host)]), ["credentials[0].host"], "{host}");
    }
}

#[test]
fn a_provider_twice_or_a_host_twice_is_refused() {
    let twice = [entry("openai", "a"), entry("openai", "b")];
    let refusals = refused(&twice);
    assert_eq!(
        refusals,
        [(
            "credentials[1].provider".to_owned(),
            "appears more than once".to_owned()
        )]
    );
    // The same host through generic, in either order.
    let clash = [entry("openai", "a"), generic("API.OPENAI.COM")];
    assert_eq!(fields(&clash), ["credentials[1].host"]);
    let clash = [generic("github.com"), entry("github", "g")];
    assert_eq!(fields(&clash), ["credentials[1].provider"]);
    let clash = [generic("a.example.com"), generic("a.example.com")];
    assert_eq!(fields(&clash), ["credentials[1].host"]);
}

#[test]
fn bad_headers_formats_and_secrets_are_the_policy_crates_refusals() {
    let with = |header: Option<&str>, format: Option<&str>| CredentialRequest {
        header: header.map(str::to_owned),
        format: format.map(str::to_owned),
        ..generic("api.example.com")
    };
    for header in [
        "Host",
        "content-length",
        "Proxy-Authorization",
        "TE",
        "Upgrade",
    ] {
        let refusals = refused(&[with(Some(header), None)]);
        assert_eq!(refusals[0].0, "credentials[0].header", "{header}");
        assert!(refusals[0].1.contains("reserved"), "{header}: {refusals:?}");
    }
    for header in ["x token", "", "x:y", "a\r\nb"] {
        assert_eq!(
            fields(&[with(Some(header), None)]),
            ["credentials[0].header"]
        );
    }
    for format in ["{secret} ", "Basic {secret}", "", "Bearer\r\n{secret}"] {
        assert_eq!(
            fields(&[with(None, Some(format))]),
            ["credentials[0].format"]
        );
    }
    let nameless = entry("anthropic", "");
    assert_eq!(fields(&[nameless]), ["credentials[0].secret"]);
    let control = entry("openai", "a\nb");
    assert_eq!(fields(&[control]), ["credentials[0].secret"]);
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let requests = [
        entry("nope", "a"),
        generic("*.example.com"),
        entry("anthropic", "a"),
        entry("anthropic", "b"),
    ];
    assert_eq!(
        fields(&requests),
        [
            "credentials[0].provider",
            "credentials[1].host",
            "credentials[3].provider"
        ]
    );
}

#[test]
fn at_most_eight_entries() {
    let eight: Vec<_> = (0..8)
        .map(|i| generic(&format!("h{i}.example.com")))
        .collect();
    assert_eq!(bind(&eight, TOKEN).unwrap().endpoints.len(), 8);
    let nine: Vec<_> = (0..9)
        .map(|i| generic(&format!("h{i}.example.com")))
        .collect();
    assert_eq!(
        refused(&nine),
        [("credentials".to_owned(), "has more than 8 items".to_owned())]
    );
}

#[test]
fn debug_never_shows_the_placeholder() {
    let binding = bind(&[entry("anthropic", "a")], TOKEN).unwrap();
    let shown = format!("{binding:?}");
    assert!(shown.contains("ANTHROPIC_API_KEY"), "{shown}");
    assert!(!shown.contains(TOKEN), "{shown}");
}

#[test]
fn a_request_entry_refuses_unknown_fields() {
    let parsed: CredentialRequest =
        serde_json::from_value(serde_json::json!({"provider": "github", "secret": "gh"})).unwrap();
    assert_eq!(parsed, entry("github", "gh"));
    let unknown = serde_json::json!({"provider": "github", "secret": "gh", "port": 8443});
    assert!(serde_json::from_value::<CredentialRequest>(unknown).is_err());
}

#[test]
fn a_gateway_names_the_provider_and_points_its_base_url_at_the_proxy() {
    let anthropic = CredentialRequest {
        gateway: true,
        ..entry("anthropic", "a")
    };
    let openai = CredentialRequest {
        gateway: true,
        ..entry("openai", "o")
    };
    let binding = bind(&[anthropic, openai], TOKEN).unwrap();
    let gateways: Vec<_> = binding
        .endpoints
        .iter()
        .map(|e| e.gateway.as_deref())
        .collect();
    assert_eq!(gateways, [Some("anthropic"), Some("openai")]);
    let env: std::collections::BTreeMap<_, _> = binding.env.iter().cloned().collect();
    assert_eq!(
        env["ANTHROPIC_BASE_URL"],
        "http://airlock.internal:3128/gw/anthropic"
    );
    assert_eq!(
        env["OPENAI_BASE_URL"],
        "http://airlock.internal:3128/gw/openai/v1"
    );
    // Without `gateway`, no base URL and no gateway name.
    let plain = bind(&[entry("anthropic", "a")], TOKEN).unwrap();
    assert_eq!(plain.endpoints[0].gateway, None);
    assert!(plain
        .env
        .iter()
        .all(|(name, _)| name != "ANTHROPIC_BASE_URL"));
    // A provider without a base URL has no gateway.
    let github = CredentialRequest {
        gateway: true,
        ..entry("github", "g")
    };
    assert_eq!(fields(&[github]), ["credentials[0].gateway"]);
}
