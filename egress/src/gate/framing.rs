//! The gate's framing: where each request head starts and ends in the client's byte stream
//! (heads, `Content-Length` and chunked bodies, CONNECT), and the checks a head must pass,
//! exactly as hyper would parse it plus the proxy's own rules. Pure functions over bytes.

use crate::error::{ClientFault, EgressError};
use crate::request::{bad_method_case, parse_request};

/// hyper's default limit on the number of header lines in a request head.
pub(super) const MAX_HEADERS: usize = 100;
/// hyper's limit on the length of a request target (`414` beyond it).
const MAX_URI_LEN: usize = u16::MAX as usize - 1;
/// hyper's largest acceptable `Content-Length`.
const MAX_BODY_LEN: u64 = u64::MAX - 2;
/// A request head the gate refused: what the ledger and the refusal need.
#[derive(Debug)]
pub(crate) struct Rejected {
    /// The method as sent, or `-` when the line did not get that far.
    pub(crate) method: String,
    /// The request target as sent, or the start of the line.
    pub(crate) target: String,
    /// Why.
    pub(crate) error: EgressError,
}

/// Where the client's byte stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// Expecting a request head.
    Head,
    /// Inside a `Content-Length` body with this many bytes to go (never zero).
    Body(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// Past a CONNECT head: hold everything until hyper asks for the next request.
    Connect,
    /// Past a body the gate cannot follow: bytes pass unchecked.
    Unchecked,
    /// A head was refused: hyper reads end-of-stream from here on.
    Refused,
}

/// Position inside a chunked body, following hyper's decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunk {
    /// Before the first hex digit of a size line.
    Start,
    /// In the hex size.
    Size(u64),
    /// Blanks after the size.
    SizeLws(u64),
    /// In a chunk extension (after `;`), with its length so far.
    Ext(u64, u32),
    /// After the size line's CR.
    SizeLf(u64),
    /// In chunk data with this many bytes to go (never zero).
    Data(u64),
    /// After chunk data: CR, then LF.
    DataCr,
    DataLf,
    /// After the last chunk: an empty line ends the body, anything else is a trailer line.
    EndCr,
    EndLf,
    /// In a trailer line, then its LF.
    Trailer,
    TrailerLf,
}

/// What checking the front of the held bytes found.
#[derive(Debug)]
pub(super) enum HeadCheck {
    /// Not a complete head yet, and nothing wrong so far.
    Partial,
    /// A complete, valid head of `len` bytes, followed by `next`.
    Complete { len: usize, next: Framing },
    /// A head that must be refused.
    Bad(Rejected),
}

/// What one run of the framing found.
#[derive(Debug)]
pub(super) struct Checked {
    /// How many bytes are checked and may go to hyper.
    pub(super) len: usize,
    /// The refusal of a bad head that follows them.
    pub(super) rejected: Option<Rejected>,
}

/// Runs the framing over `bytes`.
pub(super) fn check(framing: &mut Framing, bytes: &[u8], max_head: usize) -> Checked {
    let mut out = Checked {
        len: 0,
        rejected: None,
    };
    while let Some(rest) = bytes.get(out.len..).filter(|rest| !rest.is_empty()) {
        match *framing {
            Framing::Head => match check_head(rest, max_head) {
                HeadCheck::Partial => break,
                HeadCheck::Complete { len, next } => {
                    out.len += len;
                    *framing = next;
                }
                HeadCheck::Bad(rejected) => {
                    out.rejected = Some(rejected);
                    break;
                }
            },
            Framing::Body(_) | Framing::Chunked(_) | Framing::Unchecked => {
                out.len += advance(framing, rest);
            }
            Framing::Connect | Framing::Refused => break,
        }
    }
    out
}

/// Moves the framing through body bytes; returns how many belong to the current body (all of
/// them unless the body ends inside `bytes` and a head follows).
pub(super) fn advance(framing: &mut Framing, bytes: &[u8]) -> usize {
    let mut pos = 0;
    while let Some(rest) = bytes.get(pos..).filter(|rest| !rest.is_empty()) {
        match *framing {
            Framing::Body(left) | Framing::Chunked(Chunk::Data(left)) => {
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                pos += take;
                let left = left - take as u64;
                *framing = match (*framing, left) {
                    (Framing::Body(_), 0) => Framing::Head,
                    (Framing::Body(_), left) => Framing::Body(left),
                    (_, 0) => Framing::Chunked(Chunk::DataCr),
                    (_, left) => Framing::Chunked(Chunk::Data(left)),
                };
            }
            Framing::Chunked(state) => {
                pos += 1;
                *framing = match chunk_step(state, rest[0]) {
                    Some(Some(next)) => Framing::Chunked(next),
                    Some(None) => Framing::Head,
                    None => Framing::Unchecked,
                };
            }
            Framing::Unchecked => return bytes.len(),
            Framing::Head | Framing::Connect | Framing::Refused => break,
        }
    }
    pos
}

/// One byte of chunked framing: `Some(Some(next))` to go on, `Some(None)` at the end of the
/// body, `None` where hyper's decoder fails.
pub(super) fn chunk_step(state: Chunk, b: u8) -> Option<Option<Chunk>> {
    let hex = |b: u8| char::from(b).to_digit(16).map(u64::from);
    let next = match (state, b) {
        (Chunk::Start, b) => Chunk::Size(hex(b)?),
        (Chunk::Size(n), b) if hex(b).is_some() => {
            Chunk::Size(n.checked_mul(16)?.checked_add(hex(b)?)?)
        }
        (Chunk::Size(n) | Chunk::SizeLws(n), b'\t' | b' ') => Chunk::SizeLws(n),
        (Chunk::Size(n) | Chunk::SizeLws(n), b';') => Chunk::Ext(n, 0),
        (Chunk::Size(n) | Chunk::SizeLws(n) | Chunk::Ext(n, _), b'\r') => Chunk::SizeLf(n),
        (Chunk::Ext(_, _), b'\n') => return None,
        (Chunk::Ext(n, len), _) => Chunk::Ext(n, len.checked_add(1).filter(|l| *l < 16 * 1024)?),
        (Chunk::SizeLf(0), b'\n') => Chunk::EndCr,
        (Chunk::SizeLf(n), b'\n') => Chunk::Data(n),
        (Chunk::DataCr, b'\r') => Chunk::DataLf,
        (Chunk::DataLf, b'\n') => Chunk::Start,
        (Chunk::EndCr, b'\r') => Chunk::EndLf,
        (Chunk::EndLf, b'\n') => return Some(None),
        (Chunk::Trailer, b'\r') => Chunk::TrailerLf,
        (Chunk::EndCr | Chunk::Trailer, _) => Chunk::Trailer,
        (Chunk::TrailerLf, b'\n') => Chunk::EndCr,
        _ => return None,
    };
    Some(Some(next))
}

/// Checks the request head at the front of `bytes` as hyper would parse it, plus the proxy's
/// own rule for targets.
pub(super) fn check_head(bytes: &[u8], max_head: usize) -> HeadCheck {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(bytes) {
        Ok(httparse::Status::Partial) if bytes.len() <= max_head => return HeadCheck::Partial,
        Ok(httparse::Status::Complete(len)) if len <= max_head => len,
        Ok(_) => return HeadCheck::Bad(rejected(bytes, too_large(max_head))),
        Err(error) => {
            let error = match error {
                httparse::Error::Token if req.method.is_none() => {
                    EgressError::client("bad_method", "the request method is not a valid token")
                }
                httparse::Error::Token => target_error(bytes),
                httparse::Error::Version => EgressError::client(
                    "bad_version",
                    "only HTTP/1.0 and HTTP/1.1 requests are served",
                ),
                httparse::Error::TooManyHeaders => EgressError::fault(
                    ClientFault::HeadTooLarge,
                    format!("the request head has more than {MAX_HEADERS} header lines"),
                ),
                other => {
                    EgressError::client("bad_header", format!("malformed request head: {other}"))
                }
            };
            return HeadCheck::Bad(rejected(bytes, error));
        }
    };
    match check_parsed(&req) {
        Ok(next) => HeadCheck::Complete { len, next },
        Err(error) => HeadCheck::Bad(rejected(bytes, error)),
    }
}

/// hyper's checks of a complete head, and what follows it.
pub(super) fn check_parsed(req: &httparse::Request<'_, '_>) -> Result<Framing, EgressError> {
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(EgressError::internal(
            "a complete head without a request line",
        ));
    };
    if target.len() > MAX_URI_LEN {
        return Err(EgressError::fault(
            ClientFault::UriTooLong,
            format!("the request target is longer than {MAX_URI_LEN} bytes"),
        ));
    }
    if http::Method::from_bytes(method.as_bytes()).is_err() {
        return Err(EgressError::client(
            "bad_method",
            "the request method is not valid",
        ));
    }
    if method != "CONNECT" && method.eq_ignore_ascii_case("CONNECT") {
        return Err(bad_method_case());
    }
    // http::Uri drops a fragment silently and rejects what the policy parser explains better.
    if target.contains('#') || http::Uri::try_from(target).is_err() {
        return Err(explain_target(method, target));
    }
    // A CONNECT's headers are checked as any other's, though nothing follows its head.
    let body = body_framing(req)?;
    Ok(if method == "CONNECT" {
        Framing::Connect
    } else {
        body
    })
}

/// What follows a head, from its `Transfer-Encoding` and `Content-Length` as hyper reads them: a
/// later Transfer-Encoding discards an earlier Content-Length, a Content-Length after it is
/// ignored, the last Transfer-Encoding header decides whether the body is chunked.
fn body_framing(req: &httparse::Request<'_, '_>) -> Result<Framing, EgressError> {
    let http11 = req.version == Some(1);
    let mut chunked = None;
    let mut length = None;
    for header in req.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            if !http11 {
                return Err(bad_header(
                    "an HTTP/1.0 request cannot have Transfer-Encoding",
                ));
            }
            chunked = Some(ends_in_chunked(header.value));
            length = None;
        } else if header.name.eq_ignore_ascii_case("content-length") && chunked.is_none() {
            let n =
                digits(header.value).ok_or_else(|| bad_header("Content-Length is not a number"))?;
            if length.is_some_and(|previous| previous != n) {
                return Err(bad_header("conflicting Content-Length headers"));
            }
            if n > MAX_BODY_LEN {
                return Err(bad_header("Content-Length is too large"));
            }
            length = Some(n);
        }
    }
    match (chunked, length) {
        (Some(false), _) => Err(bad_header("Transfer-Encoding does not end in chunked")),
        (Some(true), _) => Ok(Framing::Chunked(Chunk::Start)),
        (None, Some(n)) if n > 0 => Ok(Framing::Body(n)),
        (None, _) => Ok(Framing::Head),
    }
}

/// Whether a `Transfer-Encoding` value's last coding is `chunked` (hyper: visible ASCII only).
pub(super) fn ends_in_chunked(value: &[u8]) -> bool {
    let visible = value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b));
    visible
        && std::str::from_utf8(value).is_ok_and(|v| {
            v.rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
        })
}

/// A `Content-Length` value: decimal digits only, as hyper's server accepts it.
pub(super) fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        let digit = char::from(b).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

pub(super) fn bad_header(message: &str) -> EgressError {
    EgressError::client("bad_header", message)
}

pub(super) fn too_large(max_head: usize) -> EgressError {
    EgressError::fault(
        ClientFault::HeadTooLarge,
        format!("the request head is larger than {max_head} bytes"),
    )
}

/// The refusal for a target hyper could not take: the policy parser's reason where it has one.
pub(super) fn target_error(bytes: &[u8]) -> EgressError {
    let (method, target) = request_line(bytes);
    explain_target(&method, &target)
}

pub(super) fn explain_target(method: &str, target: &str) -> EgressError {
    match parse_request(method, target, &[]) {
        Err(error) => error,
        Ok(_) if target.contains('#') => EgressError::client(
            "fragment",
            "fragments are not allowed in the request target",
        ),
        Ok(_) => EgressError::client("bad_target", "the request target is malformed"),
    }
}

/// The method and target of the line at the front of `bytes`, as far as they can be told
/// (for the ledger and for explaining a bad target).
pub(super) fn request_line(bytes: &[u8]) -> (String, String) {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.splitn(3, |&b| b == b' ');
    let method = parts.next().filter(|m| !m.is_empty() && m.len() <= 32);
    let target = parts.next().unwrap_or_default();
    let target = target.get(..1024).unwrap_or(target);
    (
        method.map_or_else(
            || "-".to_owned(),
            |m| String::from_utf8_lossy(m).into_owned(),
        ),
        String::from_utf8_lossy(target).into_owned(),
    )
}

pub(super) fn rejected(bytes: &[u8], error: EgressError) -> Rejected {
    let (method, target) = request_line(bytes);
    Rejected {
        method,
        target,
        error,
    }
}

/// The gate's verdict on one whole request head, as `check` needs it: `Ok` when the gate would
/// hand it to hyper, else the refusal the client would get.
pub(crate) fn head_verdict(head: &[u8], max_head: usize) -> Result<(), EgressError> {
    match check_head(head, max_head) {
        HeadCheck::Complete { .. } => Ok(()),
        HeadCheck::Bad(rejected) => Err(rejected.error),
        HeadCheck::Partial => Err(EgressError::client(
            "incomplete_request",
            "the request head is incomplete",
        )),
    }
}
