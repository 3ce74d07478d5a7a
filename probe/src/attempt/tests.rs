//! Only loopback is dialled here: the forbidden destinations are tried in the e2e tests,
//! inside sealed networks.

use std::io::{Read, Write};
use std::net::TcpListener;

use super::*;
use crate::plan::{Check, Expect, Kind, Plan};
use crate::report::Verdict;

const SHORT: Duration = Duration::from_millis(500);

/// A loopback port with nothing listening (bound, then released).
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[test]
fn tcp_outcomes_on_loopback() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap();
    assert_eq!(tcp(open, SHORT).0, Outcome::Reached);
    assert_eq!(tcp(closed_port(), SHORT).0, Outcome::Refused);
}

#[test]
fn a_plan_runs_every_check_in_order_and_judges_it() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap();
    let plan = Plan {
        timeout_ms: 500,
        checks: vec![
            Check::blocked("open_port", Kind::Tcp, open),
            Check::blocked("closed_port", Kind::Tcp, closed_port()),
            Check::new("must_reach", Kind::Tcp, open, Expect::Reachable),
            Check::new("via_proxy", Kind::HttpProxy, open, Expect::Reachable),
        ],
    };
    let report = run(&plan, &ProbeEnv::default());
    let results: Vec<_> = report
        .checks
        .iter()
        .map(|c| (c.check.as_str(), c.outcome, c.result))
        .collect();
    assert_eq!(
        results,
        [
            ("open_port", Outcome::Reached, Verdict::Fail),
            ("closed_port", Outcome::Refused, Verdict::Pass),
            ("must_reach", Outcome::Reached, Verdict::Pass),
            // No HTTP_PROXY in the environment: the attempt cannot be made.
            ("via_proxy", Outcome::Error, Verdict::Fail),
        ]
    );
    assert!(!report.passed);
}

#[test]
fn http_through_a_loopback_proxy_sends_the_credential() {
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = proxy.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = proxy.accept().unwrap();
        let mut buf = [0u8; 1024];
        let n = conn.read(&mut buf).unwrap();
        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    let env = ProbeEnv {
        http_proxy: Some(format!("http://sbx:tok3n@{addr}/")),
        resolv_conf: String::new(),
    };
    let upstream: SocketAddr = "192.0.2.7:8080".parse().unwrap();
    let (outcome, detail) = http_proxy(upstream, &env, SHORT);
    assert_eq!(
        (outcome, detail.as_str()),
        (Outcome::Reached, "HTTP/1.1 200 OK")
    );
    let request = server.join().unwrap();
    assert!(
        request.starts_with("GET http://192.0.2.7:8080/ HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request.contains(&format!(
            "Proxy-Authorization: Basic {}\r\n",
            base64(b"sbx:tok3n")
        )),
        "{request}"
    );
}

/// A one-shot loopback proxy that answers `answer` and returns the request it read.
fn fake_proxy(answer: &'static str) -> (ProbeEnv, std::thread::JoinHandle<String>) {
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = proxy.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = proxy.accept().unwrap();
        let mut buf = [0u8; 1024];
        let n = conn.read(&mut buf).unwrap();
        conn.write_all(answer.as_bytes()).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    let env = ProbeEnv {
        http_proxy: Some(format!("http://sbx:tok3n@{addr}/")),
        resolv_conf: String::new(),
    };
    (env, server)
}

fn refusal(body: &str) -> &'static str {
    let answer = format!(
        "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    Box::leak(answer.into_boxed_str())
}

#[test]
fn connect_refusals_carry_their_code() {
    let body = r#"{"error":"infrastructure","message":"airlock-egress:3129: the destination is part of the Airlock deployment","host":"airlock-egress","sandbox":"s1"}"#;
    let (env, server) = fake_proxy(refusal(body));
    let answer = proxy_connect("airlock-egress:3129", &env, SHORT);
    assert_eq!(answer.outcome, Outcome::Denied, "{answer:?}");
    assert_eq!(answer.code.as_deref(), Some("infrastructure"));
    let request = server.join().unwrap();
    assert!(
        request.starts_with("CONNECT airlock-egress:3129 HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(request.contains("Proxy-Authorization: Basic "), "{request}");
}

#[test]
fn a_refusal_naming_an_address_that_was_not_sent_is_a_leak() {
    let body = r#"{"error":"private","message":"dind:2376: not publicly routable (10.210.0.10)"}"#;
    let (env, server) = fake_proxy(refusal(body));
    let answer = proxy_connect("dind:2376", &env, SHORT);
    server.join().unwrap();
    assert_eq!(answer.outcome, Outcome::Leaked, "{answer:?}");
    assert!(answer.detail.contains("10.210.0.10"), "{answer:?}");
    // The address the probe sent itself may be echoed.
    let echoed =
        r#"{"error":"infrastructure","message":"10.213.0.11:8080: part of the deployment"}"#;
    let (env, server) = fake_proxy(refusal(echoed));
    let answer = proxy_connect("10.213.0.11:8080", &env, SHORT);
    server.join().unwrap();
    assert_eq!(answer.outcome, Outcome::Denied, "{answer:?}");
}

#[test]
fn an_open_tunnel_is_reached() {
    let (env, server) = fake_proxy("HTTP/1.1 200 OK\r\n\r\n");
    let answer = proxy_connect("10.213.0.11:8080", &env, SHORT);
    server.join().unwrap();
    assert_eq!(answer.outcome, Outcome::Reached, "{answer:?}");
}

#[test]
fn leaked_addresses_are_found_in_any_spelling() {
    for (body, target, want) in [
        (
            "connect failed to 10.0.0.7:80",
            "a.test:80",
            Some("10.0.0.7"),
        ),
        ("(fd00::7)", "a.test:80", Some("fd00::7")),
        (
            r#"{"error":"x","message":"host:10.1.2.3:443"}"#,
            "host:443",
            Some("10.1.2.3"),
        ),
        (
            r#"{"error":"dns_failed","message":"no address"}"#,
            "a.test:80",
            None,
        ),
        ("10.213.0.11:8080 refused", "10.213.0.11:8080", None),
        ("[fd00::1]:443", "[fd00::1]:443", None),
        ("version 1.2.3 deadbeef", "a.test:80", None),
    ] {
        let got = leaked_address(body, target).map(|ip| ip.to_string());
        assert_eq!(got.as_deref(), want, "{body}");
    }
}

#[test]
fn dns_lookup_against_a_loopback_server() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    // resolv.conf cannot name a port, so this only checks the empty and unreachable cases;
    // the reply parser is tested on bytes below.
    let (outcome, _) = dns_lookup("example.com", "", SHORT);
    assert_eq!(outcome, Outcome::Unreachable);
    let reply = exchange_reply(&server, port);
    assert_eq!(
        parse_reply(7, &reply),
        Some(DnsReply {
            rcode: 0,
            answers: 1
        })
    );
}

fn exchange_reply(server: &UdpSocket, port: u16) -> Vec<u8> {
    let handle = {
        let server = server.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let (n, from) = server.recv_from(&mut buf).unwrap();
            let mut reply = buf[..n].to_vec();
            reply[2] |= 0x80; // QR: a reply
            reply[7] = 1; // one answer
            server.send_to(&reply, from).unwrap();
        })
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let reply = exchange(addr, &dns_query(7, "example.com"), SHORT).unwrap();
    handle.join().unwrap();
    reply
}

#[test]
fn udp_without_a_listener_is_not_an_answer() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    drop(socket);
    let (outcome, _) = udp_dns(addr, SHORT);
    assert_ne!(outcome, Outcome::Reached);
}

#[test]
fn dns_wire_format() {
    let query = dns_query(0x1234, "example.com");
    assert_eq!(
        query,
        [
            0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e',
            3, b'c', b'o', b'm', 0, 0, 1, 0, 1
        ]
    );
    let mut reply = query.clone();
    reply[2] |= 0x80;
    reply[3] = 0x83; // RA + NXDOMAIN
    assert_eq!(
        parse_reply(0x1234, &reply),
        Some(DnsReply {
            rcode: 3,
            answers: 0
        })
    );
    assert_eq!(parse_reply(0x1235, &reply), None, "another query's id");
    assert_eq!(parse_reply(0x1234, &query), None, "a query is not a reply");
    assert_eq!(parse_reply(0x1234, &reply[..5]), None);
}

#[test]
fn resolv_conf_nameservers() {
    let text = "# generated\nsearch x\nnameserver 127.0.0.11\nnameserver ::1\nnameserver bogus\noptions ndots:0\n";
    let want: Vec<IpAddr> = vec!["127.0.0.11".parse().unwrap(), "::1".parse().unwrap()];
    assert_eq!(nameservers(text), want);
}

#[test]
fn proxy_urls() {
    let url = parse_proxy_url("http://0b7f:abc@10.213.0.10:3128").unwrap();
    assert_eq!(url.addr, "10.213.0.10:3128".parse().unwrap());
    assert_eq!(url.userinfo.as_deref(), Some("0b7f:abc"));
    assert_eq!(
        parse_proxy_url("http://10.0.0.2:3128/").unwrap().userinfo,
        None
    );
    assert!(parse_proxy_url("https://10.0.0.2:3128").is_none());
    assert!(
        parse_proxy_url("http://proxy.local:3128").is_none(),
        "names are never resolved"
    );
}

#[test]
fn status_lines_and_base64() {
    assert_eq!(
        status_code("HTTP/1.1 407 Proxy Authentication Required"),
        Some(407)
    );
    assert_eq!(status_code("HTTP/1.0 200"), Some(200));
    assert_eq!(status_code("SSH-2.0-OpenSSH"), None);
    for (input, want) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
    ] {
        assert_eq!(base64(input.as_bytes()), want);
    }
    assert_eq!(checksum(&[0x08, 0, 0, 0, 0, 0, 0, 1]), 0xf7fe);
}
