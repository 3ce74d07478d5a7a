//! Attempts through the egress proxy, with the sandbox's own credential from `HTTP_PROXY`:
//! a `GET` that must reach the test upstream, and `CONNECT`s to the deployment's own
//! addresses and names that the proxy must refuse.
//!
//! A refusal is read whole (head and JSON body) so the probe can check two things the proxy
//! promises (DESIGN.md invariant 9): the refusal code, and that the answer names no address
//! the sandbox did not send.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use super::{base64, io_outcome, ProbeEnv};
use crate::report::Outcome;

/// Largest proxy answer read (head and body); a JSON refusal is far smaller.
const ANSWER_LIMIT: usize = 8 * 1024;

/// The proxy and credential parsed from `HTTP_PROXY`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyUrl {
    /// The proxy's address (an IP: the probe never resolves it).
    pub addr: SocketAddr,
    /// `user:token`, sent as `Proxy-Authorization: Basic`.
    pub userinfo: Option<String>,
}

/// What a `CONNECT` through the proxy found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyAnswer {
    /// `reached` on a 2xx, `denied` on a refusal, `leaked` on a refusal naming an address the
    /// probe did not send, or how the connection to the proxy failed.
    pub outcome: Outcome,
    /// The status line, the refusal code, or the error.
    pub detail: String,
    /// The JSON `error` code of a refusal.
    pub code: Option<String>,
}

/// `GET http://upstream/` through the proxy in `HTTP_PROXY`, with its credential.
pub(super) fn http_proxy(
    upstream: SocketAddr,
    env: &ProbeEnv,
    timeout: Duration,
) -> (Outcome, String) {
    let request = |proxy: &ProxyUrl| proxy_request(upstream, proxy.userinfo.as_deref());
    match exchange(env, timeout, request) {
        Ok((line, _body)) => match status_code(&line) {
            Some(code) if (200..300).contains(&code) => (Outcome::Reached, line),
            Some(_) => (Outcome::Denied, line),
            None => (Outcome::Denied, format!("not an HTTP answer: {line:?}")),
        },
        Err(failed) => failed,
    }
}

/// `CONNECT target` (`host:port`, the host an IP or a name) through the proxy in
/// `HTTP_PROXY`, with its credential.
pub fn proxy_connect(target: &str, env: &ProbeEnv, timeout: Duration) -> ProxyAnswer {
    let request = |proxy: &ProxyUrl| connect_request(target, proxy.userinfo.as_deref());
    let (line, body) = match exchange(env, timeout, request) {
        Ok(answer) => answer,
        Err((outcome, detail)) => {
            return ProxyAnswer {
                outcome,
                detail,
                code: None,
            }
        }
    };
    let status = status_code(&line);
    if status.is_some_and(|code| (200..300).contains(&code)) {
        return answer(Outcome::Reached, line, None);
    }
    let code = refusal_code(&body);
    if let Some(ip) = leaked_address(&body, target) {
        let detail = format!("{line}: the refusal names {ip}, which the probe did not send");
        return answer(Outcome::Leaked, detail, code);
    }
    let detail = match &code {
        Some(code) => format!("{line}: {code}"),
        None => format!("{line}: no JSON refusal code"),
    };
    answer(Outcome::Denied, detail, code)
}

fn answer(outcome: Outcome, detail: String, code: Option<String>) -> ProxyAnswer {
    ProxyAnswer {
        outcome,
        detail,
        code,
    }
}

/// Connects to the proxy, sends the request `build` makes and reads the answer: its status
/// line and as much of its body as fits. `Err` carries how the attempt failed.
fn exchange(
    env: &ProbeEnv,
    timeout: Duration,
    build: impl Fn(&ProxyUrl) -> String,
) -> Result<(String, String), (Outcome, String)> {
    let Some(proxy) = env.http_proxy.as_deref().and_then(parse_proxy_url) else {
        let detail = "no usable HTTP_PROXY (http://user:token@ip:port)".to_owned();
        return Err((Outcome::Error, detail));
    };
    let mut stream = TcpStream::connect_timeout(&proxy.addr, timeout).map_err(|error| {
        let (outcome, detail) = io_outcome(&error);
        (outcome, format!("proxy {}: {detail}", proxy.addr))
    })?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.write_all(build(&proxy).as_bytes()))
        .and_then(|()| read_answer(&mut stream))
        .map_err(|error| io_outcome(&error))
}

/// The absolute-form request sent to the proxy.
pub fn proxy_request(upstream: SocketAddr, userinfo: Option<&str>) -> String {
    format!(
        "GET http://{upstream}/ HTTP/1.1\r\nHost: {upstream}\r\n{}User-Agent: airlock-probe\r\nConnection: close\r\n\r\n",
        auth_header(userinfo)
    )
}

fn connect_request(target: &str, userinfo: Option<&str>) -> String {
    format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{}User-Agent: airlock-probe\r\n\r\n",
        auth_header(userinfo)
    )
}

fn auth_header(userinfo: Option<&str>) -> String {
    userinfo
        .map(|u| format!("Proxy-Authorization: Basic {}\r\n", base64(u.as_bytes())))
        .unwrap_or_default()
}

/// Reads the status line and the body of one answer. A 2xx to `CONNECT` has no body and the
/// tunnel stays open, so reading stops at the end of the head unless `Content-Length` says
/// more follows; a refusal's body is read up to [`ANSWER_LIMIT`].
fn read_answer(stream: &mut TcpStream) -> std::io::Result<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(head_end) = find(&buf, b"\r\n\r\n") {
            let body_len = content_length(&buf[..head_end]).unwrap_or(0);
            if buf.len() >= (head_end + 4 + body_len).min(ANSWER_LIMIT) {
                return Ok(split_answer(&buf, head_end));
            }
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 || buf.len() >= ANSWER_LIMIT {
            let head_end = find(&buf, b"\r\n\r\n").unwrap_or(buf.len());
            return Ok(split_answer(&buf, head_end));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn split_answer(buf: &[u8], head_end: usize) -> (String, String) {
    let line_end = find(buf, b"\r\n").unwrap_or(head_end).min(head_end);
    let line = String::from_utf8_lossy(&buf[..line_end])
        .trim_end()
        .to_owned();
    let body = buf.get(head_end + 4..).unwrap_or_default();
    (line, String::from_utf8_lossy(body).into_owned())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &[u8]) -> Option<usize> {
    String::from_utf8_lossy(head).lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })
}

/// The status code of an HTTP/1 status line.
pub fn status_code(line: &str) -> Option<u16> {
    let mut parts = line.split(' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// The `error` field of a JSON refusal body.
fn refusal_code(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
    value.get("error")?.as_str().map(str::to_owned)
}

/// The first IP address in `body` that is not the host of `target` (what the probe sent).
/// Candidates are runs of hex digits, dots and colons that parse as an address.
pub fn leaked_address(body: &str, target: &str) -> Option<IpAddr> {
    let sent = target
        .rsplit_once(':')
        .map_or(target, |(host, _port)| host)
        .trim_matches(['[', ']'])
        .parse::<IpAddr>()
        .ok();
    body.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':'))
        .flat_map(|run| {
            // `"error":"x"` splits into runs such as `:`; an address may also sit between
            // colons, as in `host:10.0.0.1:80`.
            std::iter::once(run).chain(run.split(':'))
        })
        .map(|run| run.trim_matches(['.', ':']))
        .filter(|run| run.contains('.') || run.matches(':').count() >= 2)
        .filter_map(|run| run.parse::<IpAddr>().ok())
        .find(|ip| Some(*ip) != sent)
}

/// Parses `http://[user:token@]ip:port[/]`; names are refused (the probe never resolves).
pub fn parse_proxy_url(url: &str) -> Option<ProxyUrl> {
    let rest = url.trim().strip_prefix("http://")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (userinfo, host) = match rest.rsplit_once('@') {
        Some((userinfo, host)) => (Some(userinfo.to_owned()), host),
        None => (None, rest),
    };
    Some(ProxyUrl {
        addr: host.parse().ok()?,
        userinfo,
    })
}
