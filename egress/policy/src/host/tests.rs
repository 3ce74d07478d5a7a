use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

fn ip(s: &str) -> Host {
    Host::Ip(s.parse().unwrap())
}

fn name(s: &str) -> Host {
    Host::Name(DnsName(s.to_owned()))
}

/// Every spelling WHATWG URL or glibc inet_aton reads as IPv4 is that address.
#[test]
fn odd_ipv4_spellings_are_addresses() {
    let rows: &[(&str, &str)] = &[
        ("127.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0X7F.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0x7f.0x0.0x0.0x1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("0x", "0.0.0.0"),
        ("1.2.3.0x", "1.2.3.0"),
        ("4294967295", "255.255.255.255"),
        ("169.254.43518", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        (
            "\u{ff11}\u{ff12}\u{ff17}.\u{ff10}.\u{ff10}.\u{ff11}",
            "127.0.0.1",
        ),
        ("127\u{3002}0\u{3002}0\u{3002}1", "127.0.0.1"),
        ("127\u{ff0e}0\u{ff0e}0\u{ff0e}1", "127.0.0.1"),
        ("127\u{ff61}0\u{ff61}0\u{ff61}1", "127.0.0.1"),
    ];
    for (input, want) in rows {
        assert_eq!(parse_host(input), Ok(ip(want)), "{input:?}");
    }
}

#[test]
fn numeric_hosts_that_are_not_addresses_are_refused() {
    for input in [
        "4294967296",
        "1.2.3.256",
        "256.1",
        "1.2.3.4.5",
        "foo.123",
        "foo.0x1",
        "08.1.2.3",
        "0x100000000",
        "1.2.3.4..",
    ] {
        let got = parse_host(input);
        assert!(
            matches!(got, Err(ParseError::BadIpv4 | ParseError::BadHost)),
            "{input:?}: {got:?}"
        );
    }
}

#[test]
fn names_are_normalised() {
    let rows: &[(&str, &str)] = &[
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("b\u{fc}cher.de", "xn--bcher-kva.de"),
        ("EXAMPLE\u{3002}com", "example.com"),
        ("_dmarc.example.com", "_dmarc.example.com"),
        ("0x1g", "0x1g"),
        ("1.2.3.4a", "1.2.3.4a"),
    ];
    for (input, want) in rows {
        assert_eq!(parse_host(input), Ok(name(want)), "{input:?}");
    }
}

#[test]
fn hosts_are_refused_with_a_code() {
    let long_label = "a".repeat(64);
    let long_name = [
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(62),
    ]
    .join(".");
    let rows: Vec<(&str, &str)> = vec![
        ("", "empty_host"),
        (".", "empty_host"),
        ("a..b", "bad_host"),
        ("example.com..", "bad_host"),
        ("a*b.com", "bad_host"),
        ("a b.com", "control_char"),
        ("a\u{0}b", "nul"),
        ("a\u{7f}b", "control_char"),
        ("a\u{85}b", "control_char"),
        ("a\\b", "backslash"),
        ("a%2eb", "percent_escape"),
        ("a\u{ff05}2eb", "bad_host"),
        ("[fe80::1%25eth0]", "zone_id"),
        ("[1.2.3.4]", "bad_host"),
        ("[::1", "bad_host"),
        ("[v1.x]", "bad_host"),
        ("xn--", "bad_host"),
        ("user@host", "userinfo"),
        (&long_label, "name_too_long"),
        (&long_name, "name_too_long"),
    ];
    for (input, code) in rows {
        assert_eq!(
            parse_host(input).map_err(|e| e.code()),
            Err(code),
            "{input:?}"
        );
    }
    let ok_name = [
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61),
    ]
    .join(".");
    assert!(parse_host(&ok_name).is_ok());
    assert!(parse_host(&format!("{ok_name}.")).is_ok());
}

#[test]
fn connect_targets() {
    let ok: &[(&str, Host, u16)] = &[
        ("example.com:443", name("example.com"), 443),
        ("EXAMPLE.com.:443", name("example.com"), 443),
        ("[::1]:443", ip("::1"), 443),
        ("127.1:80", ip("127.0.0.1"), 80),
        ("example.com:65535", name("example.com"), 65535),
        ("example.com:00443", name("example.com"), 443),
    ];
    for (input, host, port) in ok {
        let want = Target {
            host: host.clone(),
            port: *port,
        };
        assert_eq!(parse_connect(input), Ok(want), "{input:?}");
    }
    let bad: &[(&str, &str)] = &[
        ("example.com", "bad_port"),
        ("example.com:", "bad_port"),
        ("example.com:0", "bad_port"),
        ("example.com:65536", "bad_port"),
        ("example.com:99999999999", "bad_port"),
        ("example.com:+443", "bad_port"),
        ("example.com:-1", "bad_port"),
        (":443", "empty_host"),
        ("::1:443", "bad_host"),
        ("[::1]443", "bad_target"),
        ("user@example.com:443", "userinfo"),
        ("exa%41mple.com:443", "percent_escape"),
        ("[fe80::1%25eth0]:443", "zone_id"),
        ("exa\\mple.com:443", "backslash"),
        ("example.com:443#x", "fragment"),
        ("example.com:443/", "bad_target"),
        ("example.com\r\n:443", "control_char"),
    ];
    for (input, code) in bad {
        assert_eq!(
            parse_connect(input).map_err(|e| e.code()),
            Err(*code),
            "{input:?}"
        );
    }
}

#[test]
fn absolute_targets() {
    let ok: &[(&str, Host, u16, &str)] = &[
        ("http://example.com", name("example.com"), 80, "/"),
        (
            "HTTP://Example.com:8080/a?b",
            name("example.com"),
            8080,
            "/a?b",
        ),
        ("http://example.com?x=1", name("example.com"), 80, "/?x=1"),
        (
            "http://example.com/%2e%2e/",
            name("example.com"),
            80,
            "/%2e%2e/",
        ),
        ("http://127.1/", ip("127.0.0.1"), 80, "/"),
        (
            "http://[::ffff:127.0.0.1]:81/",
            ip("::ffff:127.0.0.1"),
            81,
            "/",
        ),
        ("http://a.b/x@y", name("a.b"), 80, "/x@y"),
    ];
    for (input, host, port, path) in ok {
        let got = parse_absolute(input).unwrap_or_else(|e| panic!("{input:?}: {e:?}"));
        assert_eq!(
            got.target,
            Target {
                host: host.clone(),
                port: *port
            },
            "{input:?}"
        );
        assert_eq!(got.path_and_query, *path, "{input:?}");
    }
    let bad: &[(&str, &str)] = &[
        ("https://example.com/", "bad_scheme"),
        ("ftp://example.com/", "bad_scheme"),
        ("gopher://127.0.0.1:25/", "bad_scheme"),
        ("http:/example.com/", "bad_target"),
        ("http:example.com", "bad_target"),
        ("/path", "bad_target"),
        ("example.com:80", "bad_scheme"),
        ("http://user:pw@example.com/", "userinfo"),
        ("http://example.com/#frag", "fragment"),
        ("http://example.com\\@evil.com/", "backslash"),
        ("http://example.com:/", "bad_port"),
        ("http://example.com:0/", "bad_port"),
        ("http:///path", "empty_host"),
        ("http://exa%2Emple.com/", "percent_escape"),
        ("http://[::1%251]/", "zone_id"),
        ("http://exa mple.com/", "control_char"),
    ];
    for (input, code) in bad {
        assert_eq!(
            parse_absolute(input).map(|_| ()).map_err(|e| e.code()),
            Err(*code),
            "{input:?}"
        );
    }
}

#[test]
fn host_header_must_agree() {
    let target = parse_absolute("http://example.com/").unwrap().target;
    for header in [
        "example.com",
        "Example.COM.",
        "example.com:80",
        " example.com\t",
    ] {
        assert_eq!(check_host_header(&target, header), Ok(()), "{header:?}");
    }
    for header in ["evil.com", "example.com:8080", "127.0.0.1"] {
        assert_eq!(
            check_host_header(&target, header),
            Err(ParseError::HostMismatch),
            "{header:?}"
        );
    }
    assert_eq!(
        check_host_header(&target, "a@example.com"),
        Err(ParseError::Userinfo)
    );
    assert_eq!(check_host_header(&target, ""), Err(ParseError::EmptyHost));

    let target = parse_connect("[::ffff:127.0.0.1]:443").unwrap();
    assert_eq!(check_host_header(&target, "127.0.0.1:443"), Ok(()));
    assert_eq!(check_host_header(&target, "0x7f.1"), Ok(()));
    assert_eq!(
        check_host_header(&target, "127.0.0.1:80"),
        Err(ParseError::HostMismatch)
    );
}

#[test]
fn display_and_codes() {
    let t = parse_connect("[::1]:443").unwrap();
    assert_eq!(t.host_str(), "[::1]");
    assert_eq!(t.to_string(), "[::1]:443");
    let t = parse_connect("127.1:80").unwrap();
    assert_eq!(t.host_str(), "127.0.0.1");
    assert_eq!(DnsName::parse("A.b").unwrap().as_str(), "a.b");
    assert_eq!(DnsName::parse("1.2.3.4"), Err(ParseError::BadHost));
    assert_eq!(ParseError::NameTooLong.code(), "name_too_long");
}

/// What `url` (WHATWG) makes of `http://<host>/`, if it yields a host at all.
fn url_host(host: &str) -> Option<url::Host<String>> {
    url::Url::parse(&format!("http://{host}/"))
        .ok()?
        .host()
        .map(|h| h.to_owned())
}

/// Never let a second parser disagree: when both accept, they agree on address versus name and
/// on the value; and when we read an address, `url` reads the same one.
fn assert_agrees(host: &str) -> Result<(), TestCaseError> {
    // Characters that change URL structure or that `url` silently strips are refused by us
    // anyway (tested above); they say nothing about host parsing.
    if host.contains(['/', '?', '#', '@', '\\', ':']) && !host.starts_with('[') {
        return Ok(());
    }
    let ours = parse_host(host);
    match (url_host(host), ours) {
        (Some(url::Host::Ipv4(a)), Ok(got)) => {
            prop_assert_eq!(got, Host::Ip(IpAddr::V4(a)), "{:?}", host)
        }
        (Some(url::Host::Ipv6(a)), Ok(got)) => {
            prop_assert_eq!(got, Host::Ip(IpAddr::V6(a)), "{:?}", host)
        }
        (Some(url::Host::Domain(d)), Ok(got)) => {
            let d = d.strip_suffix('.').unwrap_or(&d).to_owned();
            prop_assert_eq!(got, Host::Name(DnsName(d)), "{:?}", host);
        }
        (None, Ok(Host::Ip(a))) => prop_assert!(false, "{host:?}: we read {a}, url refused"),
        _ => {}
    }
    Ok(())
}

#[test]
fn url_oracle_fixed_cases() {
    for host in [
        "127.1",
        "0x7f.1",
        "2130706433",
        "0177.0.0.1",
        "0x7f000001",
        "127.0.0.1.",
        "0x",
        "1.2.3.0x",
        "\u{ff11}\u{ff12}\u{ff17}.1",
        "127\u{3002}1",
        "[::ffff:1.2.3.4]",
        "[64:ff9b::1.2.3.4]",
        "[0:0:0:0:0:0:0:1]",
        "[::FFFF:7F00:1]",
        "example.com.",
        "Ex\u{e4}mple.com",
    ] {
        assert_agrees(host).unwrap();
    }
    // The oracle is not vacuous: url reads these as addresses too.
    let loopback = Some(url::Host::Ipv4(Ipv4Addr::LOCALHOST));
    assert_eq!(url_host("0x7f.1"), loopback);
    assert_eq!(url_host("\u{ff10}\u{ff38}7f.1"), loopback);
    assert_eq!(url_host("127\u{3002}1"), loopback);
    assert_eq!(parse_host("\u{ff10}\u{ff38}7f.1"), Ok(ip("127.0.0.1")));
}

const NUMERIC: &str =
    "[0-9a-fA-FxX.\u{3002}\u{ff0e}\u{ff61}\u{ff10}-\u{ff19}\u{ff38}\u{ff58}]{0,24}";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn url_oracle_numeric(host in NUMERIC) {
        assert_agrees(&host)?;
    }

    #[test]
    fn url_oracle_ipv6(inner in "[0-9a-fA-F:.]{0,45}") {
        assert_agrees(&format!("[{inner}]"))?;
    }

    #[test]
    fn url_oracle_anything(host in "\\PC{0,30}") {
        assert_agrees(&host)?;
    }

    #[test]
    fn url_oracle_real_v6(bits in any::<u128>()) {
        let v6 = Ipv6Addr::from(bits);
        assert_agrees(&format!("[{v6}]"))?;
        prop_assert_eq!(parse_host(&format!("[{v6}]")), Ok(Host::Ip(IpAddr::V6(v6))));
    }

    #[test]
    fn dotted_quads_round_trip(bits in any::<u32>()) {
        let v4 = Ipv4Addr::from(bits);
        prop_assert_eq!(parse_host(&v4.to_string()), Ok(Host::Ip(IpAddr::V4(v4))));
        prop_assert_eq!(parse_host(&bits.to_string()), Ok(Host::Ip(IpAddr::V4(v4))));
        prop_assert_eq!(parse_host(&format!("{bits:#x}")), Ok(Host::Ip(IpAddr::V4(v4))));
    }

    #[test]
    fn parsers_never_panic(input in "\\PC{0,80}|.{0,80}") {
        let _ = parse_connect(&input);
        let _ = parse_absolute(&input);
        let _ = parse_absolute(&format!("http://{input}"));
        let _ = parse_host(&input);
        if let Ok(t) = parse_connect("example.com:443") {
            let _ = check_host_header(&t, &input);
        }
    }

    #[test]
    fn names_keep_the_invariant(input in "[a-zA-Z0-9.\u{e4}\u{3002}_-]{1,70}") {
        if let Ok(Host::Name(n)) = parse_host(&input) {
            let s = n.as_str();
            prop_assert!(!s.ends_with('.') && !s.is_empty() && s.len() <= MAX_NAME);
            prop_assert!(!ipv4::ends_in_a_number(s));
            prop_assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)));
        }
    }
}
