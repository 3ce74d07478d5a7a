//! The request line as a typed target: what a request asks for, parsed the same way for
//! `serve` (from hyper's request) and for `check` (from the command line).
//!
//! Methods are case-sensitive (RFC 9110 9.1): `connect` is no CONNECT, and a proxy that read it
//! as one would route a request hyper forwards as something else. An absolute-form target's
//! `Host` headers must agree with it; an origin-form target is refused, since this is a forward
//! proxy.

use airlock_egress_policy::{check_host_header, parse_absolute, parse_connect, ParseError, Target};
use http::{Method, Request};

use crate::error::EgressError;

/// A request line that parsed into a typed target.
#[derive(Debug, Clone)]
pub(crate) struct ParsedRequest {
    /// What kind of proxy request this is.
    pub(crate) kind: RequestKind,
    /// The destination.
    pub(crate) target: Target,
}

/// CONNECT tunnel or absolute-form forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// `CONNECT host:port`.
    Connect,
    /// `METHOD http://host[:port]/path`, forwarded with this origin-form path and query.
    Forward {
        /// The path and query sent upstream.
        path_and_query: String,
    },
}

// === impl ParsedRequest ===

impl ParsedRequest {
    /// Parses what hyper received: the method, `target` (the request target as on the request
    /// line) and, for a forward request, every `Host` header.
    pub(crate) fn from_request<B>(req: &Request<B>, target: &str) -> Result<Self, EgressError> {
        let hosts: Vec<&[u8]> = match req.method() {
            &Method::CONNECT => Vec::new(),
            _ => req
                .headers()
                .get_all(http::header::HOST)
                .iter()
                .map(|v| v.as_bytes())
                .collect(),
        };
        parse_request(req.method().as_str(), target, &hosts)
    }

    /// The origin-form path and query sent upstream (`/` for a tunnel, which sends none).
    pub(crate) fn path(&self) -> &str {
        match &self.kind {
            RequestKind::Forward { path_and_query } => path_and_query,
            RequestKind::Connect => "/",
        }
    }
}

/// Parses a request target the way `serve` receives it.
///
/// `target` is the request-target exactly as on the request line; `host_headers` are the values
/// of every `Host` header (absolute-form only: they must agree with the target).
pub(crate) fn parse_request(
    method: &str,
    target: &str,
    host_headers: &[&[u8]],
) -> Result<ParsedRequest, EgressError> {
    if method != "CONNECT" && method.eq_ignore_ascii_case("CONNECT") {
        return Err(bad_method_case());
    }
    if method == "CONNECT" {
        let target = parse_connect(target).map_err(malformed)?;
        return Ok(ParsedRequest {
            kind: RequestKind::Connect,
            target,
        });
    }
    if target.starts_with('/') || target == "*" {
        return Err(EgressError::client(
            "origin_form",
            "this is a forward proxy: send an absolute-form request (http://host/path) or CONNECT",
        ));
    }
    let form = parse_absolute(target).map_err(malformed)?;
    check_hosts(&form.target, host_headers)?;
    Ok(ParsedRequest {
        kind: RequestKind::Forward {
            path_and_query: form.path_and_query,
        },
        target: form.target,
    })
}

/// At most one `Host` header, and it names the target.
fn check_hosts(target: &Target, host_headers: &[&[u8]]) -> Result<(), EgressError> {
    match host_headers {
        [] => Ok(()),
        [one] => {
            let value = std::str::from_utf8(one).map_err(|_not_utf8| {
                EgressError::client("host_mismatch", "Host header is not UTF-8")
            })?;
            check_host_header(target, value).map_err(malformed)
        }
        _ => Err(EgressError::client(
            "host_mismatch",
            "more than one Host header",
        )),
    }
}

/// The refusal for a CONNECT spelled in another case.
pub(crate) fn bad_method_case() -> EgressError {
    EgressError::client(
        "bad_method",
        "methods are case-sensitive: a tunnel is requested with CONNECT",
    )
}

/// A parse error is a client error carrying the parser's stable code.
fn malformed(error: ParseError) -> EgressError {
    EgressError::client(error.code(), error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_malformed_inputs() {
        let ok = parse_request("CONNECT", "example.com:443", &[]).unwrap();
        assert_eq!(ok.kind, RequestKind::Connect);
        let ok = parse_request("GET", "http://example.com/a?b", &[b"example.com"]).unwrap();
        assert_eq!(
            ok.kind,
            RequestKind::Forward {
                path_and_query: "/a?b".into()
            }
        );
        for (method, target, hosts) in [
            ("GET", "/index.html", &[][..]),
            ("GET", "*", &[][..]),
            ("GET", "https://example.com/", &[][..]),
            ("GET", "http://user@example.com/", &[][..]),
            ("GET", "http://example.com/#frag", &[][..]),
            ("GET", "http://example.com/", &[&b"other.com"[..]][..]),
            (
                "GET",
                "http://example.com/",
                &[&b"example.com"[..], &b"example.com"[..]][..],
            ),
            ("CONNECT", "example.com", &[][..]),
            ("connect", "example.com:443", &[][..]),
            ("Connect", "example.com:443", &[][..]),
        ] {
            let err = parse_request(method, target, hosts).unwrap_err();
            assert_eq!(err.status(), 400, "{method} {target}: {err}");
        }
        let lower = parse_request("connect", "example.com:443", &[]).unwrap_err();
        assert_eq!(lower.code(), "bad_method");
    }
}
