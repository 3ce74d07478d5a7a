//! The first request line of a connection, checked before hyper sees it.
//!
//! hyper parses the request-target into an `http::Uri` and answers a target it cannot parse
//! (a backslash or `%` in the authority, a control character, ...) with its own empty 400. To
//! keep "bad input gets a 400 with a JSON reason" true for those inputs too, the first request
//! line is *peeked* (not consumed) once: if hyper would reject its target, the proxy answers
//! with the JSON refusal itself and closes. Only the first line is checked, because only there
//! is the position of a request line certain; later requests on a keep-alive connection fall
//! back to hyper's own 400. A line that has not fully arrived in the first segment is left to
//! hyper (no waiting, no spinning on `peek`).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::decide::parse_request;
use crate::error::EgressError;
use crate::exchange::Exchange;
use crate::server::Proxy;

/// Peeks the first request line; refuses the connection with a JSON 400 when hyper could not
/// parse its target. Returns `true` when the connection was refused (and should be dropped).
pub(crate) async fn refuse_unparsable(
    proxy: &Arc<Proxy>,
    stream: &mut TcpStream,
    peer: SocketAddr,
) -> bool {
    let mut buf = vec![0u8; 8192];
    let Ok(n) = stream.peek(&mut buf).await else {
        return false;
    };
    let Some((method, target)) = buf.get(..n).and_then(request_line) else {
        return false;
    };
    if http::Uri::try_from(target.as_str()).is_ok() {
        return false;
    }
    let error = match parse_request(&method, &target, &[]) {
        Err(error) => error,
        Ok(_) => EgressError::client("bad_target", "malformed request target"),
    };
    let exchange = Exchange::begin(proxy.clone(), peer, &method, &target);
    let response = exchange.refuse(&error);
    let _ = stream.write_all(&serialize(&response)).await;
    let _ = stream.shutdown().await;
    true
}

/// `(method, target)` of a complete `TOKEN SP target SP HTTP/1.x` line, if `bytes` holds one.
fn request_line(bytes: &[u8]) -> Option<(String, String)> {
    let end = bytes.iter().position(|&b| b == b'\n')?;
    let line = bytes
        .get(..end)?
        .strip_suffix(b"\r")
        .unwrap_or(bytes.get(..end)?);
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let method_ok = !method.is_empty() && method.iter().all(u8::is_ascii_uppercase);
    if !method_ok || !version.starts_with(b"HTTP/1.") || target.is_empty() {
        return None;
    }
    let method = String::from_utf8(method.to_vec()).ok()?;
    Some((method, String::from_utf8_lossy(target).into_owned()))
}

/// A refusal as HTTP/1.1 bytes, closing the connection.
fn serialize(response: &Response<Bytes>) -> Vec<u8> {
    let status = response.status();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nconnection: close\r\ncontent-length: {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        response.body().len()
    )
    .into_bytes();
    for (name, value) in response.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(response.body());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        let line = |s: &str| request_line(s.as_bytes());
        assert_eq!(
            line("GET http://a\\b/ HTTP/1.1\r\nHost: x\r\n"),
            Some(("GET".into(), "http://a\\b/".into()))
        );
        assert_eq!(
            line("CONNECT a:1 HTTP/1.0\n"),
            Some(("CONNECT".into(), "a:1".into()))
        );
        assert_eq!(line("GET http://a/ HTTP/1.1"), None, "incomplete line");
        assert_eq!(line("get http://a/ HTTP/1.1\r\n"), None);
        assert_eq!(line("GET  HTTP/1.1\r\n"), None);
        assert_eq!(line("GET http://a/ SMTP\r\n"), None);
    }
}
