use super::*;
use crate::spec::PolicySpec;

fn policy(json: &str) -> Policy {
    Policy::compile(&serde_json::from_str::<PolicySpec>(json).unwrap()).unwrap()
}

fn allow_anthropic() -> Policy {
    policy(r#"{"allow_domains":["api.anthropic.com","*.github.com","github.com"]}"#)
}

fn compile(json: &str) -> Result<Endpoints, EndpointError> {
    let specs: Vec<EndpointSpec> = serde_json::from_str(json).unwrap();
    Endpoints::compile(&specs, &allow_anthropic(), true)
}

fn code(json: &str) -> &'static str {
    compile(json).unwrap_err().code()
}

const ANTHROPIC: &str = r#"[{"host":"api.anthropic.com","tls":"terminate","gateway":"anthropic",
    "credential":{"secret":"anthropic","header":"x-api-key","format":"{secret}"},
    "rules":[{"methods":["POST"],"paths":["/v1/messages","/v1/messages/**"]}]}]"#;

#[test]
fn a_provider_endpoint_compiles_and_is_found() {
    let eps = compile(ANTHROPIC).unwrap();
    let ep = eps.find("api.anthropic.com", 443).unwrap();
    assert_eq!(ep.tls, TlsMode::Terminate);
    assert_eq!(ep.alpn, ["h2", "http/1.1"]);
    let cred = ep.credential.as_ref().unwrap();
    assert_eq!(
        (cred.header.as_str(), cred.format),
        ("x-api-key", CredentialFormat::Raw)
    );
    assert!(eps.gateway("anthropic").is_some());
    assert!(eps.find("api.anthropic.com", 8443).is_none());
    assert_eq!(eps.secrets(), ["anthropic"]);
    assert_eq!(
        ep.rules.check("POST", "/v1/messages").as_deref(),
        Some("POST /v1/messages")
    );
    assert!(ep.rules.check("GET", "/v1/messages").is_none());
    assert!(ep.rules.check("POST", "/v1/models").is_none());
    assert!(ep.rules.check("POST", "/v1/messages/batches/x").is_some());
}

#[test]
fn unknown_fields_are_refused() {
    let err = serde_json::from_str::<Vec<EndpointSpec>>(
        r#"[{"host":"api.anthropic.com","tls":"terminate","insecure":true}]"#,
    );
    assert!(err.is_err());
    let err = serde_json::from_str::<Vec<EndpointSpec>>(r#"[{"host":"a.com","tls":"mitm"}]"#);
    assert!(err.is_err());
}

#[test]
fn credentials_need_terminate_and_an_exact_host() {
    let cred = r#""credential":{"secret":"s","header":"authorization","format":"Bearer {secret}"}"#;
    let on = |host: &str, tls: &str| format!(r#"[{{"host":"{host}","tls":"{tls}",{cred}}}]"#);
    assert_eq!(
        code(&on("api.anthropic.com", "passthrough")),
        "credential_on_passthrough"
    );
    assert_eq!(
        code(&on("api.anthropic.com", "http")),
        "credential_on_plain_http"
    );
    assert_eq!(
        code(&on("*.github.com", "passthrough")),
        "credential_on_passthrough"
    );
    assert_eq!(code(&on("*.github.com", "terminate")), "bad_endpoint_host");
}

#[test]
fn the_host_must_pass_the_domain_rules() {
    assert_eq!(
        code(r#"[{"host":"evil.example","tls":"passthrough"}]"#),
        "endpoint_host_not_allowed"
    );
    assert!(compile(r#"[{"host":"*.github.com","tls":"passthrough"}]"#).is_ok());
    assert_eq!(
        code(r#"[{"host":"*.anthropic.com","tls":"passthrough"}]"#),
        "endpoint_host_not_allowed"
    );
    let denied = policy(r#"{"allow_public":true,"deny_domains":["bad.com"]}"#);
    let spec: Vec<EndpointSpec> =
        serde_json::from_str(r#"[{"host":"bad.com","tls":"passthrough"}]"#).unwrap();
    let err = Endpoints::compile(&spec, &denied, true).unwrap_err();
    assert_eq!(err.code(), "endpoint_host_not_allowed");
}

#[test]
fn terminate_needs_a_ca() {
    let specs: Vec<EndpointSpec> = serde_json::from_str(ANTHROPIC).unwrap();
    let err = Endpoints::compile(&specs, &allow_anthropic(), false).unwrap_err();
    assert_eq!(err.code(), "terminate_without_ca");
}

#[test]
fn reserved_and_non_token_headers_are_refused() {
    for header in [
        "Host",
        "content-length",
        "Transfer-Encoding",
        "Connection",
        "TE",
        "Upgrade",
        "Proxy-Authorization",
        "proxy-anything",
    ] {
        let json = format!(
            r#"[{{"host":"api.anthropic.com","tls":"terminate",
               "credential":{{"secret":"s","header":"{header}","format":"{{secret}}"}}}}]"#
        );
        assert_eq!(code(&json), "reserved_header", "{header}");
    }
    for header in ["", "x api", "x:y", "x\\r\\ny", "é", "x\\u0000"] {
        let json = format!(
            r#"[{{"host":"api.anthropic.com","tls":"terminate",
               "credential":{{"secret":"s","header":"{header}","format":"{{secret}}"}}}}]"#
        );
        assert_eq!(code(&json), "bad_header_name", "{header:?}");
    }
}

#[test]
fn formats_and_secret_names_are_checked() {
    let with = |format: &str, secret: &str| {
        format!(
            r#"[{{"host":"api.anthropic.com","tls":"terminate",
               "credential":{{"secret":"{secret}","header":"authorization","format":"{format}"}}}}]"#
        )
    };
    assert_eq!(
        code(&with("Basic {secret}", "s")),
        "unknown_credential_format"
    );
    assert_eq!(
        code(&with("{secret}\\r\\nX: y", "s")),
        "unknown_credential_format"
    );
    assert_eq!(code(&with("{secret}", "")), "bad_secret_name");
    assert_eq!(code(&with("{secret}", "a\\nb")), "bad_secret_name");
    for f in [
        "{secret}",
        "Bearer {secret}",
        "token {secret}",
        "basic-x-access-token",
    ] {
        assert!(compile(&with(f, "gh")).is_ok(), "{f}");
    }
}

#[test]
fn values_render_per_format_and_refuse_header_splitting() {
    assert_eq!(CredentialFormat::Raw.render(b"sk-1").unwrap(), b"sk-1");
    assert_eq!(
        CredentialFormat::Bearer.render(b"sk-1").unwrap(),
        b"Bearer sk-1"
    );
    assert_eq!(CredentialFormat::Token.render(b"t").unwrap(), b"token t");
    // base64("x-access-token:ghp_abc") computed independently.
    assert_eq!(
        CredentialFormat::BasicXAccessToken
            .render(b"ghp_abc")
            .unwrap(),
        b"Basic eC1hY2Nlc3MtdG9rZW46Z2hwX2FiYw=="
    );
    for bad in [&b"a\r\nX-Evil: 1"[..], b"a\nb", b"a\0b", b"", b"a b"] {
        assert_eq!(CredentialFormat::Raw.render(bad), Err(BadCredentialValue));
    }
    for f in [
        "{secret}",
        "Bearer {secret}",
        "token {secret}",
        "basic-x-access-token",
    ] {
        assert_eq!(CredentialFormat::parse(f).unwrap().as_str(), f);
    }
}

#[test]
fn duplicates_gateways_and_alpn_are_checked() {
    assert_eq!(
        code(
            r#"[{"host":"github.com","tls":"passthrough"},
                {"host":"GitHub.com.","tls":"passthrough"}]"#
        ),
        "duplicate_endpoint"
    );
    assert_eq!(
        code(r#"[{"host":"github.com","tls":"passthrough","gateway":"gh"}]"#),
        "gateway_needs_terminate"
    );
    assert_eq!(
        code(r#"[{"host":"github.com","tls":"terminate","gateway":"GH/x"}]"#),
        "bad_gateway_name"
    );
    assert_eq!(
        code(
            r#"[{"host":"github.com","tls":"terminate","gateway":"g"},
                {"host":"api.github.com","tls":"terminate","gateway":"g"}]"#
        ),
        "bad_gateway_name"
    );
    assert_eq!(
        code(r#"[{"host":"github.com","tls":"terminate","alpn":["h3"]}]"#),
        "bad_alpn"
    );
    assert_eq!(
        code(r#"[{"host":"github.com","port":0,"tls":"terminate"}]"#),
        "port_zero"
    );
    let many: Vec<String> = (0..=MAX_ENDPOINTS)
        .map(|i| format!(r#"{{"host":"h{i}.github.com","tls":"passthrough"}}"#))
        .collect();
    assert_eq!(code(&format!("[{}]", many.join(","))), "too_many_endpoints");
}

#[test]
fn a_wildcard_passthrough_is_found_for_names_under_it() {
    let eps = compile(
        r#"[{"host":"*.github.com","tls":"passthrough"},
            {"host":"api.github.com","tls":"terminate"}]"#,
    )
    .unwrap();
    assert_eq!(
        eps.find("api.github.com", 443).unwrap().tls,
        TlsMode::Terminate
    );
    assert_eq!(
        eps.find("codeload.github.com", 443).unwrap().tls,
        TlsMode::Passthrough
    );
    assert!(eps.find("github.com", 443).is_none());
}

#[test]
fn rules_match_segments_and_refuse_bad_patterns() {
    let rules = RuleSet::compile(Some(&[RuleSpec {
        methods: vec!["GET".into(), "POST".into()],
        paths: vec!["/repo.git/info/refs".into(), "/repos/*/pulls/**".into()],
    }]))
    .unwrap();
    assert!(rules.check("GET", "/repo.git/info/refs").is_some());
    assert!(rules.check("GET", "/repos/x/pulls").is_some());
    assert!(rules.check("GET", "/repos/x/pulls/1/files").is_some());
    assert!(rules.check("GET", "/repos/x/y/pulls").is_none());
    assert!(rules.check("DELETE", "/repos/x/pulls").is_none());
    assert!(RuleSet::compile(None)
        .unwrap()
        .check("DELETE", "/x")
        .is_some());
    assert!(RuleSet::compile(Some(&[]))
        .unwrap()
        .check("GET", "/")
        .is_none());
    let bad = |methods: &[&str], path: &str| {
        RuleSet::compile(Some(&[RuleSpec {
            methods: methods.iter().map(|m| (*m).to_owned()).collect(),
            paths: vec![path.to_owned()],
        }]))
        .unwrap_err()
        .code()
    };
    assert_eq!(bad(&["get"], "/x"), "bad_rule_method");
    assert_eq!(bad(&[], "/x"), "bad_rule_method");
    assert_eq!(bad(&["GET"], "x"), "bad_rule_path");
    assert_eq!(bad(&["GET"], "/a/../b"), "bad_rule_path");
    assert_eq!(bad(&["GET"], "/a*b"), "bad_rule_path");
    assert_eq!(bad(&["GET"], "/a?q"), "bad_rule_path");
    assert_eq!(bad(&["GET"], "/a//b"), "bad_rule_path");
}

#[test]
fn many_double_stars_match_in_linear_time() {
    let pattern = format!("/{}x", "**/".repeat(60));
    let rules = RuleSet::compile(Some(&[RuleSpec {
        methods: vec!["*".into()],
        paths: vec![pattern],
    }]))
    .unwrap();
    let path = format!("/{}", "a/".repeat(2000));
    assert!(rules.check("GET", &path).is_none());
    assert!(rules.check("GET", &format!("{path}x")).is_some());
}
